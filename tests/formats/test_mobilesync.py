"""ActiveSync (mobilesync) Autodiscover: server URLs, redirects, strict envelope, rewrites, 600 block."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.errors import BodyTooLarge, MalformedDocument
from guard.formats import mobilesync, sniff_body
from guard.formats._exchange import BASE_NS, MOBILESYNC_NS, OUTLOOK_NS
from guard.formats._xml import MAX_XML_BYTES
from guard.model import Role, Suggestion, ValueKind
from tests.conftest import unit_span

FIXTURES = Path(__file__).parent.parent / "fixtures"

U, E, H = ValueKind.URL, ValueKind.EMAIL, ValueKind.HOST
SERVER = "Action/Settings/Server"
EAS = "/Microsoft-Server-ActiveSync"

# (value, kind, role, field) per suggestion, document order; mobilesync has no ports or TLS fields
Row = tuple[str, ValueKind, Role, str]
EXPECTED: dict[str, list[Row]] = {
    "mobilesync__benign_m365.xml": [
        (f"https://outlook.office365.com{EAS}", U, Role.EAS, f"{SERVER}/Url"),
        (f"https://outlook.office365.com{EAS}", U, Role.EAS, f"{SERVER}/Name"),
    ],
    "mobilesync__benign_own_domain.xml": [
        (f"https://mail.contoso.com{EAS}", U, Role.EAS, f"{SERVER}/Url"),
        (f"https://mail.contoso.com{EAS}", U, Role.EAS, f"{SERVER}/Name"),
    ],
    "mobilesync__redirect_foreign.xml": [
        ("alice@collector-mail.net", E, Role.REDIRECT, "Action/Redirect"),
    ],
    "mobilesync__reserved_test_tld.xml": [
        (f"https://eas.mail.test{EAS}", U, Role.EAS, f"{SERVER}[1]/Url"),
        (f"https://eas.mail.test{EAS}", U, Role.EAS, f"{SERVER}[1]/Name"),
        ("https://cert.mail.test/CertEnroll", U, Role.OTHER, f"{SERVER}[2]/Url"),  # CertEnroll: Name empty
    ],
    "mobilesync__seed_example_com.xml": [
        (f"https://imapgms.jnet.sei.co.jp{EAS}", U, Role.EAS, f"{SERVER}/Url"),
        (f"https://imapgms.jnet.sei.co.jp{EAS}", U, Role.EAS, f"{SERVER}/Name"),
    ],
}
VIOLATING = {
    "mobilesync__redirect_foreign.xml": "collector-mail.net",
    "mobilesync__reserved_test_tld.xml": ".test",
    "mobilesync__seed_example_com.xml": "sei.co.jp",
}


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _rows(suggestions: tuple[Suggestion, ...]) -> list[Row]:
    return [(s.value, s.kind, s.role, s.field) for s in suggestions]


def _doc(action: str, response_ns: str | None = MOBILESYNC_NS, root_ns: str = BASE_NS) -> bytes:
    xmlns = "" if response_ns is None else f' xmlns="{response_ns}"'
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<Autodiscover xmlns="{root_ns}">\n'
            f"  <Response{xmlns}>\n    <Culture>en:us</Culture>\n    <Action>\n{action}\n    </Action>\n"
            "  </Response>\n</Autodiscover>\n").encode()


def _server(kind: str, url: str, name: str = "") -> str:
    return f"        <Server><Type>{kind}</Type><Url>{url}</Url><Name>{name}</Name></Server>"


def _settings(*servers: str) -> str:
    return "      <Settings>\n" + "\n".join(servers) + "\n      </Settings>"


SYNC = _server("MobileSync", f"https://mail.contoso.com{EAS}", f"https://mail.contoso.com{EAS}")
CERT = _server("CertEnroll", "https://cert.contoso.com/CertEnroll")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_yields_its_expected_suggestions(name: str) -> None:
    parsed = mobilesync.parse(_read(name))
    assert parsed.format == "mobilesync"
    assert not parsed.error_answer
    assert _rows(parsed.suggestions) == EXPECTED[name]
    assert all(s.port is None for s in parsed.suggestions)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_locator_spans_the_server_or_the_redirect(name: str) -> None:
    body = _read(name)
    for s in mobilesync.parse(body).suggestions:
        start, end = unit_span(body, s)
        unit = body[start:end]
        tag = b"Redirect" if s.role is Role.REDIRECT else b"Server"
        assert unit.startswith(b"<" + tag + b">") and unit.endswith(b"</" + tag + b">")
        assert s.value.encode() in unit


def test_the_error_fixture_is_an_error_answer_without_suggestions() -> None:
    parsed = mobilesync.parse(_read("mobilesync__error_600.xml"))
    assert parsed.suggestions == ()
    assert parsed.error_answer


@pytest.mark.parametrize(
    "body",
    [
        _doc("<Error><ErrorCode>600</ErrorCode></Error>"),  # Action/Error
        f'<Autodiscover xmlns="{BASE_NS}"><Response><Error><ErrorCode>601</ErrorCode></Error></Response>'
        "</Autodiscover>".encode(),
    ],
)
def test_action_and_base_namespace_errors_are_error_answers(body: bytes) -> None:
    parsed = mobilesync.parse(body)
    assert parsed.error_answer and parsed.suggestions == ()


@pytest.mark.parametrize(
    "body",
    [
        _doc(_settings(SYNC), response_ns=OUTLOOK_NS),  # an Outlook answer is not an ActiveSync one
        _doc(_settings(SYNC), response_ns=None),  # the base namespace is the error form only
        _doc(_settings(SYNC)).replace(b"<Action>", b"<Account><Protocol><Server>evil.net</Server></Protocol>"
                                      b"</Account><Action>"),  # Outlook shape JXON would read
        _doc(_settings(SYNC), response_ns="https://schemas.microsoft.com/exchange/autodiscover/mobilesync/"
                                          "responseschema/2006"),
        _doc(_settings(SYNC), root_ns="https://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"),
        f'<Autodiscover xmlns="{BASE_NS}"><Culture/></Autodiscover>'.encode(),
        _doc(_settings(SYNC))[:-40],
        _doc(_settings(_server("MobileSync", "https://<b>evil.net</b>/"))),
        _doc("<Redirect>alice@<i>evil.net</i></Redirect>"),
        b'<!DOCTYPE a [<!ENTITY e "x">]><Autodiscover/>',
    ],
)
def test_documents_that_are_not_clean_activesync_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        mobilesync.parse(body)


def test_name_is_judged_only_for_mobilesync_servers_and_unknown_types_are_other() -> None:
    body = _doc(_settings(_server("CertEnroll", "cert.contoso.com", "Certificate Server"),
                          _server("Future", "https://future.contoso.com/", "https://other.contoso.com/"),
                          _server("mobilesync", "https://mail.contoso.com/x", "")))
    assert _rows(mobilesync.parse(body).suggestions) == [
        ("cert.contoso.com", H, Role.OTHER, f"{SERVER}[1]/Url"),  # a bare CertEnroll host is a host
        ("https://future.contoso.com/", U, Role.OTHER, f"{SERVER}[2]/Url"),
        ("https://mail.contoso.com/x", U, Role.EAS, f"{SERVER}[3]/Url"),
    ]


def test_element_names_match_case_insensitively_and_whitespace_is_kept_raw() -> None:
    body = _doc("<settings><server><type>MobileSync</type><URL> https://mail.contoso.com/eas </URL></server>"
                "</settings><REDIRECT>bob@contoso.com</REDIRECT>")
    assert _rows(mobilesync.parse(body).suggestions) == [
        (" https://mail.contoso.com/eas ", U, Role.EAS, "Action/settings/server/URL"),
        ("bob@contoso.com", E, Role.REDIRECT, "Action/REDIRECT"),
    ]


def test_user_and_culture_are_not_suggestions() -> None:
    body = _doc(_settings(SYNC)).replace(
        b"<Culture>en:us</Culture>",
        b"<Culture>en:us</Culture><User><DisplayName>mail.evil.net</DisplayName>"
        b"<EMailAddress>alice@evil.net</EMailAddress></User>")
    assert {s.value for s in mobilesync.parse(body).suggestions} == {f"https://mail.contoso.com{EAS}"}


@pytest.mark.parametrize("name", sorted(VIOLATING))
def test_rewrite_of_each_violating_fixture_refuses_since_nothing_safe_remains(name: str) -> None:
    body = _read(name)
    parsed = mobilesync.parse(body)
    drop = [s for s in parsed.suggestions if VIOLATING[name] in s.value]
    assert drop
    assert mobilesync.rewrite(body, parsed, drop) is None


def test_rewrite_removes_exactly_the_server_and_keeps_the_sync_server() -> None:
    body = _doc(_settings(SYNC, _server("CertEnroll", "https://cert.evil.net/CertEnroll")))
    parsed = mobilesync.parse(body)
    bad = [s for s in parsed.suggestions if "evil.net" in s.value]
    start, end = unit_span(body, bad[0])
    out = mobilesync.rewrite(body, parsed, bad)
    assert out == body[:start].rstrip(b" \n") + body[end:]
    assert b"evil.net" not in out
    assert [s.role for s in mobilesync.parse(out).suggestions] == [Role.EAS, Role.EAS]


def test_rewrite_of_one_bad_name_removes_its_whole_server() -> None:
    other = _server("MobileSync", "https://eas2.contoso.com/x", "https://eas2.evil.net/x")
    body = _doc(_settings(SYNC, other))
    parsed = mobilesync.parse(body)
    out = mobilesync.rewrite(body, parsed, [s for s in parsed.suggestions if "evil.net" in s.value])
    assert out is not None
    assert b"eas2." not in out
    assert {s.value for s in mobilesync.parse(out).suggestions} == {f"https://mail.contoso.com{EAS}"}


def test_rewrite_refuses_when_only_a_cert_enrolment_server_would_remain() -> None:
    body = _doc(_settings(_server("MobileSync", "https://eas.evil.net/x"), CERT))
    parsed = mobilesync.parse(body)
    assert mobilesync.rewrite(body, parsed, [s for s in parsed.suggestions if s.role is Role.EAS]) is None


def test_rewrite_refuses_a_suggestion_it_cannot_locate_and_returns_the_body_for_nothing() -> None:
    body = _read("mobilesync__benign_own_domain.xml")
    parsed = mobilesync.parse(body)
    stranger = Suggestion("https://evil.net/", U, Role.EAS, "x", locator=(999,))
    assert mobilesync.rewrite(body, parsed, [stranger]) is None
    assert mobilesync.rewrite(body, parsed, []) is body


def test_block_is_a_mobilesync_error_600_answer() -> None:
    reply = mobilesync.block()
    assert (reply.status, reply.content_type) == (200, "text/xml; charset=utf-8")
    assert b"<ErrorCode>600</ErrorCode>" in reply.body
    assert f'<Response xmlns="{MOBILESYNC_NS}">'.encode() in reply.body
    assert b"<Action>" not in reply.body
    parsed = mobilesync.parse(reply.body)
    assert parsed.error_answer and parsed.suggestions == ()
    assert sniff_body(reply.body) == "mobilesync"


def test_a_nesting_bomb_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        mobilesync.parse(f'<Autodiscover xmlns="{BASE_NS}"><Response>'.encode()
                         + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</Response></Autodiscover>")


def test_an_oversized_body_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        mobilesync.parse(_doc(_settings(SYNC) + "<!--" + "x" * MAX_XML_BYTES + "-->"))
