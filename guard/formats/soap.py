"""Exchange SOAP Autodiscover (`autodiscover.svc`), what exchangelib ≥ 5 speaks (formats.md §1b).

The root must be a SOAP 1.1 `Envelope` (the only one exchangelib accepts) whose `Body` holds
`GetUserSettingsResponseMessage` or `GetDomainSettingsResponseMessage` in
`http://schemas.microsoft.com/exchange/2010/Autodiscover` (not the `https://` form the reference
pages print), or a SOAP `Fault`. Any other body element is malformed: an operation the guard
does not read could carry hosts it would not see.

Suggestions, per `UserResponse` (`DomainResponse`):
* `RedirectTarget` unless `xsi:nil`: an address after `ErrorCode` RedirectAddress (EMAIL), a URL
  after RedirectUrl; judged whatever the code says, as a non-redirect code with a target is
  something no honest server sends.
* `StringSetting` `Value` of host-bearing settings (`_STRINGS`, the `Internal`/`External` `Ecp…Url`
  settings, and any other name ending in `Url`/`Server` — never the `…UrlFragment` settings or
  `AutoDiscoverSMTPAddress`, which names the account, not a server); URL or HOST per value.
* `WebClientUrlsSetting` `WebClientUrls/WebClientUrl/Url` (WEB);
  `ProtocolConnectionCollectionSetting` `ProtocolConnections/ProtocolConnection/Hostname` with
  `Port` and `EncryptionMethod`, role IMAP/POP3/SMTP from the setting name;
  `AlternateMailboxCollectionSetting` mailbox `Server` and `SmtpAddress` (Outlook runs
  Autodiscover for the latter with the same credentials).
`ErrorCode`s other than NoError/RedirectAddress/RedirectUrl, or a `Fault`, with no suggestion make
an error answer.

Rewrite unit: the `UserSetting` (`DomainSetting`); the single `ProtocolConnection`,
`WebClientUrl` or `AlternateMailbox` when its collection has more, and the setting too once none
of them is left. A dropped redirect, or no setting left holding a suggestion, gives None.

Block: HTTP 200 with a GetUserSettings answer whose `Response/ErrorCode` is NoError and whose
`UserResponse/ErrorCode` is InvalidUser. exchangelib 5.6 reads it without error
(`UserResponse.from_xml` keeps the code), then `UserResponse.raise_errors()` in discovery step 5
raises `ErrorNonExistentMailbox`, which no discovery step catches: discovery ends, with no redirect
and no further URL tried. The alternatives are worse: InvalidDomain/InvalidRequest/InvalidSetting/
NotFederated/SettingIsNotAvailable raise `AutoDiscoverFailed`, which a cached endpoint turns into
a restart of all discovery steps; ServerBusy and InternalServerError raise errors that invite a
retry; a non-NoError top-level code skips the user response entirely.
"""

from __future__ import annotations

from collections.abc import Sequence

from guard.errors import MalformedDocument
from guard.formats._exchange import (
    ENCRYPTION,
    SOAP_NS,
    SVC_NS,
    XML_TYPE,
    Found,
    cut,
    leaf,
    mailbox,
    read_port,
)
from guard.formats._xml import Element, kids, name, named_children, read_xml
from guard.formats.base import Format
from guard.model import Parsed, Reply, Role, Suggestion, Transport, ValueKind

NAME = "soap"

_MESSAGES = ("GetUserSettingsResponseMessage", "GetDomainSettingsResponseMessage")
# StringSetting names that carry a host or URL (learn.microsoft.com "Setting (SOAP)"; exchangelib
# properties.UserResponse.SETTINGS_MAP), by what the client does with them.
_STRINGS = {
    "externalewsurl": Role.EWS,  # the one exchangelib uses as its EWS endpoint
    "internalewsurl": Role.EWS,
    "interopexternalewsurl": Role.EWS,
    "internalumurl": Role.EWS,
    "externalumurl": Role.EWS,
    "internaloaburl": Role.OAB,
    "externaloaburl": Role.OAB,
    "externalmailboxserver": Role.MAPI,
    "internalmailboxserver": Role.MAPI,
    "internalrpcclientserver": Role.MAPI,
    "exchangerpcurl": Role.MAPI,
    "activedirectoryserver": Role.DIRECTORY,
    "publicfolderserver": Role.DIRECTORY,
    "externalphotosurl": Role.WEB,
    "internalphotosurl": Role.WEB,
    "sitemailboxcreationurl": Role.WEB,
}
_CONNECTION_ROLES = (("imap", Role.IMAP), ("pop3", Role.POP3), ("smtp", Role.SMTP))


def _string_role(name: str) -> Role | None:
    """The role of a StringSetting's value, or None when the setting names no server."""
    low = name.lower()
    role = _STRINGS.get(low)
    if role is not None:
        return role
    if low.endswith("url") and low.startswith(("internalecp", "externalecp")):
        return Role.WEB  # Internal/ExternalEcp…Url are absolute; Ecp…UrlFragment are not
    if low.endswith(("url", "server")):
        return Role.OTHER  # a setting newer than this table: still a place the client may go
    return None


# Children each element of the message may have (exact local names, all in `SVC_NS`): exchangelib
# looks names up exactly in that namespace and iterates *every* child of `UserResponses` and
# `UserSettings`, so a name outside these tables is one the two readers would read differently.
# Names in `_ONCE` may appear at most once (exchangelib reads the first, a namespace-blind reader
# the last). Collections hold their items; items hold the leaf names listed.
_ONCE = frozenset({
    "Response", "ErrorCode", "ErrorMessage", "RedirectTarget", "UserSettingErrors", "UserSettings",
    "DomainSettingErrors", "DomainSettings", "UserResponses", "DomainResponses", "Name", "Value",
    "SettingName", "Hostname", "Port", "EncryptionMethod", "Url", "AuthenticationMethods", "Type",
    "OwnerSmtpAddress", "SmtpAddress", "Server", "DisplayName", "LegacyDN", "ServiceUrl", "LocationUrl",
    "SupportedFileExtensions", "ExternalAccessAllowed", "AnonymousAccessAllowed", "CanModifyPermissions",
    "IsDefault", "ProtocolConnections", "WebClientUrls", "AlternateMailboxes", "DocumentSharingLocations",
})
_CHILDREN: dict[str, frozenset[str]] = {
    "GetUserSettingsResponseMessage": frozenset({"Response"}),
    "GetDomainSettingsResponseMessage": frozenset({"Response"}),
    "Response": frozenset({"ErrorCode", "ErrorMessage", "UserResponses", "DomainResponses"}),
    "UserResponses": frozenset({"UserResponse"}),
    "DomainResponses": frozenset({"DomainResponse"}),
    "UserResponse": frozenset({"ErrorCode", "ErrorMessage", "RedirectTarget", "UserSettingErrors",
                               "UserSettings"}),
    "DomainResponse": frozenset({"ErrorCode", "ErrorMessage", "RedirectTarget", "DomainSettingErrors",
                                 "DomainSettings"}),
    "UserSettingErrors": frozenset({"UserSettingError"}),
    "DomainSettingErrors": frozenset({"DomainSettingError"}),
    "UserSettingError": frozenset({"ErrorCode", "ErrorMessage", "SettingName"}),
    "DomainSettingError": frozenset({"ErrorCode", "ErrorMessage", "SettingName"}),
    "UserSettings": frozenset({"UserSetting"}),
    "DomainSettings": frozenset({"DomainSetting"}),
    "UserSetting": frozenset({"Name", "Value", "ProtocolConnections", "WebClientUrls", "AlternateMailboxes",
                              "DocumentSharingLocations"}),
    "DomainSetting": frozenset({"Name", "Value"}),
    "ProtocolConnections": frozenset({"ProtocolConnection"}),
    "ProtocolConnection": frozenset({"Hostname", "Port", "EncryptionMethod"}),
    "WebClientUrls": frozenset({"WebClientUrl"}),
    "WebClientUrl": frozenset({"AuthenticationMethods", "Url"}),
    "AlternateMailboxes": frozenset({"AlternateMailbox"}),
    "AlternateMailbox": frozenset({"Type", "DisplayName", "LegacyDN", "Server", "SmtpAddress",
                                   "OwnerSmtpAddress"}),
    "DocumentSharingLocations": frozenset({"DocumentSharingLocation"}),
    "DocumentSharingLocation": frozenset({"ServiceUrl", "LocationUrl", "DisplayName", "SupportedFileExtensions",
                                          "ExternalAccessAllowed", "AnonymousAccessAllowed",
                                          "CanModifyPermissions", "IsDefault"}),
}
_NOTHING: frozenset[str] = frozenset()
_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
# ErrorCode values that make exchangelib follow `RedirectTarget`, compared exactly as it does.
_REDIRECT_KINDS = {"RedirectAddress": ValueKind.EMAIL, "RedirectUrl": ValueKind.URL}
_NO_ERRORS = ("", "NoError")


def _checked(element: Element, path: str) -> list[tuple[Element, str, str]]:
    """Children of a message element as `(child, local name, field)`, after the strict checks.

    Every child must be in the Autodiscover namespace with a name `_CHILDREN` allows for its
    parent, and a name in `_ONCE` must not repeat: otherwise exchangelib and the guard would read
    different elements, so the document is malformed. An element whose name has no entry in
    `_CHILDREN` is a leaf and must have no children.
    """
    allowed = _CHILDREN.get(name(element).local, _NOTHING)
    seen: set[str] = set()
    repeats = False
    for child in element:
        child_name = name(child)
        local = child_name.local
        if child_name.ns != SVC_NS or local not in allowed:
            raise MalformedDocument(
                f"{path}{local}: <{{{child_name.ns}}}{local}> is not an element exchangelib reads here; "
                f"expected one of {sorted(allowed)} in {SVC_NS}")
        if local in seen:
            if local in _ONCE:
                raise MalformedDocument(f"{path}{local}: <{local}> appears more than once")
            repeats = True
        seen.add(local)
    if repeats:  # collections: fields indexed among repeated siblings (`ProtocolConnection[2]`)
        return [(child, child_name.local, field) for child, child_name, field in named_children(element, path)]
    return [(child, name(child).local, path + name(child).local) for child in element]


def _value_text(element: Element, field: str) -> str | None:
    """A leaf's text, or None when it is `xsi:nil`; nil *with* text or children is malformed
    (exchangelib reads the text, a schema-aware reader reads nothing)."""
    nil = element.get(_NIL)
    if nil is not None and nil.strip() in ("true", "1"):
        if len(element) or (element.text or "").strip():
            raise MalformedDocument(f"{field}: xsi:nil element with content")
        return None
    return leaf(element, field)


def _connection(out: Found, item: Element, path: str, role: Role, *, unit: Element, setting: Element) -> None:
    """One `ProtocolConnection`: `Hostname` with its `Port` and `EncryptionMethod`."""
    number: int | None = None
    transport = Transport.UNKNOWN
    host: tuple[Element, str] | None = None
    for child, local, field in _checked(item, path + "/"):
        if local == "Hostname":
            host = (child, field)
        elif local == "Port":
            number = read_port(child, field)
        else:
            transport = ENCRYPTION.get(leaf(child, field).strip().lower(), Transport.UNKNOWN)
    if host is not None:
        out.add(host[0], host[1], role, unit, container=setting, kind=ValueKind.HOST, port=number,
                transport=transport)


# collection element → (item element, what to read from an item)
_ITEM_URLS = {"WebClientUrls": ("Url",), "DocumentSharingLocations": ("ServiceUrl", "LocationUrl")}


def _collection(collection: Element, local: str, path: str, setting_name: str, setting: Element,
                out: Found) -> None:
    """The items of one collection; each item is its own unit while it has siblings."""
    items = _checked(collection, path + "/")
    low = setting_name.lower()
    role = next((r for word, r in _CONNECTION_ROLES if word in low), Role.OTHER)
    for item, _, field in items:
        unit = item if len(items) > 1 else setting
        if local == "ProtocolConnections":
            _connection(out, item, field, role, unit=unit, setting=setting)
        elif local == "AlternateMailboxes":
            _checked(item, field + "/")
            mailbox(item, field, unit, out)
        else:
            for url, url_local, url_field in _checked(item, field + "/"):
                if url_local in _ITEM_URLS[local]:
                    out.add(url, url_field, Role.WEB, unit, container=setting, kind=ValueKind.URL)
                else:
                    leaf(url, url_field)


def _setting(setting: Element, prefix: str, out: Found) -> None:
    """One `UserSetting`/`DomainSetting`, whatever its `xsi:type`: the children decide the shape."""
    children = _checked(setting, prefix)
    named = next((child for child, local, _ in children if local == "Name"), None)
    setting_name = (_value_text(named, prefix + "Name") or "").strip() if named is not None else ""
    field = prefix + (setting_name or name(setting).local)
    for child, local, _ in children:
        if local == "Value":
            role = _string_role(setting_name)
            if _value_text(child, field) is not None and role is not None:
                out.add(child, field, role, setting, container=setting)
        elif local != "Name":
            _collection(child, local, field, setting_name, setting, out)


def _error_code(children: list[tuple[Element, str, str]]) -> str:
    code = next(((c, f) for c, local, f in children if local == "ErrorCode"), None)
    return "" if code is None else (_value_text(*code) or "").strip()


def _response(item: Element, prefix: str, out: Found) -> bool:
    """One `UserResponse`/`DomainResponse`; True when its `ErrorCode` is an error.

    `RedirectTarget` is read as exchangelib reads it: an address after `RedirectAddress`, a URL
    after `RedirectUrl`, the code compared exactly (a URL under RedirectAddress is then no
    mailbox, and malformed). Under any other code no exchangelib follows it, but it is judged all
    the same, as what it looks like.
    """
    children = _checked(item, prefix)
    code = _error_code(children)
    for child, local, field in children:
        if local == "RedirectTarget":
            value = _value_text(child, field)
            if value is None or not value.strip():
                continue
            kind = _REDIRECT_KINDS.get(code)
            if kind is None:  # followed by no exchangelib; judged as what it looks like for other readers
                kind = ValueKind.EMAIL if "@" in value and "://" not in value else ValueKind.URL
            out.add(child, field, Role.REDIRECT, child, kind=kind)
        elif local.endswith("Settings"):
            for setting, _, _ in _checked(child, field + "/"):
                _setting(setting, field + "/", out)
        elif local.endswith("SettingErrors"):
            for error, _, error_field in _checked(child, field + "/"):
                for leaf_element, _, leaf_field in _checked(error, error_field + "/"):
                    leaf(leaf_element, leaf_field)
        else:
            leaf(child, field)
    return code not in _NO_ERRORS and code not in _REDIRECT_KINDS


def _message(message: Element, out: Found) -> bool:
    """A GetUserSettings/GetDomainSettings message; True when any `ErrorCode` is an error."""
    error = False
    for response, _, path in _checked(message, ""):
        children = _checked(response, "" if path == "Response" else path + "/")
        code = _error_code(children)
        error = code not in _NO_ERRORS or error
        for child, local, _ in children:
            if local.endswith("Responses"):
                for item, _, field in _checked(child, ""):
                    error = _response(item, field + "/", out) or error
            else:
                leaf(child, local)
    return error


def _read(body: bytes) -> tuple[Found, bool]:
    root = read_xml(body)
    root_name = name(root)
    if root_name.key != "envelope" or root_name.ns != SOAP_NS:
        raise MalformedDocument(f"root element is <{{{root_name.ns}}}{root_name.local}>, not a SOAP 1.1 Envelope")
    bodies = [b for b in kids(root, "body") if name(b).ns == SOAP_NS]
    if len(bodies) != 1:
        raise MalformedDocument(f"SOAP Envelope with {len(bodies)} Body elements, expected one")
    out = Found(root)
    error = False
    messages = list(bodies[0])
    if len(messages) != 1:
        raise MalformedDocument(f"SOAP Body with {len(messages)} elements, expected one message or Fault")
    message = messages[0]
    message_name = name(message)
    if message_name.ns == SOAP_NS and message_name.key == "fault":
        error = True
    elif message_name.ns == SVC_NS and message_name.local in _MESSAGES:
        error = _message(message, out)
    else:
        raise MalformedDocument(f"unexpected SOAP body element <{{{message_name.ns}}}{message_name.local}>")
    return out, error


def parse(body: bytes) -> Parsed:
    """Read a GetUserSettings/GetDomainSettings answer completely, or raise `UntrustedInputError`."""
    found, error = _read(body)
    return Parsed(NAME, tuple(found.suggestions), error_answer=error and not found.suggestions)


def rewrite(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """Remove the settings holding `drop`; None for a redirect or when no setting would remain."""
    return cut(body, parsed, drop)


_BLOCK = Reply(
    200,
    XML_TYPE,
    (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<s:Envelope xmlns:s="{SOAP_NS}">\n'
        "  <s:Body>\n"
        f'    <GetUserSettingsResponseMessage xmlns="{SVC_NS}">\n'
        '      <Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance">\n'
        "        <ErrorCode>NoError</ErrorCode>\n"
        "        <ErrorMessage />\n"
        "        <UserResponses>\n"
        "          <UserResponse>\n"
        "            <ErrorCode>InvalidUser</ErrorCode>\n"
        "            <ErrorMessage>The user was not found.</ErrorMessage>\n"
        '            <RedirectTarget i:nil="true" />\n'
        "            <UserSettingErrors />\n"
        "            <UserSettings />\n"
        "          </UserResponse>\n"
        "        </UserResponses>\n"
        "      </Response>\n"
        "    </GetUserSettingsResponseMessage>\n"
        "  </s:Body>\n"
        "</s:Envelope>\n"
    ).encode(),
)


def block() -> Reply:
    """The InvalidUser answer (see module doc)."""
    return _BLOCK


FORMAT = Format(name=NAME, parse=parse, rewrite=rewrite, block=block)
