"""Gateway mode behind HAProxy on loopback: the shipped config, two guards, every decision logged once.

HAProxy (the Debian package; `.ci/run` installs it) runs `deploy/haproxy/haproxy.cfg` with only the
ports changed to free loopback ports and `balance roundrobin` instead of `source` (all test clients
share one address), in front of two guard mitmdumps (explicit proxy mode), each writing its own
decision log. Clients send CONNECT / absolute-form requests to HAProxy as they would to one
proxy. Every request carries a marker (`?n-<i>`, a query key: the log keeps keys, never values), so the two
logs together can be checked for exactly one decision per request. This runs without root; the
namespace lab (test_gateway_lab.py) runs the file unchanged with real client addresses.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import FIXTURES, ROOT, pox_request
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.process import stop as stop_process
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

POX = "/autodiscover/autodiscover.xml"
XML = {"content-type": "text/xml; charset=utf-8"}
HONEST_HOST, SEED_HOST = "autodiscover.lb.contoso.com", "autodiscover.lb.example.com"
REQUESTS = 40
CLIENTS = 8

SHIPPED_CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


def loopback_config(port: int, first: int, second: int) -> str:
    """The shipped config on test ports, round-robin (every test client has the same address)."""
    text = SHIPPED_CONFIG.read_text()
    for shipped, test in ((" bind :8080", f" bind 127.0.0.1:{port}"), ("127.0.0.1:8081", f"127.0.0.1:{first}"),
                          ("127.0.0.1:8082", f"127.0.0.1:{second}"), ("balance source", "balance roundrobin")):
        assert shipped in text, f"{SHIPPED_CONFIG} no longer has {shipped!r}"
        text = text.replace(shipped, test)
    return text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class HAProxy:
    """`haproxy -db` (foreground) with a config file, until `stop()`; its output (one log line per
    connection) goes to a file beside the config, so no pipe can fill up and stall it."""

    def __init__(self, config: Path, port: int) -> None:
        self.port = port
        self.output = config.with_suffix(".log")
        with self.output.open("wb") as sink:
            self.process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=sink,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"haproxy did not listen on {port}:\n{self.stop()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """Stop HAProxy; what it wrote."""
        stop_process(self.process)
        return self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def haproxy_binary() -> str:
    found = shutil.which("haproxy")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy is not installed (CI must have it: .ci/run installs the Debian package)")
        pytest.skip("haproxy is not installed (Debian: apt-get install haproxy)")
    return found


@pytest.fixture(scope="module", autouse=True)
def routes(upstream: Upstream) -> None:
    upstream.add_route(HONEST_HOST, POX, headers=XML, body=(FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes())
    upstream.add_route(SEED_HOST, POX, headers=XML, body=(FIXTURES / "pox__seed_example_com.xml").read_bytes())


@pytest.fixture(scope="module")
def guards(make_guard_proxy: ProxyFactory) -> Iterator[tuple[GuardProxy, GuardProxy]]:
    trust_haproxy = {"guard_trusted_proxies": "127.0.0.1"}  # `run --trusted-proxy 127.0.0.1`
    pair = (make_guard_proxy(mode="enforce", options=trust_haproxy),
            make_guard_proxy(mode="enforce", options=trust_haproxy))
    yield pair
    for proxy in pair:
        proxy.stop()


@pytest.fixture(scope="module")
def balancer(haproxy_binary: str, guards: tuple[GuardProxy, GuardProxy],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    yield from _haproxy(tmp_path_factory, "haproxy", loopback_config, guards)


def _haproxy(tmp_path_factory: pytest.TempPathFactory, folder: str, config_for: Callable[[int, int, int], str],
             guards: tuple[GuardProxy, GuardProxy]) -> Iterator[HAProxy]:
    """HAProxy on a free port in front of both guards, configured by `config_for(port, first, second)`."""
    port = free_port()
    config = tmp_path_factory.mktemp(folder) / "haproxy.cfg"
    config.write_text(config_for(port, guards[0].port, guards[1].port))
    server = HAProxy(config, port)
    yield server
    server.stop()


def ask(balancer: HAProxy, ca_bundle: Path, n: int) -> tuple[int, bool, bytes]:
    """Request `n`: even numbers ask for an honest answer, odd ones for the seed incident's. A new
    session per request, so each is a new TCP connection HAProxy can send to either guard."""
    honest = n % 2 == 0
    host, address = (HONEST_HOST, "alice@contoso.com") if honest else (SEED_HOST, "email@example.com")
    with requests.Session() as session:
        session.trust_env = False
        session.proxies = {"https": balancer.url}
        response = session.post(f"https://{host}{POX}?n-{n}", data=pox_request(address), headers=XML,
                                verify=str(ca_bundle), timeout=30)
    return n, honest, response.content


def test_two_guards_behind_haproxy_judge_every_request_once(balancer: HAProxy, guards: tuple[GuardProxy, GuardProxy],
                                                            ca_bundle: Path) -> None:
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda n: ask(balancer, ca_bundle, n), range(REQUESTS)))

    honest_body = (FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes()
    for n, honest, body in results:
        if honest:
            assert body == honest_body, n
        else:
            assert b"jnet.sei.co.jp" not in body and b"<ErrorCode>500</ErrorCode>" in body, n

    def all_logged() -> list[list[dict[str, Any]]] | None:
        logs = [proxy.decisions() for proxy in guards]
        return logs if sum(map(len, logs)) >= REQUESTS else None

    logs = guards[0].wait_for(all_logged, what=f"{REQUESTS} decisions across both logs")
    time.sleep(0.3)  # nothing more may arrive
    logs = [proxy.decisions() for proxy in guards]
    assert all(logs), [len(log) for log in logs]  # both instances took traffic
    lines = [line for log in logs for line in log]
    markers = Counter(int(line["url"].rpartition("?n-")[2]) for line in lines)
    assert markers == Counter(range(REQUESTS))  # every request exactly once, across both logs
    assert len({line["id"] for line in lines}) == REQUESTS
    for line in lines:
        n = int(line["url"].rpartition("?n-")[2])
        assert line["action"] == ("allow" if n % 2 == 0 else "block"), line


@pytest.mark.parametrize("scheme", ["https", "http"])  # CONNECT tunnel / absolute-form request
def test_decisions_behind_haproxy_name_the_client_haproxy_saw_not_one_it_claims(
        balancer: HAProxy, guards: tuple[GuardProxy, GuardProxy], ca_bundle: Path, scheme: str) -> None:
    """The client binds 127.0.0.9 and claims 198.51.100.7 on the CONNECT and inside the tunnel:
    HAProxy drops the claim and forwards 127.0.0.9; the guards trust HAProxy (127.0.0.1) only."""
    before = [len(proxy.decisions()) for proxy in guards]
    key = f"client-{scheme}"
    done = subprocess.run(["curl", "-sS", "--noproxy", "", "--interface", "127.0.0.9", "-x", balancer.url,
                           "--proxy-header", "X-Forwarded-For: 198.51.100.7", "-H", "X-Forwarded-For: 198.51.100.7",
                           "--cacert", str(ca_bundle), "-H", "content-type: text/xml",
                           "--data-binary", pox_request("alice@contoso.com").decode(),
                           f"{scheme}://{HONEST_HOST}{POX}?{key}"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr

    def new_decisions() -> list[dict[str, Any]] | None:
        found = [line for proxy, count in zip(guards, before, strict=True) for line in proxy.decisions()[count:]
                 if f"?{key}" in line["url"]]
        return found or None

    (line,) = guards[0].wait_for(new_decisions, what=f"the decision for {key}")
    assert line["client"] == "127.0.0.9", json.dumps(line)


# --- issue 14: a redirect walk across connections stays on one instance (`balance source`) ------

WALK_FIRST, WALK_NEXT = "autodiscover.walk.contoso.com", "autodiscover.next.walk.contoso.com"
WALKS = 6


def shipped_config_on_ports(port: int, first: int, second: int) -> str:
    """The shipped config with only the ports changed: `balance source` kept."""
    text = SHIPPED_CONFIG.read_text()
    assert "balance source" in text, f"{SHIPPED_CONFIG} no longer balances by source"
    for shipped, test in ((" bind :8080", f" bind 127.0.0.1:{port}"), ("127.0.0.1:8081", f"127.0.0.1:{first}"),
                          ("127.0.0.1:8082", f"127.0.0.1:{second}")):
        text = text.replace(shipped, test)
    return text


@pytest.fixture(scope="module")
def sticky_balancer(haproxy_binary: str, guards: tuple[GuardProxy, GuardProxy], upstream: Upstream,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[HAProxy]:
    upstream.add_route(WALK_FIRST, POX, status=302, headers={"location": f"https://{WALK_NEXT}{POX}"})
    upstream.add_route(WALK_NEXT, POX, headers=XML, body=(FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes())
    yield from _haproxy(tmp_path_factory, "haproxy-sticky", shipped_config_on_ports, guards)


def test_a_redirect_walk_through_haproxy_keeps_the_original_user_across_connections(
        sticky_balancer: HAProxy, guards: tuple[GuardProxy, GuardProxy], ca_bundle: Path) -> None:
    before = [len(proxy.decisions()) for proxy in guards]
    for n in range(WALKS):
        with requests.Session() as session:
            session.trust_env = False
            session.proxies = {"https": sticky_balancer.url}
            # requests opens one CONNECT tunnel per host: the second hop is a new connection to HAProxy
            response = session.post(f"https://{WALK_FIRST}{POX}?n={n}", data=pox_request("alice@contoso.com"),
                                    headers=XML, verify=str(ca_bundle), timeout=30)
        hops = [r.url for r in (*response.history, response)]
        assert response.status_code == 200 and [h.split("?")[0] for h in hops] == [
            f"https://{WALK_FIRST}{POX}", f"https://{WALK_NEXT}{POX}"], hops

    def walked() -> list[list[dict[str, Any]]] | None:
        logs = [proxy.decisions()[start:] for proxy, start in zip(guards, before, strict=True)]
        return logs if sum(map(len, logs)) >= 2 * WALKS else None

    logs = guards[0].wait_for(walked, what=f"{2 * WALKS} decisions across both logs")
    next_hops = [line for log in logs for line in log if WALK_NEXT in line["url"]]
    assert len(next_hops) == WALKS
    for line in next_hops:  # judged for alice@contoso.com, not for the host's own name
        assert (line["user_domain"], line["user_source"], line["action"]) == ("contoso.com", "redirect", "allow"), line
    assert sum(1 for log in logs if log) == 1  # one client address: every hop on one instance
