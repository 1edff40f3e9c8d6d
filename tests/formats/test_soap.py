"""SOAP autodiscover.svc: settings and redirects, strict envelope, setting rewrites that exchangelib 5.6
still reads, and an InvalidUser block that ends exchangelib's discovery."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from exchangelib.autodiscover.discovery import Autodiscovery
from exchangelib.errors import AutoDiscoverFailed, ErrorNonExistentMailbox
from exchangelib.services import GetUserSettings
from exchangelib.version import EXCHANGE_2016, Version

from guard.errors import BodyTooLarge, MalformedDocument
from guard.formats import sniff_body, soap
from guard.formats._exchange import SOAP_NS, SVC_NS
from guard.formats._xml import MAX_XML_BYTES
from guard.model import Role, Suggestion, Transport, ValueKind
from tests.conftest import unit_span

FIXTURES = Path(__file__).parent.parent / "fixtures"

H, U, E = ValueKind.HOST, ValueKind.URL, ValueKind.EMAIL
TLS, STARTTLS, PLAIN, UNKNOWN = Transport.TLS, Transport.STARTTLS, Transport.PLAIN, Transport.UNKNOWN
US = "UserResponse/UserSettings"
IMAP4 = f"{US}/ExternalImap4Connections/ProtocolConnection/Hostname"
SMTP = f"{US}/ExternalSmtpConnections/ProtocolConnection/Hostname"
O365 = "https://outlook.office365.com"
CT = "https://mail.contoso.com"
SEI = "jnet.sei.co.jp"

# (value, kind, role, field, port, transport) per suggestion, document order
Row = tuple[str, ValueKind, Role, str, int | None, Transport]
EXPECTED: dict[str, list[Row]] = {
    "soap__benign_m365.xml": [
        (f"{O365}/EWS/Exchange.asmx", U, Role.EWS, f"{US}/ExternalEwsUrl", None, UNKNOWN),
        ("outlook.office365.com", H, Role.MAPI, f"{US}/ExternalMailboxServer", None, UNKNOWN),
    ],
    "soap__benign_own_domain.xml": [
        (f"{CT}/EWS/Exchange.asmx", U, Role.EWS, f"{US}/ExternalEwsUrl", None, UNKNOWN),
        ("https://mail.internal.contoso.com/EWS/Exchange.asmx", U, Role.EWS, f"{US}/InternalEwsUrl", None,
         UNKNOWN),
        ("mail.contoso.com", H, Role.MAPI, f"{US}/ExternalMailboxServer", None, UNKNOWN),
        (f"{CT}/owa/", U, Role.WEB, f"{US}/ExternalWebClientUrls/WebClientUrl/Url", None, UNKNOWN),
        ("mail.contoso.com", H, Role.IMAP, IMAP4, 993, TLS),
        ("mail.contoso.com", H, Role.SMTP, SMTP, 587, STARTTLS),
    ],
    "soap__ip_literal_ipv4_mapped.xml": [
        ("https://[::ffff:127.0.0.1]/EWS/Exchange.asmx", U, Role.EWS, f"{US}/ExternalEwsUrl", None, UNKNOWN),
    ],
    "soap__redirect_address_foreign.xml": [
        ("alice@collector-mail.net", E, Role.REDIRECT, "UserResponse/RedirectTarget", None, UNKNOWN),
    ],
    "soap__redirect_url_foreign.xml": [
        ("https://autodiscover.collector-mail.net/autodiscover/autodiscover.svc", U, Role.REDIRECT,
         "UserResponse/RedirectTarget", None, UNKNOWN),
    ],
    "soap__seed_example_com.xml": [
        (f"https://imapgms.{SEI}/EWS/Exchange.asmx", U, Role.EWS, f"{US}/ExternalEwsUrl", None, UNKNOWN),
        (f"imapgms.{SEI}", H, Role.IMAP, IMAP4, 993, TLS),
        (f"smtpgms.{SEI}", H, Role.SMTP, SMTP, 465, TLS),
    ],
}
VIOLATING = {
    "soap__ip_literal_ipv4_mapped.xml": "::ffff:127.0.0.1",
    "soap__redirect_address_foreign.xml": "collector-mail.net",
    "soap__redirect_url_foreign.xml": "collector-mail.net",
    "soap__seed_example_com.xml": SEI,
}
NIL = '<RedirectTarget i:nil="true" />'


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _rows(suggestions: tuple[Suggestion, ...]) -> list[Row]:
    return [(s.value, s.kind, s.role, s.field, s.port, s.transport) for s in suggestions]


def _doc(user_settings: str, code: str = "NoError", target: str = NIL, *, top: str = "NoError",
         envelope_ns: str = SOAP_NS, message_ns: str = SVC_NS) -> bytes:
    """A GetUserSettings answer for one user."""
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<s:Envelope xmlns:s="{envelope_ns}">\n  <s:Body>\n'
        f'    <GetUserSettingsResponseMessage xmlns="{message_ns}">\n'
        '      <Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"        <ErrorCode>{top}</ErrorCode>\n        <ErrorMessage />\n        <UserResponses>\n"
        f"          <UserResponse>\n            <ErrorCode>{code}</ErrorCode>\n"
        f"            <ErrorMessage />\n            {target}\n            <UserSettingErrors />\n"
        f"            <UserSettings>\n{user_settings}\n            </UserSettings>\n"
        "          </UserResponse>\n        </UserResponses>\n      </Response>\n"
        "    </GetUserSettingsResponseMessage>\n  </s:Body>\n</s:Envelope>\n"
    ).encode()


def _string(name: str, value: str) -> str:
    return (f'              <UserSetting i:type="StringSetting"><Name>{name}</Name>'
            f"<Value>{value}</Value></UserSetting>")


def _connection(host: str, port: int = 993, method: str = "SSL") -> str:
    return (f"<ProtocolConnection><Hostname>{host}</Hostname><Port>{port}</Port>"
            f"<EncryptionMethod>{method}</EncryptionMethod></ProtocolConnection>")


def _connections(name: str, *items: str) -> str:
    return (f'              <UserSetting i:type="ProtocolConnectionCollectionSetting"><Name>{name}</Name>'
            f"<ProtocolConnections>{''.join(items)}</ProtocolConnections></UserSetting>")


def _exchangelib(body: bytes) -> Any:
    """The one UserResponse exchangelib 5.6's own GetUserSettings parser reads from `body`."""
    service = GetUserSettings(protocol=SimpleNamespace(version=Version(build=EXCHANGE_2016)))
    (response,) = service.parse(body)
    return response


EWS_URL = _string("ExternalEwsUrl", f"{CT}/EWS/Exchange.asmx")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_yields_its_expected_suggestions(name: str) -> None:
    parsed = soap.parse(_read(name))
    assert parsed.format == "soap"
    assert not parsed.error_answer
    assert _rows(parsed.suggestions) == EXPECTED[name]


@pytest.mark.parametrize("name", ["soap__benign_m365.xml", "soap__benign_own_domain.xml"])
def test_our_ews_url_is_the_one_exchangelib_uses(name: str) -> None:
    body = _read(name)
    ews = [s.value for s in soap.parse(body).suggestions if s.field.endswith("/ExternalEwsUrl")]
    assert ews == [_exchangelib(body).ews_url]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_locator_spans_the_user_setting_or_the_redirect_target(name: str) -> None:
    body = _read(name)
    for s in soap.parse(body).suggestions:
        start, end = unit_span(body, s)
        unit = body[start:end]
        tag = b"RedirectTarget" if s.role is Role.REDIRECT else b"UserSetting"
        assert unit.startswith(b"<" + tag) and unit.endswith(b"</" + tag + b">")
        assert s.value.encode() in unit


def test_the_error_fixture_is_an_error_answer_without_suggestions() -> None:
    parsed = soap.parse(_read("soap__error_invalid_user.xml"))
    assert parsed.suggestions == ()
    assert parsed.error_answer


@pytest.mark.parametrize(
    "body",
    [
        _doc("", "InvalidDomain"),
        _doc("", top="InvalidRequest"),
        _doc("", "ServerBusy"),
        f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Body><s:Fault><faultcode>s:Client</faultcode>'
        "<faultstring>bad</faultstring></s:Fault></s:Body></s:Envelope>".encode(),
    ],
)
def test_error_codes_and_faults_without_settings_are_error_answers(body: bytes) -> None:
    parsed = soap.parse(body)
    assert parsed.error_answer and parsed.suggestions == ()


def test_no_error_without_settings_is_not_an_error_answer() -> None:
    assert not soap.parse(_doc("")).error_answer


@pytest.mark.parametrize(
    "body",
    [
        _doc(EWS_URL, message_ns="https://schemas.microsoft.com/exchange/2010/Autodiscover"),
        _doc(EWS_URL, envelope_ns="http://www.w3.org/2003/05/soap-envelope"),  # SOAP 1.2: exchangelib refuses
        _doc(EWS_URL).replace(b"GetUserSettingsResponseMessage", b"GetFederationInformationResponseMessage"),
        f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Header/></s:Envelope>'.encode(),
        f'<Envelope xmlns="{SVC_NS}"/>'.encode(),
        _read("soap__benign_own_domain.xml")[:-200],
        _doc(_string("ExternalEwsUrl", "https://<b>evil.net</b>/EWS/Exchange.asmx")),
        _doc(_connections("ExternalImap4Connections", _connection("imap.contoso.com", 99999))),
        _doc(EWS_URL, "RedirectAddress", "<RedirectTarget>alice@<i>evil.net</i></RedirectTarget>"),
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x/>',
    ],
)
def test_documents_that_are_not_clean_autodiscover_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        soap.parse(body)


@pytest.mark.parametrize(
    ("name", "value", "kind", "role"),
    [
        ("InternalEwsUrl", "https://x.contoso.com/EWS", U, Role.EWS),
        ("InteropExternalEwsUrl", "https://x.contoso.com/EWS", U, Role.EWS),
        ("ExternalOABUrl", "https://x.contoso.com/OAB/", U, Role.OAB),
        ("InternalUMUrl", "https://x.contoso.com/UM", U, Role.EWS),
        ("InternalMailboxServer", "mbx01.contoso.com", H, Role.MAPI),
        ("InternalRpcClientServer", "mbx01.contoso.com", H, Role.MAPI),
        ("ExchangeRpcUrl", "https://mail.contoso.com/rpc/", U, Role.MAPI),
        ("ActiveDirectoryServer", "dc01.contoso.com", H, Role.DIRECTORY),
        ("PublicFolderServer", "pf.contoso.com", H, Role.DIRECTORY),
        ("ExternalEcpUrl", "https://x.contoso.com/ecp/", U, Role.WEB),
        ("InternalEcpVoicemailUrl", "https://x.contoso.com/ecp/?p=vm", U, Role.WEB),
        ("ExternalMailboxServer", "https://odd.contoso.com/", U, Role.MAPI),  # URL or host: the value decides
        ("ExternalEwsUrl", "mail.contoso.com", H, Role.EWS),
        ("SomeFutureServiceUrl", "https://x.contoso.com/", U, Role.OTHER),
    ],
)
def test_host_bearing_string_settings_are_judged(name: str, value: str, kind: ValueKind, role: Role) -> None:
    (suggestion,) = soap.parse(_doc(_string(name, value))).suggestions
    assert (suggestion.value, suggestion.kind, suggestion.role, suggestion.field) == (
        value, kind, role, f"{US}/{name}")


@pytest.mark.parametrize(
    ("name", "value"),
    [("EcpVoicemailUrlFragment", "?p=customize/voicemail.aspx&amp;realm=evil.net"),
     ("AutoDiscoverSMTPAddress", "alice@evil.net"), ("UserDisplayName", "mail.evil.net"),
     ("EwsSupportedSchemas", "Exchange2016"), ("InternalMailboxServerDN", "/o=evil.net"),
     ("ExternalMailboxServerRequiresSSL", "True"), ("MobileMailboxPolicy", "https://evil.net/")],
)
def test_settings_that_name_no_server_are_not_suggestions(name: str, value: str) -> None:
    assert soap.parse(_doc(_string(name, value))).suggestions == ()


@pytest.mark.parametrize(
    ("name", "method", "role", "transport"),
    [("ExternalImap4Connections", "SSL", Role.IMAP, TLS),
     ("InternalPop3Connections", "TLS", Role.POP3, STARTTLS),
     ("ExternalSmtpConnections", "None", Role.SMTP, PLAIN),
     ("ExternalSmtpConnections", "", Role.SMTP, UNKNOWN),
     ("ExternalFutureConnections", "SSL", Role.OTHER, TLS)],
)
def test_protocol_connections_take_role_from_the_setting_and_transport_from_encryption_method(
    name: str, method: str, role: Role, transport: Transport
) -> None:
    body = _doc(_connections(name, _connection("mail.contoso.com", 995, method)))
    (s,) = soap.parse(body).suggestions
    assert (s.kind, s.role, s.port, s.transport) == (H, role, 995, transport)


@pytest.mark.parametrize(
    ("code", "target", "kind"),
    [("RedirectAddress", "bob@contoso.com", E), ("RedirectUrl", "https://ad.contoso.com/autodiscover.svc", U),
     ("NoError", "bob@contoso.com", E), ("NoError", "https://ad.contoso.com/autodiscover.svc", U),
     ("redirectaddress", "bob@contoso.com", E)],
)
def test_a_redirect_target_is_judged_whatever_the_code_says(code: str, target: str, kind: ValueKind) -> None:
    parsed = soap.parse(_doc("", code, f"<RedirectTarget>{target}</RedirectTarget>"))
    assert _rows(parsed.suggestions) == [
        (target, kind, Role.REDIRECT, "UserResponse/RedirectTarget", None, UNKNOWN)]


def test_domain_settings_are_read_like_user_settings() -> None:
    body = (f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Body><GetDomainSettingsResponseMessage xmlns="{SVC_NS}">'
            "<Response><ErrorCode>NoError</ErrorCode><DomainResponses><DomainResponse>"
            "<ErrorCode>NoError</ErrorCode><DomainSettings><DomainSetting><Name>ExternalEwsUrl</Name>"
            "<Value>https://mail.contoso.com/EWS/Exchange.asmx</Value></DomainSetting><DomainSetting>"
            "<Name>ExternalEwsVersion</Name><Value>15.20</Value></DomainSetting></DomainSettings>"
            "</DomainResponse></DomainResponses></Response></GetDomainSettingsResponseMessage></s:Body></s:Envelope>")
    assert _rows(soap.parse(body.encode()).suggestions) == [
        (f"{CT}/EWS/Exchange.asmx", U, Role.EWS, "DomainResponse/DomainSettings/ExternalEwsUrl", None,
         UNKNOWN)]


def test_alternate_mailboxes_and_several_users_are_judged() -> None:
    mailboxes = ('              <UserSetting i:type="AlternateMailboxCollectionSetting">'
                 "<Name>AlternateMailboxes</Name><AlternateMailboxes><AlternateMailbox><Type>Archive</Type>"
                 "<SmtpAddress>archive@evil.net</SmtpAddress><Server>arch.evil.net</Server>"
                 "</AlternateMailbox></AlternateMailboxes></UserSetting>")
    second = (b"<UserResponse><ErrorCode>NoError</ErrorCode><UserSettings>"
              + _string("ExternalEwsUrl", "https://b.contoso.com/EWS").encode()
              + b"</UserSettings></UserResponse></UserResponses>")
    body = _doc(mailboxes).replace(b"</UserResponses>", second)
    mailbox = "UserResponse[1]/UserSettings/AlternateMailboxes/AlternateMailbox"
    assert _rows(soap.parse(body).suggestions) == [
        ("archive@evil.net", E, Role.AUTODISCOVER, f"{mailbox}/SmtpAddress", None, UNKNOWN),
        ("arch.evil.net", H, Role.MAPI, f"{mailbox}/Server", None, UNKNOWN),
        ("https://b.contoso.com/EWS", U, Role.EWS, "UserResponse[2]/UserSettings/ExternalEwsUrl", None,
         UNKNOWN),
    ]


@pytest.mark.parametrize("name", sorted(VIOLATING))
def test_rewrite_of_each_violating_fixture_refuses_since_nothing_safe_remains(name: str) -> None:
    body = _read(name)
    parsed = soap.parse(body)
    drop = [s for s in parsed.suggestions if VIOLATING[name] in s.value]
    assert drop
    assert soap.rewrite(body, parsed, drop) is None


def test_rewrite_removes_exactly_the_settings_and_exchangelib_still_reads_the_ews_url() -> None:
    body = _read("soap__benign_own_domain.xml")
    parsed = soap.parse(body)
    drop = [s for s in parsed.suggestions if "internal" in s.value or s.role is Role.SMTP]
    out = soap.rewrite(body, parsed, drop)
    assert out is not None
    spans = sorted(unit_span(body, s) for s in drop)
    expected, cursor = b"", 0
    for start, end in spans:
        expected += body[cursor:start].rstrip(b" \n")
        cursor = end
    assert out == expected + body[cursor:]
    assert b"mail.internal.contoso.com" not in out and b"ExternalSmtpConnections" not in out
    assert out.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<s:Envelope xmlns:s=')
    response = _exchangelib(out)
    assert response.ews_url == f"{CT}/EWS/Exchange.asmx"
    assert "internal_ews_url" not in response.user_settings
    assert "external_smtp_connections" not in response.user_settings
    assert "external_imap4_connections" in response.user_settings


def test_rewrite_of_one_connection_keeps_its_siblings_and_the_last_one_takes_the_setting() -> None:
    imap = _connections("ExternalImap4Connections", _connection("imap.contoso.com"),
                        _connection("imap.evil.net"))
    body = _doc(EWS_URL + "\n" + imap)
    parsed = soap.parse(body)
    evil = [s for s in parsed.suggestions if "evil.net" in s.value]
    start, end = unit_span(body, evil[0])
    assert body[start:end] == _connection("imap.evil.net").encode()
    out = soap.rewrite(body, parsed, evil)
    assert out is not None
    assert [s.value for s in soap.parse(out).suggestions] == [f"{CT}/EWS/Exchange.asmx", "imap.contoso.com"]
    both = [s for s in parsed.suggestions if s.role is Role.IMAP]
    out = soap.rewrite(body, parsed, both)
    assert out is not None
    assert b"ExternalImap4Connections" not in out  # no empty collection setting left behind
    assert _exchangelib(out).ews_url == f"{CT}/EWS/Exchange.asmx"


def test_rewrite_refuses_when_no_setting_would_remain_or_a_redirect_is_dropped() -> None:
    body = _doc(EWS_URL, "NoError", "<RedirectTarget>bob@evil.net</RedirectTarget>")
    parsed = soap.parse(body)
    assert soap.rewrite(body, parsed, [s for s in parsed.suggestions if s.role is Role.EWS]) is None
    assert soap.rewrite(body, parsed, [s for s in parsed.suggestions if s.role is Role.REDIRECT]) is None


def test_rewrite_refuses_a_suggestion_it_cannot_locate_and_returns_the_body_for_nothing() -> None:
    body = _read("soap__benign_own_domain.xml")
    parsed = soap.parse(body)
    stranger = Suggestion("https://evil.net/", U, Role.EWS, "x", locator=(999,))
    assert soap.rewrite(body, parsed, [stranger]) is None
    assert soap.rewrite(body, parsed, []) is body


def test_block_is_an_invalid_user_answer_that_ends_exchangelib_discovery() -> None:
    reply = soap.block()
    assert (reply.status, reply.content_type) == (200, "text/xml; charset=utf-8")
    parsed = soap.parse(reply.body)
    assert parsed.error_answer and parsed.suggestions == ()
    assert sniff_body(reply.body) == "soap"
    response = _exchangelib(reply.body)
    assert response.error_code == "InvalidUser"
    assert (response.redirect_address, response.redirect_url) == (None, None)
    # discovery step 5 raises it; ErrorNonExistentMailbox is no AutoDiscoverFailed, which a cached
    # endpoint would turn into a restart of every discovery step
    with pytest.raises(ErrorNonExistentMailbox):
        Autodiscovery(email="alice@contoso.com")._step_5(ad=response)
    assert not issubclass(ErrorNonExistentMailbox, AutoDiscoverFailed)


def test_a_nesting_bomb_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        soap.parse(f'<s:Envelope xmlns:s="{SOAP_NS}"><s:Body>'.encode()
                   + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</s:Body></s:Envelope>")


def test_an_oversized_body_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        soap.parse(_doc(EWS_URL + "<!--" + "x" * MAX_XML_BYTES + "-->"))
