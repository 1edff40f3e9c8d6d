"""Gateway throughput: the lab's mixed load through HAProxy + two guards vs HAProxy + two bare mitmdumps.

Two namespace labs (tests/e2e/support/lab.py) run side by side in one process: each has its own
clients, HAProxy with the shipped config, two instances and fake internet. The guard lab's
instances run what `autodiscover-guard run --mode gateway` execs; the bare lab's run the same
mitmdump options without the addon. Rounds alternate A B, B A so machine noise hits both alike.
Each round is 90 % pass-through CONNECTs (not decrypted) and 10 % discovery (decrypted, and judged
by the guard), every request on a new connection from one of six client addresses. CPU per process
is utime+stime from /proc (mitmdump, HAProxy, upstream). Needs root, like the lab.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.support.lab import PASS_THROUGH, Gateway, lab_unavailable, mixed, start_gateway
from tests.e2e.support.pki import TestPKI

CONCURRENCY = 8


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _processes(gateway: Gateway) -> dict[str, int]:
    found = {instance.name: instance.process.pid for instance in gateway.instances}
    if gateway.haproxy is not None:
        found["haproxy"] = gateway.haproxy.pid
    if gateway.upstream is not None:
        found["upstream"] = gateway.upstream.pid
    return found


@dataclass
class Side:
    """One lab's measurements, summed over its rounds."""

    name: str
    gateway: Gateway
    requests: int = 0
    errors: int = 0
    rates: list[float] = field(default_factory=list)  # requests per second, round by round
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds
    latency: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})  # discovery? -> s

    def round(self, number: int, count: int) -> None:
        """Send one round of the mixed load and add what it took."""
        pids = _processes(self.gateway)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load process, once reaped
        records = self.gateway.run_load(mixed(count, discovery_every=10), f"round-{number}", CONCURRENCY)
        for name, pid in pids.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + cpu_seconds(pid) - before[name]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        self.cpu["clients"] = self.cpu.get("clients", 0.0) + client
        good = [r for r in records if "error" not in r and r.get("status") == 200]
        self.requests += len(records)
        self.errors += len(records) - len(good)
        self.rates.append(len(records) / (max(r["end"] for r in records) - min(r["start"] for r in records)))
        for record in good:
            self.latency[record["host"] != PASS_THROUGH].append(record["end"] - record["start"])

    def rate(self) -> float:
        return statistics.median(self.rates)

    def cpu_ms_per_request(self, name: str) -> float:
        return self.cpu.get(name, 0.0) / self.requests * 1000

    def percentiles(self, discovery: bool) -> str:
        ordered = sorted(self.latency[discovery])
        if not ordered:
            return "-"
        return "/".join(f"{ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000:.1f}" for q in (0.5, 0.99))


def _table(sides: Iterable[Side]) -> list[str]:
    rows = ["| instances | req/s (median of rounds) | errors | discovery p50/p99 ms | pass-through p50/p99 ms | "
            "CPU ms/req g1 | g2 | haproxy | upstream | clients |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for side in sides:
        rows.append(f"| {side.name} | {side.rate():.1f} | {side.errors} | {side.percentiles(True)} | "
                    f"{side.percentiles(False)} | {side.cpu_ms_per_request('g1'):.2f} | "
                    f"{side.cpu_ms_per_request('g2'):.2f} | {side.cpu_ms_per_request('haproxy'):.2f} | "
                    f"{side.cpu_ms_per_request('upstream'):.2f} | {side.cpu_ms_per_request('clients'):.2f} |")
    return rows


def report(quick: bool) -> list[str]:
    """Print the gateway section; the summary lines for the report's end."""
    rounds, per_round = (2, 200) if quick else (6, 400)
    print(f"\n## Gateway throughput (namespace lab: HAProxy + 2 instances, {rounds} interleaved rounds × "
          f"{per_round} requests, 90 % pass-through / 10 % discovery, {CONCURRENCY} concurrent clients)\n")
    why = lab_unavailable()
    if why:
        print(f"skipped: {why}")
        return [f"gateway throughput: skipped ({why})"]
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, range(os.cpu_count() or 1))  # a gateway is many processes: let them use every core
    try:
        bare_side, guard_side = _measure(rounds, per_round)
    finally:
        os.sched_setaffinity(0, pinned)
    for row in _table((bare_side, guard_side)):
        print(row)
    ratio = statistics.median(g / b for g, b in zip(guard_side.rates, bare_side.rates, strict=True))
    cpu = sum(guard_side.cpu_ms_per_request(n) for n in ("g1", "g2")) / sum(
        bare_side.cpu_ms_per_request(n) for n in ("g1", "g2"))
    verdict = "met" if ratio >= 0.95 else "MISSED"
    return [f"gateway guard/bare throughput ≥ 0.95 (issue 18): {verdict} — {ratio:.3f} (median of round ratios); "
            f"mitmdump CPU per request guard/bare {cpu:.3f}; errors {guard_side.errors} guard, {bare_side.errors} bare"]


def _measure(rounds: int, per_round: int) -> tuple[Side, Side]:
    """(bare, guard) after the interleaved rounds; both labs are removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pki = TestPKI(folder / "pki")
        labs: list[Gateway] = []
        try:
            for name, bare in (("bare", True), ("guard", False)):
                (folder / name).mkdir()
                labs.append(start_gateway(pki, folder / name, explicit=True, bare=bare))
            bare_side, guard_side = Side("2 bare mitmdumps", labs[0]), Side("2 guards", labs[1])
            for side in (bare_side, guard_side):
                side.gateway.run_load(mixed(100, discovery_every=10), "warm-up", CONCURRENCY)
            for number in range(rounds):  # A B, then B A: drift in machine load cancels out
                order = (bare_side, guard_side) if number % 2 == 0 else (guard_side, bare_side)
                for side in order:
                    side.round(number, per_round)
        finally:
            for gateway in labs:
                gateway.lab.close()
    return bare_side, guard_side
