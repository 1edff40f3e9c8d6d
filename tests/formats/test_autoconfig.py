"""Mozilla clientConfig: every server, URL and OAuth endpoint, strict reading, unit rewrites, 404 block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guard.errors import BodyTooLarge, MalformedDocument, UntrustedInputError
from guard.formats import autoconfig
from guard.formats._xml import MAX_XML_BYTES
from guard.model import Role, Suggestion, Transport, ValueKind
from tests.conftest import unit_span

FIXTURES = Path(__file__).parent.parent / "fixtures"
ISPDB = Path(__file__).resolve().parent.parent.parent.parent / "shared" / "corpus" / "ispdb"

H, U = ValueKind.HOST, ValueKind.URL
TLS, STARTTLS, PLAIN, UNKNOWN = Transport.TLS, Transport.STARTTLS, Transport.PLAIN, Transport.UNKNOWN
IN1, IN2, IN3, IN4 = (f"emailProvider/incomingServer[{i}]" for i in range(1, 5))
IN, OUT = "emailProvider/incomingServer", "emailProvider/outgoingServer"
MSO = "https://login.microsoftonline.com/common/oauth2/v2.0"
NW_DAV = "https://dav.northwind-traders.co.uk/remote.php/dav"

# (value, kind, role, field, port, transport) per suggestion, document order
Row = tuple[str, ValueKind, Role, str, int | None, Transport]
EXPECTED: dict[str, list[Row]] = {
    "autoconfig__benign_m365.xml": [
        ("outlook.office365.com", H, Role.IMAP, f"{IN1}/hostname", 993, TLS),
        ("outlook.office365.com", H, Role.EWS, f"{IN2}/hostname", 443, TLS),
        ("https://outlook.office365.com/owa/", U, Role.WEB, f"{IN2}/owaURL", None, UNKNOWN),
        ("https://outlook.office365.com/EWS/Exchange.asmx", U, Role.EWS, f"{IN2}/ewsURL", None, UNKNOWN),
        ("smtp.office365.com", H, Role.SMTP, f"{OUT}/hostname", 587, STARTTLS),
        ("login.microsoftonline.com", H, Role.OAUTH, "oAuth2/issuer", None, UNKNOWN),
        (f"{MSO}/authorize", U, Role.OAUTH, "oAuth2/authURL", None, UNKNOWN),
        (f"{MSO}/token", U, Role.OAUTH, "oAuth2/tokenURL", None, UNKNOWN),
    ],
    "autoconfig__benign_own_domain.xml": [
        ("imap.northwind-traders.co.uk", H, Role.IMAP, f"{IN1}/hostname", 993, TLS),
        ("pop.northwind-traders.co.uk", H, Role.POP3, f"{IN2}/hostname", 995, TLS),
        ("smtp.northwind-traders.co.uk", H, Role.SMTP, f"{OUT}/hostname", 587, STARTTLS),
        ("https://help.northwind-traders.co.uk/mail/setup", U, Role.INFO, "emailProvider/documentation@url",
         None, UNKNOWN),
        (NW_DAV, U, Role.DAV, "addressBook/serverURL", None, UNKNOWN),
        (NW_DAV, U, Role.DAV, "calendar/serverURL", None, UNKNOWN),
        ("https://webmail.northwind-traders.co.uk/", U, Role.WEB, "webMail/loginPage@url", None, UNKNOWN),
    ],
    "autoconfig__benign_placeholder_hostname.xml": [
        ("mail.%EMAILDOMAIN%", H, Role.IMAP, f"{IN}/hostname", 993, TLS),
        ("mail.%EMAILDOMAIN%", H, Role.SMTP, f"{OUT}/hostname", 465, TLS),
    ],
    "autoconfig__draft12_url_sections.xml": [
        ("https://jmap.contoso.com/.well-known/jmap", U, Role.JMAP, f"{IN1}/url", None, UNKNOWN),
        ("imap.contoso.com", H, Role.IMAP, f"{IN2}/hostname", 993, TLS),
        ("https://mail.contoso.com/EWS/Exchange.asmx", U, Role.EWS, f"{IN3}/url", None, UNKNOWN),
        ("https://mail.contoso.com/Microsoft-Server-ActiveSync", U, Role.EAS, f"{IN4}/url", None, UNKNOWN),
        ("smtp.contoso.com", H, Role.SMTP, f"{OUT}/hostname", 465, TLS),
        ("https://dav.contoso.com/remote.php/dav", U, Role.DAV, "addressbook/url", None, UNKNOWN),
        ("https://dav.contoso.com/remote.php/dav", U, Role.DAV, "calendar/url", None, UNKNOWN),
        ("sieve.contoso.com", H, Role.SIEVE, "setupServer/hostname", 4190, STARTTLS),
        ("https://login.contoso.com/oauth2/authorize", U, Role.OAUTH, "oAuth2/authURL", None, UNKNOWN),
        ("https://login.contoso.com/oauth2/token", U, Role.OAUTH, "oAuth2/tokenURL", None, UNKNOWN),
        ("login.contoso.com", H, Role.OAUTH, "oAuth2/issuer", None, UNKNOWN),
        ("https://autoconfig.contoso.com/mail/config-v1.1.xml", U, Role.AUTODISCOVER,
         "clientConfigUpdate@url", None, UNKNOWN),
    ],
    "autoconfig__idn_punycode_lookalike.xml": [
        ("imap.xn--nrthwind-traders-mkn.co.uk", H, Role.IMAP, f"{IN}/hostname", 993, TLS),
        ("smtp.xn--nrthwind-traders-mkn.co.uk", H, Role.SMTP, f"{OUT}/hostname", 587, STARTTLS),
    ],
    "autoconfig__ip_literal_cgnat_metadata.xml": [
        ("100.64.0.10", H, Role.IMAP, f"{IN1}/hostname", 993, TLS),
        ("[fd00::25]", H, Role.POP3, f"{IN2}/hostname", 995, TLS),
        ("169.254.169.254", H, Role.SMTP, f"{OUT}/hostname", 465, TLS),
    ],
    "autoconfig__oauth2_foreign_authurl.xml": [
        ("imap.contoso.com", H, Role.IMAP, f"{IN}/hostname", 993, TLS),
        ("smtp.contoso.com", H, Role.SMTP, f"{OUT}/hostname", 465, TLS),
        ("login.contoso-sso.net", H, Role.OAUTH, "oAuth2/issuer", None, UNKNOWN),
        ("https://login.contoso-sso.net/oauth2/authorize", U, Role.OAUTH, "oAuth2/authURL", None, UNKNOWN),
        ("https://login.contoso-sso.net/oauth2/token", U, Role.OAUTH, "oAuth2/tokenURL", None, UNKNOWN),
    ],
    "autoconfig__reserved_alt_and_home_arpa.xml": [
        ("imap.contoso.alt", H, Role.IMAP, f"{IN}/hostname", 993, TLS),
        ("smtp.gateway.home.arpa", H, Role.SMTP, f"{OUT}/hostname", 587, STARTTLS),
    ],
    "autoconfig__reserved_user_domain_internal.xml": [
        ("imap.corp.internal", H, Role.IMAP, f"{IN}/hostname", 993, TLS),
        ("smtp.corp.internal", H, Role.SMTP, f"{OUT}/hostname", 587, STARTTLS),
    ],
    "autoconfig__seed_example_com.xml": [
        ("imapgms.jnet.sei.co.jp", H, Role.IMAP, f"{IN}/hostname", 993, TLS),
        ("smtpgms.jnet.sei.co.jp", H, Role.SMTP, f"{OUT}/hostname", 465, TLS),
    ],
    "autoconfig__trailing_dot_mixed_case.xml": [
        ("IMAP.Northwind-Traders.CO.UK.", H, Role.IMAP, f"{IN}/hostname", 993, TLS),
        (" smtp.northwind-traders.co.uk. ", H, Role.SMTP, f"{OUT}/hostname", 587, STARTTLS),
    ],
}
MALFORMED = [
    "autoconfig__truncated.xml", "autoconfig__wrong_root_element.xml", "autoconfig__xxe_external_entity.xml"]
# violating fixture → the text that marks its offending suggestions (INDEX.md)
VIOLATING = {
    "autoconfig__idn_punycode_lookalike.xml": "xn--nrthwind",
    "autoconfig__ip_literal_cgnat_metadata.xml": "",  # every host is an IP literal
    "autoconfig__oauth2_foreign_authurl.xml": "contoso-sso.net",
    "autoconfig__reserved_alt_and_home_arpa.xml": "",
    "autoconfig__reserved_user_domain_internal.xml": ".internal",
    "autoconfig__seed_example_com.xml": "sei.co.jp",
}


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _rows(suggestions: tuple[Suggestion, ...]) -> list[Row]:
    return [(s.value, s.kind, s.role, s.field, s.port, s.transport) for s in suggestions]


def _doc(provider: str, top: str = "") -> bytes:
    """A v1.1 document with the given emailProvider content and top-level sections."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n'
            f'  <emailProvider id="contoso.com">\n    <domain>contoso.com</domain>\n{provider}\n'
            f"  </emailProvider>\n{top}\n</clientConfig>\n").encode()


IMAP = ("<incomingServer type=\"imap\"><hostname>imap.contoso.com</hostname><port>993</port>"
        "<socketType>SSL</socketType></incomingServer>")
SMTP = ("<outgoingServer type=\"smtp\"><hostname>smtp.contoso.com</hostname><port>465</port>"
        "<socketType>SSL</socketType></outgoingServer>")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_yields_its_expected_suggestions(name: str) -> None:
    parsed = autoconfig.parse(_read(name))
    assert parsed.format == "autoconfig"
    assert not parsed.error_answer
    assert sorted(_rows(parsed.suggestions)) == sorted(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_locator_spans_the_unit_that_holds_the_suggestion(name: str) -> None:
    body = _read(name)
    for s in autoconfig.parse(body).suggestions:
        path = s.field.split("@")[0] if "@" in s.field else s.field.rsplit("/", 1)[0]
        unit = re.sub(r"\[\d+\]$", "", path.rsplit("/", 1)[-1])
        assert len(s.locator) == 1  # (ordinal,)
        start, end = unit_span(body, s)
        text = body[start:end]
        assert text.startswith(f"<{unit}".encode())
        assert text.endswith((f"</{unit}>".encode(), b"/>"))


@pytest.mark.parametrize("name", MALFORMED)
def test_truncated_wrong_root_and_xxe_fixtures_are_malformed(name: str) -> None:
    with pytest.raises(MalformedDocument):
        autoconfig.parse(_read(name))


@pytest.mark.parametrize(
    "body",
    [
        b'<clientConfig xmlns="http://example.org/autoconfig"><emailProvider/></clientConfig>',
        b"<ClientConfig><emailProvider/></ClientConfig>",
        b'<clientConfig version="1.1"><domain>contoso.com</domain></clientConfig>',
        b"<?xml version='1.0'?><!DOCTYPE clientConfig><clientConfig><emailProvider/></clientConfig>",
        b'<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><clientConfig>&b;</clientConfig>',
        b"",
        b"   ",
        b"<clientConfig><emailProvider></clientConfig>",
        _doc("<incomingServer type='imap'><hostname>imap.<b>evil.net</b></hostname></incomingServer>"),
        *(_doc(f"<incomingServer type='imap'><hostname>imap.contoso.com</hostname>{port}</incomingServer>")
          for port in ("<port>imap</port>", "<port>70000</port>", "<port>-1</port>", "<port>٩٩٣</port>",
                       "<port>993</port><port>x</port>")),
    ],
)
def test_documents_that_are_not_clean_client_configs_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        autoconfig.parse(body)


@pytest.mark.parametrize(
    ("kind", "role"),
    [("imap", Role.IMAP), ("pop3", Role.POP3), ("exchange", Role.EWS), ("ews", Role.EWS),
     ("activesync", Role.EAS), ("activeSync", Role.EAS), ("jmap", Role.JMAP), ("owa", Role.WEB),
     ("graph", Role.WEB), ("nntp", Role.OTHER), ("", Role.OTHER)],
)
def test_incoming_server_type_decides_the_role(kind: str, role: Role) -> None:
    body = _doc(f'<incomingServer type="{kind}"><url>https://mail.contoso.com/x</url></incomingServer>')
    assert autoconfig.parse(body).suggestions[0].role is role


@pytest.mark.parametrize(
    ("sockets", "transport"),
    [("<socketType>SSL</socketType>", TLS), ("<socketType>STARTTLS</socketType>", STARTTLS),
     ("<socketType>plain</socketType>", PLAIN), ("<socketType>quantum</socketType>", UNKNOWN), ("", UNKNOWN),
     ("<socketType>quantum</socketType><socketType>STARTTLS</socketType><socketType>SSL</socketType>",
      STARTTLS)],
)
def test_socket_type_sets_the_transport_first_understood_wins(sockets: str, transport: Transport) -> None:
    host = "<hostname>imap.contoso.com</hostname>"
    body = _doc(f"<incomingServer type='imap'>{host}{sockets}</incomingServer>")
    (suggestion,) = autoconfig.parse(body).suggestions
    assert suggestion.transport is transport
    assert suggestion.port is None


def test_ispdb_shapes_enable_loginpageinfo_and_top_level_enable_are_judged() -> None:
    body = _doc(
        IMAP + SMTP + '<enable visiturl="https://hilfe.gmx.net/pop-imap/einschalten.html">'
        "<instruction>Allow POP3 &amp; IMAP</instruction></enable>",
        '<enable visiturl="https://help.contoso.com/enable"/>\n<webMail>'
        '<loginPage url="https://www.contoso.com/login"/>'
        '<loginPageInfo url="https://webmail.contoso.com/"><username>%EMAILADDRESS%</username>'
        '<usernameField id="user"/><passwordField name="pass"/><loginButton/></loginPageInfo></webMail>',
    )
    links = [(s.value, s.role, s.field) for s in autoconfig.parse(body).suggestions if s.kind is U]
    assert links == [
        ("https://hilfe.gmx.net/pop-imap/einschalten.html", Role.INFO, "emailProvider/enable@visiturl"),
        ("https://help.contoso.com/enable", Role.INFO, "enable@visiturl"),
        ("https://www.contoso.com/login", Role.WEB, "webMail/loginPage@url"),
        ("https://webmail.contoso.com/", Role.WEB, "webMail/loginPageInfo@url"),
    ]


def test_domains_names_descriptions_and_unknown_elements_are_not_suggestions() -> None:
    body = _doc(
        "<displayName>mail.evil.net</displayName><domain purpose='mx'>mx.evil.net</domain>"
        "<inputField key='X' label='https://evil.net/'>https://evil.net/</inputField>"
        "<futureServer type='imap'><hostname>future.evil.net</hostname></futureServer>"
        "<documentation url='https://docs.contoso.com/'><descr>see https://evil.net/</descr></documentation>",
        "<unknownSection><hostname>x.evil.net</hostname></unknownSection>",
    )
    assert [s.value for s in autoconfig.parse(body).suggestions] == ["https://docs.contoso.com/"]


def test_element_names_match_case_insensitively_like_the_draft_lower_case_addressbook() -> None:
    body = _doc('<IncomingServer type="IMAP"><HostName>imap.contoso.com</HostName><Port>993</Port>'
                "<SocketType>SSL</SocketType></IncomingServer>")
    assert _rows(autoconfig.parse(body).suggestions) == [
        ("imap.contoso.com", H, Role.IMAP, "emailProvider/IncomingServer/HostName", 993, TLS)]


def test_empty_values_are_not_suggestions_and_a_comment_inside_a_host_is_malformed() -> None:
    body = _doc("<incomingServer type='imap'><hostname> </hostname><url/></incomingServer>"
                "<outgoingServer type='smtp'><hostname>smtp.evil.net</hostname></outgoingServer>")
    assert [s.value for s in autoconfig.parse(body).suggestions] == ["smtp.evil.net"]
    with pytest.raises(MalformedDocument, match="comment"):
        autoconfig.parse(body.replace(b"smtp.evil", b"smtp.<!-- x -->evil"))


@pytest.mark.parametrize("name", sorted(VIOLATING))
def test_rewrite_of_each_violating_fixture_drops_the_offenders_or_refuses(name: str) -> None:
    body = _read(name)
    parsed = autoconfig.parse(body)
    bad = VIOLATING[name]
    drop = [s for s in parsed.suggestions if bad in s.value]
    out = autoconfig.rewrite(body, parsed, drop)
    if name != "autoconfig__oauth2_foreign_authurl.xml":
        assert out is None  # every server is bad: half a config is no config
        return
    assert out is not None
    kept = autoconfig.parse(out).suggestions
    assert not any(bad in s.value for s in kept)
    assert [s.value for s in kept] == ["imap.contoso.com", "smtp.contoso.com"]


def test_rewrite_cuts_exactly_the_unit_and_the_indentation_before_it() -> None:
    body = _read("autoconfig__oauth2_foreign_authurl.xml")
    parsed = autoconfig.parse(body)
    oauth = next(s for s in parsed.suggestions if s.role is Role.OAUTH)
    start, end = unit_span(body, oauth)
    segment = body[start:end]
    assert segment.startswith(b"<oAuth2>") and segment.endswith(b"</oAuth2>")
    out = autoconfig.rewrite(body, parsed, [oauth])
    assert out == body.replace(b"\n  " + segment, b"")
    assert out.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n')


def test_rewrite_keeps_benign_sections_and_removes_only_the_dropped_ones() -> None:
    body = _read("autoconfig__benign_own_domain.xml")
    parsed = autoconfig.parse(body)
    drop = [s for s in parsed.suggestions if s.value.startswith(("pop.", "https://help.", "https://webmail."))]
    out = autoconfig.rewrite(body, parsed, drop)
    assert out is not None
    assert b"pop.northwind" not in out and b"help.northwind" not in out and b"webmail.northwind" not in out
    assert b"<webMail>" in out  # only the loginPage element went
    assert [s.value for s in autoconfig.parse(out).suggestions] == [
        "imap.northwind-traders.co.uk", "smtp.northwind-traders.co.uk",
        "https://dav.northwind-traders.co.uk/remote.php/dav", "https://dav.northwind-traders.co.uk/remote.php/dav"]


def test_rewrite_of_one_url_drops_its_whole_server_section() -> None:
    body = _read("autoconfig__benign_m365.xml")
    parsed = autoconfig.parse(body)
    owa = [s for s in parsed.suggestions if s.field.endswith("owaURL")]
    out = autoconfig.rewrite(body, parsed, owa)
    assert out is not None
    assert b'type="exchange"' not in out and b"/EWS/Exchange.asmx" not in out
    assert b'type="imap"' in out


def test_rewrite_refuses_when_no_outgoing_server_would_remain() -> None:
    body = _read("autoconfig__benign_own_domain.xml")
    parsed = autoconfig.parse(body)
    smtp = [s for s in parsed.suggestions if s.role is Role.SMTP]
    assert autoconfig.rewrite(body, parsed, smtp) is None


def test_rewrite_refuses_a_suggestion_it_cannot_locate() -> None:
    body = _read("autoconfig__benign_own_domain.xml")
    parsed = autoconfig.parse(body)
    for locator in ((0,), (1,), (10_000,)):  # the root and <emailProvider> hold no suggestion; no such element
        stranger = Suggestion("evil.net", H, Role.IMAP, "x", locator=locator)
        assert autoconfig.rewrite(body, parsed, [stranger]) is None


def test_rewrite_dropping_nothing_returns_the_body_unchanged() -> None:
    body = _read("autoconfig__benign_own_domain.xml")
    assert autoconfig.rewrite(body, autoconfig.parse(body), []) is body


def test_block_is_a_bare_404_that_is_no_config() -> None:
    reply = autoconfig.block()
    assert (reply.status, reply.body) == (404, b"")
    with pytest.raises(MalformedDocument):
        autoconfig.parse(reply.body)


def test_a_nesting_bomb_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        autoconfig.parse(b"<clientConfig><emailProvider>" + b"<a>" * 100_000 + b"</a>" * 100_000
                         + b"</emailProvider></clientConfig>")
    with pytest.raises(UntrustedInputError):  # unclosed: refused too, as malformed or as too deep
        autoconfig.parse(b"<clientConfig><emailProvider>" + b"<a>" * 100_000)


def test_an_oversized_body_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        autoconfig.parse(_doc(IMAP + SMTP + "<!--" + "x" * MAX_XML_BYTES + "-->"))


@pytest.mark.skipif(not ISPDB.is_dir(), reason="shared ISPDB corpus not present")
@pytest.mark.parametrize("path", sorted(ISPDB.glob("*.xml")) if ISPDB.is_dir() else [], ids=lambda p: p.name)
def test_every_ispdb_file_parses_and_yields_suggestions(path: Path) -> None:
    parsed = autoconfig.parse(path.read_bytes())
    assert any(s.role in (Role.IMAP, Role.POP3) for s in parsed.suggestions)
    assert any(s.role is Role.SMTP for s in parsed.suggestions)
