"""The decision log: what a line holds, what it never holds, and that writing never stops the guard."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from guard.errors import SetupError
from guard.log import (
    DecisionLog,
    Event,
    FlowFacts,
    console_line,
    decision_record,
    hash_local_part,
    scrub_url,
    use_pseudonym_key,
)
from guard.model import Action, Decision, Finding
from guard.names import User
from guard.pseudonym import Pseudonyms

SEED = Decision(
    "autodetect", Action.BLOCK,
    (Finding("reserved-user-domain", "example.com", "(user address)", "the user's domain example.com ..."),
     Finding("foreign-host", "imapgms.jnet.sei.co.jp", "protocols[0].hostname", "not owned")),
)
FACTS = FlowFacts("f-1", "127.0.0.1", "GET",
                  "https://prod.autodetect.outlook.cloud.microsoft/autodetect/detect?app=x", 200)


def record(decision: Decision = SEED, *, hash_local: bool = True, applied: Action = Action.BLOCK,
           user: User | None = None) -> dict[str, object]:
    return decision_record(FACTS, decision, mode="enforce", applied=applied,
                           user=user or User.from_address("email@example.com"), user_source="x-email",
                           revision="abc123", hash_local=hash_local, latency_us=120)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://autoconfig.contoso.com/mail/config-v1.1.xml?emailaddress=alice%40contoso.com",
     "https://autoconfig.contoso.com/mail/config-v1.1.xml?emailaddress=REDACTED"),
    ("https://outlook.office365.com/autodiscover/autodiscover.json/v1.0/alice%40contoso.com?Protocol=Ews",
     "https://outlook.office365.com/autodiscover/autodiscover.json/v1.0/REDACTED@contoso.com?Protocol=REDACTED"),
    ("https://autodiscover.contoso.com/autodiscover/autodiscover.json?Email=a@contoso.com&RedirectCount=3",
     "https://autodiscover.contoso.com/autodiscover/autodiscover.json?Email=REDACTED&RedirectCount=REDACTED"),
    ("https://alice:hunter2@autodiscover.contoso.com:8443/x?access_token=abc&password=pw&x=bob@y.com#frag",
     "https://autodiscover.contoso.com:8443/x?access_token=REDACTED&password=REDACTED&x=REDACTED"),
    ("https://autoconfig.contoso.com/.well-known/autoconfig/mail/config-v1.1.xml?n-3-17",
     "https://autoconfig.contoso.com/.well-known/autoconfig/mail/config-v1.1.xml?n-3-17"),
    ("dns:_pop3s._tcp.kestrel-post.net", "dns:_pop3s._tcp.kestrel-post.net"),
])
def test_urls_keep_scheme_host_path_words_and_query_keys_only(url: str, expected: str) -> None:
    assert scrub_url(url) == expected


@pytest.mark.parametrize(("url", "secret"), [
    ("https://a.contoso.com/x?auth_token=s3cr3t-value", "s3cr3t-value"),
    ("https://a.contoso.com/x?pw=hunter2&passcode=4711&otp=123456", "hunter2"),
    ("https://a.contoso.com/x?otp=123456", "123456"),
    ("https://a.contoso.com/x?credential=opensesame&sessionid=abcdef", "opensesame"),
    ("https://a.contoso.com/x?sessionid=abcdef", "abcdef"),
    ("https://a.contoso.com/ews/exchange.asmx;password=Tr0ub4dor&3", "Tr0ub4dor"),
    ("https://a.contoso.com/ews;user=alice;password=hunter2/x", "hunter2"),
    ("https://a.contoso.com/login/alice/Tr0ub4dor%263-never-logged/config.xml", "Tr0ub4dor"),
    ("https://a.contoso.com/login/P4ssword/config.xml", "P4ssword"),
    ("https://a.contoso.com/t/eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig/x", "eyJhbGci"),
    ("https://a.contoso.com/k/QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=/x", "QUJDREVG"),
    ("https://a.contoso.com/k/0123456789abcdef0123456789abcdef/x", "0123456789abcdef"),
    ("https://a.contoso.com/x?Tr0ub4dor%263", "Tr0ub4dor"),
])
def test_no_value_or_secret_looking_segment_survives(url: str, secret: str) -> None:
    assert secret not in scrub_url(url)
    assert "REDACTED" in scrub_url(url)


@given(value=st.text(min_size=1, max_size=40), key=st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True))
def test_no_query_or_path_parameter_value_is_ever_shown(value: str, key: str) -> None:
    assume(len(value.strip()) > 0 and not set(value) & set("&#;/?%+="))
    shown = scrub_url(f"https://a.contoso.com/p;{key}={value}?{key}={value}")
    assert shown == f"https://a.contoso.com/p;{key}=REDACTED?{key}=REDACTED"


@given(local=st.text("abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=10, max_size=30))
def test_no_local_part_survives_scrubbing_wherever_it_is_placed(local: str) -> None:
    address = f"{local}@contoso.com"
    urls = (f"https://a.contoso.com/autodiscover/autodiscover.json/v1.0/{address}?Protocol=Ews",
            f"https://autoconfig.contoso.com/mail/config-v1.1.xml?emailaddress={address}",
            f"https://a.contoso.com/x?anything={address}&Email={address}",
            f"https://{address}:pw@a.contoso.com/x")
    assume(all(local not in url.replace(address, "") for url in urls))  # not in the URL's own words
    for url in urls:
        assert local not in scrub_url(url), url


def test_local_parts_hash_with_the_deployment_key_case_insensitively() -> None:
    assert hash_local_part("Alice") == hash_local_part("alice")
    assert len(hash_local_part("alice")) == 16
    assert hash_local_part("alice") not in hashlib.sha256(b"alice").hexdigest()  # keyed, not a plain digest


def test_the_same_key_gives_the_same_pseudonym_and_another_key_another() -> None:
    key = b"k" * 32
    use_pseudonym_key(key)
    first = hash_local_part("alice")
    use_pseudonym_key(key)  # a restart, or a second instance sharing the key
    assert hash_local_part("alice") == first == Pseudonyms(key).of("alice")
    use_pseudonym_key(b"x" * 32)
    assert hash_local_part("alice") != first


def test_an_upstream_failure_is_its_own_action_never_allow() -> None:
    facts = FlowFacts("f-2", "127.0.0.1", "GET", FACTS.url, None,
                      error="connect to https://alice:pw@x.contoso.com/?pw=1 failed")
    line = decision_record(facts, Decision("autodetect", Action.ALLOW, notes=("no answer",)), mode="enforce",
                           applied=Action.ALLOW, user=None, user_source="none", revision="r", hash_local=True,
                           latency_us=5)
    assert (line["action"], line["would_action"]) == ("error", "error")
    assert line["error"] == "connect to https://x.contoso.com/?pw=REDACTED failed"


def test_notes_lose_urls_secrets_and_local_parts() -> None:
    decision = Decision("pox", Action.ALLOW, notes=("redirect to https://x.contoso.com/a?token=zzz9 for bob@y.com",))
    assert record(decision)["notes"] == ["redirect to https://x.contoso.com/a?token=REDACTED for REDACTED@y.com"]


def test_a_record_names_the_domain_and_hashes_the_local_part() -> None:
    line = record()
    assert line["user_domain"] == "example.com"
    assert line["user_local_hash"] == hash_local_part("email") and "user_local" not in line
    assert "email@" not in json.dumps(line)


def test_the_local_part_is_plain_only_when_the_policy_says_so() -> None:
    line = record(hash_local=False)
    assert line["user_local"] == "email" and "user_local_hash" not in line


def test_a_record_carries_rule_host_field_and_both_actions_but_no_messages() -> None:
    line = record(applied=Action.ALLOW)
    assert line["rules"] == ["reserved-user-domain", "foreign-host"]
    assert line["findings"] == [
        {"rule": "reserved-user-domain", "host": "example.com", "field": "(user address)"},
        {"rule": "foreign-host", "host": "imapgms.jnet.sei.co.jp", "field": "protocols[0].hostname"},
    ]
    assert (line["action"], line["would_action"]) == ("allow", "block")
    assert (line["policy_revision"], line["latency_us"], line["status"]) == ("abc123", 120, 200)


def test_an_address_shaped_finding_host_keeps_only_its_domain() -> None:
    decision = Decision("pox", Action.BLOCK, (Finding("malformed", "mallory@evil.example", "RedirectAddr", "x"),))
    assert record(decision)["findings"] == [{"rule": "malformed", "host": "evil.example", "field": "RedirectAddr"}]


def test_a_domain_only_user_has_no_local_part_field() -> None:
    line = record(user=User("", "", "contoso.com", "contoso.com"))
    assert "user_local_hash" not in line and line["user_domain"] == "contoso.com"


def test_each_write_is_one_json_line_with_time_and_event_first(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    log.write("decision", record())
    log.write("policy_rejected", {"reason": "p.yaml:3:5: bad"})
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert list(first)[:2] == ["ts", "event"] and first["event"] == "decision"
    assert json.loads(lines[1])["reason"] == "p.yaml:3:5: bad"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_time_is_utc_iso_8601_with_a_z() -> None:
    stream = io.StringIO()
    DecisionLog("", stream).write("decision", {"id": "x"})
    ts = json.loads(stream.getvalue())["ts"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", ts)
    assert abs(datetime.datetime.fromisoformat(ts).timestamp() - time.time()) < 60


def test_without_a_path_lines_go_to_the_given_stream() -> None:
    stream = io.StringIO()
    DecisionLog("", stream).write("decision", {"id": "x"})
    assert json.loads(stream.getvalue())["id"] == "x"


@pytest.mark.parametrize("destination", ["/dev/full", "/nonexistent-dir/decisions.jsonl"])
def test_a_failing_destination_is_counted_reported_without_flooding_and_never_raises(
    destination: str, capsys: pytest.CaptureFixture[str],
) -> None:
    counted: list[int] = []
    log = DecisionLog(destination, on_failure=lambda: counted.append(1))
    for _ in range(3):
        log.write("decision", record())
    err = capsys.readouterr().err
    assert err.count("cannot write the decision log") == 1 and destination in err and "ERROR" in err
    assert log.failures == len(counted) == 3


def test_a_log_that_works_again_says_how_many_lines_were_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "logs"
    log = DecisionLog(str(folder / "decisions.jsonl"))
    log.write("decision", {"id": "lost-1"})
    log.write("decision", {"id": "lost-2"})
    folder.mkdir()
    log.write("decision", {"id": "kept"})
    assert "written again after 2 lost line(s)" in capsys.readouterr().err
    assert [json.loads(line)["id"] for line in (folder / "decisions.jsonl").read_text().splitlines()] == ["kept"]


def test_a_missing_log_folder_at_start_is_an_error_naming_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "decisions.jsonl"
    with pytest.raises(SetupError, match=r"decisions.jsonl: cannot open the decision log: folder .*/absent "
                                         r"does not exist; create it .*\(mkdir -p .*/absent\)"):
        DecisionLog(str(path)).open()


def _ids(path: Path) -> list[object]:
    return [json.loads(line).get("id", json.loads(line)["event"]) for line in path.read_text().splitlines()]


def test_after_a_rename_and_create_the_next_line_goes_to_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    log.open()
    log.write("decision", {"id": "before"})
    path.rename(tmp_path / "decisions.jsonl.1")
    path.touch(mode=0o640)  # logrotate's `create`
    log.write("decision", {"id": "after"})
    log.close()
    assert _ids(tmp_path / "decisions.jsonl.1") == ["before"]
    assert _ids(path) == ["after", "log_reopened"]
    assert json.loads(path.read_text().splitlines()[1])["reason"] == "moved"


def test_after_a_rename_without_create_lines_follow_the_old_file_briefly_then_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    log.write("decision", {"id": "before"})
    path.rename(tmp_path / "decisions.jsonl.1")
    log.write("decision", {"id": "meanwhile"})  # logrotate is about to `create`: do not race it
    assert not path.exists()
    clock = time.monotonic() + 2.0
    monkeypatch.setattr("guard.log.time.monotonic", lambda: clock)
    log.write("decision", {"id": "after"})  # `nocreate`: the guard makes the file itself
    assert _ids(tmp_path / "decisions.jsonl.1") == ["before", "meanwhile"]
    assert _ids(path) == ["after", "log_reopened"]


def test_after_the_file_is_deleted_the_next_line_goes_to_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    log.write("decision", {"id": "before"})
    path.unlink()
    log.write("decision", {"id": "after"})
    assert _ids(path) == ["after", "log_reopened"]
    assert json.loads(path.read_text().splitlines()[1])["reason"] == "deleted"
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_reopen_switches_to_the_file_now_at_the_path(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(str(path))
    log.write("decision", {"id": "before"})
    path.rename(tmp_path / "old")
    log.reopen()
    log.write("decision", {"id": "after"})
    assert _ids(tmp_path / "old") == ["before"]
    assert _ids(path) == [Event.LOG_REOPENED.value, "after"]


def test_console_line_shows_verdict_domain_and_rules_only() -> None:
    line = console_line(record(applied=Action.ALLOW))
    assert line.startswith("autodiscover-guard: BLOCK (audit: allow) autodetect for example.com")
    assert "[reserved-user-domain, foreign-host]" in line and "email@" not in line
