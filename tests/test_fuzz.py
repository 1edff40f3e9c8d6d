"""Property tests over the whole engine: no input makes the guard fail, only refuse.

`make fuzz` runs this module with HYPOTHESIS_PROFILE=fuzz (20,000 examples per test).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.engine import judge
from guard.names import User
from guard.policy import Policy, default_policy_path, load_policy
from tests.conftest import FIXTURES

POLICY: Policy = load_policy(default_policy_path())
ALICE = User.from_address("alice@contoso.com")
BODIES = sorted(p.read_bytes() for p in FIXTURES.iterdir() if p.suffix in (".xml", ".json"))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(st.sampled_from(BODIES)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate"]))
        at = draw(st.integers(0, max(len(body) - 1, 0)))
        if op == "flip" and body:
            body[at] = draw(st.integers(0, 255))
        elif op == "delete" and body:
            del body[at:at + draw(st.integers(1, 16))]
        elif op == "insert":
            body[at:at] = draw(st.sampled_from([b"<", b">", b"&", b'"', b"\x00", b"<!DOCTYPE x>", b"{", b"]",
                                                 b"\xff\xfe", "é".encode(), b"%EMAILDOMAIN%", b"@", b"\\"]))
        elif op == "truncate":
            del body[at:]
        elif op == "duplicate" and body:
            end = min(len(body), at + draw(st.integers(1, 200)))
            body[at:at] = body[at:end]
    return bytes(body)


@given(mutated())
def test_mutated_fixtures_never_cause_an_internal_error(body: bytes) -> None:
    decision = judge(body, ALICE, POLICY)
    assert "internal-error" not in decision.rules, decision.findings


@given(st.binary(max_size=512), st.sampled_from(["", "application/json", "text/xml"]))
def test_arbitrary_bytes_never_cause_an_internal_error(body: bytes, content_type: str) -> None:
    decision = judge(body, ALICE, POLICY, content_type=content_type)
    assert "internal-error" not in decision.rules, decision.findings


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("shape", ["xml", "json"])
def test_deep_nesting_is_refused_not_crashed(depth: int, shape: str) -> None:
    body = (b"<a>" * depth + b"</a>" * depth) if shape == "xml" else (b"[" * depth + b"]" * depth)
    decision = judge(body, ALICE, POLICY, url="https://autodiscover.contoso.com/autodiscover/autodiscover.json")
    assert decision.rules == ("malformed",)
