"""Apple configuration profiles (`.mobileconfig`), XML property lists (formats.md §6).

The plist is read strictly over the element tree: `<plist>` holds one `<dict>`; a `<dict>` holds
`<key>`/value pairs (a duplicate key is malformed, since the guard and the device could each
pick a different one); values are `string`, `integer`, `real`, `true`, `false`, `date`, `data`,
`array` or `dict` and nothing else. The DOCTYPE Apple writes (no internal subset) is allowed.
The account payloads in the top-level `PayloadContent` array carry the servers (any other
payload type, except the certificates an account names, makes the profile malformed):
`com.apple.mail.managed` (IMAP/POP incoming, SMTP outgoing), `com.apple.eas.account`,
`com.apple.ews.account` (internal and external host), `com.apple.caldav.account`,
`com.apple.carddav.account` and `com.apple.ldap.account`; their OAuth sign-in and token URLs
are judged too. A principal URL that is only a path is resolved against the payload's host and
names no host of its own, so it is not a suggestion. `…UseSSL`/`SSL` true is reported as TLS:
the key says "encrypt", not whether by STARTTLS (as on port 587) or implicit TLS.

A signed profile is CMS SignedData (RFC 5652, DER or streamed BER, first byte 0x30) with the XML
plist as its encapsulated content. The plist is decoded (asn1crypto) and judged, but it cannot
be rewritten: removing a payload breaks the signature, and re-signing is impossible. Its
suggestions carry an empty locator and `rewrite` returns None, so the engine blocks or passes it whole.

Rewrite unit: one payload `<dict>` of `PayloadContent`. No rewrite once no payload with a server
would remain: a profile without its accounts is not what the user asked to install.

Block: HTTP 403 with a short text/plain body. A profile reaches a device through a download
(Safari, Mail, a link in an MDM enrolment page); iOS and macOS install only a body that parses
as a profile, so plain text installs nothing and the download ends with the browser showing the
message, which says why. 403 rather than 404 because the profile exists and is refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from asn1crypto import cms

from guard.errors import MalformedDocument
from guard.formats._xml import Element, cut_units, name, ordinals, read_xml, text
from guard.formats.base import MAX_PORT, Format
from guard.model import Parsed, Reply, Role, Suggestion, Transport, ValueKind

NAME = "mobileconfig"

_XML_SPACE = " \t\r\n"
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_REAL = re.compile(r"[+-]?(?:[0-9]{1,300}(?:\.[0-9]{0,300})?|\.[0-9]{1,300})(?:[eE][+-]?[0-9]{1,4})?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


@dataclass(frozen=True, slots=True)
class _Dict:
    """A plist `<dict>`: its element (the rewrite unit for payloads) and its entries."""

    element: Element
    items: dict[str, _Value]


_Value: TypeAlias = "str | int | float | bool | bytes | list[_Value] | _Dict"


def _blank(element: Element) -> None:
    """Containers and booleans hold elements only: stray text would be a different document.

    The C tree keeps text before the first child in `.text` and text after each child in that
    child's `.tail`, so both are checked.
    """
    for stray in (element.text, *(child.tail for child in element)):
        if stray and stray.strip(_XML_SPACE):
            raise MalformedDocument(f"<{name(element).local}>: unexpected text {stray.strip()[:20]!r}")


def _leaf(element: Element) -> str:
    """A value's text; a child element would hide text from one reader or the other."""
    if len(element):
        raise MalformedDocument(
            f"<{name(element).local}>: unexpected child element <{name(element[0]).local}>")
    return text(element)


def _dict(element: Element) -> _Dict:
    _blank(element)
    children = list(element)
    if len(children) % 2:
        raise MalformedDocument("<dict>: a key without a value")
    items: dict[str, _Value] = {}
    for key, value in zip(children[::2], children[1::2], strict=True):
        key_name = name(key)
        if key_name.local != "key" or key_name.ns:
            raise MalformedDocument(f"<dict>: expected <key>, found <{key_name.local}>")
        entry = _leaf(key)
        if entry in items:
            raise MalformedDocument(f"<dict>: duplicate key {entry[:40]!r}")
        items[entry] = _value(value)
    return _Dict(element, items)


def _value(element: Element) -> _Value:
    """One plist value, checked against Apple's PropertyList-1.0 DTD.

    Recursive, which is safe: `read_xml` refuses trees deeper than `MAX_DEPTH`.
    """
    element_name = name(element)
    tag = element_name.local
    if element_name.ns:
        raise MalformedDocument(f"<{tag}>: plist elements have no namespace")
    if tag == "dict":
        return _dict(element)
    if tag == "array":
        _blank(element)
        return [_value(child) for child in element]
    text = _leaf(element)
    if tag == "string":
        return text
    if tag in ("true", "false"):
        _blank(element)
        return tag == "true"
    stripped = text.strip(_XML_SPACE)
    if tag == "integer" and _INTEGER.fullmatch(stripped):
        return int(stripped)
    if tag == "real" and _REAL.fullmatch(stripped):
        return float(stripped)
    if tag == "date" and _DATE.fullmatch(stripped):
        return stripped
    if tag == "data":
        try:
            return base64.b64decode("".join(stripped.split()), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedDocument("<data>: not base64") from None
    if tag in ("integer", "real", "date"):
        raise MalformedDocument(f"<{tag}>: invalid value {stripped[:20]!r}")
    raise MalformedDocument(f"<{tag}>: not a property list element")


# (host key, port key, SSL key, kind, role) per payload type; role None: from EmailAccountType.
# Keys from Apple's Device Management reference (Mail, ExchangeActiveSync, ExchangeWebServices,
# CalDAV, CardDAV, LDAP); formats.md §6.
_Field = tuple[str, str | None, str | None, ValueKind, Role | None]
_PAYLOADS: dict[str, tuple[_Field, ...]] = {
    "com.apple.mail.managed": (
        ("IncomingMailServerHostName", "IncomingMailServerPortNumber", "IncomingMailServerUseSSL",
         ValueKind.HOST, None),
        ("OutgoingMailServerHostName", "OutgoingMailServerPortNumber", "OutgoingMailServerUseSSL",
         ValueKind.HOST, Role.SMTP),
    ),
    "com.apple.eas.account": (
        ("Host", None, "SSL", ValueKind.HOST, Role.EAS),
        ("OAuthSignInURL", None, None, ValueKind.URL, Role.OAUTH),
        ("OAuthTokenRequestURL", None, None, ValueKind.URL, Role.OAUTH),
    ),
    "com.apple.ews.account": (
        ("Host", "Port", "SSL", ValueKind.HOST, Role.EWS),
        ("ExternalHost", "ExternalPort", "ExternalSSL", ValueKind.HOST, Role.EWS),
        ("OAuthSignInURL", None, None, ValueKind.URL, Role.OAUTH),
    ),
    "com.apple.caldav.account": (
        ("CalDAVHostName", "CalDAVPort", "CalDAVUseSSL", ValueKind.HOST, Role.DAV),
        ("CalDAVPrincipalURL", None, None, ValueKind.URL, Role.DAV),
    ),
    "com.apple.carddav.account": (
        ("CardDAVHostName", "CardDAVPort", "CardDAVUseSSL", ValueKind.HOST, Role.DAV),
        ("CardDAVPrincipalURL", None, None, ValueKind.URL, Role.DAV),
    ),
    "com.apple.ldap.account": (
        ("LDAPAccountHostName", None, "LDAPAccountUseSSL", ValueKind.HOST, Role.DIRECTORY),
    ),
    # Mail-in-a-Box's profile adds a Home Screen link to its webmail (Apple: WebClip, `URL`)
    "com.apple.webClip.managed": (
        ("URL", None, None, ValueKind.URL, Role.WEB),
    ),
    # a client identity or intermediate certificate an account payload names by
    # PayloadCertificateUUID: no host. A root (`com.apple.security.root`) is not among them: a
    # discovery answer has no business making the device trust a new authority.
    "com.apple.security.pkcs12": (),
    "com.apple.security.pkcs1": (),
    "com.apple.security.pem": (),
}
_MAIL_TYPES = {"EmailTypeIMAP": Role.IMAP, "EmailTypePOP": Role.POP3}


def _string(payload: _Dict, key: str, field: str) -> str | None:
    value = payload.items.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedDocument(f"{field}.{key}: expected a string, got {type(value).__name__}")
    return value


def _port(payload: _Dict, key: str | None, field: str) -> int | None:
    """An integer, or an integral `real` or digit string as some generators write it.

    Mail-in-a-Box's profile writes `<real>443</real>` for CalDAVPort.
    """
    value = payload.items.get(key) if key is not None else None
    if value is None or (isinstance(value, str) and not value.strip(_XML_SPACE)):
        return None  # absent or left empty by the generator: the client's default port
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _INTEGER.fullmatch(value.strip(_XML_SPACE))
    ):
        number = int(value)
    if number is None or not 0 <= number <= MAX_PORT:
        raise MalformedDocument(f"{field}.{key}: {str(value)[:20]!r} is not a TCP port")
    return number


def _transport(payload: _Dict, key: str | None, field: str) -> Transport:
    value = payload.items.get(key) if key is not None else None
    if value is None:
        return Transport.UNKNOWN
    if not isinstance(value, bool):
        raise MalformedDocument(f"{field}.{key}: expected <true/> or <false/>, got {type(value).__name__}")
    return Transport.TLS if value else Transport.PLAIN


def _names_a_host(value: str) -> bool:
    """False for a path-only reference, which the device resolves against the payload's host.

    A scheme (`https:`) or a network-path prefix (`//host/…`, and the backslash forms WHATWG
    URL parsing treats alike) names a host of its own.
    """
    text = value.strip()
    return bool(_SCHEME.match(text)) or (text[:1] in ("/", "\\") and text[1:2] in ("/", "\\"))


def _payload(payload: _Dict, field: str, locator: tuple[int, ...]) -> list[Suggestion]:
    """A payload's suggestions; a payload type the guard does not read is malformed.

    A discovery-served profile sets up mail accounts (and the certificates they name). Any other
    payload (subscribed calendars with credentials, a managed DNS-over-HTTPS server, VPN,
    proxies, root certificates) is a place the device would go or an authority it would trust
    that the guard would not judge, so the profile is refused rather than passed half-read.
    """
    payload_type = _string(payload, "PayloadType", field) or ""
    fields = _PAYLOADS.get(payload_type)
    if fields is None:
        raise MalformedDocument(f"{field}.PayloadType: {payload_type[:60]!r} is not an account payload the guard reads")
    found: list[Suggestion] = []
    for key, port_key, ssl_key, kind, fixed_role in fields:
        value = _string(payload, key, field)
        if value is None or not value.strip():
            continue
        if kind is ValueKind.URL and not _names_a_host(value):
            continue
        role = fixed_role or _MAIL_TYPES.get(_string(payload, "EmailAccountType", field) or "", Role.OTHER)
        port = _port(payload, port_key, field)
        transport = _transport(payload, ssl_key, field)
        found.append(Suggestion(value, kind, role, f"{field}.{key}", port, transport, locator))
    return found


def _signed(body: bytes) -> bool:
    return body[:1] == b"\x30"  # DER SEQUENCE: CMS ContentInfo (RFC 5652 §3)


def _plist(body: bytes) -> bytes:
    """The XML plist itself: the body, or the encapsulated content of a signed profile.

    A signed profile is decoded as CMS (RFC 5652) with asn1crypto, in DER or in the streamed,
    indefinite-length BER encoding (`openssl cms -sign -stream`, some MDM servers), whose content
    arrives as a chunked OCTET STRING that no byte slice reads whole. Only the content a device
    installs is judged: `signedData` with `data` content, attached, and nothing after it.
    """
    if not _signed(body):
        return body
    try:
        info = cms.ContentInfo.load(body, strict=True)
        if info["content_type"].native != "signed_data":
            raise MalformedDocument(f"signed profile: CMS content type {info['content_type'].native!r}")
        encap = info["content"]["encap_content_info"]
        content = encap["content"].native if encap["content_type"].native == "data" else None
    except (ValueError, TypeError, KeyError) as exc:  # asn1crypto's decoding errors
        raise MalformedDocument(f"signed profile: not a CMS structure ({type(exc).__name__})") from None
    if not isinstance(content, bytes) or not content:
        raise MalformedDocument("signed profile without attached data content")
    return content


def _read(body: bytes) -> list[tuple[Element, Suggestion]]:
    """Every suggestion with its payload `<dict>`; locators are empty for a signed profile."""
    root = read_xml(_plist(body), allow_doctype=True)
    root_name = name(root)
    if root_name.local != "plist" or root_name.ns:
        raise MalformedDocument(f"root element is <{root_name.local}>, not <plist>")
    _blank(root)
    if len(root) != 1:
        raise MalformedDocument("<plist> must hold exactly one value")
    top = _value(root[0])
    if not isinstance(top, _Dict):
        raise MalformedDocument("a profile is a <dict>")
    content = top.items.get("PayloadContent", [])
    if not isinstance(content, list):
        raise MalformedDocument("PayloadContent: expected an array")
    order = None if _signed(body) else ordinals(root)  # a signed profile cannot be cut: no locators
    out: list[tuple[Element, Suggestion]] = []
    for index, payload in enumerate(content):
        field = f"PayloadContent[{index}]"
        if not isinstance(payload, _Dict):
            raise MalformedDocument(f"{field}: expected a dict")
        locator = () if order is None else (order[payload.element],)
        out.extend((payload.element, s) for s in _payload(payload, field, locator))
    return out


def parse(body: bytes) -> Parsed:
    """Read a profile (plain or signed) completely, or raise `UntrustedInputError`."""
    return Parsed(NAME, tuple(s for _, s in _read(body)))


def rewrite(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """Remove the payloads holding `drop`; None for a signed profile or when no account would remain."""
    if not drop:
        return body
    if _signed(body):
        return None
    result = cut_units(body, _read(body), drop, allow_doctype=True)
    if result is None or not result[1]:
        return None
    return result[0]


_BLOCK = Reply(403, "text/plain; charset=utf-8", b"Configuration profile refused by autodiscover-guard.\n")


def block() -> Reply:
    """403 with a one-line text body: nothing a device can install (see module doc)."""
    return _BLOCK


FORMAT = Format(name=NAME, parse=parse, rewrite=rewrite, block=block)
