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

from guard.log import DecisionLog, FlowFacts, console_line, decision_record, hash_local_part, scrub_url
from guard.model import Action, Decision, Finding
from guard.names import User

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
     "https://outlook.office365.com/autodiscover/autodiscover.json/v1.0/REDACTED@contoso.com?Protocol=Ews"),
    ("https://autodiscover.contoso.com/autodiscover/autodiscover.json?Email=a@contoso.com&RedirectCount=3",
     "https://autodiscover.contoso.com/autodiscover/autodiscover.json?Email=REDACTED&RedirectCount=3"),
    ("https://alice:hunter2@autodiscover.contoso.com/x?access_token=abc&password=pw&x=bob@y.com#frag",
     "https://autodiscover.contoso.com/x?access_token=REDACTED&password=REDACTED&x=REDACTED@y.com"),
])
def test_urls_lose_addresses_secrets_userinfo_and_fragment(url: str, expected: str) -> None:
    assert scrub_url(url) == expected


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


def test_local_parts_hash_with_a_process_key_case_insensitively() -> None:
    assert hash_local_part("Alice") == hash_local_part("alice")
    assert len(hash_local_part("alice")) == 16
    assert hash_local_part("alice") not in hashlib.sha256(b"alice").hexdigest()  # keyed, not a plain digest


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
def test_a_failing_destination_is_reported_once_and_never_raises(
    destination: str, capsys: pytest.CaptureFixture[str],
) -> None:
    log = DecisionLog(destination)
    for _ in range(3):
        log.write("decision", record())
    err = capsys.readouterr().err
    assert err.count("cannot write the decision log") == 1 and destination in err


def test_console_line_shows_verdict_domain_and_rules_only() -> None:
    line = console_line(record(applied=Action.ALLOW))
    assert line.startswith("autodiscover-guard: BLOCK (audit: allow) autodetect for example.com")
    assert "[reserved-user-domain, foreign-host]" in line and "email@" not in line
