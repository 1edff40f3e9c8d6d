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
    attr,
    cut,
    leaf,
    mailbox,
    read_port,
)
from guard.formats._xml import Element, kid, kids, name, named_children, read_xml
from guard.formats.base import Format
from guard.model import Parsed, Reply, Role, Suggestion, Transport, ValueKind

NAME = "soap"

# message element → (responses, response, settings, setting) element names, lower-case
_MESSAGES = {
    "getusersettingsresponsemessage": ("userresponses", "userresponse", "usersettings", "usersetting"),
    "getdomainsettingsresponsemessage": (
        "domainresponses", "domainresponse", "domainsettings", "domainsetting"),
}
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
_NO_ERROR = ("", "noerror")
_REDIRECTS = ("redirectaddress", "redirecturl")


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


def _connection(out: Found, item: Element, path: str, role: Role, *, unit: Element, setting: Element) -> None:
    """One `ProtocolConnection`: `Hostname` with its `Port` and `EncryptionMethod`."""
    number: int | None = None
    transport = Transport.UNKNOWN
    hosts: list[tuple[Element, str]] = []
    for child, child_name, field in named_children(item, path + "/"):
        tag = child_name.key
        if tag == "hostname":
            hosts.append((child, field))
        elif tag == "port":
            value = read_port(child, field)  # every port is checked, the first one counts
            number = value if number is None else number
        elif tag == "encryptionmethod" and transport is Transport.UNKNOWN:
            transport = ENCRYPTION.get(leaf(child, field).strip().lower(), Transport.UNKNOWN)
    for child, field in hosts:
        out.add(child, field, role, unit, container=setting, kind=ValueKind.HOST, port=number,
                transport=transport)


# collection element → item element (ProtocolConnectionCollectionSetting, WebClientUrlsSetting,
# AlternateMailboxCollectionSetting)
_COLLECTIONS = {
    "protocolconnections": "protocolconnection",
    "webclienturls": "webclienturl",
    "alternatemailboxes": "alternatemailbox",
}


def _collection(collection: Element, tag: str, path: str, setting_name: str, setting: Element, out: Found) -> None:
    """The items of one collection (`tag`, lower-cased); each item is its own unit while it has siblings."""
    items = [(i, f) for i, n, f in named_children(collection, path + "/") if n.key == _COLLECTIONS[tag]]
    low = setting_name.lower()
    role = next((r for word, r in _CONNECTION_ROLES if word in low), Role.OTHER)
    for item, field in items:
        unit = item if len(items) > 1 else setting
        if tag == "protocolconnections":
            _connection(out, item, field, role, unit=unit, setting=setting)
        elif tag == "webclienturls":
            for url, url_name, url_field in named_children(item, field + "/"):
                if url_name.key == "url":
                    out.add(url, url_field, Role.WEB, unit, container=setting, kind=ValueKind.URL)
        else:
            mailbox(item, field, unit, out)


def _setting(setting: Element, prefix: str, out: Found) -> None:
    """One `UserSetting`/`DomainSetting`, whatever its `xsi:type`: the children decide the shape."""
    named = kid(setting, "name")
    setting_name = leaf(named, prefix + "Name").strip() if named is not None else ""
    field = prefix + (setting_name or name(setting).local)
    for child in setting:
        tag = name(child).key
        if tag == "value":
            role = _string_role(setting_name)
            if role is not None:
                out.add(child, field, role, setting, container=setting)
        elif tag in _COLLECTIONS:
            _collection(child, tag, field, setting_name, setting, out)


def _response(item: Element, prefix: str, setting_tags: tuple[str, str], out: Found) -> bool:
    """One `UserResponse`/`DomainResponse`; True when its `ErrorCode` is an error."""
    code_element = kid(item, "errorcode")
    code = leaf(code_element, prefix + "ErrorCode").strip().lower() if code_element is not None else ""
    for child, child_name, field in named_children(item, prefix):
        tag = child_name.key
        if tag == "redirecttarget" and (attr(child, "nil") or "").strip() != "true":
            value = leaf(child, field)
            if code == "redirectaddress" or (code != "redirecturl" and "@" in value and "://" not in value):
                kind = ValueKind.EMAIL
            else:
                kind = ValueKind.URL
            out.add(child, field, Role.REDIRECT, child, kind=kind)
        elif tag == setting_tags[0]:
            for setting in child:
                if name(setting).key == setting_tags[1]:
                    _setting(setting, field + "/", out)
    return code not in _NO_ERROR and code not in _REDIRECTS


def _message(message: Element, names: tuple[str, str, str, str], out: Found) -> bool:
    """A GetUserSettings/GetDomainSettings message; True when any `ErrorCode` is an error."""
    error = False
    for response in kids(message, "response"):
        for child in response:
            tag = name(child).key
            if tag == "errorcode":
                error = leaf(child, "Response/ErrorCode").strip().lower() not in _NO_ERROR or error
            elif tag == names[0]:
                for item, item_name, field in named_children(child, ""):
                    if item_name.key == names[1]:
                        error = _response(item, field + "/", names[2:], out) or error
    return error


def _read(body: bytes) -> tuple[Found, bool]:
    root = read_xml(body)
    root_name = name(root)
    if root_name.key != "envelope" or root_name.ns != SOAP_NS:
        raise MalformedDocument(f"root element is <{{{root_name.ns}}}{root_name.local}>, not a SOAP 1.1 Envelope")
    bodies = [b for b in kids(root, "body") if name(b).ns == SOAP_NS]
    if not bodies:
        raise MalformedDocument("SOAP Envelope without a Body")
    out = Found(root)
    error = False
    for soap_body in bodies:
        for message in soap_body:
            message_name = name(message)
            if message_name.ns == SOAP_NS and message_name.key == "fault":
                error = True
            elif message_name.ns == SVC_NS and message_name.key in _MESSAGES:
                error = _message(message, _MESSAGES[message_name.key], out) or error
            else:
                raise MalformedDocument(
                    f"unexpected SOAP body element <{{{message_name.ns}}}{message_name.local}>")
    return out, error


def parse(body: bytes) -> Parsed:
    """Read a GetUserSettings/GetDomainSettings answer completely, or raise `UntrustedInputError`."""
    found, error = _read(body)
    return Parsed(NAME, found.suggestions, error_answer=error and not found.items)


def rewrite(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """Remove the settings holding `drop`; None for a redirect or when no setting would remain."""
    return cut(body, _read(body)[0], drop)


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
