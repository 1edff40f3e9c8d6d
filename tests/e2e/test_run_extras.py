"""`run --metrics`, `run --save` + `replay`, and `run` on a busy port, as a user runs them (issue 15).

The real CLI in a subprocess (tests/e2e/test_run_command.py's `start_run`), real curl and requests
clients, prometheus_client's own text parser for the scrape.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.support.pki import TestPKI
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream
from tests.e2e.test_run_command import CLI, PASSTHROUGH, free_port, routes, seed_autodetect, start_run

pytestmark = pytest.mark.e2e
__all__ = ["routes"]  # the autodetect and pass-through routes, set up for this module too

@pytest.fixture(scope="module")
def saving(pki: TestPKI, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProxy]:
    """`run --metrics HOST:PORT --save FILE`; the proxy's `metrics_path` holds the metrics address."""
    workdir = tmp_path_factory.mktemp("run-metrics")
    metrics = f"127.0.0.1:{free_port()}"
    proxy = start_run(pki, upstream, workdir, "--metrics", metrics, "--save", str(workdir / "capture.flows"))
    proxy.metrics_path = Path(metrics)
    yield proxy
    proxy.stop()


def scrape(proxy: GuardProxy) -> list[tuple[str, dict[str, str], float]]:
    """Every sample at /metrics, as prometheus_client's parser reads it."""
    text = requests.get(f"http://{proxy.metrics_path}/metrics", timeout=10).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def test_metrics_endpoint_counts_what_was_judged(saving: GuardProxy) -> None:
    before = len(saving.decisions())
    for _ in range(2):
        assert seed_autodetect(saving).status_code == 404
    passed = saving.session().get(PASSTHROUGH, timeout=20)
    assert passed.status_code == 200  # not discovery (decrypted: the workstation intercepts all): not counted
    saving.wait_for(lambda: len(saving.decisions()) >= before + 2, what="two decisions")
    judged = Counter((d["mode"], d["would_action"]) for d in saving.decisions())
    samples = scrape(saving)
    assert Counter({(labels["mode"], labels["action"]): value for name, labels, value in samples
                    if name == "autodiscover_guard_decisions_total"}) == judged
    assert sum(value for name, labels, value in samples if name == "autodiscover_guard_rule_decisions_total"
               and labels["rule"] == "reserved-user-domain") == judged[("enforce", "block")]
    assert [value for name, _, value in samples
            if name == "autodiscover_guard_added_latency_seconds_count"] == [sum(judged.values())]


def test_replay_of_a_capture_saved_through_the_guard_reports_the_block(saving: GuardProxy) -> None:
    before = len(saving.decisions())
    assert seed_autodetect(saving).status_code == 404
    saving.wait_for(lambda: len(saving.decisions()) > before, what="the decision")
    saving.stop()  # the capture is complete once mitmdump has closed it
    capture = saving.log_path.parent / "capture.flows"  # start_run's work folder
    result = subprocess.run([str(CLI), "replay", "--json", str(capture)], capture_output=True, text=True,
                            timeout=60, check=False)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1, result.stderr
    blocks = [r for r in rows if r["would_action"] == "block"]
    assert blocks and all(r["basis"] == "re-judged original" for r in blocks)
    assert all("reserved-user-domain" in r["rules"] for r in blocks)
    assert "email@" not in result.stdout + result.stderr


def test_run_on_a_busy_port_names_listen_and_prints_no_banner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(CLI), "run", "--listen", f"127.0.0.1:{port}", "--confdir", str(tmp_path)],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: --listen 127.0.0.1:{port}: cannot listen there")
    assert "choose a free one with --listen HOST:PORT" in result.stderr
    assert "listening on" not in result.stdout + result.stderr
    assert "listen_port" not in result.stderr and "listen-port" not in result.stderr  # no mitmdump flag
