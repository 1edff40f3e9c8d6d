"""Log rotation through a real mitmdump and Debian's real `logrotate`: no decision line is lost.

Two ways a decision log goes away under a running guard:

* logrotate's `create` style (rename the file, create a new one): rotated four times while 20
  `curl` clients keep sending; every flow must appear exactly once across the live file and the
  rotated ones, and the flows sent after the last rotation in the live file (before the guard
  followed rotation, they all went on into the renamed file);
* deletion: the live file removed by hand, then by logrotate with `rotate 0` (rename, create,
  delete the old one); every flow sent afterwards must be in the new file (before, they went into
  the deleted one: lost without a word).

Each flow carries a marker as a query *key* (`?…&n-<phase>-<i>`): the log keeps query keys, never
values. Rotations are triggered by how many lines the live file holds, not by time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
HOST = "autoconfig.logrotate.northwind-traders.co.uk"
PATH = "/mail/config-v1.1.xml"
ADDRESS = "alice@northwind-traders.co.uk"
CLIENTS, PER_CLIENT, ROTATIONS, LINES_PER_ROTATION = 20, 25, 4, 60


@pytest.fixture(scope="module", autouse=True)
def _logrotate() -> None:
    if not Path(LOGROTATE).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("logrotate is missing (apt-get install logrotate; .ci/run installs it)")
        pytest.skip("logrotate is not installed (apt-get install logrotate)")


@pytest.fixture(scope="module")
def _route(upstream: Upstream) -> None:
    upstream.add_route(HOST, PATH, body=(FIXTURES / "autoconfig__benign_own_domain.xml").read_bytes(),
                       headers={"content-type": "application/xml"})


@pytest.fixture
def proxy(_route: None, guard_proxy: ProxyFactory) -> Iterator[GuardProxy]:
    yield guard_proxy()


def _url(marker: str) -> str:
    return f"https://{HOST}{PATH}?emailaddress={ADDRESS}&n-{marker}"


def _rotate(log: Path, directives: str) -> None:
    """Run logrotate (forced) on `log` with `directives`, as an operator's cron job would."""
    config = log.parent / "logrotate.conf"
    config.write_text(f"{log} {{\n    {directives}\n    missingok\n    nocompress\n}}\n")
    result = subprocess.run([LOGROTATE, "--force", "--state", str(log.parent / "logrotate.state"), str(config)],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def _markers(*files: Path) -> Counter[str]:
    """The marker of every decision line in `files` (each file's lines must all parse)."""
    found: Counter[str] = Counter()
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["event"] == "decision":
                found[record["url"].rpartition("&n-")[2]] += 1
    return found


def _send(proxy: GuardProxy, phase: str, count: int) -> None:
    for i in range(count):
        result = proxy.curl(_url(f"{phase}-{i}"), "-o", "/dev/null", "-w", "%{http_code}")
        assert result.stdout == "200", result.stderr


def _wait_logged(proxy: GuardProxy, files: list[Path], expected: set[str]) -> Counter[str]:
    def logged() -> Counter[str] | None:
        found = _markers(*(file for file in files if file.exists()))
        return found if expected <= set(found) else None

    found: Counter[str] = proxy.wait_for(logged, timeout=30, what="every decision")
    return found


def _no_write_errors(proxy: GuardProxy) -> None:
    assert not [line for line in proxy.output if "cannot write the decision log" in line]


def test_logrotate_create_style_during_traffic_loses_no_decision(proxy: GuardProxy, tmp_path: Path) -> None:
    log = proxy.log_path
    configs = []
    for c in range(CLIENTS):
        lines = [f'url = "{_url(f"{c}-{i}")}"\noutput = "/dev/null"' for i in range(PER_CLIENT)]
        configs.append(tmp_path / f"client-{c}.curl")
        configs[-1].write_text("\n".join(lines) + "\n")
    clients = [subprocess.Popen(["curl", "-sS", "--noproxy", "", "-x", proxy.url, "--cacert", str(proxy.ca_bundle),
                                 "-w", "%{http_code}\n", "-K", str(config)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for config in configs]
    rotations = 0
    while any(client.poll() is None for client in clients):
        if rotations < ROTATIONS and log.exists() and len(log.read_bytes().splitlines()) >= LINES_PER_ROTATION:
            _rotate(log, "rotate 10\n    create 0640")
            rotations += 1
        time.sleep(0.05)
    for client in clients:
        out, err = client.communicate(timeout=5)
        assert client.returncode == 0 and set(out.split()) == {"200"}, err[-500:]
    assert rotations >= 2, "the live file stopped growing after a rotation (or the clients were too quick)"

    _send(proxy, "after", 5)  # after the last rotation: these belong in the live file
    expected = {f"{c}-{i}" for c in range(CLIENTS) for i in range(PER_CLIENT)} | {f"after-{i}" for i in range(5)}
    rotated = [log.with_name(f"{log.name}.{n}") for n in range(1, rotations + 1)]
    found = _wait_logged(proxy, [log, *rotated], expected)
    assert set(found) == expected and set(found.values()) == {1}  # none lost, none twice
    assert {f"after-{i}" for i in range(5)} <= set(_markers(log))
    assert all(_markers(file) for file in rotated)  # each rotated file took its share
    _no_write_errors(proxy)


def test_a_deleted_log_is_recreated_and_loses_no_later_decision(proxy: GuardProxy) -> None:
    log = proxy.log_path
    _send(proxy, "before", 3)
    _wait_logged(proxy, [log], {f"before-{i}" for i in range(3)})

    log.unlink()  # by hand
    _send(proxy, "unlinked", 3)
    assert set(_wait_logged(proxy, [log], {f"unlinked-{i}" for i in range(3)})) == {f"unlinked-{i}" for i in range(3)}

    _rotate(log, "rotate 0\n    create 0600")  # logrotate throwing the old lines away
    assert list(log.parent.glob(f"{log.name}.*")) == []
    _send(proxy, "dropped", 3)
    assert set(_wait_logged(proxy, [log], {f"dropped-{i}" for i in range(3)})) == {f"dropped-{i}" for i in range(3)}
    reasons = [json.loads(line).get("reason") for line in log.read_text().splitlines()
               if json.loads(line)["event"] == "log_reopened"]
    assert reasons == ["moved"]  # logrotate's new file; the hand deletion's marker went with the old one
    _no_write_errors(proxy)
