"""DNS SRV answers in DoH JSON: strict RDATA, roles from the service label, REFUSED as the block."""

from __future__ import annotations

import json
from typing import Any

import pytest

from guard.errors import BodyTooLarge, MalformedDocument
from guard.formats import sniff_body, srv
from guard.formats._json import MAX_JSON_BYTES
from guard.model import Role, Suggestion, Transport, ValueKind
from tests.formats._json_fuzz import FIXTURES

EXPECTED = {
    "srv__autodiscover_foreign_target.json": (
        Suggestion("autodiscover.collector-mail.net.", ValueKind.HOST, Role.AUTODISCOVER, "Answer[0].data",
                   443, Transport.TLS, ("Answer", 0)),),
    "srv__benign_imaps_own_domain.json": (
        Suggestion("imap.contoso.com.", ValueKind.HOST, Role.IMAP, "Answer[0].data", 993, Transport.TLS,
                   ("Answer", 0)),),
    "srv__seed_example_com_imaps.json": (
        Suggestion("imapgms.jnet.sei.co.jp.", ValueKind.HOST, Role.IMAP, "Answer[0].data", 993, Transport.TLS,
                   ("Answer", 0)),),
    "srv__submission_not_offered.json": (),
}


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _doh(*answers: Any, status: int = 0, **extra: Any) -> bytes:
    doc = {"Status": status, "TC": False, "RD": True, "RA": True, "AD": False, "CD": False,
           "Question": [{"name": "_imaps._tcp.contoso.com.", "type": 33}], "Answer": list(answers), **extra}
    return json.dumps(doc).encode()


def _rr(data: str, name: str = "_imaps._tcp.contoso.com.", rrtype: int = 33) -> dict[str, Any]:
    return {"name": name, "type": rrtype, "TTL": 300, "data": data}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_yields_its_srv_targets(name: str) -> None:
    parsed = srv.parse(_read(name))
    assert parsed.format == "srv"
    assert parsed.suggestions == EXPECTED[name]
    assert not parsed.error_answer


@pytest.mark.parametrize(
    ("owner", "role", "transport"),
    [
        ("_imaps._tcp.contoso.com.", Role.IMAP, Transport.TLS),
        ("_imap._tcp.contoso.com", Role.IMAP, Transport.STARTTLS),
        ("_pop3s._tcp.contoso.com.", Role.POP3, Transport.TLS),
        ("_pop3._tcp.contoso.com.", Role.POP3, Transport.STARTTLS),
        ("_submissions._tcp.contoso.com.", Role.SMTP, Transport.TLS),
        ("_submission._tcp.contoso.com.", Role.SMTP, Transport.STARTTLS),
        ("_autodiscover._tcp.contoso.com.", Role.AUTODISCOVER, Transport.TLS),
        ("_caldavs._tcp.contoso.com.", Role.DAV, Transport.TLS),
        ("_carddavs._tcp.contoso.com.", Role.DAV, Transport.TLS),
        ("_caldav._tcp.contoso.com.", Role.DAV, Transport.PLAIN),
        ("_IMAPS._TCP.Contoso.COM.", Role.IMAP, Transport.TLS),
        ("_xmpp-client._tcp.contoso.com.", Role.OTHER, Transport.UNKNOWN),
        ("contoso.com.", Role.OTHER, Transport.UNKNOWN),
    ],
)
def test_owner_service_label_decides_role_and_transport(owner: str, role: Role, transport: Transport) -> None:
    found = srv.srv_suggestion(owner, "10 5 993 mail.contoso.com.", "rr")
    assert found == Suggestion("mail.contoso.com.", ValueKind.HOST, role, "rr", 993, transport)


def test_srv_suggestion_keeps_the_target_as_written_and_carries_the_locator() -> None:
    found = srv.srv_suggestion("_imaps._tcp.contoso.com", "0\t0  993   IMAP.Contoso.COM", "f", ("Answer", 3))
    assert found is not None
    assert (found.value, found.locator) == ("IMAP.Contoso.COM", ("Answer", 3))


def test_a_root_target_means_not_offered_and_is_no_suggestion() -> None:
    assert srv.srv_suggestion("_submission._tcp.contoso.com.", "0 0 0 .", "f") is None


@pytest.mark.parametrize(
    "data",
    [
        "",
        "0 0 993",
        "0 0 993 imap.contoso.com. extra",
        "0 0 65536 imap.contoso.com.",
        "-1 0 993 imap.contoso.com.",
        "+1 0 993 imap.contoso.com.",
        "1_0 0 993 imap.contoso.com.",
        "0 0 ٩٩٣ imap.contoso.com.",  # Arabic-Indic digits: int() would accept them
        "0 0 0x3e1 imap.contoso.com.",
        "0 0 993 imap..contoso.com.",
        "0 0 993 ..",
        f"0 0 993 {'a' * 64}.contoso.com.",
        f"0 0 993 {'a.' * 127}com.",
    ],
)
def test_srv_data_is_parsed_strictly(data: str) -> None:
    with pytest.raises(MalformedDocument):
        srv.srv_suggestion("_imaps._tcp.contoso.com.", data, "Answer[0].data")


def test_non_srv_answers_are_type_checked_and_ignored() -> None:
    cname = _rr("_imaps._tcp.hoster.net.", rrtype=5)
    parsed = srv.parse(_doh(cname, _rr("0 1 993 imap.hoster.net.", name="_imaps._tcp.hoster.net.")))
    assert [(s.value, s.field) for s in parsed.suggestions] == [("imap.hoster.net.", "Answer[1].data")]
    with pytest.raises(MalformedDocument, match=r"Answer\[0\]\.data"):
        srv.parse(_doh({**cname, "data": 5}))


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b'{"Status":"0"}',
        b'{"Status":0.0}',
        b'{"Status":true}',
        _doh(TC="false"),
        _doh(Question={"name": "x", "type": 33}),
        _doh(Question=[{"name": "x", "type": "SRV"}]),
        _doh(Answer={"name": "x"}),
        _doh({**_rr("0 1 993 imap.contoso.com."), "TTL": "300"}),
        _doh({"name": "_imaps._tcp.contoso.com.", "type": 33}),
        _doh({"type": 33, "data": "0 1 993 imap.contoso.com."}),
        _doh({"name": "_imaps._tcp.contoso.com.", "type": 33, "data": "0 1 993"}),
        _doh(["_imaps._tcp.contoso.com.", 33, "0 1 993 imap.contoso.com."]),
    ],
)
def test_documents_with_wrong_shapes_or_types_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        srv.parse(body)


def test_a_failed_lookup_is_an_error_answer() -> None:
    parsed = srv.parse(_doh(status=3, Answer=None))
    assert parsed.error_answer
    assert parsed.suggestions == ()


def test_rewrite_drops_only_the_offending_answer_entries() -> None:
    cname = _rr("_imaps._tcp.contoso.com.", name="imaps.contoso.com.", rrtype=5)
    body = _doh(cname, _rr("0 1 993 imap.collector-mail.net."), _rr("10 1 993 imap.contoso.com."))
    parsed = srv.parse(body)
    bad = [s for s in parsed.suggestions if "collector-mail.net" in s.value]
    out = srv.rewrite(body, parsed, bad)
    assert out is not None
    assert b"collector-mail.net" not in out
    assert [s.value for s in srv.parse(out).suggestions] == ["imap.contoso.com."]
    expected = json.loads(body)
    del expected["Answer"][1]
    assert json.loads(out) == expected


@pytest.mark.parametrize("name", ["srv__autodiscover_foreign_target.json",
                                  "srv__seed_example_com_imaps.json"])
def test_rewrite_of_a_violating_fixture_leaves_nothing_safe(name: str) -> None:
    body = _read(name)
    parsed = srv.parse(body)
    assert srv.rewrite(body, parsed, parsed.suggestions) is None


def test_a_not_offered_record_is_no_safe_remainder() -> None:
    body = _doh(_rr("0 0 0 ."), _rr("0 1 993 imap.collector-mail.net."))
    parsed = srv.parse(body)
    assert srv.rewrite(body, parsed, parsed.suggestions) is None


def test_rewrite_dropping_nothing_returns_the_body_unchanged() -> None:
    body = _read("srv__benign_imaps_own_domain.json")
    assert srv.rewrite(body, srv.parse(body), []) is body


def test_block_is_a_refused_doh_answer_that_reparses_as_an_error() -> None:
    reply = srv.block()
    assert (reply.status, reply.content_type) == (200, "application/dns-json")
    parsed = srv.parse(reply.body)
    assert parsed.error_answer
    assert parsed.suggestions == ()
    assert json.loads(reply.body)["Status"] == 5
    assert sniff_body(reply.body) == "srv"


def test_a_nesting_bomb_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        srv.parse(b'{"Status":0,"Answer":' + b"[" * 100_000)


def test_an_oversized_body_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        srv.parse(_doh(Comment="x" * MAX_JSON_BYTES))


# --- TXT mailconf= records -------------------------------------------------------------------

OWN_MAILCONF = "https://autoconfig.contoso.com/mail/config-v1.1.xml"
FOREIGN_MAILCONF = "https://collector-mail.net/mail/config-v1.1.xml"


def _txt_answer(*texts: str) -> bytes:
    answers = [{"name": "contoso.com.", "type": 16, "TTL": 300, "data": text} for text in texts]
    return json.dumps({"Status": 0, "Question": [{"name": "contoso.com.", "type": 16}], "Answer": answers}).encode()


@pytest.mark.parametrize("data", [
    f"mailconf={OWN_MAILCONF}",  # Google: the text as it is
    f'"mailconf={OWN_MAILCONF}"',  # Cloudflare: one quoted character-string
    '"mailconf=https://autoconfig.contoso.com" "/mail/config-v1.1.xml"',  # split strings are joined
    f'"MailConf={OWN_MAILCONF}"',  # the prefix is case-insensitive, as the DNS listener reads it
])
def test_a_mailconf_txt_record_is_an_autoconfig_url_suggestion(data: str) -> None:
    (found,) = srv.parse(_txt_answer(data)).suggestions
    assert (found.value, found.kind, found.role, found.locator) == (
        OWN_MAILCONF, ValueKind.URL, Role.AUTODISCOVER, ("Answer", 0))


def test_other_txt_records_are_no_suggestion() -> None:
    assert srv.parse(_txt_answer('"v=spf1 -all"', "google-site-verification=abc")).suggestions == ()


@pytest.mark.parametrize("data", ['"mailconf=https://a.contoso.com', '"a" junk', '"x\\"'])
def test_a_txt_record_with_broken_quoting_is_malformed(data: str) -> None:
    with pytest.raises(MalformedDocument):
        srv.parse(_txt_answer(data))


def test_rewrite_drops_a_mailconf_record_and_keeps_the_other_txt_records() -> None:
    body = _txt_answer('"v=spf1 -all"', f'"mailconf={FOREIGN_MAILCONF}"', f'"mailconf={OWN_MAILCONF}"')
    parsed = srv.parse(body)
    foreign = [s for s in parsed.suggestions if s.value == FOREIGN_MAILCONF]
    rewritten = srv.rewrite(body, parsed, foreign)
    assert rewritten is not None
    assert [a["data"] for a in json.loads(rewritten)["Answer"]] == ['"v=spf1 -all"', f'"mailconf={OWN_MAILCONF}"']


def test_dropping_the_only_mailconf_record_still_leaves_the_spf_record() -> None:
    body = _txt_answer('"v=spf1 -all"', f'"mailconf={FOREIGN_MAILCONF}"')
    parsed = srv.parse(body)
    rewritten = srv.rewrite(body, parsed, parsed.suggestions)
    assert rewritten is not None
    assert [a["data"] for a in json.loads(rewritten)["Answer"]] == ['"v=spf1 -all"']
