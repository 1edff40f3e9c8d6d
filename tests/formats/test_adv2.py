"""Autodiscover v2 JSON: the one `Url` suggestion, error answers, and the block answer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from guard.errors import BodyTooLarge, MalformedDocument, UntrustedInputError
from guard.formats import adv2, sniff_body
from guard.formats._json import MAX_JSON_BYTES
from guard.model import Role, Suggestion, Transport, ValueKind
from tests.conftest import examples
from tests.formats._json_fuzz import FIXTURES, fixture_bodies, mutated

SUCCESS = {
    "adv2__benign_ews_own_domain.json": ("https://mail.contoso.com/EWS/Exchange.asmx", Role.EWS),
    "adv2__benign_m365_activesync.json": (
        "https://outlook.office365.com/Microsoft-Server-ActiveSync", Role.EAS),
    "adv2__ip_literal_ipv6_loopback.json": ("https://[::1]/EWS/Exchange.asmx", Role.EWS),
    "adv2__redirect_v1_foreign.json": (
        "https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml", Role.AUTODISCOVER),
    "adv2__seed_example_com.json": (
        "https://imapgms.jnet.sei.co.jp/autodiscover/autodiscover.xml", Role.AUTODISCOVER),
    "adv2__url_userinfo_confusion.json": (
        "https://mail.contoso.com@collector-mail.net/EWS/Exchange.asmx", Role.EWS),
}
VIOLATING = [
    "adv2__ip_literal_ipv6_loopback.json",
    "adv2__redirect_v1_foreign.json",
    "adv2__seed_example_com.json",
    "adv2__url_userinfo_confusion.json",
]


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.mark.parametrize("name", sorted(SUCCESS))
def test_each_success_fixture_yields_its_url_with_the_protocols_role(name: str) -> None:
    value, role = SUCCESS[name]
    parsed = adv2.parse(_read(name))
    assert parsed.format == "adv2"
    assert not parsed.error_answer
    expected = Suggestion(value, ValueKind.URL, role, "Url", None, Transport.UNKNOWN, ("Url",))
    assert parsed.suggestions == (expected,)


def test_the_error_fixture_is_an_error_answer_without_suggestions() -> None:
    parsed = adv2.parse(_read("adv2__error_invalid_protocol.json"))
    assert parsed.error_answer
    assert parsed.suggestions == ()


def test_the_wrong_types_fixture_is_malformed() -> None:
    with pytest.raises(MalformedDocument, match="Protocol: expected a string, got an array"):
        adv2.parse(_read("adv2__wrong_types.json"))


@pytest.mark.parametrize(
    ("protocol", "role"),
    [
        ("AutodiscoverV1", Role.AUTODISCOVER),
        ("autodiscoverv1", Role.AUTODISCOVER),
        ("ACTIVESYNC", Role.EAS),
        ("ews", Role.EWS),
        ("Rest", Role.WEB),
        ("SubstrateSearchService", Role.WEB),
        ("SomethingNew", Role.OTHER),
    ],
)
def test_protocol_values_map_to_roles_case_insensitively(protocol: str, role: Role) -> None:
    body = json.dumps({"Protocol": protocol, "Url": "https://mail.contoso.com/x"}).encode()
    assert adv2.parse(body).suggestions[0].role is role


def test_a_url_without_protocol_is_still_judged() -> None:
    assert adv2.parse(b'{"Url": "https://mail.contoso.com/x"}').suggestions[0].role is Role.OTHER


def test_unknown_extra_keys_are_ignored() -> None:
    body = b'{"Protocol":"Ews","Url":"https://mail.contoso.com/EWS/Exchange.asmx","RedirectCount":1,"X":[{}]}'
    assert len(adv2.parse(body).suggestions) == 1


def test_a_url_next_to_an_error_code_is_still_a_suggestion() -> None:
    parsed = adv2.parse(b'{"ErrorCode":"X","Url":"https://evil.example.net/"}')
    assert not parsed.error_answer
    assert parsed.suggestions[0].value == "https://evil.example.net/"


def test_key_case_variants_are_read_like_a_case_insensitive_client_would() -> None:
    assert adv2.parse(b'{"protocol":"Ews","url":"https://evil.example.net/"}').suggestions[0].value == (
        "https://evil.example.net/")


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"Protocol":"Ews"}',
        b"[]",
        b'"https://mail.contoso.com/"',
        b'{"Protocol":"Ews","Url":null,"ErrorCode":null}',
        b'{"Protocol":"Ews","Url":443}',
        b'{"Protocol":"Ews","Url":["https://a/"]}',
        b'{"ErrorCode":500}',
        b'{"ErrorCode":"X","ErrorMessage":{"a":1}}',
        b'{"Protocol":"Ews","Url":"https://a/","Url":"https://b/"}',
        b'{"Protocol":"Ews","Url":"https://a/","URL":"https://b/"}',
    ],
)
def test_documents_that_are_not_v2_answers_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        adv2.parse(body)


@pytest.mark.parametrize("name", VIOLATING)
def test_rewrite_without_the_url_leaves_nothing_safe(name: str) -> None:
    body = _read(name)
    parsed = adv2.parse(body)
    assert adv2.rewrite(body, parsed, parsed.suggestions) is None


def test_rewrite_dropping_nothing_returns_the_body_unchanged() -> None:
    body = _read("adv2__benign_ews_own_domain.json")
    assert adv2.rewrite(body, adv2.parse(body), []) is body


def test_block_is_a_404_v2_error_that_reparses_as_an_error_answer() -> None:
    reply = adv2.block()
    assert reply.status == 404
    assert reply.content_type.startswith("application/json")
    parsed = adv2.parse(reply.body)
    assert parsed.error_answer
    assert parsed.suggestions == ()
    assert sniff_body(reply.body) == "adv2"


def test_format_object_names_the_module_functions() -> None:
    assert adv2.FORMAT.name == "adv2"
    assert adv2.FORMAT.parse is adv2.parse
    assert adv2.FORMAT.sensitive_headers == ()


def test_a_nesting_bomb_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        adv2.parse(b'{"Protocol":"Ews","Url":"https://a/","X":' + b"[" * 100_000)


def test_an_oversized_body_is_refused() -> None:
    body = b'{"Protocol":"Ews","Url":"https://a/","X":"' + b"a" * MAX_JSON_BYTES + b'"}'
    with pytest.raises(BodyTooLarge):
        adv2.parse(body)


@settings(max_examples=examples(200), deadline=None)
@given(mutated(fixture_bodies("adv2")))
def test_mutated_fixtures_raise_only_untrusted_input_errors(body: bytes) -> None:
    try:
        parsed = adv2.parse(body)
    except UntrustedInputError:
        return
    assert all(s.kind is ValueKind.URL for s in parsed.suggestions)
