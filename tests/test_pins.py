"""The pin store and the config-changed step: first sight, changes, pinned domains, restarts,
two writers, and a broken store that must never stop judging. Real SQLite files throughout."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from guard.cli import main
from guard.errors import PolicyError
from guard.model import Action, Decision, Role, Suggestion, Transport, ValueKind
from guard.names import User
from guard.pins import Pin, PinKeeper, PinStore, PinStoreError, pin_set
from guard.policy import Policy, load_policy

ALICE = User.from_address("alice@contoso.com")
IMAP = Suggestion("imap.contoso.com", ValueKind.HOST, Role.IMAP, "incomingServer.hostname", 993, Transport.TLS)
SMTP = Suggestion("smtp.contoso.com", ValueKind.HOST, Role.SMTP, "outgoingServer.hostname", 465, Transport.TLS)
EVIL = Suggestion("imap.contoso-mail.net", ValueKind.HOST, Role.IMAP, "incomingServer.hostname", 993, Transport.TLS)


def policy_with_pinning(tmp_path: Path, extra: str = "", pinned: str = "[]") -> Policy:
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\npinning:\n  enabled: true\n  store: pins.sqlite\n  pinned: {pinned}\n{extra}")
    return load_policy(path)


def answer(*suggestions: Suggestion, action: Action = Action.ALLOW) -> Decision:
    return Decision("autoconfig", action, suggestions=suggestions)


def test_the_first_answer_is_trusted_and_recorded_without_a_finding(tmp_path: Path) -> None:
    policy = policy_with_pinning(tmp_path)
    decision = PinKeeper().check(answer(IMAP, SMTP), ALICE, policy)
    assert decision.action is Action.ALLOW and not decision.findings
    (record,) = PinStore(tmp_path / "pins.sqlite").records()
    assert (record.domain, record.format, record.changes) == ("contoso.com", "autoconfig", 0)
    assert record.pins == {Pin("imap.contoso.com", 993, "imap", "tls"), Pin("smtp.contoso.com", 465, "smtp", "tls")}


def test_the_same_answer_again_raises_nothing(tmp_path: Path) -> None:
    policy, keeper = policy_with_pinning(tmp_path), PinKeeper()
    keeper.check(answer(IMAP, SMTP), ALICE, policy)
    assert keeper.check(answer(SMTP, IMAP, IMAP), ALICE, policy).findings == ()


def test_a_changed_answer_warns_and_replaces_the_pin(tmp_path: Path) -> None:
    policy, keeper = policy_with_pinning(tmp_path), PinKeeper()
    keeper.check(answer(IMAP, SMTP), ALICE, policy)
    decision = keeper.check(answer(EVIL, SMTP), ALICE, policy)
    assert decision.action is Action.WARN and decision.rules == ("config-changed",)
    assert decision.notes == ("config-changed: added: imap.contoso-mail.net:993 imap tls; "
                              "removed: imap.contoso.com:993 imap tls",)
    assert keeper.check(answer(EVIL, SMTP), ALICE, policy).findings == ()  # the warned set is the new pin
    assert PinStore(tmp_path / "pins.sqlite").records()[0].changes == 1


def test_a_changed_answer_for_a_pinned_domain_is_blocked_and_the_pin_kept(tmp_path: Path) -> None:
    policy, keeper = policy_with_pinning(tmp_path, pinned="[contoso.com]"), PinKeeper()
    keeper.check(answer(IMAP, SMTP), ALICE, policy)
    for _ in range(2):  # blocked every time: the old pin stays
        decision = keeper.check(answer(EVIL, SMTP), ALICE, policy)
        assert decision.action is Action.BLOCK and decision.reply is not None and decision.reply.status == 404
    assert keeper.check(answer(IMAP, SMTP), ALICE, policy).action is Action.ALLOW


def test_the_rule_action_can_turn_config_changed_into_a_block_or_off(tmp_path: Path) -> None:
    for action, expected in (("block", Action.BLOCK), ("'off'", Action.ALLOW)):
        folder = tmp_path / action.strip("'")
        folder.mkdir()
        policy, keeper = policy_with_pinning(folder, f"rules:\n  config-changed: {action}\n"), PinKeeper()
        keeper.check(answer(IMAP), ALICE, policy)
        assert keeper.check(answer(EVIL), ALICE, policy).action is expected


def test_config_changed_cannot_be_rewrite(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="config-changed cannot be 'rewrite'"):
        policy_with_pinning(tmp_path, "rules:\n  config-changed: rewrite\n")


def test_rewritten_blocked_and_empty_answers_are_neither_compared_nor_recorded(tmp_path: Path) -> None:
    policy, keeper = policy_with_pinning(tmp_path), PinKeeper()
    for decision in (answer(IMAP, action=Action.REWRITE), answer(IMAP, action=Action.BLOCK), answer()):
        assert keeper.check(decision, ALICE, policy) == decision
    assert keeper.check(answer(IMAP), None, policy).findings == ()
    assert PinStore(tmp_path / "pins.sqlite").records() == []


def test_pinning_is_off_unless_the_policy_enables_it(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"version: 1\npinning:\n  store: {tmp_path / 'never.sqlite'}\n")
    PinKeeper().check(answer(IMAP), ALICE, load_policy(path))
    assert not (tmp_path / "never.sqlite").exists()


def test_pins_hold_no_local_part_even_when_the_answer_expands_one(tmp_path: Path) -> None:
    templated = Suggestion("https://%EMAILLOCALPART%.mail.contoso.com:8443/ews", ValueKind.URL, Role.EWS, "url")
    in_path = Suggestion("https://mail.contoso.com:8443/ews/%EMAILADDRESS%", ValueKind.URL, Role.EWS, "url")
    assert pin_set([templated, in_path], "contoso.com") == {Pin("mail.contoso.com", 8443, "ews", "tls")}
    PinKeeper().check(answer(templated, IMAP), ALICE, policy_with_pinning(tmp_path))
    raw = (tmp_path / "pins.sqlite").read_bytes() + (tmp_path / "pins.sqlite-wal").read_bytes()
    assert b"alice" not in raw and b"contoso.com" in raw


def test_pins_survive_a_restart(tmp_path: Path) -> None:
    policy = policy_with_pinning(tmp_path)
    first = PinKeeper()
    first.check(answer(IMAP, SMTP), ALICE, policy)
    first.close()
    again = PinKeeper()  # a new process would start exactly like this
    assert again.check(answer(EVIL, SMTP), ALICE, policy).rules == ("config-changed",)


def _writer(store: str, worker: int, rounds: int) -> None:
    target = PinStore(store)
    for n in range(rounds):
        pins = frozenset({Pin(f"imap{worker}-{n}.contoso.com", 993, "imap", "tls")})
        target.remember(f"d{n % 5}.example", "autoconfig", pins, replace_changed=True)
        target.remember(f"w{worker}-{n}.example", "pox", pins, replace_changed=True)
    target.close()


def test_two_processes_writing_the_same_store_lose_nothing(tmp_path: Path) -> None:
    store, rounds = str(tmp_path / "pins.sqlite"), 150
    PinStore(store).records()  # create the schema once, as the proxy does at its first answer
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(store, w, rounds)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    records = PinStore(store).records()
    assert len([r for r in records if r.format == "pox"]) == 2 * rounds
    shared = [r for r in records if r.format == "autoconfig"]
    assert len(shared) == 5
    # every write to a shared domain either created it or counted as a change: none was lost
    assert sum(r.changes for r in shared) == 2 * rounds - 5
    assert sqlite3.connect(store).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_corrupted_store_never_stops_judging_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "pins.sqlite").write_bytes(b"this is not a database" * 100)
    policy, keeper = policy_with_pinning(tmp_path), PinKeeper()
    for _ in range(2):
        decision = keeper.check(answer(IMAP), ALICE, policy)
        assert decision.action is Action.ALLOW and not decision.findings
        assert decision.notes[0].startswith("pinning unavailable, config-changed not evaluated:")
    assert len([r for r in caplog.records if "pinning unavailable" in r.getMessage()]) == 1  # warned once


def test_a_store_that_cannot_be_created_never_stops_judging(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the store's folder should be")  # unwritable even for root
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\npinning:\n  enabled: true\n  store: state/pins.sqlite\n")
    decision = PinKeeper().check(answer(IMAP), ALICE, load_policy(path))
    assert decision.action is Action.ALLOW and "pinning unavailable" in decision.notes[0]


def test_a_store_path_that_is_a_directory_never_stops_judging(tmp_path: Path) -> None:
    (tmp_path / "pins.sqlite").mkdir()  # unwritable even for root
    decision = PinKeeper().check(answer(IMAP), ALICE, policy_with_pinning(tmp_path))
    assert decision.action is Action.ALLOW and "pinning unavailable" in decision.notes[0]


def test_a_store_that_is_repaired_is_used_again(tmp_path: Path) -> None:
    broken = tmp_path / "pins.sqlite"
    broken.write_bytes(b"garbage" * 100)
    policy, keeper = policy_with_pinning(tmp_path), PinKeeper()
    assert keeper.check(answer(IMAP), ALICE, policy).notes
    broken.unlink()
    assert keeper.check(answer(IMAP), ALICE, policy).notes == ()
    assert keeper.check(answer(EVIL), ALICE, policy).rules == ("config-changed",)


def test_reading_a_missing_store_is_an_error_not_an_empty_store(tmp_path: Path) -> None:
    with pytest.raises(PinStoreError, match="no pin store"):
        PinStore(tmp_path / "absent.sqlite", create=False).records()
    assert not (tmp_path / "absent.sqlite").exists()


# --- CLI -----------------------------------------------------------------------------------------


def _seeded(tmp_path: Path) -> str:
    policy = policy_with_pinning(tmp_path)
    keeper = PinKeeper()
    keeper.check(answer(IMAP, SMTP), ALICE, policy)
    keeper.check(Decision("pox", Action.ALLOW, suggestions=(IMAP,)), ALICE, policy)
    keeper.check(answer(IMAP), User.from_address("bob@fabrikam.com"), policy)
    keeper.close()
    return str(tmp_path / "pins.sqlite")


def test_pins_list_prints_one_line_per_domain_and_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _seeded(tmp_path)
    assert main(["pins", "list", "--store", store]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [["contoso.com", "autoconfig", "2"], ["contoso.com", "pox", "1"],
                                                    ["fabrikam.com", "autoconfig", "1"]]


def test_pins_show_reads_the_store_named_by_the_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _seeded(tmp_path)
    assert main(["pins", "show", "CONTOSO.com.", "--policy", str(tmp_path / "policy.yaml")]) == 0
    out = capsys.readouterr().out
    assert "imap.contoso.com:993 imap tls" in out and "smtp.contoso.com:465 smtp tls" in out
    assert "fabrikam" not in out
    assert main(["pins", "show", "unknown.example", "--policy", str(tmp_path / "policy.yaml")]) == 1


def test_pins_forget_drops_a_domain_so_its_next_answer_is_trusted(tmp_path: Path) -> None:
    store = _seeded(tmp_path)
    assert main(["pins", "forget", "contoso.com", "--store", store]) == 0
    assert main(["pins", "forget", "contoso.com", "--store", store]) == 1
    assert PinKeeper().check(answer(EVIL), ALICE, policy_with_pinning(tmp_path)).findings == ()


def test_pins_export_is_json_without_any_address(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _seeded(tmp_path)
    assert main(["pins", "export", "--store", store]) == 0
    out = capsys.readouterr().out
    exported = json.loads(out)
    assert [(p["domain"], p["format"]) for p in exported["pins"]] == [
        ("contoso.com", "autoconfig"), ("contoso.com", "pox"), ("fabrikam.com", "autoconfig")]
    assert exported["pins"][0]["entries"][0] == {"host": "imap.contoso.com", "port": 993, "role": "imap",
                                                 "transport": "tls"}
    assert "alice" not in out and "bob" not in out


def test_pins_commands_exit_2_on_a_missing_or_broken_store(tmp_path: Path) -> None:
    assert main(["pins", "list", "--store", str(tmp_path / "absent.sqlite")]) == 2
    (tmp_path / "broken.sqlite").write_bytes(b"x" * 4096)
    assert main(["pins", "export", "--store", str(tmp_path / "broken.sqlite")]) == 2
    assert main(["pins", "show", "not a domain!", "--store", str(tmp_path / "broken.sqlite")]) == 2
