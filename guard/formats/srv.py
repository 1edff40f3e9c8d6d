"""DNS SRV answers in the DoH JSON shape (`application/dns-json`, formats.md §5).

Google's schema, also served by Cloudflare: `Status` (RCODE), flags `TC` `RD` `RA` `AD` `CD`,
`Question[] {name, type}`, `Answer[] {name, type, TTL, data}`. SRV records are `type` 33 with
`data` = "priority weight port target." (RFC 2782); every other record type (a CNAME leading to
the SRV owner, say) is type-checked and otherwise ignored. The role comes from the owner name's
service label (RFC 6186 §3, RFC 8314 §5.1, RFC 6764, MS-OXDISCO §3.1.5.3). A target of `.` means
"decidedly not offered" (RFC 2782) and is no suggestion. `Authority`/`Additional` are ignored:
clients take SRV data from the answer section only.

TXT records (`type` 16) whose text starts with `mailconf=` (myl-discovery, pimalaya's email-lib)
name the URL of the queried domain's autoconfig document: each URL is a suggestion, judged like a
redirect for the domain the question names (docs/dns.md). `data` is the record's text as Google
sends it, or its character-strings in presentation form (`"a" "b"`, Cloudflare), which are joined
(RFC 7208 §3.3). Rewriting drops only the offending TXT records: SPF and other records stay.

`srv_suggestion` is the same judgement of one record, for the DNS side of the proxy.

Block: a DoH JSON answer with `Status` 5 (REFUSED) and no `Answer`, HTTP 200. A DoH client
reads it as a DNS failure for that name, so the SRV method yields nothing and the client moves
on or falls back to manual set-up. Unlike NXDOMAIN or an empty NOERROR it claims nothing about
the zone and is not negatively cached (RFC 2308 caches only those two), so the record comes
back as soon as the policy allows it. An HTTP error status would instead make some DoH
clients switch to another resolver the guard does not see.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from guard.errors import MalformedDocument
from guard.formats._json import (
    as_obj,
    drop_items,
    dump_json,
    expect,
    find_key,
    join,
    load_json,
    optional,
    refuse_foreign_keys,
)
from guard.formats.base import Format
from guard.model import Locator, Parsed, Reply, Role, Suggestion, Transport, ValueKind

NAME = "srv"
SRV = 33  # RFC 2782 RR type
TXT = 16  # RFC 1035 §3.3.14
MAILCONF = "mailconf="
# One character-string in presentation form (RFC 1035 §5.1): quoted, `\"` `\\` `\DDD` escapes.
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"\s*')
_ESCAPE = re.compile(r"\\(\d{3}|.)")

# Owner name's first label → what the client does with the target.
_SERVICES = {
    "_imaps": (Role.IMAP, Transport.TLS),  # RFC 6186 §3.2, implicit TLS (993)
    "_imap": (Role.IMAP, Transport.STARTTLS),  # RFC 6186 §3.2 (143)
    "_pop3s": (Role.POP3, Transport.TLS),  # RFC 6186 §3.3 (995)
    "_pop3": (Role.POP3, Transport.STARTTLS),  # RFC 6186 §3.3 (110)
    "_submissions": (Role.SMTP, Transport.TLS),  # RFC 8314 §5.1 (465)
    "_submission": (Role.SMTP, Transport.STARTTLS),  # RFC 6186 §3.1 (587)
    "_autodiscover": (Role.AUTODISCOVER, Transport.TLS),  # MS-OXDISCO §3.1.5.3: https://<target>/…
    "_caldavs": (Role.DAV, Transport.TLS),  # RFC 6764 §3
    "_carddavs": (Role.DAV, Transport.TLS),  # RFC 6764 §3
    "_caldav": (Role.DAV, Transport.PLAIN),  # RFC 6764 §3: plain HTTP
    "_carddav": (Role.DAV, Transport.PLAIN),  # RFC 6764 §3: plain HTTP
    "_jmap": (Role.JMAP, Transport.TLS),  # RFC 8620 §2.2
    "_sieve": (Role.SIEVE, Transport.STARTTLS),  # RFC 5804 §1.8
}
_MAX_U16 = 65535
_MAX_NAME = 253  # RFC 1035 §2.3.4: 255 octets on the wire = 253 characters without the root dot
_MAX_LABEL = 63
_FLAGS = ("TC", "RD", "RA", "AD", "CD")


def _u16(text: str, where: str) -> int:
    # ASCII digits only: int() would also take "+1", "1_0" and non-ASCII digits
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_U16:
        raise MalformedDocument(f"{where}: {text[:20]!r} is not a 16-bit unsigned integer")
    return int(text)


def _check_name(name: str, where: str) -> None:
    """A domain name in presentation form: `.` or non-empty labels of at most 63 characters."""
    if name == ".":
        return
    bare = name.removesuffix(".")
    labels = bare.split(".")
    if not bare or len(bare) > _MAX_NAME or any(not 0 < len(label) <= _MAX_LABEL for label in labels):
        raise MalformedDocument(f"{where}: {name[:80]!r} is not a domain name")


def srv_suggestion(owner: str, data: str, field: str, locator: Locator = ()) -> Suggestion | None:
    """Judge one SRV record: `owner` is its name, `data` its RDATA in presentation form.

    Returns the target as a HOST suggestion (port from the record, role and transport from the
    owner's service label), or None for the RFC 2782 "not offered" target `.`.

    Raises:
        MalformedDocument: not exactly "priority weight port target", a number that is not a
            16-bit unsigned integer, or a target that is not a domain name.
    """
    fields = data.split()
    if len(fields) != 4:
        raise MalformedDocument(f"{field}: {len(fields)} words; SRV data is 'priority weight port target'")
    _u16(fields[0], f"{field} priority")
    _u16(fields[1], f"{field} weight")
    port = _u16(fields[2], f"{field} port")
    target = fields[3]
    _check_name(target, f"{field} target")
    if target == ".":
        return None
    role, transport = _SERVICES.get(owner.partition(".")[0].lower(), (Role.OTHER, Transport.UNKNOWN))
    return Suggestion(target, ValueKind.HOST, role, field, port, transport, locator)


def _txt_text(data: str, where: str) -> str:
    """A TXT record's text: quoted character-strings joined, or `data` itself when unquoted."""
    if not data.startswith('"'):
        return data
    parts, at = [], 0
    while at < len(data):
        match = _QUOTED.match(data, at)
        if match is None:
            raise MalformedDocument(f"{where}: {data[:80]!r} is not a sequence of quoted character-strings")
        parts.append(_ESCAPE.sub(lambda m: chr(int(m[1])) if m[1].isdigit() else m[1], match[1]))
        at = match.end()
    return "".join(parts)


def mailconf_suggestion(text: str, field: str, locator: Locator = ()) -> Suggestion | None:
    """The URL a TXT record's `mailconf=<URL>` names, as a suggestion; None for other TXT.

    `text` is the record's character-strings joined (from DoH JSON's presentation form here, from
    the wire in `guard.dnsjudge`); the prefix is ASCII, matched case-insensitively.
    """
    prefix = text[:len(MAILCONF)]
    if not (prefix.isascii() and prefix.lower() == MAILCONF):
        return None
    return Suggestion(text[len(MAILCONF):].strip(), ValueKind.URL, Role.AUTODISCOVER, field, locator=locator)


def _record(item: Any, path: str, index: int) -> Suggestion | None:
    entry = as_obj(item, path)
    name = expect(entry, "name", path, str)
    rrtype = expect(entry, "type", path, int)
    optional(entry, "TTL", path, int)
    data = expect(entry, "data", path, str)
    if rrtype == SRV:
        return srv_suggestion(name, data, join(path, "data"), ("Answer", index))
    if rrtype == TXT:
        field = join(path, "data")
        return mailconf_suggestion(_txt_text(data, field), field, ("Answer", index))
    return None


def parse(body: bytes) -> Parsed:
    """Read a DoH JSON answer: one suggestion per SRV record with a real target and per
    `mailconf=` TXT record."""
    root = as_obj(load_json(body), "")
    refuse_foreign_keys(root, NAME)
    status = expect(root, "Status", "", int)
    for flag in _FLAGS:
        optional(root, flag, "", bool)
    for i, item in enumerate(optional(root, "Question", "", list) or ()):
        question = as_obj(item, f"Question[{i}]")
        expect(question, "name", f"Question[{i}]", str)
        expect(question, "type", f"Question[{i}]", int)
    found: list[Suggestion] = []
    for i, item in enumerate(optional(root, "Answer", "", list) or ()):
        suggestion = _record(item, f"Answer[{i}]", i)
        if suggestion is not None:
            found.append(suggestion)
    return Parsed(NAME, tuple(found), error_answer=status != 0 and not found)


def rewrite(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """Drop the Answer[] entries of the dropped suggestions, re-serialised compactly as DoH
    resolvers send it. None when no SRV record with a real target would remain; a TXT answer
    keeps its other records (SPF) even when no `mailconf=` URL remains."""
    if any(s.kind is ValueKind.HOST for s in parsed.suggestions):
        return drop_items(body, parsed, drop)
    present = set(parsed.suggestions)
    gone = {s.locator[1] for s in drop if s in present}
    if not gone:
        return body
    root = load_json(body)
    key = find_key(root, "Answer")
    if key is not None and isinstance(root[key], list):
        root[key] = [item for i, item in enumerate(root[key]) if i not in gone]
    return dump_json(root)

_BLOCK = Reply(
    200,
    "application/dns-json",
    dump_json({"Status": 5, "TC": False, "RD": True, "RA": True, "AD": False, "CD": False, "Question": []}),
)


def block() -> Reply:
    """REFUSED (RCODE 5) with no answer: a DNS failure to the client (see module doc)."""
    return _BLOCK


FORMAT = Format(name=NAME, parse=parse, rewrite=rewrite, block=block)
