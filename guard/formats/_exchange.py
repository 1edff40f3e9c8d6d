"""What the three Exchange Autodiscover formats (pox, mobilesync, soap) share.

Namespaces, strict leaf reading, the Outlook/SOAP encryption words, the POX envelope check, the
`Error` answer both POX schemas use to block, and the rewrite that cuts units and refuses when no
usable settings remain (formats.md §1, §1b, §1c).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from guard.errors import MalformedDocument
from guard.formats._xml import Element, named_children, parse_xml, splice
from guard.model import Reply, Role, Suggestion, Transport, ValueKind

# formats.md §1.3: both POX namespaces are http://, never the https:// printed in Microsoft's docs.
BASE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MOBILESYNC_NS = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
# formats.md §1b: SOAP 1.1 (the only envelope exchangelib accepts) and the 2010 Autodiscover messages.
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SVC_NS = "http://schemas.microsoft.com/exchange/2010/Autodiscover"

XML_TYPE = "text/xml; charset=utf-8"  # what Exchange sends (formats.md §1.3)

# POX `Encryption` (Outlook 2010+, overrides `SSL`) and SOAP `EncryptionMethod`: Outlook's "TLS"
# is STARTTLS, "SSL" implicit TLS; "Auto" negotiates, so it promises nothing.
ENCRYPTION = {
    "none": Transport.PLAIN,
    "ssl": Transport.TLS,
    "tls": Transport.STARTTLS,
    "auto": Transport.UNKNOWN,
}

_MAX_PORT = 65535

Span = tuple[int, int]


def leaf(element: Element) -> str:
    """A value element's text; child elements would let two readers see different text."""
    if element.children:
        raise MalformedDocument(f"{element.path()}: expected text, found child elements")
    return element.text


def attr(element: Element, name: str) -> str | None:
    """An attribute by local name, case-insensitively (`Type`, `i:nil`)."""
    for key, value in element.attrib.items():
        if key.rpartition("}")[2].lower() == name:
            return value
    return None


def read_port(element: Element) -> int | None:
    """A `Port` value; None when empty, MalformedDocument when not a TCP port."""
    text = leaf(element).strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= _MAX_PORT):
        raise MalformedDocument(f"{element.path()}: {text[:20]!r} is not a TCP port")
    return int(text)


class Found:
    """Suggestions in document order, each with the span of the settings container it belongs to
    (POX `Protocol`, mobilesync `Server`, SOAP `UserSetting`) or None when it is no setting
    (redirects, mailbox references)."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[Suggestion, Span | None]] = []

    def add(
        self,
        element: Element,
        field: str,
        role: Role,
        unit: Element,
        *,
        container: Element | None = None,
        kind: ValueKind | None = None,
        port: int | None = None,
        transport: Transport = Transport.UNKNOWN,
    ) -> None:
        """Record the value of `element` unless blank; without `kind`, the value decides URL or HOST."""
        value = leaf(element)
        if not value.strip():
            return
        if kind is None:
            kind = ValueKind.URL if "://" in value else ValueKind.HOST
        suggestion = Suggestion(value, kind, role, field, port, transport, unit.span)
        self.items.append((suggestion, None if container is None else container.span))

    @property
    def suggestions(self) -> tuple[Suggestion, ...]:
        return tuple(s for s, _ in self.items)


def mailbox(reference: Element, path: str, unit: Element, out: Found) -> None:
    """A mailbox Outlook opens besides the user's (POX `AlternativeMailbox`,
    `PublicFolderInformation`; SOAP `AlternateMailbox`).

    Outlook runs Autodiscover for its `SmtpAddress` with the user's credentials, so the address
    is judged like a redirect target (role AUTODISCOVER); a `Server` is where the mailbox lives.
    Neither is a setting: dropping one never leaves an answer without settings.
    """
    for child, field in named_children(reference, path + "/"):
        tag = child.tag.lower()
        if tag == "smtpaddress":
            out.add(child, field, Role.AUTODISCOVER, unit, kind=ValueKind.EMAIL)
        elif tag == "server":
            out.add(child, field, Role.MAPI, unit)


# The element that carries each POX schema's settings (formats.md §1.3, §1c).
_SHAPES = {OUTLOOK_NS: "account", MOBILESYNC_NS: "action"}


def responses(body: bytes, schema_ns: str) -> Iterator[tuple[Element, str]]:
    """Each `Response` of a POX answer with its field prefix; the envelope is checked strictly.

    The root must be `Autodiscover` in the base namespace and every `Response` in `schema_ns`
    (settings) or the base namespace (protocol error, formats.md §1.6). Namespace-blind clients
    make everything else dangerous: Thunderbird's JXON reads `Response/Account/Protocol` whatever
    the namespace, exchangelib rejects the `https://` variant. So a wrong namespace, a
    base-namespace `Response` holding more than `Error`, and the other schema's settings element
    (`Action` in an Outlook answer, `Account` in an ActiveSync one, which the other parser would
    not read) are all malformed rather than judged as one client would read them.
    """
    root = parse_xml(body)
    if root.tag.lower() != "autodiscover" or root.ns != BASE_NS:
        raise MalformedDocument(f"root element is <{{{root.ns}}}{root.tag}>, not a POX Autodiscover answer")
    foreign = next(tag for ns, tag in _SHAPES.items() if ns != schema_ns)
    found = False
    for child, path in named_children(root, ""):
        if child.tag.lower() != "response":
            continue
        if child.ns not in (schema_ns, BASE_NS):
            raise MalformedDocument(f"Response in namespace {child.ns!r}, expected {schema_ns!r}")
        for inner in child.children:
            tag = inner.tag.lower()
            if tag == foreign or (child.ns == BASE_NS and tag != "error"):
                raise MalformedDocument(f"<{inner.tag}> does not belong in a Response in {child.ns}")
        found = True
        yield child, "" if path == child.tag else path + "/"
    if not found:
        raise MalformedDocument("Autodiscover answer without a Response")


def cut(
    body: bytes, found: Found, drop: Sequence[Suggestion], usable: Callable[[Suggestion], bool] | None = None
) -> bytes | None:
    """Splice out the units of `drop`; None when that is no safe answer.

    None when a redirect is dropped (a redirect answer has nothing else in it), when a dropped
    suggestion is not one of `found` (what cannot be located cannot be removed), or when no
    setting (none that is `usable`, if given) would remain. A container left without any
    suggestion goes too, so no empty `Protocol`/`UserSetting` shell reaches the client.
    """
    if not drop:
        return body
    if any(s.role is Role.REDIRECT for s in drop):
        return None
    spans = {s.locator for s in drop}
    if not spans <= {s.locator for s, _ in found.items}:
        return None
    members: dict[Span, list[Span]] = {}
    for suggestion, container in found.items:
        if container is not None:
            members.setdefault(container, []).append(_span(suggestion))
    cuts = [_span(s) for s in drop]
    for container, inside in members.items():
        if all(_within(span, cuts) for span in inside):
            cuts.append(container)
    kept = [s for s, container in found.items if container is not None and not _within(_span(s), cuts)]
    if not any(usable is None or usable(s) for s in kept):
        return None
    return splice(body, cuts)


def _span(suggestion: Suggestion) -> Span:
    start, end = suggestion.locator
    return int(start), int(end)


def _within(span: Span, cuts: Sequence[Span]) -> bool:
    return any(start <= span[0] and span[1] <= end for start, end in cuts)


def error_reply(response_ns: str | None, code: int, message: str) -> Reply:
    """A POX `Autodiscover/Response/Error` answer (MS-OXDSCLI Error element, formats.md §1.6).

    `response_ns` None keeps `Response` in the base namespace, the protocol-error form.
    """
    xmlns = "" if response_ns is None else f' xmlns="{response_ns}"'
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<Autodiscover xmlns="{BASE_NS}">\n'
        f"  <Response{xmlns}>\n"
        "    <Error>\n"
        f"      <ErrorCode>{code}</ErrorCode>\n"
        f"      <Message>{message}</Message>\n"
        "      <DebugData />\n"
        "    </Error>\n"
        "  </Response>\n"
        "</Autodiscover>\n"
    )
    return Reply(200, XML_TYPE, body.encode())


def read_answer(body: bytes, schema_ns: str, section: str,
                read_section: Callable[[Element, str, Found], bool]) -> tuple[Found, bool]:
    """Walk each `Response` of a POX answer: `section` elements go to `read_section`.

    Returns every suggestion found and whether an `Error` was seen (at either level).
    """
    out = Found()
    error = False
    for response, prefix in responses(body, schema_ns):
        for child, field in named_children(response, prefix):
            tag = child.tag.lower()
            if tag == section:
                error = read_section(child, field + "/", out) or error
            elif tag == "error":
                error = True
    return out, error
