"""Gateway metrics in the Prometheus text format (version 0.0.4), kept in memory.

Counters of decisions by action, of decisions by rule and action, of policy loads, of decision
lines the log could not write, of flows refused for that (`log.required`), and a histogram of
the latency the guard adds per flow. Every
series carries an `instance` label (the option the adapter passes, else `<hostname>`), so the
files of several gateway instances can be merged by one collector. `SERIES` is the one list of
what is exported: `render` walks it, and an HTTP exposition can serve the same text.
`MetricsFile` writes the text for node_exporter's textfile collector (or any scraper that reads
files), replacing the file atomically so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from guard.errors import SetupError

PREFIX = "autodiscover_guard"
# Added latency in seconds: a judgement takes ~100 µs; decompression and big answers take ms.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
LATENCY = "added_latency_seconds"


def _labels(**pairs: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs.items()) + "}"


Samples = Iterator[tuple[str, dict[str, str], float | int]]  # (name suffix, labels, value)


@dataclass(frozen=True)
class Series:
    """One exported metric: its name (after the prefix), type, help and where its samples come from."""

    name: str
    type: str
    help: str
    samples: Callable[[Metrics], Samples]


class Metrics:
    """In-memory counters and one histogram; `render` gives the exposition text."""

    def __init__(self, instance: str = "") -> None:
        self.instance = instance or socket.gethostname()
        self.decisions: Counter[tuple[str, str]] = Counter()  # (mode, would-be action)
        self.rules: Counter[tuple[str, str]] = Counter()  # (rule, would-be action)
        self.reloads: Counter[str] = Counter()  # loaded | rejected
        self.log_write_failures = 0
        self.unlogged_refusals = 0
        self.revision = ""
        self.bucket_counts = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.changed = True

    def observe(self, mode: str, action: str, rules: Iterable[str], latency_s: float) -> None:
        """Count one decision (its would-be action, so audit and enforce count alike)."""
        self.decisions[(mode, action)] += 1
        for rule in rules:
            self.rules[(rule, action)] += 1
        index = bisect_left(BUCKETS, latency_s)
        if index < len(BUCKETS):
            self.bucket_counts[index] += 1
        self.latency_sum += latency_s
        self.latency_count += 1
        self.changed = True

    def policy(self, revision: str, *, loaded: bool) -> None:
        """Count a policy load attempt; the revision in force is exported as an info metric."""
        self.reloads["loaded" if loaded else "rejected"] += 1
        if loaded:
            self.revision = revision
        self.changed = True

    def log_write_failed(self) -> None:
        """Count one decision line the log could not write (`DecisionLog(on_failure=…)`)."""
        self.log_write_failures += 1
        self.changed = True

    def refused_unlogged(self) -> None:
        """Count one discovery flow refused because the log cannot record it (`log.required`)."""
        self.unlogged_refusals += 1
        self.changed = True

    def render(self) -> str:
        """The Prometheus text exposition of everything counted so far."""
        instance = {"instance": self.instance}
        lines = []
        for series in SERIES:
            name = f"{PREFIX}_{series.name}"
            lines += [f"# HELP {name} {series.help}", f"# TYPE {name} {series.type}"]
            lines += [f"{name}{suffix}{_labels(**instance, **labels)} {value}"
                      for suffix, labels, value in series.samples(self)]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> None:
        """Replace `path` with the current text (temporary file + rename in the same folder). Raises OSError."""
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.render())
            os.chmod(tmp, 0o644)  # scrapers run as another user; the text holds no personal data
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.changed = False


def _latency(metrics: Metrics) -> Samples:
    cumulative = 0
    for bound, count in zip(BUCKETS, metrics.bucket_counts, strict=True):
        cumulative += count
        yield "_bucket", {"le": repr(bound)}, cumulative
    yield "_bucket", {"le": "+Inf"}, metrics.latency_count
    yield "_sum", {}, round(metrics.latency_sum, 6)
    yield "_count", {}, metrics.latency_count


SERIES: tuple[Series, ...] = (
    Series("decisions_total", "counter", "Discovery flows judged, by mode and the action enforce takes.",
           lambda m: (("", {"mode": mode, "action": a}, n) for (mode, a), n in sorted(m.decisions.items()))),
    Series("rule_decisions_total", "counter", "Decisions in which a rule fired, by rule and action.",
           lambda m: (("", {"rule": r, "action": a}, n) for (r, a), n in sorted(m.rules.items()))),
    Series("policy_loads_total", "counter", "Policy loads at start and on change, by result.",
           lambda m: (("", {"result": r}, n) for r, n in sorted(m.reloads.items()))),
    Series("policy_info", "gauge", "The policy revision in force.",
           lambda m: iter([("", {"revision": m.revision}, 1)])),
    Series("log_write_failures_total", "counter", "Decision lines the log could not write (each is also on stderr).",
           lambda m: iter([("", {}, m.log_write_failures)])),
    Series("unlogged_refusals_total", "counter",
           "Discovery flows refused because the decision log could not record them (log.required).",
           lambda m: iter([("", {}, m.unlogged_refusals)])),
    Series(LATENCY, "histogram", "Time the guard spent on one discovery flow.", _latency),
)


class MetricsFile:
    """The textfile writer: `check` at start, `write` every tick; a failure is reported once per episode."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.failing = False

    def check(self) -> None:
        """At start: a missing or unwritable folder is a `SetupError` naming the fix."""
        folder = self.path.parent
        if not folder.is_dir():
            raise SetupError(f"{self.path}: cannot write metrics: folder {folder} does not exist; create it "
                             f"(node_exporter's textfile folder, mkdir -p {folder}) or set guard_metrics to ''")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise SetupError(f"{self.path}: cannot write metrics: {folder} is not writable by this user; "
                             "make it writable (chown / chmod) or choose another folder")

    def write(self, metrics: Metrics) -> None:
        """Replace the file with the current text (temporary file + rename in the same folder). Never raises."""
        try:
            metrics.write(self.path)
        except OSError as exc:
            if not self.failing:
                with contextlib.suppress(OSError, ValueError):
                    print(f"autodiscover-guard: ERROR: cannot write metrics to {self.path}: {exc}",
                          file=sys.stderr, flush=True)
            self.failing = True
            return
        self.failing = False

