"""The engine on every fixture: the verdicts INDEX.md promises, and how findings become actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard import engine
from guard.engine import judge
from guard.formats import by_name
from guard.model import Action, Parsed, Suggestion
from guard.names import Target, User, target_of
from guard.policy import Policy, load_policy
from tests.conftest import FIXTURES, IndexedFixture, indexed_fixtures

CASES = indexed_fixtures()


def test_the_index_lists_every_fixture_file() -> None:
    listed = {case.file for case in CASES}
    on_disk = {p.name for p in FIXTURES.iterdir() if p.suffix in (".xml", ".json")}
    assert listed == on_disk
    assert len(CASES) == 92


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_fixture_is_judged_as_the_index_says(case: IndexedFixture, default_policy: Policy) -> None:
    decision = judge(case.path.read_bytes(), User.from_address(case.user), default_policy)
    assert decision.format == case.format
    assert decision.verdict == case.verdict, decision.findings
    assert set(case.rules) <= set(decision.rules), decision.findings


@pytest.mark.parametrize("case", [c for c in CASES if c.verdict == "violation"], ids=lambda c: c.file)
def test_enforcement_output_keeps_no_offending_host(case: IndexedFixture, default_policy: Policy) -> None:
    """A rewrite re-parses without the offending hosts and with the benign ones; a block carries none."""
    user = User.from_address(case.user)
    decision = judge(case.path.read_bytes(), user, default_policy)
    fmt = by_name(decision.format)
    offending = {f.host for f in decision.findings if f.suggestion is not None}
    if decision.action is Action.REWRITE:
        assert decision.body is not None
        again = fmt.parse(decision.body)
        kept = {target_of(s, user).host for s in again.suggestions}
        assert not kept & offending
        assert kept, "a rewrite must leave something usable"
        assert judge(decision.body, user, default_policy, fmt=fmt).action in (Action.ALLOW, Action.WARN)
    else:
        assert decision.action is Action.BLOCK
        assert decision.reply is not None
        for host in offending:
            assert host.encode() not in decision.reply.body


def test_seed_incident_is_blocked_in_every_format(default_policy: Policy) -> None:
    seeds = [c for c in CASES if "seed_example_com" in c.file]
    assert {c.format for c in seeds} == {"pox", "mobilesync", "soap", "adv2", "autodetect", "autoconfig", "srv",
                                         "mobileconfig"}
    for case in seeds:
        decision = judge(case.path.read_bytes(), User.from_address(case.user), default_policy)
        assert decision.action is Action.BLOCK
        assert decision.rules[0] == "reserved-user-domain"


def test_microsoft_365_tenants_are_foreign_without_the_allowlist_entry(tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text("version: 1\n")
    policy = load_policy(bare)
    body = (FIXTURES / "pox__benign_m365.xml").read_bytes()
    decision = judge(body, User.from_address("carol@fabrikam.com"), policy)
    assert "foreign-host" in decision.rules


def test_rules_switched_off_produce_no_findings(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules:\n  foreign-host: 'off'\n")
    body = (FIXTURES / "pox__redirect_addr_foreign.xml").read_bytes()
    decision = judge(body, User.from_address("alice@contoso.com"), load_policy(path))
    assert decision.verdict == "allow"
    assert decision.action is Action.ALLOW


def test_warn_rules_are_reported_without_a_violation(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nrules:\n  ip-literal: warn\n")
    body = (FIXTURES / "pox__ip_literal_private.xml").read_bytes()
    decision = judge(body, User.from_address("alice@contoso.com"), load_policy(path))
    assert decision.action is Action.WARN
    assert decision.verdict == "allow"
    assert "ip-literal" in decision.rules


def test_rewrite_falls_back_to_block_when_a_redirect_is_the_offender(default_policy: Policy) -> None:
    body = (FIXTURES / "pox__redirect_url_foreign.xml").read_bytes()
    decision = judge(body, User.from_address("alice@contoso.com"), default_policy)
    assert decision.action is Action.BLOCK
    assert decision.notes


def test_unknown_documents_are_malformed_and_blocked(default_policy: Policy) -> None:
    decision = judge(b"hello", User.from_address("alice@contoso.com"), default_policy)
    assert decision.format == "unknown"
    assert decision.rules == ("malformed",)
    assert decision.action is Action.BLOCK


def test_internal_errors_fail_closed_by_default(default_policy: Policy) -> None:
    broken = by_name("pox").__class__(name="pox", parse=_explode, rewrite=lambda *a: None, block=by_name("pox").block)
    decision = judge(b"<x/>", User.from_address("alice@contoso.com"), default_policy, fmt=broken)
    assert decision.action is Action.BLOCK
    assert decision.rules == ("internal-error",)


def test_internal_errors_pass_when_the_policy_says_on_error_allow(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\non_error: allow\n")
    broken = by_name("pox").__class__(name="pox", parse=_explode, rewrite=lambda *a: None, block=by_name("pox").block)
    decision = judge(b"<x/>", User.from_address("alice@contoso.com"), load_policy(path), fmt=broken)
    assert decision.action is Action.ALLOW
    assert decision.rules == ("internal-error",)


def _explode(body: bytes) -> Parsed:
    raise RuntimeError("parser bug")


def test_answers_judged_without_a_known_user_still_apply_the_hard_rules(default_policy: Policy) -> None:
    body = (FIXTURES / "autodetect__ip_literal_private.json").read_bytes()
    decision = judge(body, None, default_policy)
    assert "ip-literal" in decision.rules
    assert "foreign-host" not in decision.rules


def test_json_claiming_two_formats_is_malformed_whatever_the_url(default_policy: Policy) -> None:
    body = (b'{"Url":"https://autodiscover.contoso.com/x","protocols":[{"protocol":"imap",'
            b'"hostname":"imap.evil.net","port":993}]}')
    for url in ("https://x.autodetect.outlook.cloud.microsoft/autodetect/detect", ""):
        decision = judge(body, User.from_address("alice@contoso.com"), default_policy, url=url)
        assert decision.rules == ("malformed",)
        assert decision.action is Action.BLOCK


def _pox(*servers: str) -> bytes:
    protocols = "".join(f"<Protocol><Type>IMAP</Type><Server>{host}</Server><SSL>on</SSL></Protocol>"
                        for host in servers)
    return ('<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">'
            '<Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">'
            f"<Account><AccountType>email</AccountType><Action>settings</Action>{protocols}</Account>"
            "</Response></Autodiscover>").encode()


def test_every_occurrence_of_an_offending_host_gets_its_own_finding(default_policy: Policy) -> None:
    body = _pox("imap.contoso.com", "imap.evil.net", "imap.contoso.com", "imap.evil.net")
    decision = judge(body, User.from_address("alice@contoso.com"), default_policy)
    fields = [f.field for f in decision.findings if f.rule == "foreign-host"]
    assert fields == ["Account/Protocol[2]/Server", "Account/Protocol[4]/Server"]
    assert decision.action is Action.REWRITE
    assert decision.body is not None and b"evil" not in decision.body
    assert decision.body.count(b"imap.contoso.com") == 2


def test_a_clean_value_repeated_in_one_answer_is_judged_once(default_policy: Policy,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    resolved: list[str] = []

    def counting_target_of(suggestion: Suggestion, user: User) -> Target:
        resolved.append(suggestion.value)
        return target_of(suggestion, user)

    monkeypatch.setattr(engine, "target_of", counting_target_of)
    body = _pox("imap.contoso.com", "imap.evil.net", "imap.contoso.com", "imap.evil.net", "imap.contoso.com")
    decision = judge(body, User.from_address("alice@contoso.com"), default_policy)
    assert resolved == ["imap.contoso.com", "imap.evil.net", "imap.evil.net"]
    assert len(decision.findings) == 2


# --- the time budget (limits.judge_ms) --------------------------------------------------------------


def test_an_answer_over_its_time_budget_is_blocked_as_malformed_too_costly(default_policy: Policy) -> None:
    from bench.costly import ALICE, foreign_pox
    from guard.budget import Budget

    decision = judge(foreign_pox(2000), ALICE, default_policy, budget=Budget(0))
    assert decision.action is Action.BLOCK and decision.rules == ("malformed",)
    assert "too costly to judge: over the 0 ms budget (limits.judge_ms)" in decision.findings[0].message
    assert decision.reply is not None  # the format's own block answer


def test_within_its_budget_the_same_answer_is_judged_in_full(default_policy: Policy) -> None:
    from bench.costly import ALICE, foreign_pox
    from guard.budget import Budget

    decision = judge(foreign_pox(200), ALICE, default_policy, budget=Budget(60))
    assert set(decision.rules) == {"foreign-host"}  # judged in full: every server is foreign, none is left
    assert decision.notes == ("no safe remainder after removing the offending suggestions",)


def test_the_budget_reads_the_clock_once_per_batch_not_per_item(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from guard import budget

    reads: list[float] = []

    def clock() -> float:
        reads.append(0.0)
        return 0.0

    monkeypatch.setattr(time, "monotonic", clock)
    watched = budget.Budget(1)
    for _ in range(budget.EVERY * 3):
        watched.check()
    assert len(reads) == 1 + 3  # the deadline, then one per batch


def test_the_engine_finds_dropped_suggestions_by_hash_not_by_scanning(default_policy: Policy) -> None:
    """`s in parsed.suggestions` on a tuple made the rewrite quadratic; a set keeps it linear."""
    from bench.costly import ALICE, foreign_pox
    from guard.budget import UNLIMITED

    calls = []

    class Counted(tuple):  # type: ignore[type-arg]
        def __contains__(self, item: object) -> bool:
            calls.append(item)
            return super().__contains__(item)

    fmt = by_name("pox")
    body = foreign_pox(50)
    parsed = fmt.parse(body)
    counted = Parsed(parsed.format, Counted(parsed.suggestions))
    engine._decide("pox", engine._findings(counted, (), ALICE, default_policy, None, UNLIMITED)[0],
                   counted.suggestions, default_policy, fmt, body, counted)
    assert calls == []
