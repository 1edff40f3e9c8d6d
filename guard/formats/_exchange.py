"""What the three Exchange Autodiscover formats (pox, mobilesync, soap) share.

Namespaces, strict leaf reading, the Outlook/SOAP encryption words, the POX envelope check, the
`Error` answer both POX schemas use to block, and the rewrite that cuts units and refuses when no
usable settings remain (formats.md §1, §1b, §1c).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterator, Sequence

from guard.errors import MalformedDocument
from guard.formats._xml import (
    Element,
    Name,
    Span,
    name,
    named_children,
    ordinals,
    read_xml,
    spans_of,
    splice,
    text,
)
from guard.formats.base import port_text
from guard.model import Parsed, Reply, Role, Suggestion, Transport, ValueKind

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



def leaf(element: Element, field: str) -> str:
    """A value element's text; child elements would let two readers see different text."""
    if len(element):
        raise MalformedDocument(f"{field}: expected text, found child elements")
    return text(element)


def attr(element: Element, name: str) -> str | None:
    """An attribute by local name, case-insensitively (`Type`, `i:nil`)."""
    for key, value in element.attrib.items():
        if key.rpartition("}")[2].lower() == name:
            return value
    return None


def read_port(element: Element, field: str) -> int | None:
    """A `Port` value; None when empty, MalformedDocument when not a TCP port."""
    value = leaf(element, field).strip()
    if not value:
        return None
    return port_text(value, field)


NO_CONTAINER = -1


class Found:
    """Suggestions in document order. Each locator is `(unit, container)`: the ordinals of the
    element a rewrite cuts to drop the suggestion and of the settings container it belongs to
    (POX `Protocol`, mobilesync `Server`, SOAP `UserSetting`), `NO_CONTAINER` when it is no setting
    (redirects, mailbox references). So `cut` needs only the parsed suggestions, not a second walk."""

    __slots__ = ("order", "suggestions")

    def __init__(self, root: Element) -> None:
        self.order = ordinals(root)
        self.suggestions: list[Suggestion] = []

    def add(
        self,
        element: Element,
        field: str,
        role: Role,
        unit: Element,
        container: Element | None = None,
        kind: ValueKind | None = None,
        port: int | None = None,
        transport: Transport = Transport.UNKNOWN,
    ) -> None:
        """Record the value of `element` unless blank; without `kind`, the value decides URL or HOST."""
        if len(element):
            raise MalformedDocument(f"{field}: expected text, found child elements")
        value = element.text
        if not value or value.isspace():
            return
        if kind is None:
            kind = ValueKind.URL if "://" in value else ValueKind.HOST
        order = self.order
        locator = (order[unit], NO_CONTAINER if container is None else order[container])
        self.suggestions.append(Suggestion(value, kind, role, field, port, transport, locator))


def mailbox(reference: Element, path: str, unit: Element, out: Found) -> None:
    """A mailbox Outlook opens besides the user's (POX `AlternativeMailbox`,
    `PublicFolderInformation`; SOAP `AlternateMailbox`).

    Outlook runs Autodiscover for its `SmtpAddress` with the user's credentials, so the address
    is judged like a redirect target (role AUTODISCOVER); a `Server` is where the mailbox lives.
    Neither is a setting: dropping one never leaves an answer without settings.
    """
    for child, child_name, field in named_children(reference, path + "/"):
        if child_name.key == "smtpaddress":
            out.add(child, field, Role.AUTODISCOVER, unit, kind=ValueKind.EMAIL)
        elif child_name.key == "server":
            out.add(child, field, Role.MAPI, unit)


# The element that carries each POX schema's settings (formats.md §1.3, §1c).
_SHAPES = {OUTLOOK_NS: "account", MOBILESYNC_NS: "action"}


def responses(root: Element, schema_ns: str) -> Iterator[tuple[Element, str]]:
    """Each `Response` of a POX answer with its field prefix; the envelope is checked strictly.

    The root must be `Autodiscover` in the base namespace and every `Response` in `schema_ns`
    (settings) or the base namespace (protocol error, formats.md §1.6). Namespace-blind clients
    make everything else dangerous: Thunderbird's JXON reads `Response/Account/Protocol` whatever
    the namespace, exchangelib rejects the `https://` variant. So a wrong namespace, a
    base-namespace `Response` holding more than `Error`, and the other schema's settings element
    (`Action` in an Outlook answer, `Account` in an ActiveSync one, which the other parser would
    not read) are all malformed rather than judged as one client would read them.
    """
    root_name = name(root)
    # Horde's ActiveSync server (and EAS code that copied it) writes a root without a namespace
    # around a Response prefixed in the mobilesync one: devices read only the Response, so it has
    # one reading, and is accepted for that schema alone.
    bare_root = root_name.ns == "" and schema_ns == MOBILESYNC_NS
    if root_name.key != "autodiscover" or (root_name.ns != BASE_NS and not bare_root):
        raise MalformedDocument(
            f"root element is <{{{root_name.ns}}}{root_name.local}>, not a POX Autodiscover answer")
    foreign = next(tag for ns, tag in _SHAPES.items() if ns != schema_ns)
    found = False
    for child, child_name, path in named_children(root, ""):
        if child_name.key != "response":
            continue
        ns = child_name.ns
        if ns not in (schema_ns, BASE_NS):
            raise MalformedDocument(f"Response in namespace {ns!r}, expected {schema_ns!r}")
        for inner in child:
            inner_name = name(inner)
            if inner_name.key == foreign or (ns == BASE_NS and inner_name.key != "error"):
                raise MalformedDocument(f"<{inner_name.local}> does not belong in a Response in {ns}")
        found = True
        yield child, "" if path == child_name.local else path + "/"
    if not found:
        raise MalformedDocument("Autodiscover answer without a Response")


def once(children: Sequence[tuple[Element, Name, str]], singletons: frozenset[str]) -> None:
    """Refuse a repeated singleton element (lower-cased names in `singletons`): a reader taking the
    first and one taking the last would act on different values, as with duplicate JSON keys."""
    seen: set[str] = set()
    for _, child_name, field in children:
        key = child_name.key
        if key in singletons:
            if key in seen:
                raise MalformedDocument(f"{field}: <{child_name.local}> appears more than once")
            seen.add(key)


def cut(
    body: bytes, parsed: Parsed, drop: Sequence[Suggestion], usable: Callable[[Suggestion], bool] | None = None
) -> bytes | None:
    """Splice out the units of `drop`; None when that is no safe answer.

    None when a redirect is dropped (a redirect answer has nothing else in it), when a dropped
    suggestion is not one of `parsed` (what cannot be located cannot be removed), or when no
    setting (none that is `usable`, if given) would remain. A container left without any
    suggestion goes too, so no empty `Protocol`/`UserSetting` shell reaches the client.
    """
    if not drop:
        return body
    if any(s.role is Role.REDIRECT for s in drop):
        return None
    settings = [s for s in parsed.suggestions if s.locator[1] != NO_CONTAINER]
    if not {s.locator for s in drop} <= {s.locator for s in parsed.suggestions}:
        return None
    wanted = {int(s.locator[0]) for s in drop}
    for s in settings:
        wanted.update((int(s.locator[0]), int(s.locator[1])))
    spans = spans_of(body, wanted)

    def span(suggestion: Suggestion) -> Span:
        return spans[int(suggestion.locator[0])]

    members: dict[Span, list[Span]] = {}
    for suggestion in settings:
        members.setdefault(spans[int(suggestion.locator[1])], []).append(span(suggestion))
    cuts = [span(s) for s in drop]
    cover = _Cover(cuts)
    for outer, inside in members.items():
        if all(cover.holds(inner) for inner in inside):
            cuts.append(outer)
    cover = _Cover(cuts)
    kept = [s for s in settings if not cover.holds(span(s))]
    if not any(usable is None or usable(s) for s in kept):
        return None
    return splice(body, cuts)


class _Cover:
    """Which spans lie inside one of a set of cuts, in O(log n) per question.

    Element spans nest or are disjoint, so the outermost cuts are disjoint and sorted by start:
    a span is covered iff the last outermost cut starting at or before it also ends after it.
    (The former pairwise test was quadratic in the answer's size.)
    """

    __slots__ = ("ends", "starts")

    def __init__(self, cuts: Sequence[Span]) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        for start, end in sorted(cuts, key=lambda c: (c[0], -c[1])):
            if self.ends and end <= self.ends[-1]:
                continue  # nested in the previous outermost cut
            self.starts.append(start)
            self.ends.append(end)

    def holds(self, span: Span) -> bool:
        i = bisect_right(self.starts, span[0]) - 1
        return i >= 0 and span[1] <= self.ends[i]


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
    root = read_xml(body)
    out = Found(root)
    error = False
    for response, prefix in responses(root, schema_ns):
        for child, child_name, field in named_children(response, prefix):
            if child_name.key == section:
                error = read_section(child, field + "/", out) or error
            elif child_name.key == "error":
                error = True
    return out, error
