"""Gateway metrics in the Prometheus text format (version 0.0.4), kept in memory.

Counters of decisions by action, of decisions by rule and action, of policy reloads, and a
histogram of the latency the guard adds per flow. The proxy writes the text to a file that
node_exporter's textfile collector (or any scraper that reads files) picks up; `write` replaces
the file atomically so a reader never sees half of it.
"""

from __future__ import annotations

import os
import tempfile
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

PREFIX = "autodiscover_guard"
# Added latency in seconds: a judgement takes ~100 µs; decompression and big answers take ms.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


def _labels(**pairs: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs.items()) + "}"


class Metrics:
    """In-memory counters and one histogram; `render` gives the exposition text."""

    def __init__(self) -> None:
        self.decisions: Counter[tuple[str, str]] = Counter()  # (mode, would-be action)
        self.rules: Counter[tuple[str, str]] = Counter()  # (rule, would-be action)
        self.reloads: Counter[str] = Counter()  # loaded | rejected
        self.revision = ""
        self._bucket_counts = [0] * len(BUCKETS)
        self._latency_sum = 0.0
        self._latency_count = 0
        self.changed = True

    def observe(self, mode: str, action: str, rules: Iterable[str], latency_s: float) -> None:
        """Count one decision (its would-be action, so audit and enforce count alike)."""
        self.decisions[(mode, action)] += 1
        for rule in rules:
            self.rules[(rule, action)] += 1
        index = bisect_left(BUCKETS, latency_s)
        if index < len(BUCKETS):
            self._bucket_counts[index] += 1
        self._latency_sum += latency_s
        self._latency_count += 1
        self.changed = True

    def policy(self, revision: str, *, loaded: bool) -> None:
        """Count a policy load attempt; the revision in force is exported as an info metric."""
        self.reloads["loaded" if loaded else "rejected"] += 1
        if loaded:
            self.revision = revision
        self.changed = True

    def render(self) -> str:
        """The Prometheus text exposition of everything counted so far."""
        lines = [
            f"# HELP {PREFIX}_decisions_total Discovery flows judged, by mode and the action enforce takes.",
            f"# TYPE {PREFIX}_decisions_total counter",
            *(f"{PREFIX}_decisions_total{_labels(mode=m, action=a)} {n}"
              for (m, a), n in sorted(self.decisions.items())),
            f"# HELP {PREFIX}_rule_decisions_total Decisions in which a rule fired, by rule and action.",
            f"# TYPE {PREFIX}_rule_decisions_total counter",
            *(f"{PREFIX}_rule_decisions_total{_labels(rule=r, action=a)} {n}"
              for (r, a), n in sorted(self.rules.items())),
            f"# HELP {PREFIX}_policy_loads_total Policy loads at start and on change, by result.",
            f"# TYPE {PREFIX}_policy_loads_total counter",
            *(f"{PREFIX}_policy_loads_total{_labels(result=r)} {n}" for r, n in sorted(self.reloads.items())),
            f"# HELP {PREFIX}_policy_info The policy revision in force.",
            f"# TYPE {PREFIX}_policy_info gauge",
            f"{PREFIX}_policy_info{_labels(revision=self.revision)} 1",
            f"# HELP {PREFIX}_added_latency_seconds Time the guard spent on one discovery flow.",
            f"# TYPE {PREFIX}_added_latency_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip(BUCKETS, self._bucket_counts, strict=True):
            cumulative += count
            lines.append(f"{PREFIX}_added_latency_seconds_bucket{_labels(le=repr(bound))} {cumulative}")
        lines += [
            f"{PREFIX}_added_latency_seconds_bucket{_labels(le='+Inf')} {self._latency_count}",
            f"{PREFIX}_added_latency_seconds_sum {self._latency_sum:.6f}",
            f"{PREFIX}_added_latency_seconds_count {self._latency_count}",
        ]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> None:
        """Replace `path` with the current text (temporary file + rename in the same folder)."""
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
