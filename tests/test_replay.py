"""`autodiscover-guard replay` and the decision a flow carries (comment, marker, metadata).

Flows are judged by the real addon under mitmproxy's test context, written with mitmproxy's own
FlowWriter and read back by `replay`: what the guard records must survive the flow file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import flowfilter, http, io
from mitmproxy.test import taddons

from guard.cli import main
from guard.proxy.addon import AutodiscoverGuard
from guard.proxy.record import ORIGINAL
from tests.flowkit import AUTODETECT_URL, fixture, make_flow

SEED = fixture("autodetect__seed_example_com.json")
BENIGN = fixture("autodetect__benign_own_domain.json")
SEED_USER, BENIGN_USER = "email@example.com", "bob@northwind-traders.co.uk"


def _answer(body: bytes) -> http.Response:
    return http.Response.make(200, body, {"content-type": "application/json"})


def _judged(mode: str, tmp_path: Path, email: str, body: bytes, **options: object) -> http.HTTPFlow:
    """One autodetect flow through the guard's hooks, as mitmdump runs them."""
    addon = AutodiscoverGuard()
    with taddons.context(addon) as tctx:
        tctx.options.update(guard_log=str(tmp_path / "decisions.jsonl"), guard_mode=mode, **options)
        addon.configure(set(tctx.options.keys()))
        flow = make_flow(AUTODETECT_URL, headers={"X-Email": email})
        addon.request(flow)
        flow.response = _answer(body)
        addon.responseheaders(flow)
        addon.response(flow)
    return flow


def _write(path: Path, flows: list[http.HTTPFlow]) -> Path:
    with path.open("wb") as handle:
        writer = io.FlowWriter(handle)
        for flow in flows:
            writer.add(flow)
    return path


def _replay(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, list[dict[str, object]], str]:
    code = main(["replay", "--json", str(path)])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[http.HTTPFlow]:
    yield _judged("enforce", tmp_path, SEED_USER, SEED)


def test_a_blocked_flow_says_blocked_with_its_rules_and_first_message_and_is_marked_red(
        blocked: http.HTTPFlow) -> None:
    assert blocked.comment.startswith("autodiscover-guard: blocked (reserved-user-domain")
    assert "): " in blocked.comment  # the first finding's message follows the rules
    assert blocked.marked == ":red_circle:"
    for expression in ("~marked", "~marker red_circle", "~comment blocked", "~comment reserved-user-domain",
                       "~comment autodiscover-guard", '~meta "would_action: block"'):
        assert flowfilter.match(expression, blocked), expression  # the filters docs/workstation.md gives
    assert not flowfilter.match("~comment rewritten", blocked)


def test_an_audited_flow_says_what_enforce_would_do_and_is_marked_alike(tmp_path: Path) -> None:
    flow = _judged("audit", tmp_path, SEED_USER, SEED)
    assert flow.comment.startswith("autodiscover-guard: would be blocked (reserved-user-domain")
    assert flow.marked == ":red_circle:" and flowfilter.match('~comment "would be"', flow)
    assert flow.response is not None and flow.response.content == SEED  # audit changes nothing


def test_an_allowed_flow_carries_a_comment_but_no_marker(tmp_path: Path) -> None:
    flow = _judged("enforce", tmp_path, BENIGN_USER, BENIGN)
    assert flow.comment == "autodiscover-guard: allowed"
    assert not flow.marked and not flowfilter.match("~marked", flow)


def test_a_comment_never_shows_a_local_part(tmp_path: Path) -> None:
    flow = _judged("enforce", tmp_path, SEED_USER, SEED)
    assert "email@" not in flow.comment


def test_the_original_answer_is_kept_only_within_the_body_cap(tmp_path: Path, blocked: http.HTTPFlow) -> None:
    assert http.Response.from_state(blocked.metadata[ORIGINAL]).content == SEED
    small_cap = _judged("enforce", tmp_path, SEED_USER, SEED, guard_max_body=len(SEED) - 1)
    assert ORIGINAL not in small_cap.metadata


def test_replay_judges_the_original_a_guard_capture_kept_not_its_block_page(
        tmp_path: Path, blocked: http.HTTPFlow, capsys: pytest.CaptureFixture[str]) -> None:
    assert blocked.response is not None and blocked.response.content != SEED  # the saved answer is the block
    code, rows, err = _replay(capsys, _write(tmp_path / "capture.flows", [blocked]))
    assert code == 1
    assert [(r["would_action"], r["basis"]) for r in rows] == [("block", "re-judged original")]
    assert "reserved-user-domain" in rows[0]["rules"]  # type: ignore[operator]
    assert "1 discovery flows: 1 block (1 re-judged original)" in err


def test_replay_reports_the_recorded_block_when_no_original_was_kept(
        tmp_path: Path, blocked: http.HTTPFlow, capsys: pytest.CaptureFixture[str]) -> None:
    del blocked.metadata[ORIGINAL]  # over the body cap, or a request the guard answered itself
    code, rows, _ = _replay(capsys, _write(tmp_path / "capture.flows", [blocked]))
    assert code == 1
    assert [(r["would_action"], r["basis"]) for r in rows] == [("block", "recorded")]


def test_replay_rejudges_flows_saved_without_the_guard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = [make_flow(AUTODETECT_URL, headers={"X-Email": SEED_USER}),
             make_flow(AUTODETECT_URL, headers={"X-Email": BENIGN_USER}),
             make_flow("https://www.example.org/index.html")]
    for flow, body in zip(plain, (SEED, BENIGN, b"<html/>"), strict=True):
        flow.response = _answer(body)
    code, rows, err = _replay(capsys, _write(tmp_path / "plain.flows", plain))
    assert code == 1
    assert [(r["would_action"], r["basis"]) for r in rows] == [("block", "re-judged"), ("allow", "re-judged")]
    assert "2 discovery flows" in err


def test_replay_output_redacts_addresses_in_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = make_flow("https://autoconfig.contoso.com/mail/config-v1.1.xml?emailaddress=alice%40contoso.com")
    flow.response = http.Response.make(200, fixture("autoconfig__benign_own_domain.xml"), {"content-type": "text/xml"})
    path = _write(tmp_path / "one.flows", [flow])
    main(["replay", str(path)])
    out = capsys.readouterr().out
    assert "contoso.com" in out and "alice" not in out


def test_replay_of_a_file_that_is_not_a_flow_file_exits_two_with_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk.mitm"
    path.write_bytes(b"this is not a flow file")
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: not a mitmproxy flow file") and "--save" in err


def test_replay_of_a_missing_file_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "absent.flows")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
