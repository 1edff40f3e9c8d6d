"""Shared by the JSON format tests: fixture paths and a byte-mutation strategy for hypothesis."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

FIXTURES = Path(__file__).parent.parent / "fixtures"

# Bytes that matter to a JSON reader: structure, quotes, escapes, a BOM, invalid UTF-8.
_JUNK = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\\u", b"\\ud800", b"NaN", b"1e999", b"-",
         b"\xef\xbb\xbf", b"\xff", b"\xc3", b"null", b"true", b"0", "é".encode(), b"[" * 80]


def fixture_bodies(prefix: str) -> list[bytes]:
    """The bytes of every fixture of one format."""
    return [p.read_bytes() for p in sorted(FIXTURES.glob(f"{prefix}__*.json"))]


@st.composite
def mutated(draw: st.DrawFn, bodies: list[bytes]) -> bytes:
    """A fixture with 1–6 random flips, deletions, insertions or a truncation."""
    body = bytearray(draw(st.sampled_from(bodies)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(body)))
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if op == "flip" and at < len(body):
            body[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del body[at:at + draw(st.integers(1, 8))]
        elif op == "insert":
            body[at:at] = draw(st.sampled_from(_JUNK))
        else:
            del body[at:]
    return bytes(body)
