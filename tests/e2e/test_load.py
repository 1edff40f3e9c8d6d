"""Load: `FLOWS` discovery flows from `CLIENTS` concurrent keep-alive clients through one guard mitmdump.

`FLOWS` is 2,000 in the suite: on the shared 2-core CI machine mitmdump itself serves only
~35-40 flows/s (a bare mitmdump alike; the guard adds ~1 ms a flow), so the issue's 10,000 take
4-5 minutes. Run them
with `LOAD_FLOWS=10000 .venv/bin/python -m pytest tests/e2e/test_load.py -s` (figures of such a
run are in docs/security.md).

The clients are real `curl` processes (one per client, each fetching its share of URLs over one
proxy connection per host, as a mail client re-using its connection would), so the test process
only runs the upstream. Half the answers are honest (allowed), half are the January 2026
incident's (blocked); every request carries the test bearer token (to the user's own host, so it
is forwarded) for the secrets sweep. Every URL carries a marker as a query key (`&n-<client>-<i>`:
the log keeps query keys, never values), so each judged flow can be found in the decision log
exactly once; every line must parse as JSON (no interleaved or torn lines). Afterwards mitmdump
must still run, hold no more file descriptors than `FD_SLACK` above its idle count (and never
more than four per client meanwhile), and have grown by less than `RSS_GROWTH_KIB`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.procstat import memory_kib, open_fds
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.secrets import bearer
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

FLOWS = int(os.environ.get("LOAD_FLOWS", "2000"))
CLIENTS = 20
FD_SLACK = 16
# mitmproxy holds ~60 KB per flow until the keep-alive connection closes, and the allocator keeps
# the pages: measured +123 MiB for 2,000 flows (100 per connection) with the guard, +126 MiB for a
# bare mitmdump, and a bare mitmdump's next rounds levelling off (+48, then +2 MiB). So the bound
# scales with flows per connection, not with the total.
RSS_GROWTH_KIB = (64 + 3 * (FLOWS // CLIENTS) // 2) * 1024
BOUND_SECONDS = max(120, FLOWS // 10)  # the clients' run, at >= 10 flows/s (a busy shared machine)
PATH = "/mail/config-v1.1.xml"
GOOD = ("autoconfig.northwind-traders.co.uk", "alice@northwind-traders.co.uk")
BAD = ("autoconfig.example.com", "email@example.com")


@pytest.fixture(scope="module")
def proxy(make_guard_proxy: ProxyFactory, upstream: Upstream) -> Iterator[GuardProxy]:
    xml = {"content-type": "application/xml"}
    upstream.add_route(GOOD[0], PATH, body=(FIXTURES / "autoconfig__benign_own_domain.xml").read_bytes(), headers=xml)
    upstream.add_route(BAD[0], PATH, body=(FIXTURES / "autoconfig__seed_example_com.xml").read_bytes(), headers=xml)
    started = make_guard_proxy()
    yield started
    started.stop()


def _client_config(folder: Path, client: int, count: int) -> Path:
    """A curl config fetching `count` URLs, alternating honest and incident answers."""
    lines = []
    for i in range(count):
        host, address = GOOD if i % 2 == 0 else BAD
        lines += [f'url = "https://{host}{PATH}?emailaddress={address}&n-{client}-{i}"', 'output = "/dev/null"']
    path = folder / f"client-{client}.curl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.timeout(BOUND_SECONDS + 60)
def test_many_flows_from_twenty_keep_alive_clients_are_each_logged_once(proxy: GuardProxy, tmp_path: Path) -> None:
    pid = proxy.process.pid
    warm = proxy.curl(f"https://{GOOD[0]}{PATH}?emailaddress={GOOD[1]}&warm", "-o", "/dev/null", "-w", "%{http_code}")
    assert warm.stdout == "200"
    fds_idle, rss_idle = open_fds(pid), memory_kib(pid)
    per_client = FLOWS // CLIENTS
    began = time.monotonic()
    clients = [
        subprocess.Popen(["curl", "-sS", "--noproxy", "", "-x", proxy.url, "--cacert", str(proxy.ca_bundle),
                          "-H", f"authorization: {bearer()}", "-w", "%{http_code}\n",
                          "-K", str(_client_config(tmp_path, c, per_client))],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in range(CLIENTS)
    ]
    fds_peak = fds_idle
    while any(client.poll() is None for client in clients) and time.monotonic() - began < BOUND_SECONDS:
        fds_peak = max(fds_peak, open_fds(pid))  # (curl's output is small: the pipes cannot fill)
        time.sleep(0.2)
    served = time.monotonic() - began
    codes: Counter[str] = Counter()
    for client in clients:
        out, err = client.communicate(timeout=5)
        # on failure, mitmdump's own account of the connection says whose doing a reset was
        assert client.returncode == 0, err[-500:] + "\nmitmdump said:\n" + "\n".join(proxy.output[-40:])
        codes.update(out.split())
    # each client holds at most a proxy connection and an upstream connection per host
    assert fds_peak <= fds_idle + 4 * CLIENTS + FD_SLACK
    assert codes == Counter({"200": FLOWS // 2, "404": FLOWS // 2})  # autoconfig's block answer is a 404

    lines = proxy.wait_for(lambda: [d for d in proxy.decisions() if "&n-" in d["url"]]
                           if len(proxy.decisions()) >= FLOWS + 1 else None, timeout=60, what="every decision")
    markers = Counter(d["url"].rpartition("&n-")[2] for d in lines)
    expected = {f"{c}-{i}" for c in range(CLIENTS) for i in range(per_client)}
    assert set(markers) == expected and set(markers.values()) == {1}
    actions = Counter((d["user_domain"], d["action"]) for d in lines)
    assert actions == Counter({("northwind-traders.co.uk", "allow"): FLOWS // 2, ("example.com", "block"): FLOWS // 2})

    assert proxy.process.poll() is None
    fds_after = proxy.wait_for(lambda: ((n := open_fds(pid)) <= fds_idle + FD_SLACK and n) or None, timeout=10,
                               what=f"fds back near {fds_idle}")
    rss_after = memory_kib(pid)
    print(f"\nload: {FLOWS} flows / {CLIENTS} clients in {served:.1f} s ({FLOWS / served:.0f} flows/s); "
          f"fds {fds_idle} -> peak {fds_peak} -> {fds_after}; RSS {rss_idle // 1024} -> {rss_after // 1024} MiB")
    assert rss_after - rss_idle < RSS_GROWTH_KIB
