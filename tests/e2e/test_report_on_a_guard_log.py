"""`autodiscover-guard report` on the log a real guard wrote (docs/report.md).

A real mitmdump with the guard blocks the January 2026 seed answer for a real client; the
installed console script then reads that log, summarises it and, with `--follow`, shows the
next block as it is logged — after the log was rotated the way logrotate does it.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.process import stop as stop_process
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

CLI = Path(sys.executable).parent / "autodiscover-guard"
AUTODETECT = "https://prod.autodetect.outlook.cloud.microsoft/autodetect/detect"
JNET = "imapgms.jnet.sei.co.jp"


@pytest.fixture(scope="module", autouse=True)
def routes(upstream: Upstream) -> None:
    upstream.add_route("prod.autodetect.outlook.cloud.microsoft", "/autodetect/detect",
                       body=(FIXTURES / "autodetect__seed_example_com.json").read_bytes(),
                       headers={"content-type": "application/json; charset=utf-8"})


@pytest.fixture(scope="module")
def guard(make_guard_proxy: ProxyFactory) -> Iterator[GuardProxy]:
    proxy = make_guard_proxy()
    yield proxy
    proxy.stop()


def block_the_seed(proxy: GuardProxy) -> None:
    before = len(proxy.decisions())
    response = proxy.session().get(AUTODETECT, params={"app": "outlookdesktopBasic"},
                                   headers={"X-Email": "email@example.com"}, timeout=20)
    assert response.status_code == 404
    assert proxy.last_decision(before)["action"] == "block"


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "report", *args], capture_output=True, text=True, timeout=60, check=False,
                          env=os.environ | {"COLUMNS": "200"})


def test_report_summarises_the_block_a_real_guard_logged(guard: GuardProxy) -> None:
    block_the_seed(guard)
    result = report("--json", str(guard.log_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["actions"]["block"] >= 1
    assert summary["top_user_domains"][0]["name"] == "example.com"
    assert {"name": "reserved-user-domain", "count": summary["actions"]["block"]} in summary["top_rules"]
    newest = summary["recent"][0]
    assert (newest["would_action"], newest["action"], newest["format"]) == ("block", "block", "autodetect")
    assert JNET in newest["hosts"]
    human = report(str(guard.log_path))
    assert human.returncode == 0, human.stderr
    assert "Recent blocks and rewrites" in human.stdout and JNET in human.stdout
    print(human.stdout)  # the closing note of issue 15 quotes this output (pytest -s)


def test_report_follow_prints_the_next_block_as_it_is_logged(guard: GuardProxy) -> None:
    follower = start_follower(guard.log_path)
    try:
        block_the_seed(guard)
        record = json.loads(read_line(follower))
        assert (record["event"], record["would_action"], record["user_domain"]) == ("decision", "block", "example.com")
    finally:
        stop_process(follower)


def test_report_follow_survives_a_create_style_rotation(guard: GuardProxy) -> None:
    follower = start_follower(guard.log_path)
    rotated = guard.log_path.with_name(guard.log_path.name + ".1")
    try:
        guard.log_path.rename(rotated)  # logrotate, create style: rename, then a new empty file
        guard.log_path.touch(mode=0o640)
        before = count_decisions(rotated) + count_decisions(guard.log_path)
        response = guard.session().get(AUTODETECT, params={"app": "outlookdesktopBasic"},
                                       headers={"X-Email": "email@example.com"}, timeout=20)
        assert response.status_code == 404
        guard.wait_for(lambda: count_decisions(rotated) + count_decisions(guard.log_path) > before,
                       what="the decision line in either file")
        assert count_decisions(guard.log_path) == 1, "the guard wrote into the rotated file"
        assert json.loads(read_line(follower))["would_action"] == "block"
    finally:
        stop_process(follower)


def start_follower(log: Path) -> subprocess.Popen[str]:
    """`report --follow --json LOG`, once it has printed the summary (so it is following)."""
    follower = subprocess.Popen([str(CLI), "report", "--follow", "--json", str(log)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert "decisions" in json.loads(read_line(follower))
    return follower


def count_decisions(log: Path) -> int:
    return log.read_text().count('"event": "decision"') if log.exists() else 0


def read_line(process: subprocess.Popen[str]) -> str:
    """The process's next stdout line (pytest's timeout bounds the wait; the follower polls every 0.5 s)."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not selector.select(timeout=1.0):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
    return process.stdout.readline()
