"""Each rule alone, on hand-made suggestions."""

from __future__ import annotations

from guard import rules
from guard.model import Role, Suggestion, Transport, ValueKind
from guard.names import User, target_of
from guard.ownership import Trust
from tests.conftest import ROOT

ALICE = User.from_address("alice@contoso.com")


def _subject(value: str, kind: ValueKind = ValueKind.HOST, user: User = ALICE,
             transport: Transport = Transport.UNKNOWN) -> rules.Subject:
    suggestion = Suggestion(value, kind, Role.IMAP, "x", transport=transport)
    return rules.Subject(suggestion, target_of(suggestion, user), user)


def test_reserved_user_domain_fires_for_the_incident_account() -> None:
    finding = rules.reserved_user_domain(User.from_address("email@example.com"))
    assert finding is not None
    assert "RFC 2606" in finding.message
    assert rules.reserved_user_domain(ALICE) is None


def test_reserved_domain_names_its_source() -> None:
    finding = rules.reserved_domain(_subject("mail.contoso.local"))
    assert finding is not None
    assert "RFC 6762" in finding.message


def test_ip_literal_reports_the_range_and_the_raw_form() -> None:
    finding = rules.ip_literal(_subject("0x7f.0.0.1"))
    assert finding is not None
    assert "127.0.0.0/8" in finding.message
    assert "0x7f.0.0.1" in finding.message


def test_global_ip_literals_are_flagged_too() -> None:
    finding = rules.ip_literal(_subject("8.8.8.8"))
    assert finding is not None
    assert "no legitimate" in finding.message


def test_foreign_host_lists_the_evidence_tried() -> None:
    finding = rules.foreign_host(_subject("imap.collector-mail.net"), Trust())
    assert finding is not None
    assert any("collector-mail.net" in e for e in finding.evidence)
    assert rules.foreign_host(_subject("imap.contoso.com"), Trust()) is None


def test_foreign_host_mentions_userinfo_confusion() -> None:
    finding = rules.foreign_host(_subject("https://mail.contoso.com@collector-mail.net/", ValueKind.URL), Trust())
    assert finding is not None
    assert "user@" in finding.message


def test_idn_lookalike_fires_on_homoglyphs_of_the_users_domain_only() -> None:
    assert rules.idn_lookalike(_subject("imap.xn--cntoso-i0e.com")) is not None
    assert rules.idn_lookalike(_subject("imap.bücher.de")) is None
    assert rules.idn_lookalike(_subject("imap.contoso.com")) is None


def test_plaintext_fires_on_plain_transport_and_http_urls() -> None:
    assert rules.plaintext(_subject("imap.contoso.com", transport=Transport.PLAIN)) is not None
    assert rules.plaintext(_subject("http://mail.contoso.com/EWS", ValueKind.URL)) is not None
    assert rules.plaintext(_subject("imap.contoso.com", transport=Transport.STARTTLS)) is None


def test_the_rules_doc_lists_every_catalogue_rule_with_its_default_action() -> None:
    rows = {}
    for line in (ROOT / "docs" / "rules.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3:
            rows[cells[0].strip("`")] = cells[2]
    assert sorted(rows) == sorted([*rules.RULES, rules.INTERNAL.id])
    for rule in rules.RULES.values():
        assert rows[rule.id].startswith(rule.default.value), rule.id
    assert rows[rules.INTERNAL.id] == "on_error"
