"""`autodiscover-guard report`: counting real decision records from plain, rotated and gzipped logs,
`--since`, and following a log across rotation (docs/report.md).

The logs are written by the guard's own `DecisionLog` from decisions the engine made on the
fixtures, so the report reads exactly the schema the proxy writes.
"""

from __future__ import annotations

import datetime
import gzip
import io
import json
from pathlib import Path

import pytest

from guard import report
from guard.cli import main
from guard.engine import judge
from guard.log import DecisionLog, FlowFacts, decision_record
from guard.model import Action
from guard.names import User
from guard.policy import Policy
from tests.conftest import FIXTURES

SEED = FIXTURES / "autodetect__seed_example_com.json"
BENIGN = FIXTURES / "autodetect__benign_own_domain.json"
FOREIGN_XML = FIXTURES / "autoconfig__seed_example_com.xml"


def decision_line(policy: Policy, answer: Path, address: str, ts: str, *, mode: str = "enforce") -> str:
    """One line as the proxy writes it, with its `ts` set to a fixed time."""
    user = User.from_address(address)
    decision = judge(answer.read_bytes(), user, policy)
    applied = decision.action if mode == "enforce" else Action.ALLOW
    record = decision_record(FlowFacts("f", "127.0.0.1", "GET", f"https://autoconfig.{user.domain}/x?emailaddress="
                                       f"{address}"), decision, mode=mode, applied=applied, user=user,
                             user_source="x-email", revision="r1", hash_local=True, latency_us=5)
    stream = io.StringIO()
    DecisionLog(stream=stream).write("decision", record)
    obj = json.loads(stream.getvalue())
    obj["ts"] = ts
    return json.dumps(obj)


@pytest.fixture
def logs(tmp_path: Path, default_policy: Policy) -> list[Path]:
    """decisions.jsonl.2.gz (oldest), .1, and the live file: three blocks, one audit block, one allow."""
    older = [decision_line(default_policy, SEED, "email@example.com", "2026-01-15T08:05:00Z"),
             decision_line(default_policy, BENIGN, "bob@northwind-traders.co.uk", "2026-01-15T08:10:00Z")]
    rotated = [decision_line(default_policy, FOREIGN_XML, "email@example.com", "2026-01-15T09:00:00Z"),
               "{not json", ""]
    live = [decision_line(default_policy, SEED, "email@example.com", "2026-01-15T09:30:00Z", mode="audit"),
            decision_line(default_policy, SEED, "email@example.com", "2026-01-15T10:45:00Z"),
            json.dumps({"ts": "2026-01-15T10:46:00Z", "event": "policy_loaded", "revision": "r1"})]
    gz = tmp_path / "decisions.jsonl.2.gz"
    gz.write_bytes(gzip.compress(("\n".join(older) + "\n").encode()))
    (tmp_path / "decisions.jsonl.1").write_text("\n".join(rotated) + "\n")
    (tmp_path / "decisions.jsonl").write_text("\n".join(live) + "\n")
    return [gz, tmp_path / "decisions.jsonl.1", tmp_path / "decisions.jsonl"]


def test_report_counts_decisions_across_gzipped_rotated_and_live_logs(logs: list[Path]) -> None:
    summary = report.build(report.read_logs(logs)).as_dict()
    assert summary["decisions"] == 5
    assert summary["actions"] == {"block": 4, "allow": 1}
    assert summary["events"] == {"decision": 5, "policy_loaded": 1}
    assert summary["unreadable_lines"] == 1
    assert (summary["first"], summary["last"]) == ("2026-01-15T08:05:00Z", "2026-01-15T10:45:00Z")


def test_report_top_lists_name_rules_user_domains_and_suggested_hosts(logs: list[Path]) -> None:
    summary = report.build(report.read_logs(logs)).as_dict()
    assert summary["top_rules"][0] == {"name": "reserved-user-domain", "count": 4}
    assert summary["top_user_domains"] == [{"name": "example.com", "count": 4}]
    hosts = {h["name"] for h in summary["top_hosts"]}
    assert {"imapgms.jnet.sei.co.jp", "smtpgms.jnet.sei.co.jp"} <= hosts
    assert "northwind-traders.co.uk" not in json.dumps(summary["top_user_domains"])  # allowed: not listed


def test_report_lists_recent_blocks_newest_first_and_marks_what_audit_mode_let_through(logs: list[Path]) -> None:
    recent = report.build(report.read_logs(logs)).as_dict()["recent"]
    assert [r["ts"] for r in recent] == ["2026-01-15T10:45:00Z", "2026-01-15T09:30:00Z", "2026-01-15T09:00:00Z",
                                         "2026-01-15T08:05:00Z"]
    audit = recent[1]
    assert (audit["mode"], audit["would_action"], audit["action"]) == ("audit", "block", "allow")
    assert "reserved-user-domain" in audit["rules"]
    assert all("email@" not in r["url"] for r in recent)  # the log's redaction is kept


def test_report_counts_per_hour_by_judgement(logs: list[Path]) -> None:
    hours = report.build(report.read_logs(logs)).as_dict()["per_hour"]
    assert hours == [
        {"hour": "2026-01-15T08:00Z", "block": 1, "allow": 1},
        {"hour": "2026-01-15T09:00Z", "block": 2},
        {"hour": "2026-01-15T10:00Z", "block": 1},
    ]


@pytest.mark.parametrize(("since", "expected"), [
    ("2026-01-15T09:00:00Z", 3),
    ("2026-01-15T09:30", 2),  # no offset: UTC
    ("1h", 1),  # relative to 2026-01-15T11:00Z
    ("2h", 3),
    ("90m", 2),
])
def test_since_keeps_only_records_at_or_after_it(logs: list[Path], since: str, expected: int) -> None:
    now = datetime.datetime(2026, 1, 15, 11, 0, tzinfo=datetime.UTC)
    summary = report.build(report.read_logs(logs), since=report.parse_since(since, now))
    assert summary.decisions == expected


def test_since_that_is_neither_a_duration_nor_a_time_is_a_usage_error(
        logs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--since", "yesterday", str(logs[-1])]) == 2
    assert "--since 'yesterday'" in capsys.readouterr().err


def test_report_on_a_missing_log_exits_two_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "absent.jsonl")]) == 2
    assert "absent.jsonl" in capsys.readouterr().err


def test_report_json_is_one_object_with_the_documented_keys(logs: list[Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--json", *map(str, logs)]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"since", "first", "last", "decisions", "actions", "events", "unreadable_lines", "top_rules",
                        "top_user_domains", "top_hosts", "per_hour", "recent"}


def test_report_table_shows_the_recent_block_with_its_rules_and_hosts(
        logs: list[Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["report", *map(str, logs)]) == 0
    out = capsys.readouterr().out
    assert "5 decisions (1 allow, 4 block)" in out
    assert "Recent blocks and rewrites" in out and "reserved-user-domain" in out
    assert "imapgms.jnet.sei.co.jp" in out
    assert "(audit: allow)" in out
    assert "2026-01-15T09:00Z" in out  # per-hour table


# --- following -------------------------------------------------------------------------------------


def test_tail_returns_only_lines_appended_after_it_started(tmp_path: Path) -> None:
    log = tmp_path / "d.jsonl"
    log.write_text("old\n")
    tail = report.Tail(log)
    assert tail.poll() == []
    with log.open("a") as f:
        f.write("new\npart")
    assert tail.poll() == ["new"]  # a line without its newline waits
    with log.open("a") as f:
        f.write("ial\n")
    assert tail.poll() == ["partial"]
    tail.close()


def test_tail_follows_a_rotation_without_losing_the_lines_written_before_it(tmp_path: Path) -> None:
    log = tmp_path / "d.jsonl"
    log.write_text("")
    tail = report.Tail(log)
    with log.open("a") as f:
        f.write("a\n")
    log.rename(tmp_path / "d.jsonl.1")  # logrotate, create style: rename ...
    with (tmp_path / "d.jsonl.1").open("a") as f:  # ... the guard writes on until SIGHUP ...
        f.write("b\n")
    assert tail.poll() == ["a", "b"]  # the path is gone for now: keep reading the old file
    log.write_text("c\n")  # ... and the new file appears
    assert tail.poll() == ["c"]
    with log.open("a") as f:
        f.write("d\n")
    assert tail.poll() == ["d"]
    tail.close()


def test_tail_rereads_a_file_truncated_in_place(tmp_path: Path) -> None:
    log = tmp_path / "d.jsonl"
    log.write_text("a long first line\n")
    tail = report.Tail(log)
    log.write_text("x\n")  # copytruncate, then one new line
    assert tail.poll() == ["x"]
    tail.close()


def test_tail_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    log = tmp_path / "d.jsonl"
    tail = report.Tail(log)
    assert tail.poll() == []
    log.write_text("first\n")
    assert tail.poll() == ["first"]
    tail.close()


class _Stop(Exception):
    pass


def test_follow_yields_only_new_flagged_decisions_and_counts_them(tmp_path: Path, default_policy: Policy) -> None:
    log = tmp_path / "decisions.jsonl"
    log.write_text(decision_line(default_policy, SEED, "email@example.com", "2026-01-15T08:00:00Z") + "\n")
    summary = report.build(report.read_logs([log]))
    appended = [decision_line(default_policy, BENIGN, "bob@northwind-traders.co.uk", "2026-01-15T08:01:00Z"),
                decision_line(default_policy, SEED, "email@example.com", "2026-01-15T08:02:00Z")]

    def sleep(_seconds: float) -> None:  # the log grows between polls; the second pause ends the test
        if not appended:
            raise _Stop
        with log.open("a") as f:
            f.write("\n".join(appended) + "\n")
        appended.clear()

    seen = []
    with pytest.raises(_Stop):
        for record, entry in report.follow([log], summary, 0.0, sleep):
            seen.append((record["ts"], entry.would_action))
    assert seen == [("2026-01-15T08:02:00Z", "block")]
    assert (summary.decisions, summary.actions["block"], summary.actions["allow"]) == (3, 2, 1)


def test_hostile_text_from_a_log_is_shown_literally_not_as_markup(capsys: pytest.CaptureFixture[str],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    record = {"ts": "2026-01-15T08:00:00Z", "event": "decision", "mode": "enforce", "format": "pox",
              "user_domain": "contoso.com", "rules": ["malformed"], "action": "block", "would_action": "block",
              "findings": [{"rule": "malformed", "host": "[link=https://evil.example]x[/link] [/]", "field": "f"}]}
    summary = report.build([record])
    monkeypatch.setenv("COLUMNS", "200")
    console = Console(force_terminal=False, width=200)
    report.render(summary, console)
    console.print(report.entry_line(summary.recent[0]))
    out = capsys.readouterr().out
    assert out.count("[link=https://evil.example]x[/link] [/]") == 3  # recent table, top hosts, the follow line
    assert "[malformed]" in out
