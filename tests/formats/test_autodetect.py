"""Outlook AutoDetect JSON: strict types, list-item rewrites, the 404 block and the header hosts."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from guard.engine import judge
from guard.errors import BodyTooLarge, MalformedDocument
from guard.formats import autodetect
from guard.formats._json import MAX_JSON_BYTES
from guard.model import Action, Role, Suggestion, Transport, ValueKind
from guard.names import User
from guard.policy import Policy
from tests.formats._json_fuzz import FIXTURES

IMAP, SMTP, TLS = Role.IMAP, Role.SMTP, Transport.TLS


def _host(value: str, role: Role, index: int, port: int) -> Suggestion:
    """A protocols[] suggestion as the fixtures write them: implicit TLS (`"encryption": "ssl"`)."""
    field = f"protocols[{index}].hostname"
    return Suggestion(value, ValueKind.HOST, role, field, port, TLS, ("protocols", index))


EXPECTED = {
    "autodetect__benign_m365_services.json": (
        Suggestion("outlook.office365.com", ValueKind.HOST, Role.WEB, "services[0].hostname",
                   locator=("services", 0)),
        Suggestion("https://login.microsoftonline.com/common/oauth2/authorize", ValueKind.URL, Role.OAUTH,
                   "services[0].aad", locator=("services", 0)),
    ),
    "autodetect__benign_own_domain.json": (
        _host("imap.northwind-traders.co.uk", IMAP, 0, 993),
        _host("smtp.northwind-traders.co.uk", SMTP, 1, 465),
    ),
    "autodetect__idn_unicode_lookalike.json": (
        _host("imap.cοntoso.com", IMAP, 0, 993), _host("smtp.cοntoso.com", SMTP, 1, 465)),
    "autodetect__ip_literal_numeric_forms.json": (
        _host("2130706433", IMAP, 0, 993), _host("0x7f.0.0.1", SMTP, 1, 465)),
    "autodetect__ip_literal_private.json": (
        _host("10.0.0.5", IMAP, 0, 993), _host("169.254.169.254", SMTP, 1, 465)),
    "autodetect__reserved_local.json": (
        _host("mail.contoso.local", IMAP, 0, 993), _host("mail.contoso.local", SMTP, 1, 465)),
    "autodetect__seed_example_com.json": (
        _host("imapgms.jnet.sei.co.jp", IMAP, 0, 993), _host("smtpgms.jnet.sei.co.jp", SMTP, 1, 465)),
    "autodetect__trailing_dot_mixed_case.json": (_host("IMAP.Northwind-Traders.CO.UK.", IMAP, 0, 993),),
}
# violating fixture → substrings of the offending hosts (what the engine would drop)
VIOLATING = {
    "autodetect__idn_unicode_lookalike.json": ["cοntoso"],
    "autodetect__ip_literal_numeric_forms.json": ["2130706433", "0x7f"],
    "autodetect__ip_literal_private.json": ["10.0.0.5", "169.254.169.254"],
    "autodetect__reserved_local.json": [".local"],
    "autodetect__seed_example_com.json": ["jnet.sei.co.jp"],
}
SEED = (FIXTURES / "autodetect__seed_example_com.json").read_bytes()


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _answer(**protocol: Any) -> bytes:
    entry = {"protocol": "imap", "hostname": "imap.contoso.com", "port": 993, "encryption": "ssl",
             "username": "alice@contoso.com", "validated": True, **protocol}
    return json.dumps({"email": "alice@contoso.com", "services": [], "protocols": [entry]}).encode()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_yields_its_hosts_with_roles_ports_and_transport(name: str) -> None:
    parsed = autodetect.parse(_read(name))
    assert parsed.format == "autodetect"
    assert parsed.suggestions == EXPECTED[name]
    assert not parsed.error_answer


@pytest.mark.parametrize("name", ["autodetect__truncated.json", "autodetect__wrong_types.json"])
def test_truncated_and_wrongly_typed_fixtures_are_malformed(name: str) -> None:
    with pytest.raises(MalformedDocument):
        autodetect.parse(_read(name))


@pytest.mark.parametrize(
    "change",
    [
        {"hostname": None},
        {"hostname": ["imap.contoso.com"]},
        {"protocol": 1},
        {"port": "993"},
        {"port": True},
        {"port": 993.0},
        {"port": 70000},
        {"port": -1},
        {"encryption": True},
        {"username": ["alice@contoso.com"]},
        {"validated": "false"},
    ],
    ids=repr,
)
def test_each_wrong_protocol_field_type_is_malformed(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedDocument, match=r"^protocols\[0\]\."):
        autodetect.parse(_answer(**change))


@pytest.mark.parametrize("missing", ["protocol", "hostname"])
def test_a_protocol_entry_without_protocol_or_hostname_is_malformed(missing: str) -> None:
    doc = json.loads(_answer())
    del doc["protocols"][0][missing]
    with pytest.raises(MalformedDocument, match="required"):
        autodetect.parse(json.dumps(doc).encode())


def test_optional_protocol_fields_may_be_absent_or_null() -> None:
    body = b'{"protocols":[{"protocol":"imap","hostname":"imap.contoso.com","port":null}]}'
    (only,) = autodetect.parse(body).suggestions
    assert (only.port, only.transport) == (None, Transport.UNKNOWN)


@pytest.mark.parametrize(
    ("encryption", "transport"),
    [("ssl", TLS), ("Ssl", TLS), ("starttls", Transport.STARTTLS), ("tls", Transport.STARTTLS),
     ("none", Transport.PLAIN), ("plain", Transport.PLAIN), ("quantum", Transport.UNKNOWN)],
)
def test_encryption_values_map_to_transports(encryption: str, transport: Transport) -> None:
    assert autodetect.parse(_answer(encryption=encryption)).suggestions[0].transport is transport


@pytest.mark.parametrize(
    ("protocol", "role"),
    [("imap", IMAP), ("IMAP", IMAP), ("pop3", Role.POP3), ("smtp", SMTP), ("eas", Role.EAS),
     ("ews", Role.EWS), ("rest-cloud", Role.OTHER)],
)
def test_protocol_values_map_to_roles(protocol: str, role: Role) -> None:
    assert autodetect.parse(_answer(protocol=protocol)).suggestions[0].role is role


@pytest.mark.parametrize("onprem", [True, False, 1, "true", None, {"eas": "x"}], ids=repr)
def test_onprem_is_read_leniently(onprem: object) -> None:
    service = {"service": "o365", "protocol": "ews", "hostname": "outlook.office365.com", "onprem": onprem}
    body = json.dumps({"services": [service], "protocols": []}).encode()
    (only,) = autodetect.parse(body).suggestions
    assert only.role is Role.EWS


@pytest.mark.parametrize(
    "service",
    [{"hostname": 1}, {"aad": ["https://login.microsoftonline.com/"]}, {"protocol": None, "service": 3},
     "office365"],
    ids=repr,
)
def test_wrongly_typed_service_entries_are_malformed(service: object) -> None:
    with pytest.raises(MalformedDocument, match=r"^services\[0\]"):
        autodetect.parse(json.dumps({"services": [service], "protocols": []}).encode())


@pytest.mark.parametrize(
    "body",
    [b"[]", b"{}", b'{"email":"alice@contoso.com"}', b'{"email":1,"protocols":[]}', b'{"protocols":{}}',
     b'{"protocols":["imap.contoso.com"]}'],
)
def test_documents_that_are_not_autodetect_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        autodetect.parse(body)


def test_an_answer_with_no_entries_is_an_error_answer() -> None:
    parsed = autodetect.parse(b'{"email":"alice@contoso.com","services":[],"protocols":[]}')
    assert parsed.error_answer
    assert parsed.suggestions == ()


@pytest.mark.parametrize("name", sorted(VIOLATING))
def test_rewrite_of_each_violating_fixture_drops_only_the_offending_entries(name: str) -> None:
    body = _read(name)
    parsed = autodetect.parse(body)
    drop = [s for s in parsed.suggestions if any(bad in s.value for bad in VIOLATING[name])]
    keep = [s for s in parsed.suggestions if s not in drop]
    out = autodetect.rewrite(body, parsed, drop)
    if not keep:
        assert out is None
        return
    assert out is not None
    again = autodetect.parse(out)
    assert [s.value for s in again.suggestions] == [s.value for s in keep]
    for gone in drop:
        assert gone.value.encode() not in out


def test_rewrite_removes_exactly_the_dropped_items_and_keeps_everything_else() -> None:
    parsed = autodetect.parse(SEED)
    out = autodetect.rewrite(SEED, parsed, [parsed.suggestions[0]])
    assert out is not None
    expected = json.loads(SEED)
    del expected["protocols"][0]
    assert json.loads(out) == expected
    assert out == json.dumps(expected, separators=(",", ":")).encode()  # compact, like the service
    assert [s.field for s in autodetect.parse(out).suggestions] == ["protocols[0].hostname"]


def test_rewrite_keeps_raw_utf8_hosts_unescaped() -> None:
    body = _read("autodetect__idn_unicode_lookalike.json")
    doc = json.loads(body)
    doc["protocols"][1]["hostname"] = "smtp.contoso.com"
    doc["protocols"].append({"protocol": "pop3", "hostname": "pop.bücher.de", "port": 995})
    body = json.dumps(doc, ensure_ascii=False).encode()
    parsed = autodetect.parse(body)
    out = autodetect.rewrite(body, parsed, [parsed.suggestions[0]])
    assert out is not None
    assert "pop.bücher.de".encode() in out
    assert "cοntoso".encode() not in out


def test_rewrite_drops_a_whole_service_entry_with_its_oauth_authority() -> None:
    body = json.dumps({
        "email": "carol@fabrikam.com",
        "services": [{"service": "office365", "protocol": "rest", "hostname": "outlook.office365.com",
                      "aad": "https://login.contoso-sso.net/common/oauth2/authorize", "onprem": False}],
        "protocols": [{"protocol": "imap", "hostname": "outlook.office365.com", "port": 993}],
    }).encode()
    parsed = autodetect.parse(body)
    aad = next(s for s in parsed.suggestions if s.role is Role.OAUTH)
    out = autodetect.rewrite(body, parsed, [aad])
    assert out is not None
    assert json.loads(out)["services"] == []
    assert [s.field for s in autodetect.parse(out).suggestions] == ["protocols[0].hostname"]


def test_rewrite_returns_none_when_no_server_would_remain() -> None:
    parsed = autodetect.parse(SEED)
    assert autodetect.rewrite(SEED, parsed, parsed.suggestions) is None


def test_rewrite_dropping_nothing_returns_the_body_unchanged() -> None:
    assert autodetect.rewrite(SEED, autodetect.parse(SEED), []) is SEED


def test_block_is_microsofts_own_404_with_an_empty_body() -> None:
    reply = autodetect.block()
    assert (reply.status, reply.body) == (404, b"")


def test_the_format_strips_the_headers_that_repeat_hosts() -> None:
    assert {"x-debug-support", "x-feedback-token"} <= set(autodetect.FORMAT.sensitive_headers)
    assert autodetect.FORMAT.rewrite is autodetect.rewrite


def test_a_nesting_bomb_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        autodetect.parse(b'{"protocols":' + b"[" * 100_000)


def test_an_oversized_body_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        autodetect.parse(SEED[:-2] + b" " * MAX_JSON_BYTES + b"}")


# --- hosts in the response headers (the incident's x-debug-support and x-feedback-token) ---------

def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


DEBUG = {
    "Chain": "autoDv2 > autoDv1 > fixed db provider > fixed db domain protocols > db provider > "
             "db domain protocols",
    "Provider": {
        "Id": "seeatest",
        "Protocols": [
            {"Protocol": "imap", "Hostname": "imapgms.jnet.sei.co.jp", "Port": 993, "Encryption": "Ssl",
             "Username": "{email}"},
            {"Protocol": "smtp", "Hostname": "smtpgms.jnet.sei.co.jp", "Port": 465, "Encryption": "Ssl",
             "Username": "{email}"},
        ],
        "IsCrowdsourced": False,
        "CreatedAt": "2020-02-03T00:00:00Z",
    },
}
CLAIMS = {"P": ["imaps://imapgms.jnet.sei.co.jp:993", "smtps://smtpgms.jnet.sei.co.jp:465"], "iat": 1767225}
HEADERS = {
    "X-Debug-Support": base64.b64encode(json.dumps(DEBUG).encode()).decode(),
    "x-feedback-token": f"{_b64url({'alg': 'none', 'typ': 'JWT'})}.{_b64url(CLAIMS)}.",
    "x-provider-id": "seeatest",
    "content-type": "application/json; charset=utf-8",
}


def test_header_suggestions_read_the_debug_header_and_the_feedback_token() -> None:
    found = autodetect.header_suggestions(HEADERS)
    debug = "x-debug-support:Provider.Protocols"
    assert found == (
        Suggestion("imapgms.jnet.sei.co.jp", ValueKind.HOST, IMAP, f"{debug}[0].Hostname", 993, TLS),
        Suggestion("smtpgms.jnet.sei.co.jp", ValueKind.HOST, SMTP, f"{debug}[1].Hostname", 465, TLS),
        Suggestion("imaps://imapgms.jnet.sei.co.jp:993", ValueKind.URL, IMAP, "x-feedback-token:P[0]",
                   transport=TLS),
        Suggestion("smtps://smtpgms.jnet.sei.co.jp:465", ValueKind.URL, SMTP, "x-feedback-token:P[1]",
                   transport=TLS),
    )


def test_a_signed_token_and_padded_base64url_are_read_too() -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"P": ["imaps://a.example.net:993"]}).encode()).decode()
    found = autodetect.header_suggestions({"x-feedback-token": f"eyJhbGciOiJIUzI1NiJ9.{claims}.c2lnbmF0dXJl"})
    assert [s.value for s in found] == ["imaps://a.example.net:993"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-debug-support": "not base64!"},
        {"x-debug-support": base64.b64encode(b"not json").decode()},
        {"x-debug-support": base64.b64encode(b"[" * 1000).decode()},
        {"x-debug-support": "ünïcode"},
        {"x-debug-support": base64.b64encode(b'{"Hostname": 5, "Port": "x"}').decode()},
        {"x-feedback-token": "only.two"},
        {"x-feedback-token": "a.%%%.c"},
        {"x-feedback-token": f"a.{_b64url({'P': 'imaps://not-a-list'})}.c"},
        {"x-feedback-token": f"a.{base64.urlsafe_b64encode(b'[1]').decode()}.c"},
    ],
    ids=repr,
)
def test_undecodable_headers_yield_nothing(headers: dict[str, str]) -> None:
    assert autodetect.header_suggestions(headers) == ()


def test_one_bad_header_does_not_hide_the_other() -> None:
    headers = {**HEADERS, "X-Debug-Support": "garbage"}
    fields = [s.field for s in autodetect.header_suggestions(headers)]
    assert fields == ["x-feedback-token:P[0]", "x-feedback-token:P[1]"]


def test_header_hosts_make_the_engine_drop_the_headers_of_a_benign_body(default_policy: Policy) -> None:
    body = _read("autodetect__benign_own_domain.json")
    user = User.from_address("bob@northwind-traders.co.uk")
    decision = judge(body, user, default_policy, fmt=autodetect.FORMAT,
                     extra=autodetect.header_suggestions(HEADERS))
    assert decision.action is Action.REWRITE
    assert decision.body == body
    assert "x-debug-support" in decision.drop_headers
