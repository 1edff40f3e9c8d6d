"""Mozilla autoconfig `clientConfig` v1.1 and draft v1.2 (formats.md §4).

The root must be `<clientConfig>` without a namespace (neither spec has one and Thunderbird's
`readFromXML` keys on that exact name) holding an `<emailProvider>`; anything else, such as a
bare `<emailProvider>` root, is malformed. Sections are read from the `clientConfig` and
`emailProvider` levels both, since files in the wild put `enable`/`webMail` at either. Element
names match case-insensitively, which covers draft v1.2's lower-case `addressbook`; unknown
elements are ignored (draft-ietf-mailmaint-autoconfig: clients MUST ignore them). Placeholders such as
`%EMAILDOMAIN%` are left in the raw value for the engine to expand. `<domain>` entries are
claims about who the file serves, not servers a client contacts, so they are not suggestions.

Rewrite units: the whole server section (`incomingServer`, `outgoingServer`, `addressBook`, …)
holding a bad host or URL; the attribute-bearing element for `documentation`, `enable`,
`loginPage`, `loginPageInfo` and `clientConfigUpdate`; the whole `oAuth2` element for any of its
endpoints, because an OAuth section with a foreign token endpoint is unsafe as a whole. A client
cannot set up an account from half a config, so no rewrite is offered once no `incomingServer`
or no `outgoingServer` would remain.

Block: HTTP 404 with an empty body. An ISP that has no autoconfig file answers exactly this, so
Thunderbird (`FetchConfig`/`FindConfig`) treats it as "no config from this source" and goes on to
its next source (ISPDB, MX, Exchange Autodiscover — each judged by the guard again) or to manual
set-up. An empty `clientConfig` document would instead be a parse error shown to the user.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from guard.errors import MalformedDocument
from guard.formats._xml import Element, Name, cut_units, kid, name, named_children, ordinals, read_xml, text
from guard.formats.base import Format, port_text
from guard.model import Parsed, Reply, Role, Suggestion, Transport, ValueKind

NAME = "autoconfig"

# Server-like sections (formats.md §4.2, §4.3) and their role when `type` names nothing known.
_SECTIONS = {
    "incomingserver": Role.OTHER,
    "outgoingserver": Role.SMTP,
    "addressbook": Role.DAV,
    "calendar": Role.DAV,
    "fileshare": Role.DAV,
    "setupserver": Role.SIEVE,
    "chatserver": Role.OTHER,
    "videoconference": Role.OTHER,
}
# `type` attribute values of v1.1 and the draft's IANA registry (activeSync spelled both ways).
_TYPES = {
    "imap": Role.IMAP,
    "pop3": Role.POP3,
    "smtp": Role.SMTP,
    "exchange": Role.EWS,
    "ews": Role.EWS,
    "activesync": Role.EAS,
    "jmap": Role.JMAP,
    "owa": Role.WEB,
    "graph": Role.WEB,  # Microsoft Graph: a REST API, like Autodiscover v2's `Rest`
    "carddav": Role.DAV,
    "caldav": Role.DAV,
    "webdav": Role.DAV,
    "managesieve": Role.SIEVE,
}
# URL-valued children of a section; None keeps the section's role. `ewsURL` is the ISPDB's
# spelling, `exchangeURL` Thunderbird's (formats.md §4.2); `serverURL` is v1.1, `url` the draft's.
_URLS: dict[str, Role | None] = {
    "url": None,
    "serverurl": None,
    "owaurl": Role.WEB,
    "ewsurl": Role.EWS,
    "exchangeurl": Role.EWS,
    "easurl": Role.EAS,
}
# socketType values (v1.1: plain|SSL|STARTTLS; the draft deprecates plain).
_SOCKETS = {"ssl": Transport.TLS, "starttls": Transport.STARTTLS, "plain": Transport.PLAIN}
# Elements whose URL attribute is a link or endpoint the client shows or fetches.
_LINKS = {
    "documentation": ("url", Role.INFO),
    "enable": ("visiturl", Role.INFO),
    "clientconfigupdate": ("url", Role.AUTODISCOVER),  # draft v1.2: where to re-fetch this config
}
_WEBMAIL_PAGES = ("loginpage", "loginpageinfo")
_OAUTH = {"authurl": ValueKind.URL, "tokenurl": ValueKind.URL, "issuer": ValueKind.HOST}

# Thunderbird's JXON turns a text that is a JS number into that number: `<hostname>1e3` is host 1000
_JS_NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")
_Found = list[tuple[Element, Suggestion]]
_Order = dict[Element, int]


def _text(element: Element, field: str) -> str:
    """A leaf value; child elements would let two readers see different text."""
    if len(element):
        raise MalformedDocument(f"{field}: expected text, found child elements")
    return text(element)


def _attr(element: Element, key: str) -> str | None:
    return next((v for k, v in element.attrib.items() if k.lower() == key), None)


def _port(element: Element, field: str) -> int:
    return port_text(_text(element, field).strip(), field)


def _server(section: Element, path: str, default: Role, order: _Order, out: _Found) -> None:
    """`hostname` (+ `port`, `socketType`) and URL children of one server-like section, one pass."""
    role = _TYPES.get((_attr(section, "type") or "").strip().lower(), default)
    port: int | None = None
    transport = Transport.UNKNOWN
    values: list[tuple[str, Element, str]] = []
    for child in section:
        child_name = name(child)
        key, field = child_name.key, f"{path}/{child_name.local}"
        if key == "hostname" or key in _URLS:
            values.append((key, child, field))
        elif key == "port":
            number = _port(child, field)  # every port is checked; the first counts, as JXON readers take it
            if port is None:
                port = number
        elif key == "sockettype" and transport is Transport.UNKNOWN:
            # the first value the client understands, as Thunderbird's readFromXML takes it
            transport = _SOCKETS.get(_text(child, field).strip().lower(), Transport.UNKNOWN)
    locator = (order[section],)
    for key, child, field in values:
        value = _text(child, field)
        if not value.strip():
            continue
        if key == "hostname":
            if _JS_NUMBER.fullmatch(value):
                raise MalformedDocument(f"{field}: {value.strip()!r} is a number to Thunderbird; use a host name")
            suggestion = Suggestion(value, ValueKind.HOST, role, field, port, transport, locator)
        else:
            suggestion = Suggestion(value, ValueKind.URL, _URLS[key] or role, field, locator=locator)
        out.append((section, suggestion))


def _link(element: Element, path: str, attribute: str, role: Role, order: _Order, out: _Found) -> None:
    value = _attr(element, attribute)
    if value is not None and value.strip():
        field = f"{path}@{attribute}"
        out.append((element, Suggestion(value, ValueKind.URL, role, field, locator=(order[element],))))


def _oauth(section: Element, path: str, order: _Order, out: _Found) -> None:
    for child in section:
        child_name = name(child)
        kind = _OAUTH.get(child_name.key)
        if kind is not None:
            field = f"{path}/{child_name.local}"
            value = _text(child, field)
            if value.strip():
                out.append((section, Suggestion(value, kind, Role.OAUTH, field, locator=(order[section],))))


def _section(element: Element, element_name: Name, path: str, order: _Order, out: _Found) -> None:
    """One child of `clientConfig` or `emailProvider`; anything unknown is ignored."""
    key = element_name.key
    if key in _SECTIONS:
        _server(element, path, _SECTIONS[key], order, out)
    elif key in _LINKS:
        _link(element, path, *_LINKS[key], order, out)
    elif key == "webmail":
        for page, page_name, page_path in named_children(element, path + "/"):
            if page_name.key in _WEBMAIL_PAGES:
                _link(page, page_path, "url", Role.WEB, order, out)
    elif key == "oauth2":
        _oauth(element, path, order, out)


def _read(body: bytes) -> _Found:
    """Every suggestion with its rewrite unit, in document order."""
    root = read_xml(body)
    root_name = name(root)
    if root_name.local != "clientConfig" or root_name.ns:
        where = f"{{{root_name.ns}}}" if root_name.ns else ""
        raise MalformedDocument(f"root element is <{where}{root_name.local}>, not <clientConfig>")
    if kid(root, "emailprovider") is None:
        raise MalformedDocument("clientConfig without emailProvider")
    order = ordinals(root)
    out: _Found = []
    for element, element_name, path in named_children(root, ""):
        if element_name.key == "emailprovider":
            for inner, inner_name, inner_path in named_children(element, path + "/"):
                _section(inner, inner_name, inner_path, order, out)
        else:
            _section(element, element_name, path, order, out)
    return out


def parse(body: bytes) -> Parsed:
    """Read a clientConfig document completely, or raise `UntrustedInputError`."""
    return Parsed(NAME, tuple(s for _, s in _read(body)))


def rewrite(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """Remove the sections holding `drop`; None unless an incoming and an outgoing server remain."""
    if not drop:
        return body
    result = cut_units(body, _read(body), drop)
    if result is None:
        return None
    new_body, kept = result
    kept_keys = {name(unit).key for unit in kept}
    if not {"incomingserver", "outgoingserver"} <= kept_keys:
        return None
    return new_body


_BLOCK = Reply(404, "text/plain; charset=utf-8", b"")


def block() -> Reply:
    """404, empty: "no autoconfig here", so the client tries its next source (see module doc)."""
    return _BLOCK


FORMAT = Format(name=NAME, parse=parse, rewrite=rewrite, block=block)
