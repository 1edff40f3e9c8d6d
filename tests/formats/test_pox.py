"""Exchange POX (Outlook 2006a): every server and URL, strict envelope, unit rewrites, ErrorCode 500 block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guard.errors import BodyTooLarge, MalformedDocument
from guard.formats import pox, sniff_body
from guard.formats._exchange import BASE_NS, MOBILESYNC_NS, OUTLOOK_NS
from guard.formats._xml import MAX_XML_BYTES
from guard.model import Role, Suggestion, Transport, ValueKind
from tests.conftest import unit_span

FIXTURES = Path(__file__).parent.parent / "fixtures"

H, U, E = ValueKind.HOST, ValueKind.URL, ValueKind.EMAIL
TLS, STARTTLS, PLAIN, UNKNOWN = Transport.TLS, Transport.STARTTLS, Transport.PLAIN, Transport.UNKNOWN
P1, P2, P3, P4 = (f"Account/Protocol[{i}]" for i in range(1, 5))
O365 = "https://outlook.office365.com"
EWS365 = f"{O365}/EWS/Exchange.asmx"
MBX = "7d3e9a41-2c5b-4f86-9e10-4b6a8c2d1f37@fabrikam.com"
CT = "https://mail.contoso.com"
EWS = f"{CT}/EWS/Exchange.asmx"
OAB = f"{CT}/OAB/5c2d8e1f-3a4b-4c6d-9e0f-1a2b3c4d5e6f/"
NW = "northwind-traders.co.uk"
GUID = "0b8c5d2e-7f41-4a93-b6d0-1e2f3a4b5c6d@contoso.com"
INTERNAL = "https://mail.corp.internal"

# (value, kind, role, field, port, transport) per suggestion, document order
Row = tuple[str, ValueKind, Role, str, int | None, Transport]
EXPECTED: dict[str, list[Row]] = {
    "pox__benign_isp_imap_smtp.xml": [
        (f"imap.{NW}", H, Role.IMAP, f"{P1}/Server", 993, TLS),
        (f"pop.{NW}", H, Role.POP3, f"{P2}/Server", 995, TLS),
        (f"smtp.{NW}", H, Role.SMTP, f"{P3}/Server", 587, STARTTLS),  # Encryption TLS = STARTTLS
    ],
    "pox__benign_m365.xml": [
        (f"{O365}/mapi/emsmdb/?MailboxId={MBX}", U, Role.MAPI, f"{P1}/MailStore/InternalUrl", None, UNKNOWN),
        (f"{O365}/mapi/emsmdb/?MailboxId={MBX}", U, Role.MAPI, f"{P1}/MailStore/ExternalUrl", None, UNKNOWN),
        (f"{O365}/mapi/nspi/?MailboxId={MBX}", U, Role.MAPI, f"{P1}/AddressBook/InternalUrl", None, UNKNOWN),
        (f"{O365}/mapi/nspi/?MailboxId={MBX}", U, Role.MAPI, f"{P1}/AddressBook/ExternalUrl", None, UNKNOWN),
        (MBX, H, Role.MAPI, f"{P2}/Server", None, UNKNOWN),
        (EWS365, U, Role.EWS, f"{P2}/ASUrl", None, UNKNOWN),
        (EWS365, U, Role.EWS, f"{P2}/EwsUrl", None, UNKNOWN),
        (EWS365, U, Role.EWS, f"{P2}/EmwsUrl", None, UNKNOWN),
        (f"{O365}/owa/", U, Role.WEB, f"{P2}/EcpUrl", None, UNKNOWN),
        (EWS365, U, Role.EWS, f"{P2}/OOFUrl", None, UNKNOWN),
        (f"{O365}/OAB/2a7c9e1b-5d3f-4e80-b6a4-0c1d2e3f4a5b/", U, Role.OAB, f"{P2}/OABUrl", None, UNKNOWN),
        ("outlook.office365.com", H, Role.MAPI, f"{P3}/Server", None, TLS),
        ("msstd:outlook.com", H, Role.MAPI, f"{P3}/CertPrincipalName", None, UNKNOWN),
        (EWS365, U, Role.EWS, f"{P3}/EwsUrl", None, UNKNOWN),
        (f"{O365}/owa/", U, Role.WEB, f"{P4}/External/OWAUrl", None, UNKNOWN),
        (EWS365, U, Role.EWS, f"{P4}/External/Protocol/ASUrl", None, UNKNOWN),
    ],
    "pox__benign_onprem_exchange.xml": [
        (GUID, H, Role.MAPI, f"{P1}/Server", None, UNKNOWN),
        ("pf01.internal.contoso.com", H, Role.DIRECTORY, f"{P1}/PublicFolderServer", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P1}/ASUrl", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P1}/EwsUrl", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P1}/EmwsUrl", None, UNKNOWN),
        (f"{CT}/owa/", U, Role.WEB, f"{P1}/EcpUrl", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P1}/OOFUrl", None, UNKNOWN),
        (f"{CT}/EWS/UM2007Legacy.asmx", U, Role.EWS, f"{P1}/UMUrl", None, UNKNOWN),
        (OAB, U, Role.OAB, f"{P1}/OABUrl", None, UNKNOWN),
        ("mail.contoso.com", H, Role.MAPI, f"{P2}/Server", None, TLS),
        ("msstd:mail.contoso.com", H, Role.MAPI, f"{P2}/CertPrincipalName", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P2}/ASUrl", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P2}/EwsUrl", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P2}/OOFUrl", None, UNKNOWN),
        (OAB, U, Role.OAB, f"{P2}/OABUrl", None, UNKNOWN),
        (f"{CT}/owa/", U, Role.WEB, f"{P3}/Internal/OWAUrl", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P3}/Internal/Protocol/ASUrl", None, UNKNOWN),
        (f"{CT}/owa/", U, Role.WEB, f"{P3}/External/OWAUrl", None, UNKNOWN),
        (EWS, U, Role.EWS, f"{P3}/External/Protocol/ASUrl", None, UNKNOWN),
    ],
    "pox__idn_punycode_lookalike.xml": [
        ("imap.xn--cntoso-i0e.com", H, Role.IMAP, f"{P1}/Server", 993, TLS),
        ("smtp.xn--cntoso-i0e.com", H, Role.SMTP, f"{P2}/Server", 587, STARTTLS),
    ],
    "pox__ip_literal_private.xml": [
        ("10.0.0.5", H, Role.IMAP, f"{P1}/Server", 993, TLS),
        ("127.0.0.1", H, Role.SMTP, f"{P2}/Server", 587, STARTTLS),
    ],
    "pox__redirect_addr_foreign.xml": [
        ("alice@collector-mail.net", E, Role.REDIRECT, "Account/RedirectAddr", None, UNKNOWN),
    ],
    "pox__redirect_url_foreign.xml": [
        ("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml", U, Role.REDIRECT,
         "Account/RedirectUrl", None, UNKNOWN),
    ],
    "pox__redirect_url_uppercase_element.xml": [
        ("https://autodiscover.collector-mail.net/Autodiscover/Autodiscover.xml", U, Role.REDIRECT,
         "Account/RedirectURL", None, UNKNOWN),
    ],
    "pox__reserved_internal_host.xml": [
        (GUID, H, Role.MAPI, f"{P1}/Server", None, UNKNOWN),
        (f"{INTERNAL}/EWS/Exchange.asmx", U, Role.EWS, f"{P1}/EwsUrl", None, UNKNOWN),
        (f"{INTERNAL}/EWS/Exchange.asmx", U, Role.EWS, f"{P1}/ASUrl", None, UNKNOWN),
        (f"{INTERNAL}/OAB/5c2d8e1f-3a4b-4c6d-9e0f-1a2b3c4d5e6f/", U, Role.OAB, f"{P1}/OABUrl", None, UNKNOWN),
        ("mail.corp.internal", H, Role.MAPI, f"{P2}/Server", None, TLS),
        (f"{INTERNAL}/EWS/Exchange.asmx", U, Role.EWS, f"{P2}/EwsUrl", None, UNKNOWN),
    ],
    "pox__seed_example_com.xml": [
        ("imapgms.jnet.sei.co.jp", H, Role.IMAP, f"{P1}/Server", 993, TLS),
        ("smtpgms.jnet.sei.co.jp", H, Role.SMTP, f"{P2}/Server", 465, TLS),
    ],
    "pox__trailing_dot_mixed_case.xml": [
        ("Mail.CONTOSO.com.", H, Role.MAPI, f"{P1}/Server", None, TLS),
        ("https://Mail.CONTOSO.com./EWS/Exchange.asmx", U, Role.EWS, f"{P1}/EwsUrl", None, UNKNOWN),
        ("IMAP.Contoso.COM.", H, Role.IMAP, f"{P2}/Server", 993, TLS),
    ],
}
MALFORMED = ["pox__entity_expansion.xml", "pox__truncated.xml", "pox__wrong_namespace_https.xml"]
# violating fixture → the text that marks its offending suggestions (INDEX.md); None: nothing safe remains
VIOLATING: dict[str, tuple[str, list[str] | None]] = {
    "pox__idn_punycode_lookalike.xml": ("xn--cntoso", None),
    "pox__ip_literal_private.xml": (".0.", None),
    "pox__redirect_addr_foreign.xml": ("collector-mail.net", None),
    "pox__redirect_url_foreign.xml": ("collector-mail.net", None),
    "pox__redirect_url_uppercase_element.xml": ("collector-mail.net", None),
    "pox__reserved_internal_host.xml": ("corp.internal", [GUID]),
    "pox__seed_example_com.xml": ("sei.co.jp", None),
}


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _rows(suggestions: tuple[Suggestion, ...]) -> list[Row]:
    return [(s.value, s.kind, s.role, s.field, s.port, s.transport) for s in suggestions]


def _doc(account: str, response_ns: str | None = OUTLOOK_NS, root_ns: str = BASE_NS) -> bytes:
    """A POX answer with the given Account content."""
    xmlns = "" if response_ns is None else f' xmlns="{response_ns}"'
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<Autodiscover xmlns="{root_ns}">\n'
            f"  <Response{xmlns}>\n    <Account>\n      <AccountType>email</AccountType>\n"
            f"      <Action>settings</Action>\n{account}\n    </Account>\n  </Response>\n"
            "</Autodiscover>\n").encode()


def _protocol(inner: str) -> str:
    return f"      <Protocol>\n{inner}\n      </Protocol>"


IMAP = _protocol("<Type>IMAP</Type><Server>imap.contoso.com</Server><Port>993</Port><SSL>on</SSL>")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_yields_its_expected_suggestions(name: str) -> None:
    parsed = pox.parse(_read(name))
    assert parsed.format == "pox"
    assert not parsed.error_answer
    assert _rows(parsed.suggestions) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_locator_spans_the_unit_that_holds_the_suggestion(name: str) -> None:
    body = _read(name)
    for s in pox.parse(body).suggestions:
        start, end = unit_span(body, s)
        unit = body[start:end]
        leaf = re.sub(r"\[\d+\]", "", s.field.rsplit("/", 1)[-1])
        if leaf in ("Server", "InternalUrl", "ExternalUrl"):  # the enclosing Protocol/MailStore/AddressBook
            assert re.match(rb"<(Protocol|MailStore|AddressBook)[ >]", unit), (s.field, unit[:40])
            assert s.value.encode() in unit
        else:
            assert unit.startswith(f"<{leaf}".encode()) and unit.endswith(f"</{leaf}>".encode())


def test_the_error_fixture_is_an_error_answer_without_suggestions() -> None:
    parsed = pox.parse(_read("pox__error_500_not_found.xml"))
    assert parsed.suggestions == ()
    assert parsed.error_answer


@pytest.mark.parametrize("name", MALFORMED)
def test_entity_truncated_and_https_namespace_fixtures_are_malformed(name: str) -> None:
    with pytest.raises(MalformedDocument):
        pox.parse(_read(name))


@pytest.mark.parametrize(
    "body",
    [
        _doc(IMAP, response_ns=MOBILESYNC_NS),  # an ActiveSync answer is not an Outlook one
        _doc(IMAP, response_ns="https://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"),
        _doc(IMAP, root_ns="urn:other"),
        b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"/>',
        b"<Autodiscover><Response/></Autodiscover>",
        b"<clientConfig/>",
        b"",
        _doc(_protocol("<Type>IMAP</Type><Server>imap.<b>evil.net</b></Server>")),
        *(_doc(_protocol(f"<Type>IMAP</Type><Server>imap.contoso.com</Server>{port}"))
          for port in ("<Port>imap</Port>", "<Port>70000</Port>", "<Port>-1</Port>", "<Port>٩٩٣</Port>",
                       "<Port>993</Port><Port>x</Port>")),
        _doc("<RedirectAddr><x/>alice@evil.net</RedirectAddr>"),
    ],
)
def test_documents_that_are_not_clean_outlook_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        pox.parse(body)


@pytest.mark.parametrize(
    ("settings_xml", "transport"),
    [
        ("<SSL>on</SSL>", TLS), ("<SSL>On</SSL>", TLS), ("<SSL>off</SSL>", PLAIN), ("", UNKNOWN),
        ("<SSL>maybe</SSL>", UNKNOWN),
        ("<Encryption>SSL</Encryption>", TLS), ("<Encryption>TLS</Encryption>", STARTTLS),
        ("<Encryption>None</Encryption>", PLAIN), ("<Encryption>Auto</Encryption>", UNKNOWN),
        ("<SSL>on</SSL><Encryption>None</Encryption>", PLAIN),  # Encryption overrides SSL
        ("<Encryption>SSL</Encryption><SSL>off</SSL>", TLS),
        ("<SSL>off</SSL><Encryption></Encryption>", PLAIN),  # an empty Encryption says nothing
        ("<SSL>on</SSL><SSL>off</SSL>", TLS),  # the first value counts
    ],
)
def test_ssl_and_encryption_set_the_transport(settings_xml: str, transport: Transport) -> None:
    body = _doc(_protocol(f"<Type>IMAP</Type><Server>imap.contoso.com</Server>{settings_xml}"))
    (suggestion,) = pox.parse(body).suggestions
    assert suggestion.transport is transport


@pytest.mark.parametrize(
    ("kind", "role"),
    [("IMAP", Role.IMAP), ("POP3", Role.POP3), ("SMTP", Role.SMTP), ("EXCH", Role.MAPI), ("EXPR", Role.MAPI),
     ("EXHTTP", Role.MAPI), ("WEB", Role.WEB), ("DAV", Role.DAV), ("CalDAV", Role.DAV), ("smtp", Role.SMTP),
     (" IMAP ", Role.IMAP), ("FTP", Role.OTHER), ("", Role.OTHER)],
)
def test_protocol_type_decides_the_server_role(kind: str, role: Role) -> None:
    body = _doc(_protocol(f"<Type>{kind}</Type><Server>host.contoso.com</Server>"))
    assert pox.parse(body).suggestions[0].role is role


def test_a_server_given_as_url_is_a_url_and_a_missing_type_is_other() -> None:
    body = _doc(_protocol("<Type>WEB</Type><Server>https://dav.contoso.com/dav/</Server>")
                + _protocol("<Server>x.contoso.com</Server><Port>443</Port>"))
    assert _rows(pox.parse(body).suggestions) == [
        ("https://dav.contoso.com/dav/", U, Role.WEB, "Account/Protocol[1]/Server", None, UNKNOWN),
        ("x.contoso.com", H, Role.OTHER, "Account/Protocol[2]/Server", 443, UNKNOWN),
    ]


def test_relative_fragments_dns_names_and_user_fields_are_not_suggestions() -> None:
    body = _doc(_protocol(
        "<Type>EXCH</Type><Server>mail.contoso.com</Server>"
        "<ServerDN>/o=Evil/cn=evil.net</ServerDN><MdbDN>/o=x/cn=y.evil.net</MdbDN>"
        "<EcpUrl-um>?rfr=olk&amp;realm=evil.net</EcpUrl-um><EcpUrl-tm>https://evil.net/tm</EcpUrl-tm>"
        "<LoginName>user@evil.net</LoginName><DomainName>evil.net</DomainName><AuthPackage>ntlm</AuthPackage>"
        "<NetworkRequirements><IPv4Start>10.0.0.1</IPv4Start></NetworkRequirements>"
    ))
    assert [s.value for s in pox.parse(body).suggestions] == ["mail.contoso.com"]


def test_element_names_match_case_insensitively() -> None:
    body = _doc("<protocol><type>imap</type><server>imap.contoso.com</server><port>993</port>"
                "<ssl>ON</ssl><EWSURL>https://mail.contoso.com/ews</EWSURL></protocol>"
                "<redirectaddr>bob@contoso.com</redirectaddr>")
    assert _rows(pox.parse(body).suggestions) == [
        ("imap.contoso.com", H, Role.IMAP, "Account/protocol/server", 993, TLS),
        ("https://mail.contoso.com/ews", U, Role.EWS, "Account/protocol/EWSURL", None, UNKNOWN),
        ("bob@contoso.com", E, Role.REDIRECT, "Account/redirectaddr", None, UNKNOWN),
    ]


def test_redirect_elements_are_suggestions_whatever_action_says() -> None:
    body = _doc(IMAP + "<RedirectUrl>https://autodiscover.evil.net/autodiscover/autodiscover.xml</RedirectUrl>"
                "<RedirectAddr>alice@evil.net</RedirectAddr>")
    redirects = [(s.value, s.kind) for s in pox.parse(body).suggestions if s.role is Role.REDIRECT]
    assert redirects == [
        ("https://autodiscover.evil.net/autodiscover/autodiscover.xml", U), ("alice@evil.net", E)]


def test_mailboxes_outlook_autodiscovers_next_are_judged() -> None:
    body = _doc(IMAP + "<PublicFolderInformation><SmtpAddress>pf@evil.net</SmtpAddress>"
                "</PublicFolderInformation><AlternativeMailbox><Type>Archive</Type><DisplayName>Archive</DisplayName>"
                "<SmtpAddress>archive@contoso.com</SmtpAddress><Server>arch.contoso.com</Server>"
                "</AlternativeMailbox>")
    mailbox = "Account/AlternativeMailbox"
    assert _rows(pox.parse(body).suggestions)[1:] == [
        ("pf@evil.net", E, Role.AUTODISCOVER, "Account/PublicFolderInformation/SmtpAddress", None, UNKNOWN),
        ("archive@contoso.com", E, Role.AUTODISCOVER, f"{mailbox}/SmtpAddress", None, UNKNOWN),
        ("arch.contoso.com", H, Role.MAPI, f"{mailbox}/Server", None, UNKNOWN),
    ]


@pytest.mark.parametrize(
    "body",
    [
        _doc(IMAP, response_ns=None),  # base namespace is the error form; JXON would still configure from it
        # the ActiveSync shape, which only the mobilesync parser reads
        _doc(IMAP + "</Account><Action><Redirect>alice@evil.net</Redirect></Action><Account>"),
    ],
)
def test_settings_a_namespace_blind_client_reads_but_this_schema_hides_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        pox.parse(body)


def test_an_account_error_is_an_error_answer_and_blank_values_are_not_suggestions() -> None:
    body = _doc("<Error><ErrorCode>500</ErrorCode><Message>not found</Message></Error>"
                + _protocol("<Type>IMAP</Type><Server> </Server><EwsUrl/>"))
    parsed = pox.parse(body)
    assert parsed.suggestions == ()
    assert parsed.error_answer


@pytest.mark.parametrize("name", sorted(VIOLATING))
def test_rewrite_of_each_violating_fixture_drops_the_offenders_or_refuses(name: str) -> None:
    body = _read(name)
    parsed = pox.parse(body)
    bad, kept = VIOLATING[name]
    drop = [s for s in parsed.suggestions if bad in s.value]
    assert drop
    out = pox.rewrite(body, parsed, drop)
    if kept is None:
        assert out is None
        return
    assert out is not None
    assert bad.encode() not in out
    assert [s.value for s in pox.parse(out).suggestions] == kept


def test_rewrite_cuts_exactly_the_element_and_the_indentation_before_it() -> None:
    body = _read("pox__benign_onprem_exchange.xml")
    parsed = pox.parse(body)
    um = next(s for s in parsed.suggestions if s.field.endswith("/UMUrl"))
    start, end = unit_span(body, um)
    segment = body[start:end]
    assert segment == b"<UMUrl>https://mail.contoso.com/EWS/UM2007Legacy.asmx</UMUrl>"
    out = pox.rewrite(body, parsed, [um])
    assert out == body[:start].rstrip(b" \n") + body[end:]
    assert out.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<Autodiscover xmlns="http://schemas.')
    assert len(pox.parse(out).suggestions) == len(parsed.suggestions) - 1


def test_rewrite_of_a_bad_server_removes_its_whole_protocol() -> None:
    body = _read("pox__benign_isp_imap_smtp.xml")
    parsed = pox.parse(body)
    pop = [s for s in parsed.suggestions if s.role is Role.POP3]
    out = pox.rewrite(body, parsed, pop)
    assert out is not None
    assert b"<Type>POP3</Type>" not in out and b"995" not in out
    assert [s.role for s in pox.parse(out).suggestions] == [Role.IMAP, Role.SMTP]


def test_rewrite_of_a_nested_protocol_url_keeps_the_outer_protocol() -> None:
    body = _read("pox__benign_onprem_exchange.xml")
    parsed = pox.parse(body)
    nested = [s for s in parsed.suggestions if s.field == f"{P3}/Internal/Protocol/ASUrl"]
    out = pox.rewrite(body, parsed, nested)
    assert out is not None
    fields = [s.field for s in pox.parse(out).suggestions]
    assert f"{P3}/Internal/Protocol/ASUrl" not in fields
    assert f"{P3}/Internal/OWAUrl" in fields


def test_rewrite_of_a_mapihttp_url_removes_its_part_and_an_emptied_protocol_goes_too() -> None:
    body = _read("pox__benign_m365.xml")
    parsed = pox.parse(body)
    store = [s for s in parsed.suggestions if "/MailStore/" in s.field][:1]
    out = pox.rewrite(body, parsed, store)
    assert out is not None
    assert b"<MailStore>" not in out and b"<AddressBook>" in out and b'Type="mapiHttp"' in out
    both = [s for s in parsed.suggestions if s.role is Role.MAPI and s.kind is U]
    out = pox.rewrite(body, parsed, both)
    assert out is not None
    assert b'Type="mapiHttp"' not in out  # no empty mapiHttp shell for Outlook to choke on
    assert b"<Type>EXCH</Type>" in out


def test_rewrite_refuses_when_no_protocol_would_remain() -> None:
    body = _doc(IMAP + "<PublicFolderInformation><SmtpAddress>pf@contoso.com</SmtpAddress>"
                "</PublicFolderInformation>")
    parsed = pox.parse(body)
    assert pox.rewrite(body, parsed, parsed.suggestions[:1]) is None  # a mailbox reference is no setting
    out = pox.rewrite(body, parsed, parsed.suggestions[1:])
    assert out is not None and b"PublicFolderInformation" not in out


def test_rewrite_refuses_a_redirect_even_beside_good_settings() -> None:
    body = _doc(IMAP + "<RedirectAddr>alice@evil.net</RedirectAddr>")
    parsed = pox.parse(body)
    assert pox.rewrite(body, parsed, [s for s in parsed.suggestions if s.role is Role.REDIRECT]) is None


def test_rewrite_refuses_a_suggestion_it_cannot_locate_and_returns_the_body_for_nothing() -> None:
    body = _read("pox__benign_isp_imap_smtp.xml")
    parsed = pox.parse(body)
    stranger = Suggestion("evil.net", H, Role.IMAP, "x", locator=(999,))
    assert pox.rewrite(body, parsed, [stranger]) is None
    assert pox.rewrite(body, parsed, []) is body


def test_block_is_the_base_namespace_error_500_answer() -> None:
    reply = pox.block()
    assert reply.status == 200
    assert reply.content_type == "text/xml; charset=utf-8"
    assert b"<ErrorCode>500</ErrorCode>" in reply.body
    assert b"<Message>The email address can't be found.</Message>" in reply.body  # exchangelib 4.x's cue
    assert b"<Response>" in reply.body and b"Account" not in reply.body
    parsed = pox.parse(reply.body)
    assert parsed.error_answer and parsed.suggestions == ()
    assert sniff_body(reply.body) == "pox"


def test_a_nesting_bomb_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        pox.parse(f'<Autodiscover xmlns="{BASE_NS}"><Response>'.encode()
                  + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</Response></Autodiscover>")


def test_an_oversized_body_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        pox.parse(_doc(IMAP + "<!--" + "x" * MAX_XML_BYTES + "-->"))
