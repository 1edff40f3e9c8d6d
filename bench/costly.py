"""Costly answers: judgement time per KB up to the 1 MiB cap, and what benign flows wait meanwhile.

A hostile answer under the cap can name ~12,000 foreign servers. `per_kb` judges such answers
from 64 KiB to 1 MiB with no time budget (so the raw cost shows) under two policies: `block`
(parse + rules) and the default `rewrite` (parse + rules + cutting every suggestion out), two ways:
one answer after a collection (`cold`, with the cyclic collector's share), and a stream of answers
of that size judged back to back (`stream`: what a busy proxy pays per KB, collections included).
Both run on a heap like the proxy's: `AutodiscoverGuard.running` freezes what start-up loaded
(`gc.freeze`), so full collections scan only what judging keeps alive. `benign_latency`
runs a real mitmdump with the guard and measures benign AutoDetect flows on their own, then
while other clients keep sending 1 MiB hostile POX answers (judged in the guard's threads).
"""

from __future__ import annotations

import dataclasses
import gc
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any

import urllib3

from bench.proxy import FIXTURES, POX_REQUEST, _session
from bench.servers import Mitmdump, Upstream, make_ca, start_mitmdump
from guard.engine import judge
from guard.names import User
from guard.policy import Policy
from guard.rules.catalogue import RuleAction

ALICE = User("alice@contoso.com", "alice", "contoso.com", "contoso.com")
_UNIT = 92  # bytes per foreign <Protocol> in `foreign_pox` (at most: 5-digit names)
SIZES_KIB = (64, 128, 256, 512, 1000)  # 1000 KiB: the largest that stays under the 1 MiB cap with its frame


def foreign_pox(count: int) -> bytes:
    """A POX answer for alice@contoso.com naming `count` IMAP servers at a host she does not own (~86 B each)."""
    head = (b'<?xml version="1.0" encoding="utf-8"?>\n'
            b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">\n'
            b'<Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">\n'
            b"<Account><AccountType>email</AccountType><Action>settings</Action>\n")
    units = b"".join(b"<Protocol><Type>IMAP</Type><Server>m%d.jnet.sei.co.jp</Server><Port>993</Port></Protocol>\n" % i
                     for i in range(count))
    return head + units + b"</Account>\n</Response>\n</Autodiscover>\n"


@contextmanager
def _collector_time() -> Iterator[list[float]]:
    """Seconds spent in the cyclic collector while the block runs (one-element list, filled on exit)."""
    spent = [0.0]
    started = [0.0]

    def on_collect(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - started[0]

    gc.callbacks.append(on_collect)
    try:
        yield spent
    finally:
        gc.callbacks.remove(on_collect)


_STREAM_KIB = 8 * 1024  # per size and action: a stream of answers adding up to 8 MiB


@contextmanager
def _frozen_start_up() -> Iterator[None]:
    """The heap as the proxy has it once running: start-up objects out of the collector's reach."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def per_kb(policy: Policy) -> list[tuple[str, int, int, float, float, float]]:
    """(foreign-host action, answer bytes, suggestions, cold median ms, of which collector ms,
    stream ms per answer) per size and action."""
    rows = []
    with _frozen_start_up():
        for action in (RuleAction.BLOCK, RuleAction.REWRITE):
            judged = dataclasses.replace(policy, actions=MappingProxyType({**policy.actions, "foreign-host": action}))
            judge(foreign_pox(SIZES_KIB[-1] * 1024 // _UNIT), ALICE, judged)  # fills the host caches once
            for kib in SIZES_KIB:
                count = kib * 1024 // _UNIT
                body = foreign_pox(count)
                samples = []
                for _ in range(3):
                    gc.collect()  # each cold run starts from the same heap
                    with _collector_time() as collector:
                        started = time.perf_counter()
                        judge(body, ALICE, judged)
                        samples.append((time.perf_counter() - started, collector[0]))
                total, in_collector = sorted(samples)[1]
                answers = _STREAM_KIB // kib
                started = time.perf_counter()
                for _ in range(answers):
                    judge(body, ALICE, judged)
                stream = (time.perf_counter() - started) / answers
                rows.append((action.value, len(body), count, total * 1000, in_collector * 1000, stream * 1000))
    return rows


class _Hostile:
    """`clients` threads posting for the 1 MiB hostile answer back to back until `stop`."""

    def __init__(self, guard: Mitmdump, confdir: Path, clients: int) -> None:
        self.guard, self.confdir = guard, confdir
        self.done = threading.Event()
        self.judged = 0
        self.workers = [threading.Thread(target=self._send, daemon=True) for _ in range(clients)]
        for worker in self.workers:
            worker.start()
        if self.workers:
            time.sleep(0.5)  # the first hostile answers are in flight

    def _send(self) -> None:
        session = _session(self.guard, self.confdir)
        while not self.done.is_set():
            session.post("https://autodiscover.contoso.com/autodiscover/autodiscover.xml", data=POX_REQUEST,
                         headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=120)
            self.judged += 1

    def stop(self) -> int:
        self.done.set()
        for worker in self.workers:
            worker.join(timeout=120)
        return self.judged


def benign_latency(requests_per_side: int = 200, hostile_clients: int = 2) -> dict[str, tuple[float, float, int]]:
    """{"alone" | "with hostile 1 MiB answers": (p50 ms, p99 ms, hostile answers judged meanwhile)}."""
    urllib3.disable_warnings()
    benign = (FIXTURES / "autodetect__benign_own_domain.json").read_bytes().replace(b"northwind-traders.co.uk",
                                                                                    b"contoso.com")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca, leaf, key = make_ca(folder, ["autodiscover.contoso.com", "autodetect.contoso.com"])
        upstream = Upstream(leaf, key, {
            "/autodiscover/autodiscover.xml": ("text/xml; charset=utf-8", foreign_pox(1000 * 1024 // _UNIT)),
            "/autodetect/detect": ("application/json; charset=utf-8", benign),
        })
        guard = start_mitmdump(folder, ca, upstream.port, guard=True, name="guard")
        results: dict[str, tuple[float, float, int]] = {}
        try:
            session = _session(guard, folder / "conf-guard")
            for side in ("alone", "with hostile 1 MiB answers"):
                hostile = _Hostile(guard, folder / "conf-guard", hostile_clients if side != "alone" else 0)
                latencies = []
                for _ in range(requests_per_side):
                    started = time.perf_counter()
                    response = session.get("https://autodetect.contoso.com/autodetect/detect?app=bench",
                                           headers={"X-Email": "alice@contoso.com"}, timeout=60)
                    latencies.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        raise RuntimeError(f"benign flow: HTTP {response.status_code}")
                judged = hostile.stop()
                ordered = sorted(latencies)
                results[side] = (ordered[len(ordered) // 2] * 1000,
                                 ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, judged)
        finally:
            guard.stop()
            upstream.close()
    return results
