"""Proxy overhead: bare mitmdump vs mitmdump with the guard, interleaved rounds in one run.

Both proxies run at once against the same loopback HTTPS upstream; rounds alternate A B A B so
machine noise hits both sides alike. CPU is mitmdump's own utime+stime per request
(/proc/<pid>/stat); latency is the client's wall time per request on a kept-alive connection.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3

from bench.servers import Mitmdump, Upstream, make_ca, start_mitmdump

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
POX_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
    b'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@contoso.com</EMailAddress>'
    b"<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    b"</AcceptableResponseSchema></Request></Autodiscover>"
)


@dataclass
class Side:
    """Accumulated measurements for one proxy and one workload."""

    cpu: float = 0.0
    requests: int = 0
    latencies: list[float] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # CPU ms per request, round by round

    def cpu_ms_per_request(self) -> float:
        return self.cpu / self.requests * 1000 if self.requests else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


POX_URL = "https://autodiscover.contoso.com/autodiscover/autodiscover.xml"
WORKLOADS = {
    "POX POST (discovery)": ("post", POX_URL),
    "AutoDetect GET (discovery)": ("get", "https://autodetect.contoso.com/autodetect/detect?app=bench"),
    "plain GET (not discovery)": ("get", "https://www.contoso.com/index.html"),
}


def _round(proxy: Mitmdump, session: requests.Session, method: str, url: str, count: int, side: Side) -> None:
    before = proxy.cpu_seconds()
    for _ in range(count):
        start = time.perf_counter()
        if method == "post":
            response = session.post(url, data=POX_REQUEST, headers={"Content-Type": "text/xml; charset=utf-8",
                                                                     "X-Email": "alice@contoso.com"})
        else:
            response = session.get(url, headers={"X-Email": "alice@contoso.com"})
        side.latencies.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code} through port {proxy.port}")
    spent = proxy.cpu_seconds() - before
    side.cpu += spent
    side.requests += count
    side.rounds.append(spent / count * 1000)


def run(rounds: int = 8, per_round: int = 150) -> dict[str, tuple[Side, Side]]:
    """{workload: (bare, guard)} after `rounds` interleaved rounds of `per_round` requests each."""
    urllib3.disable_warnings()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = ["autodiscover.contoso.com", "autodetect.contoso.com", "www.contoso.com"]
        ca, leaf, key = make_ca(folder, names)
        upstream = Upstream(leaf, key, {
            "/autodiscover/autodiscover.xml": ("text/xml; charset=utf-8",
                                               (FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes()),
            "/autodetect/detect": ("application/json; charset=utf-8",
                                   (FIXTURES / "autodetect__benign_own_domain.json").read_bytes().replace(
                                       b"northwind-traders.co.uk", b"contoso.com")),
            "/index.html": ("text/html", b"<html><body>" + b"x" * 2000 + b"</body></html>"),
        })
        bare = start_mitmdump(folder, ca, upstream.port, guard=False, name="bare")
        guard = start_mitmdump(folder, ca, upstream.port, guard=True, name="guard")
        results: dict[str, tuple[Side, Side]] = {}
        try:
            for workload, (method, url) in WORKLOADS.items():
                sides = (Side(), Side())
                sessions = []
                for proxy in (bare, guard):
                    session = _session(proxy, folder / f"conf-{'bare' if proxy is bare else 'guard'}")
                    sessions.append(session)
                    _round(proxy, session, method, url, 30, Side())  # warm-up: TLS, caches, imports
                for number in range(rounds):  # A B, then B A: drift in machine load cancels out
                    order = (0, 1) if number % 2 == 0 else (1, 0)
                    for index in order:
                        _round((bare, guard)[index], sessions[index], method, url, per_round, sides[index])
                results[workload] = sides
        finally:
            bare.stop()
            guard.stop()
            upstream.close()
    return results


@contextlib.contextmanager
def pox_upstream() -> Iterator[tuple[Path, Path, Upstream]]:
    """(folder, CA, upstream): a scratch folder, its CA, and an HTTPS upstream answering POX POSTs
    to `POX_URL` with the on-prem fixture."""
    urllib3.disable_warnings()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca, leaf, key = make_ca(folder, ["autodiscover.contoso.com"])
        upstream = Upstream(leaf, key, {"/autodiscover/autodiscover.xml": (
            "text/xml", (FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes())})
        try:
            yield folder, ca, upstream
        finally:
            upstream.close()


def rss_growth(guard: bool, flows: int = 10_000, warm_up: int = 1000, clients: int = 4) -> tuple[int, int, int]:
    """RSS KiB of a mitmdump (with the guard, or bare for comparison) at start, after `warm_up`
    POX flows, and after `flows` more (caches fill during warm-up; what grows after it would be a
    leak). `clients` keep-alive sessions send in parallel: each POX POST waits out a delayed ACK
    (~45 ms)."""
    with pox_upstream() as (folder, ca, upstream):
        name = "guard" if guard else "bare"
        proxy = start_mitmdump(folder, ca, upstream.port, guard=guard, name=name)
        start = proxy.rss_kib()
        try:
            sessions = [_session(proxy, folder / f"conf-{name}") for _ in range(clients)]

            def send(total: int) -> None:
                with ThreadPoolExecutor(clients) as pool:  # list(): re-raise a failed request here
                    list(pool.map(lambda s: _round(proxy, s, "post", POX_URL, total // clients, Side()), sessions))

            send(warm_up)
            warm = proxy.rss_kib()
            send(flows)
            return start, warm, proxy.rss_kib()
        finally:
            proxy.stop()


def _session(proxy: Mitmdump, confdir: Path) -> requests.Session:
    """A keep-alive client session through `proxy`, trusting its CA."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would beat .verify
    session.proxies = {"https": f"http://127.0.0.1:{proxy.port}"}
    session.verify = str(confdir / "mitmproxy-ca-cert.pem")
    return session


def median_ratio(guard: Side, bare: Side) -> float:
    """guard/bare CPU per request: the median of the per-round ratios, so one noisy round (another
    process taking the core) moves it less than it moves the totals."""
    ratios = [g / b for g, b in zip(guard.rounds, bare.rounds, strict=True) if b > 0]
    return statistics.median(ratios) if ratios else float("nan")

