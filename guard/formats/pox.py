"""Exchange POX Autodiscover, Outlook response schema 2006a (formats.md §1).

The root is `Autodiscover` in the base namespace; each `Response` is in the 2006a namespace
(settings) or the base namespace (protocol error); anything else, such as the `https://` variant
Microsoft's docs print, is malformed (see `_exchange.responses`). Element names match
case-insensitively, because exchangelib 4.x follows `RedirectURL` and the spec writes
`RedirectUrl` (formats.md §1.5); children's own namespaces are ignored as Thunderbird's JXON
ignores them.

Suggestions: every `Protocol` `Server` (host, IP, `GUID@domain`, or a URL for WEB/DAV) with
`Port` and `SSL`/`Encryption`; the absolute URL elements (ASUrl, EwsUrl, EmwsUrl, EwsPartnerUrl,
OOFUrl, OABUrl, UMUrl, SharingUrl, EcpUrl — not the relative `EcpUrl-*` fragments); mapiHttp
`MailStore`/`AddressBook` URLs; `Internal`/`External` `OWAUrl` and their nested `Protocol`;
`PublicFolderServer`, `AD`, `CertPrincipalName` (a certificate principal, `msstd:<host>`; the
value `None` Exchange 2013 documents means there is none); `Account/Image` and `ServiceHome`;
`RedirectAddr`/`RedirectUrl` whatever `Action` says (Thunderbird acts on `RedirectAddr` by its mere
presence); and the mailbox addresses Outlook
runs Autodiscover for next with the same credentials (`PublicFolderInformation/SmtpAddress`,
`AlternativeMailbox/SmtpAddress` and its `Server`).

Rewrite units: a bad `Server` removes its whole `Protocol` (a protocol without its server is
useless); a bad URL or directory host removes that element only; a bad mapiHttp URL removes its
`MailStore`/`AddressBook`; a mailbox reference removes its `PublicFolderInformation` /
`AlternativeMailbox`. A dropped redirect, or no `Protocol` left holding a suggestion, gives None.

Block: HTTP 200 with the base-namespace `Response/Error` answer, ErrorCode 500 and Exchange's own
message "The email address can't be found." (MS-OXDSCLI Error/ErrorCode, formats.md §1.6). It has
no `Account`, so no `Action`, `Protocol` or redirect for any client to follow: Thunderbird's
`readAutoDiscoverXML` finds no `Account/Protocol` and falls back to its other sources or manual
set-up; exchangelib 4.x (the last POX client) maps exactly this message to
`ErrorNonExistentMailbox` and ends discovery instead of trying further steps; Outlook treats it as
the answer Exchange gives for an unknown address. 500 rather than 600/601 (a bad request or
schema, which invites a retry with another request) or 603 (a transient server error).
"""

from __future__ import annotations

from collections.abc import Sequence

from guard.formats._exchange import (
    ENCRYPTION,
    OUTLOOK_NS,
    Found,
    cut,
    error_reply,
    leaf,
    mailbox,
    read_answer,
    read_port,
)
from guard.formats._xml import Element, named_children
from guard.formats.base import Format
from guard.model import Parsed, Reply, Role, Suggestion, Transport, ValueKind

NAME = "pox"

# `Protocol/Type` (formats.md §1.4): EXCH is RPC, EXPR RPC over HTTP, EXHTTP both; DAV kinds are
# seen in the wild (Mailu, automx2) though not in Microsoft's list.
_TYPES = {
    "imap": Role.IMAP,
    "pop3": Role.POP3,
    "smtp": Role.SMTP,
    "exch": Role.MAPI,
    "expr": Role.MAPI,
    "exhttp": Role.MAPI,
    "web": Role.WEB,
    "dav": Role.DAV,
    "caldav": Role.DAV,
    "carddav": Role.DAV,
}
# Absolute URL children of `Protocol` (learn.microsoft.com "Protocol (POX)"); `EcpUrl-*` are
# relative fragments appended to `EcpUrl` and carry no host.
_URLS = {
    "asurl": Role.EWS,
    "ewsurl": Role.EWS,
    "emwsurl": Role.EWS,
    "ewspartnerurl": Role.EWS,
    "oofurl": Role.EWS,
    "umurl": Role.EWS,
    "sharingurl": Role.EWS,
    "oaburl": Role.OAB,
    "ecpurl": Role.WEB,
}
_DIRECTORY = ("publicfolderserver", "ad")
_MAPI_HTTP = ("mailstore", "addressbook")  # Protocol Type="mapiHttp" (formats.md §1.4)
_MAPI_URLS = ("internalurl", "externalurl")
_REDIRECTS = {"redirectaddr": ValueKind.EMAIL, "redirecturl": ValueKind.URL}  # formats.md §1.5
_MAILBOXES = ("publicfolderinformation", "alternativemailbox")
# Account-level URLs (MS-OXDSCLI §2.2.4.1.1.1: Image, the account's picture; ServiceHome, the
# provider's web page): Outlook fetches both, so a link-local or foreign host there is judged too.
_ACCOUNT_URLS = ("image", "servicehome")


def _transport(ssl: str, encryption: str) -> Transport:
    """`Encryption` (Outlook 2010+) overrides `SSL`; a document that says neither says UNKNOWN."""
    if encryption:
        return ENCRYPTION.get(encryption, Transport.UNKNOWN)
    if ssl in ("on", "off"):
        return Transport.TLS if ssl == "on" else Transport.PLAIN
    return Transport.UNKNOWN


def _protocol(protocol: Element, path: str, top: Element, out: Found) -> None:
    """One `Protocol` (or one nested in `Internal`/`External`); `top` is the Account-level one.

    One pass reads `Type`, `Port`, `SSL` and `Encryption` (the first of each counts, every port
    is checked) and keeps the value elements; a second emits them with what the first learnt.
    """
    role = Role.OTHER
    number: int | None = None
    words = {"type": "", "ssl": "", "encryption": ""}
    values: list[tuple[str, Element, str]] = []
    for child, child_name, field in named_children(protocol, path + "/"):
        tag = child_name.key
        if tag == "port":
            value = read_port(child, field)
            number = value if number is None else number
        elif tag in words:
            if not words[tag]:
                words[tag] = leaf(child, field).strip().lower()
        else:
            values.append((tag, child, field))
    role = _TYPES.get(words["type"], Role.OTHER)
    transport = _transport(words["ssl"], words["encryption"])
    for tag, child, field in values:
        if tag == "server":
            out.add(child, field, role, protocol, container=top, port=number, transport=transport)
        elif tag in _URLS:
            out.add(child, field, _URLS[tag], child, container=top, kind=ValueKind.URL)
        elif tag in _DIRECTORY:
            out.add(child, field, Role.DIRECTORY, child, container=top, kind=ValueKind.HOST)
        elif tag == "certprincipalname":  # msstd:<host> (formats.md §1.4); "None": no principal
            if leaf(child, field).strip().lower() != "none":
                out.add(child, field, role, child, container=top, kind=ValueKind.HOST)
        elif tag in _MAPI_HTTP:
            for url, url_name, url_field in named_children(child, field + "/"):
                if url_name.key in _MAPI_URLS:
                    out.add(url, url_field, Role.MAPI, child, container=top, kind=ValueKind.URL)
        elif tag in ("internal", "external"):
            for inner, inner_name, inner_field in named_children(child, field + "/"):
                inner_tag = inner_name.key
                if inner_tag == "owaurl":
                    out.add(inner, inner_field, Role.WEB, inner, container=top, kind=ValueKind.URL)
                elif inner_tag == "protocol":
                    _protocol(inner, inner_field, top, out)


def _account(account: Element, prefix: str, out: Found) -> bool:
    """Suggestions of one `Account`; True when it carries an `Error`."""
    error = False
    for child, child_name, field in named_children(account, prefix):
        tag = child_name.key
        if tag == "protocol":
            _protocol(child, field, child, out)
        elif tag in _REDIRECTS:
            out.add(child, field, Role.REDIRECT, child, kind=_REDIRECTS[tag])
        elif tag in _MAILBOXES:
            mailbox(child, field, child, out)
        elif tag in _ACCOUNT_URLS:
            out.add(child, field, Role.WEB, child, kind=ValueKind.URL)
        elif tag == "error":
            error = True
    return error


def _read(body: bytes) -> tuple[Found, bool]:
    return read_answer(body, OUTLOOK_NS, "account", _account)


def parse(body: bytes) -> Parsed:
    """Read a POX Outlook answer completely, or raise `UntrustedInputError`."""
    found, error = _read(body)
    return Parsed(NAME, tuple(found.suggestions), error_answer=error and not found.suggestions)


def rewrite(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """Remove the units holding `drop`; None for a redirect or when no Protocol would remain."""
    return cut(body, parsed, drop)


_BLOCK = error_reply(None, 500, "The email address can't be found.")


def block() -> Reply:
    """The base-namespace ErrorCode 500 answer (see module doc)."""
    return _BLOCK


FORMAT = Format(name=NAME, parse=parse, rewrite=rewrite, block=block)
