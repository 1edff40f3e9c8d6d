"""Wire formats: one module per format behind one small interface (`guard.formats.base.Format`).

`detect` picks the module from the body first (root element, JSON keys) and from the URL and
content type when the body is too broken to say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from guard.errors import MalformedDocument
from guard.formats._json import claimed_formats
from guard.formats.base import Format
from guard.model import Parsed, Reply, Suggestion

__all__ = ["AMBIGUOUS", "Format", "by_name", "detect", "formats", "hint", "sniff_body"]


def _registry() -> dict[str, Format]:
    from guard.formats import adv2, autoconfig, autodetect, mobileconfig, mobilesync, pox, soap, srv

    mods = (pox, mobilesync, soap, adv2, autodetect, autoconfig, srv, mobileconfig)
    return {m.FORMAT.name: m.FORMAT for m in mods}


_FORMATS: dict[str, Format] = {}


def formats() -> dict[str, Format]:
    """All formats by name: pox, mobilesync, soap, adv2, autodetect, autoconfig, srv, mobileconfig."""
    if not _FORMATS:
        _FORMATS.update(_registry())
    return _FORMATS


def by_name(name: str) -> Format:
    """The format called `name`; raises KeyError with the known names."""
    if name == AMBIGUOUS.name:
        return AMBIGUOUS
    try:
        return formats()[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(sorted(formats()))}") from None


# First start tag after the prolog, comments and DOCTYPE: optional prefix, local name.
_ROOT = re.compile(rb"<(?![?!])(?:[A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
_JSON_KEY = re.compile(rb'"(protocols|services|Protocol|Url|ErrorCode|Answer|Question|Status)"\s*:')
_XML_ROOTS = {
    b"envelope": "soap",
    b"clientconfig": "autoconfig",
    b"emailprovider": "autoconfig",  # a v1.1 file that lost its clientConfig wrapper: judged, then malformed
    b"plist": "mobileconfig",
}
_JSON_KEYS = {
    b"protocols": "autodetect",
    b"services": "autodetect",
    b"Answer": "srv",
    b"Question": "srv",
    b"Status": "srv",
    b"Protocol": "adv2",
    b"Url": "adv2",
    b"ErrorCode": "adv2",
}
# (substring of the lower-cased URL path, format), checked in order
_URL_HINTS = (
    ("autodiscover.json", "adv2"),
    ("autodiscover.svc", "soap"),
    ("/autodetect", "autodetect"),
    ("/detect", "autodetect"),
    ("autodiscover.xml", "pox"),
    ("config-v1.1.xml", "autoconfig"),
    ("/autoconfig", "autoconfig"),
    ("mobileconfig", "mobileconfig"),
    ("/dns-query", "srv"),
    ("/resolve", "srv"),
)
_TYPE_HINTS = (("application/x-apple-aspen-config", "mobileconfig"), ("application/dns-json", "srv"))
_SNIFF_BYTES = 4096
MAX_SNIFF_JSON = 1024 * 1024  # the JSON byte cap; a larger body is refused by the parser anyway


def _refuse_ambiguous(_body: bytes) -> Parsed:
    raise MalformedDocument("JSON body carries the keys of more than one discovery format")


def _no_rewrite(_body: bytes, _parsed: Parsed, _drop: Sequence[Suggestion]) -> bytes | None:
    return None


def _refusal() -> Reply:
    return Reply(403, "text/plain; charset=utf-8", b"Blocked by autodiscover-guard: ambiguous answer.\n")


# A body that claims two formats at once: always malformed, blocked with a plain 403.
AMBIGUOUS = Format("ambiguous-json", _refuse_ambiguous, _no_rewrite, _refusal)


def _head(body: bytes) -> bytes:
    head = body[:_SNIFF_BYTES]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with BOM: sniff the decoded text
        try:
            return head.decode("utf-16", errors="ignore").encode("utf-8", errors="ignore")
        except UnicodeError:
            return b""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()


def sniff_body(body: bytes) -> str | None:
    """The format a body's own first bytes claim, or None."""
    head = _head(body)
    if head.startswith(b"<"):
        root = _ROOT.search(head)
        if root is None:
            return None
        local = root.group(1).lower()
        if local == b"autodiscover":
            return "mobilesync" if b"/mobilesync/" in head else "pox"
        return _XML_ROOTS.get(local)
    if head.startswith((b"{", b"[")):
        # Every known key anywhere in the body votes: a body with keys of two formats (adv2's
        # `Url` beside AutoDetect's `protocols`) would be judged as one and acted on as the other.
        claims = {_JSON_KEYS[m.group(1)] for m in _JSON_KEY.finditer(body, 0, MAX_SNIFF_JSON)}
        if b"\\u" in body:  # `"prot\u006fcols"` hides from the byte scan: vote on the decoded keys too
            claims |= claimed_formats(body)
        if len(claims) > 1:
            return AMBIGUOUS.name
        return claims.pop() if claims else None
    if head.startswith(b"0") and b"<plist" in body[:_SNIFF_BYTES * 4]:  # CMS-signed profile (DER)
        return "mobileconfig"
    return None


def hint(url: str = "", content_type: str = "") -> str | None:
    """The format a request URL or response content type suggests, or None."""
    path = url.split("?", 1)[0].lower()
    for needle, name in _URL_HINTS:
        if needle in path:
            return name
    ctype = content_type.lower()
    for needle, name in _TYPE_HINTS:
        if needle in ctype:
            return name
    return None


def detect(body: bytes, url: str = "", content_type: str = "") -> Format | None:
    """The format of an answer: the body decides; URL and content type only break ties.

    Returns None when neither the body nor the request looks like discovery at all.
    """
    name = sniff_body(body) or hint(url, content_type)
    return None if name is None else by_name(name)
