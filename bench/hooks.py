"""The addon's own time per flow: its mitmproxy hooks run in-process on mitmproxy's test flows.

The proxy ratios carry the machine's noise (a few per cent between identical runs); this splits
the guard's share of a flow's CPU into its hooks, so a ratio can be checked against what the
guard itself spends: `1 + hooks / bare CPU per request` is the ratio the guard alone would cause.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from mitmproxy import http
from mitmproxy.test import tflow

from bench.judgement import FIXTURES
from bench.proxy import POX_REQUEST
from guard.engine import judge
from guard.log import DecisionLog
from guard.names import User
from guard.policy import Policy
from guard.proxy.addon import AutodiscoverGuard
from guard.proxy.reload import Runtime

POX_URL = "https://autodiscover.contoso.com/autodiscover/autodiscover.xml"
PLAIN_URL = "https://www.contoso.com/index.html"
_BASIC = {"authorization": "Basic YWxpY2VAY29udG9zby5jb206c2VjcmV0"}  # alice@contoso.com:secret
# What python-requests (bench/proxy.py's client) and http.server send besides: mitmproxy's test flows
# carry no Host header, and the guard's cost depends on it (the URL it logs is built from it).
_CLIENT = {"user-agent": "python-requests/2.32.3", "accept-encoding": "gzip, deflate", "accept": "*/*",
           "connection": "keep-alive"}
_SERVER = {"server": "BaseHTTP/0.6 Python/3.11.7", "date": "Sun, 29 Nov 2026 10:00:00 GMT"}


def _guard(policy: Policy, log: Path) -> AutodiscoverGuard:
    runtime = Runtime()
    runtime.log = DecisionLog(str(log))
    runtime.install(policy)
    return AutodiscoverGuard(runtime)


def _flow(method: str, url: str, body: bytes, headers: dict[str, str]) -> http.HTTPFlow:
    flow = tflow.tflow(resp=False)
    named = {"host": urlsplit(url).netloc, **_CLIENT, **headers}
    fields = http.Headers([(k.encode(), v.encode()) for k, v in named.items()])
    flow.request = http.Request.make(method, url, body, fields)
    flow.response = None
    return flow


def _per_flow(guard: AutodiscoverGuard, make: Callable[[], http.HTTPFlow], answer: Callable[[], http.Response],
              flows: int, judged: Callable[[], object] | None = None) -> tuple[float, float, float]:
    """Median µs of (request hook, responseheaders + response hooks, `judged` alone) per flow.

    `judged` (the judgement the response hook makes) runs in the same iterations, so the share it
    reports is measured at the same moments as the hooks: this machine's speed drifts within a run.
    """
    requests, responses, judgements = [], [], []
    for _ in range(flows):
        flow = make()
        started = time.perf_counter()
        guard.request(flow)
        requests.append(time.perf_counter() - started)
        flow.response = answer()
        started = time.perf_counter()
        guard.responseheaders(flow)
        guard.response(flow)
        responses.append(time.perf_counter() - started)
        if judged is not None:
            started = time.perf_counter()
            judged()
            judgements.append(time.perf_counter() - started)
    return (statistics.median(requests) * 1e6, statistics.median(responses) * 1e6,
            statistics.median(judgements) * 1e6 if judgements else 0.0)


def run(policy: Policy, flows: int = 3000) -> list[tuple[str, float, float, float]]:
    """Rows of (flow, request µs, response µs, of which judgement µs)."""
    pox = (FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes()
    alice = User.from_address("alice@contoso.com")
    with tempfile.TemporaryDirectory() as tmp:
        guard = _guard(policy, Path(tmp) / "decisions.jsonl")
        pox_request, pox_response, judge_us = _per_flow(
            guard, lambda: _flow("POST", POX_URL, POX_REQUEST, {"content-type": "text/xml", **_BASIC}),
            lambda: http.Response.make(200, pox, {**_SERVER, "content-type": "text/xml; charset=utf-8"}), flows,
            lambda: judge(pox, alice, policy))
        plain_request, plain_response, _ = _per_flow(
            guard, lambda: _flow("GET", PLAIN_URL, b"", {}),
            lambda: http.Response.make(200, b"<html>hello</html>", {**_SERVER, "content-type": "text/html"}), flows)
    return [
        ("POX POST (discovery, on-prem answer)", pox_request, pox_response, judge_us),
        ("plain GET (not discovery)", plain_request, plain_response, 0.0),
    ]
