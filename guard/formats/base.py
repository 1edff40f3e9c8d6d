"""The interface every wire format implements (a leaf module: format modules import it, not the package)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from guard.errors import MalformedDocument
from guard.model import Parsed, Reply, Suggestion

MAX_PORT = 65535  # TCP ports are 16-bit

# What a client gets when the guard cannot tell the format, or a format has no block of its own.
GENERIC_BLOCK = Reply(403, "text/plain; charset=utf-8", b"Blocked by autodiscover-guard.\n")


def port_text(value: str, field: str) -> int:
    """A port written as decimal digits (POX `Port`, autoconfig `port`), else MalformedDocument."""
    if not (value.isascii() and value.isdigit() and len(value) <= 5 and int(value) <= MAX_PORT):
        raise MalformedDocument(f"{field}: {value[:20]!r} is not a TCP port")
    return int(value)


def no_header_suggestions(_headers: Mapping[str, str]) -> tuple[Suggestion, ...]:
    """Most formats repeat nothing in response headers."""
    return ()


@dataclass(frozen=True, slots=True)
class Format:
    """One wire format's parse/rewrite/block triple.

    * `parse(body) -> Parsed` reads the *whole* document or raises `UntrustedInputError`
      (clients act on fragments, so a partial parse is never returned);
    * `rewrite(body, parsed, drop) -> bytes | None` returns the body without the dropped
      suggestions, still valid for the format, or None when nothing safe would remain;
    * `block() -> Reply` is the answer that makes a client stop or fall back to manual set-up;
    * `header_suggestions(headers)` finds suggestions a format repeats in response headers
      (AutoDetect's debug/feedback headers), judged like the body's; never raises.
    """

    name: str
    parse: Callable[[bytes], Parsed]
    rewrite: Callable[[bytes, Parsed, Sequence[Suggestion]], bytes | None]
    block: Callable[[], Reply]
    # response headers that repeat suggestions: removed whenever the guard rewrites or blocks,
    # so hosts cannot leak around the body
    sensitive_headers: tuple[str, ...] = ()
    header_suggestions: Callable[[Mapping[str, str]], tuple[Suggestion, ...]] = no_header_suggestions


def extras_only(name: str, *, body_survives: bool) -> Format:
    """A format for answers whose suggestions all sit outside a body (a redirect's `Location`, TXT
    records), judged by passing them to the engine as `extra`: the body holds no suggestion, and a
    rewrite either keeps it (`body_survives`: the caller drops the offending records itself) or
    leaves nothing (the suggestion was the whole answer)."""

    def parse(_body: bytes) -> Parsed:
        return Parsed(name, ())

    def rewrite(body: bytes, _parsed: Parsed, _drop: Sequence[Suggestion]) -> bytes | None:
        return body if body_survives else None

    def block() -> Reply:
        return GENERIC_BLOCK

    return Format(name, parse, rewrite, block)
