"""The gateway lab: clients, HAProxy + guards, and a fake internet in network namespaces (needs root).

Topologies (docs/gateway.md, "Lab-tested topologies"), each in a lab of its own
(tests/e2e/support/lab.py):

* **explicit**: clients (six addresses) use HAProxy on the gateway as their proxy; HAProxy runs
  the shipped `deploy/haproxy/haproxy.cfg` unchanged and balances over two guard mitmdumps on
  127.0.0.1:8081/8082, started with the argv `autodiscover-guard run --mode gateway` builds and the
  shipped gateway example policy.
* **transparent**: clients talk to the internet directly; the shipped
  `deploy/nftables/autodiscover-guard-transparent.nft` on the gateway redirects their port 443
  connections to two guards in transparent mode in turn.

The internet namespace serves the seed incident (email@example.com -> *.jnet.sei.co.jp), an
honest on-premises Exchange answer, a redirect to a foreign collector, and a plain page for
pass-through traffic, with certificates from the tests' own origin CA.
"""

from __future__ import annotations

import datetime
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import FIXTURES, pox_request
from tests.e2e.support import lab as lab_support
from tests.e2e.support.lab import (
    ANSWERS,
    CLIENT_ADDRESSES,
    FOREIGN,
    GATEWAY_CLIENT_SIDE,
    HONEST,
    PASS_THROUGH,
    POX,
    SEED,
    USERS,
    Gateway,
    Lab,
    marker,
    mixed,
    start_gateway,
)
from tests.e2e.support.pki import TestPKI

pytestmark = pytest.mark.e2e

EXPECTED_ACTION = {SEED: "block", HONEST: "allow", FOREIGN: "block"}  # foreign-host: rewrite, no safe remainder
# `option httplog`: "ip:port [date] frontend backend/server ..."
HTTPLOG = re.compile(r"^(?P<ip>[\d.]+):(?P<port>\d+) \[(?P<accepted>[^\]]+)\] \S+ \S+/(?P<server>\S+) ")
REDISPATCHED = re.compile(r" \d+/\d+/\d+/\d+/\+\d+ ")  # httplog's retries field, "+" when redispatched


@pytest.fixture(scope="module", autouse=True)
def needs_lab() -> None:
    why = lab_support.lab_unavailable()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (CI runs as root with .ci/run's packages)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def explicit(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(pki, tmp_path_factory.mktemp("lab-explicit"), explicit=True)
    yield gateway
    gateway.lab.close()


@pytest.fixture(scope="module")
def transparent(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(pki, tmp_path_factory.mktemp("lab-transparent"), explicit=False)
    yield gateway
    gateway.lab.close()


@pytest.fixture(scope="module")
def explicit_run(explicit: Gateway) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """60 discovery requests (seed, honest, foreign in turn) from six client addresses through HAProxy."""
    records = explicit.run_load(mixed(60), "judged")
    return records, explicit.all_decisions(60)


def assert_judged(records: list[dict[str, Any]], logs: list[list[dict[str, Any]]]) -> None:
    """Every answer right for its host, every request decided exactly once across the instances."""
    for record in records:
        assert "error" not in record and record["status"] == 200, record
        body = record["body"]
        if record["host"] == HONEST:
            assert body == (FIXTURES / ANSWERS[HONEST]).read_text(), record["n"]
        elif record["host"] == SEED:
            assert "jnet.sei.co.jp" not in body and "<ErrorCode>500</ErrorCode>" in body, record["n"]
        elif record["host"] == FOREIGN:
            assert "collector-mail.net" not in body, record["n"]
    lines = [line for log in logs for line in log]
    markers = Counter(marker(line) for line in lines)
    assert markers == Counter(record["n"] for record in records if record["host"] != PASS_THROUGH)
    by_marker = {record["n"]: record for record in records}
    for line in lines:
        assert line["action"] == EXPECTED_ACTION[by_marker[marker(line)]["host"]], line


# -- explicit: clients -> HAProxy (shipped config) -> two guards ---------------------------------


@pytest.mark.parametrize("host", [SEED, HONEST, FOREIGN])
def test_curl_through_haproxy_gets_each_answer_judged(explicit: Gateway, host: str) -> None:
    done = explicit.lab.run(explicit.lab.clients, [
        "curl", "-sS", "--noproxy", "", "--interface", CLIENT_ADDRESSES[0], "-x", f"http://{GATEWAY_CLIENT_SIDE}:8080",
        "--cacert", str(explicit.bundle), "-H", "content-type: text/xml",
        "--data-binary", pox_request(USERS[host]).decode(), f"https://{host}{POX}?n-curl"])
    if host == HONEST:
        assert done.stdout == (FIXTURES / ANSWERS[HONEST]).read_text()
    else:
        assert "jnet.sei.co.jp" not in done.stdout and "collector-mail.net" not in done.stdout
        assert "<ErrorCode>" in done.stdout or "<Redirect" not in done.stdout


def test_requests_session_in_the_clients_namespace_gets_the_seed_answer_blocked(explicit: Gateway) -> None:
    def ask() -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            session.proxies = {"https": f"http://{GATEWAY_CLIENT_SIDE}:8080"}
            return session.post(f"https://{SEED}{POX}?n-requests", data=pox_request(USERS[SEED]),
                                headers={"content-type": "text/xml"}, verify=str(explicit.bundle), timeout=20)

    response = explicit.lab.inside(explicit.lab.clients, ask)
    assert b"jnet.sei.co.jp" not in response.content and b"<ErrorCode>500</ErrorCode>" in response.content


def test_explicit_gateway_judges_every_request_once_across_both_instances(
        explicit_run: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]) -> None:
    records, logs = explicit_run
    assert len(records) == 60
    assert_judged(records, logs)


def test_haproxy_source_balancing_spreads_client_addresses_over_both_instances(
        explicit: Gateway, explicit_run: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]) -> None:
    records, logs = explicit_run
    assert all(logs), [len(log) for log in logs]
    assert explicit.haproxy_log is not None
    servers: dict[str, set[str]] = {}
    for match in filter(None, map(HTTPLOG.match, explicit.wait_for_haproxy_lines(len(records)))):
        servers.setdefault(match["ip"], set()).add(match["server"])
    assert {ip: len(names) for ip, names in servers.items()} == dict.fromkeys(CLIENT_ADDRESSES, 1)  # sticky


def test_explicit_gateway_records_carry_the_real_client_address(
        explicit_run: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]) -> None:
    records, logs = explicit_run
    source = {record["n"]: record["source"] for record in records}
    for line in (line for log in logs for line in log):
        assert line["client"] == source[marker(line)], line


FORGED = "198.51.100.77"  # an address no lab host has


def decision_for(gateway: Gateway, key: str) -> dict[str, Any]:
    """The one decision whose URL carries the query key `key` (the logs are written async)."""
    deadline = time.monotonic() + 10
    while True:
        found = [line for instance in gateway.instances for line in instance.decisions() if f"?{key}" in line["url"]]
        if found or time.monotonic() > deadline:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.05)


def forging_curl(gateway: Gateway, proxy: str, key: str, *, interface: str) -> list[str]:
    """curl asking for the seed answer with its own X-Forwarded-For on the CONNECT and inside the tunnel."""
    return ["curl", "-sS", "--noproxy", "", "--interface", interface, "-x", proxy,
            "--proxy-header", f"X-Forwarded-For: {FORGED}", "-H", f"X-Forwarded-For: {FORGED}",
            "--cacert", str(gateway.bundle), "-H", "content-type: text/xml",
            "--data-binary", pox_request(USERS[SEED]).decode(), f"https://{SEED}{POX}?{key}"]


def test_a_client_forging_x_forwarded_for_through_haproxy_is_recorded_with_its_own_address(
        explicit: Gateway) -> None:
    via_haproxy = f"http://{GATEWAY_CLIENT_SIDE}:{lab_support.PROXY_PORT}"
    explicit.lab.run(explicit.lab.clients, forging_curl(explicit, via_haproxy, "forged-via-haproxy",
                                                        interface=CLIENT_ADDRESSES[2]))
    assert decision_for(explicit, "forged-via-haproxy")["client"] == CLIENT_ADDRESSES[2]


def test_an_untrusted_peer_sending_x_forwarded_for_to_an_instance_is_recorded_with_its_own_address(
        explicit: Gateway) -> None:
    """Only HAProxy (127.0.0.1) is trusted: a peer on 127.0.0.2 talking to a guard directly asserts nothing."""
    instance = explicit.instances[0]
    explicit.lab.run(explicit.lab.gateway, forging_curl(explicit, f"http://127.0.0.1:{instance.port}", "forged-direct",
                                                        interface="127.0.0.2"))
    assert decision_for(explicit, "forged-direct")["client"] == "127.0.0.2"


def test_two_instances_metrics_scrape_together_without_duplicate_series(
        explicit: Gateway, explicit_run: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + 5  # written every second: wait for the run's decisions to be counted
    while time.monotonic() < deadline and not all("decisions_total{" in i.metrics.read_text()
                                                  for i in explicit.instances if i.metrics.exists()):
        time.sleep(0.1)
    text = "".join(instance.metrics.read_text() for instance in explicit.instances)
    series = Counter((sample.name, tuple(sorted(sample.labels.items())))
                     for family in text_string_to_metric_families(text) for sample in family.samples)
    assert [key for key, count in series.items() if count > 1] == []


# -- failover: one instance killed under load -----------------------------------------------------


def test_killing_one_instance_under_load_fails_only_requests_in_flight_on_it(
        pki: TestPKI, tmp_path: Path) -> None:
    gateway = start_gateway(pki, tmp_path, explicit=True)
    try:
        load, records_path = gateway.load(mixed(600, discovery_every=10), "failover")
        while len(lab_support.read_records(records_path)) < 150 and load.poll() is None:
            time.sleep(0.02)
        victim = gateway.instances[0]
        killed_at = time.time()
        victim.process.send_signal(signal.SIGKILL)  # the `ip netns exec` parent is replaced by mitmdump (exec)
        victim.process.wait(10)
        dead_at = time.time()  # until the process is gone, its listening socket still accepts connections
        load.wait(120)
        records = lab_support.read_records(records_path)
        assert gateway.haproxy_log is not None
        logged = gateway.wait_for_haproxy_lines(len(records))
    finally:
        gateway.lab.close()
    connections: dict[tuple[str, int], list[tuple[float, str]]] = {}
    for m in filter(None, map(HTTPLOG.match, logged)):
        accepted = datetime.datetime.strptime(m["accepted"], "%d/%b/%Y:%H:%M:%S.%f").timestamp()  # local time
        connections.setdefault((m["ip"], int(m["port"])), []).append((accepted, m["server"]))

    def served_by(record: dict[str, Any]) -> str | None:
        """The instance HAProxy gave this request's connection: a source port recurs over a run (seconds
        apart), so the one accepted while the request was under way, give or take HAProxy's clock, which
        it updates once per event-loop pass (a few ms behind the kernel's under load)."""
        found = [server for accepted, server in connections.get((record["source"], record.get("sport", 0)), [])
                 if record["start"] - 0.05 <= accepted <= record["end"] + 0.05]
        return found[0] if len(found) == 1 else None

    assert len(records) == 600
    assert [r for r in records if served_by(r) not in ("g1", "g2")] == []  # each request found in HAProxy's log
    in_flight = [r for r in records if served_by(r) == victim.name  # sent to it before it was gone, not done
                 and r["start"] < dead_at and r["end"] > killed_at]
    failed = [r for r in records if "error" in r or r.get("status") != 200]
    assert {r["n"] for r in failed} <= {r["n"] for r in in_flight}, [
        (r, killed_at, [line for line in logged if line.startswith(f"{r['source']}:{r.get('sport')} ")])
        for r in failed]
    assert any(REDISPATCHED.search(line) for line in logged)  # connects refused by the dead instance went elsewhere
    after = [r for r in records if r["start"] > dead_at]
    assert after and all("error" not in r and r["status"] == 200 for r in after)
    assert {served_by(r) for r in records if r["end"] < killed_at} == {"g1", "g2"}


# -- transparent: nftables spreads redirected connections over two guards ------------------------


@pytest.fixture(scope="module")
def transparent_run(transparent: Gateway) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    records = transparent.run_load(mixed(60), "judged")
    return records, transparent.all_decisions(60)


def test_transparent_gateway_judges_every_request_once_across_both_instances(
        transparent_run: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]) -> None:
    records, logs = transparent_run
    assert len(records) == 60
    assert_judged(records, logs)
    assert all(logs), [len(log) for log in logs]


def test_transparent_records_carry_the_real_client_address(
        transparent_run: tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]) -> None:
    records, logs = transparent_run
    source = {record["n"]: record["source"] for record in records}
    for line in (line for log in logs for line in log):
        assert line["client"] == source[marker(line)], line


def test_transparent_pass_through_keeps_the_origin_certificate(transparent: Gateway, pki: TestPKI) -> None:
    done = transparent.lab.run(transparent.lab.clients, [
        "curl", "-sS", "--noproxy", "*", "--cacert", str(pki.origin_ca_bundle), f"https://{PASS_THROUGH}/"])
    assert done.stdout == "pass-through\n"


def test_transparent_dead_instance_refuses_its_share_until_the_rule_drops_it(transparent: Gateway) -> None:
    """nftables does not health-check: after one instance dies, the connections `numgen` sends to its
    port are refused, until the admin's watchdog reloads the rules with the live port only."""
    transparent.instances[1].process.send_signal(signal.SIGKILL)
    transparent.instances[1].process.wait(10)
    records = transparent.run_load(mixed(20), "one-dead")
    refused = [r for r in records if "error" in r]
    assert refused and all("Connection refused" in r["error"] for r in refused)
    handle = first_rule_handle(transparent.lab)
    transparent.lab.run(transparent.lab.gateway, [  # what the watchdog in docs/gateway.md runs
        "nft", "replace", "rule", "ip", "autodiscover_guard", "prerouting", "handle", handle,
        "iifname", "cl0", "tcp", "dport", "{ 80, 443 }", "redirect", "to", ":8081"])
    records = transparent.run_load(mixed(20), "after-watchdog")
    assert [r for r in records if "error" in r] == []


def first_rule_handle(lab: Lab) -> str:
    listing = lab.run(lab.gateway, ["nft", "-a", "list", "chain", "ip", "autodiscover_guard", "prerouting"]).stdout
    return str(re.findall(r"# handle (\d+)", listing.split("policy accept;", 1)[1])[0])
