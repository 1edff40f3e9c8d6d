"""A strict, capped JSON reader shared by the JSON formats (adv2, autodetect, srv).

The stdlib parser is fast (C scanner) but too forgiving for untrusted answers: it accepts
`NaN`/`Infinity`, lets a later duplicate key silently win, and recurses until RecursionError on a
deeply nested body. Each of those lets the guard and the client read different documents, so
this module refuses them before anything is judged. The typed accessors refuse wrong types
(a `bool` is never an `int`) so a format module reads exactly the schema it expects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, TypeVar

from guard.errors import BodyTooLarge, MalformedDocument, UntrustedInputError
from guard.model import Parsed, Suggestion

# AutoDetect and Autodiscover v2 answers are under 4 KB; a DoH JSON answer is bounded by the
# 64 KB DNS message it renders. 1 MiB is generous for all three and still bounds parse time
# (and the depth scan below) to a few milliseconds. Same cap as the XML reader.
MAX_JSON_BYTES = 1024 * 1024
# Legitimate answers nest 2–3 levels (AutoDetect: object → list → object); the layout of the
# debug header is unpublished, so 64 leaves ample room while stopping a 100k-deep `[[[[…`
# before the C scanner recurses into it.
MAX_DEPTH = 64

_BOM = b"\xef\xbb\xbf"
# One JSON string, escapes included. The closing quote is optional so a match never fails and
# the scan stays linear on an unterminated string (its brackets are then never reached by the
# parser, which stops inside the string).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed chars
_DEPTH_CHUNK = 4096
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")

T = TypeVar("T")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build an object, refusing keys that repeat, also when they differ only in case.

    A later duplicate silently wins in Python, an earlier one in some other parsers, and
    Json.NET (and System.Text.Json with case-insensitive names) match property names
    ignoring case: any repeat lets the client read another value than the guard judged.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs) or len(set(map(str.lower, obj))) != len(obj):
        seen: set[str] = set()
        for key, _value in pairs:
            if key.lower() in seen:
                raise MalformedDocument(f"duplicate JSON object key {key!r}")
            seen.add(key.lower())
    return obj


def _constant(name: str) -> Any:
    raise MalformedDocument(f"non-standard JSON constant {name} (RFC 8259 §6 has no NaN/Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # `1e999` parses to inf
        raise MalformedDocument(f"JSON number {text[:20]!r} overflows a double")
    return value


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant, parse_float=_finite)


def _check_depth(body: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH without recursing.

    Fast path: a body with at most MAX_DEPTH opening brackets cannot be deeper. Otherwise strip
    the strings and sum the bracket signs chunk by chunk (C loops, early exit on a bomb).
    """
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return
    signs = memoryview(_STRING.sub(b"", body).translate(_SIGNS, _NOT_BRACKETS)).cast("b")
    level = 0
    for start in range(0, len(signs), _DEPTH_CHUNK):
        sums = list(accumulate(signs[start:start + _DEPTH_CHUNK], initial=level))
        if max(sums) > MAX_DEPTH:
            raise BodyTooLarge(f"JSON nesting deeper than {MAX_DEPTH} levels")
        level = sums[-1]


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isascii() and _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    return False


def load_json(body: bytes) -> Any:
    """Parse an untrusted JSON body completely or raise.

    Raises:
        BodyTooLarge: over MAX_JSON_BYTES or MAX_DEPTH.
        MalformedDocument: not UTF-8 (a UTF-8 BOM is accepted, RFC 8259 §8.1), not JSON, NaN or
            Infinity, duplicate keys, or a lone surrogate escape (RFC 8259 §8.2: unpredictable,
            and not encodable when a rewrite re-serialises the document).
    """
    if len(body) > MAX_JSON_BYTES:
        raise BodyTooLarge(f"JSON body of {len(body)} bytes exceeds {MAX_JSON_BYTES}")
    body = body.removeprefix(_BOM)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedDocument(f"JSON body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    _check_depth(body)
    try:
        value = _DECODER.decode(text)
    except ValueError as exc:  # JSONDecodeError, and int() beyond sys.get_int_max_str_digits
        raise MalformedDocument(f"not JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(body) and _has_surrogate(value):
        raise MalformedDocument("JSON string with an unpaired UTF-16 surrogate escape")
    return value


# --- typed accessors -------------------------------------------------------------------------
# `path` is the readable location of `obj` (e.g. "protocols[1]"); messages and Suggestion.field
# values use `join(path, key)`. Keys are looked up exactly first, then ignoring case: the
# loader already refused case-variant duplicates, so at most one key can match, and a client
# that matches names ignoring case reads the same value the guard does.


def join(path: str, key: str) -> str:
    """`protocols[1]` + `hostname` → `protocols[1].hostname`; the root path is empty."""
    return f"{path}.{key}" if path else key


def find_key(obj: dict[str, Any], key: str) -> str | None:
    """The key as written in `obj` that matches `key` ignoring case, or None."""
    if key in obj:
        return key
    low = key.lower()
    return next((k for k in obj if k.lower() == low), None)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
               dict: "an object"}


def _describe(value: Any) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def as_type(value: Any, kind: type[T], where: str) -> T:
    """`value` itself if its JSON type is exactly `kind` (bool is not int), else MalformedDocument."""
    if type(value) is not kind:
        where = where or "(document)"
        raise MalformedDocument(f"{where}: expected {_TYPE_NAMES[kind]}, got {_describe(value)}")
    return value


def optional(obj: dict[str, Any], key: str, path: str, kind: type[T]) -> T | None:
    """`obj[key]` if present and not null (optional fields are often sent as null), else None.

    A present value must have exactly the JSON type `kind` (str, int, bool, list or dict).
    """
    found = find_key(obj, key)
    value = None if found is None else obj[found]
    return None if value is None else as_type(value, kind, join(path, key))


def expect(obj: dict[str, Any], key: str, path: str, kind: type[T]) -> T:
    """`obj[key]`, which must be present with exactly the JSON type `kind`."""
    found = find_key(obj, key)
    if found is None:
        raise MalformedDocument(f"{join(path, key)}: required key is missing")
    return as_type(obj[found], kind, join(path, key))


def as_obj(value: Any, path: str) -> dict[str, Any]:
    """A list item or document root that must be an object."""
    return as_type(value, dict, path)


# The top-level keys that identify each JSON format (formats.md §2, §3, §5), lower-case. Format
# sniffing reads raw bytes, where `"prot\u006fcols"` is no key it knows; the reader then sees
# the decoded object. So each reader refuses the others' keys: a body that one reader would
# judge and another act on is malformed, whichever way it was sniffed.
FORMAT_KEYS = {
    "adv2": frozenset({"protocol", "url", "errorcode"}),
    "autodetect": frozenset({"protocols", "services"}),
    "srv": frozenset({"status", "answer", "question"}),
}


def refuse_foreign_keys(root: dict[str, Any], own: str) -> None:
    """Raise MalformedDocument when `root` carries a key of another JSON format than `own`."""
    for key in root:
        low = key.lower()
        for other, keys in FORMAT_KEYS.items():
            if other != own and low in keys:
                raise MalformedDocument(f"key {key[:40]!r} belongs to the {other} format, not {own}")


def claimed_formats(body: bytes) -> set[str]:
    """The JSON formats whose keys the decoded top level of `body` carries (none if unreadable):
    format sniffing's second look when escapes could hide a key from the byte scan."""
    try:
        root = load_json(body)
    except (UntrustedInputError, RecursionError):
        return set()
    if not isinstance(root, dict):
        return set()
    return {fmt for key in root for fmt, keys in FORMAT_KEYS.items() if key.lower() in keys}


def dump_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, as Microsoft's services and DoH resolvers send it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def drop_items(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """The JSON formats' rewrite: remove the list items the dropped suggestions' locators name.

    Locators are `(list key, index)`; suggestions sharing a locator share an item (an
    AutoDetect service's host and its OAuth authority). Returns None when no suggestion would
    remain, since an answer without servers is no safe remainder. Re-serialising is acceptable
    for JSON: it does not change what any key means.
    """
    present = set(parsed.suggestions)  # a set: `in` on the tuple made this quadratic in the answer's size
    gone = {s.locator for s in drop if s in present}
    if not gone:
        return body
    if all(s.locator in gone for s in parsed.suggestions):
        return None
    root = load_json(body)
    for name in {str(locator[0]) for locator in gone}:
        key = find_key(root, name)
        if key is not None and isinstance(root[key], list):
            root[key] = [item for i, item in enumerate(root[key]) if (name, i) not in gone]
    return dump_json(root)
