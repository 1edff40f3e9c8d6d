"""A time budget for judging one answer, checked cooperatively in the judge's loops.

An answer under the size cap can still be costly to judge (10,000 foreign suggestions); the
judge checks its budget every `EVERY` items, so the check costs one counter increment per
item and one clock read per batch. Over budget is `OverBudget`, which the engine turns into a
`malformed` finding ("too costly to judge"): the answer is blocked, never passed unjudged.
"""

from __future__ import annotations

import time

from guard.errors import UntrustedInputError

EVERY = 256  # items between two clock reads


class OverBudget(UntrustedInputError):
    """Judging this answer took longer than its budget."""


class Budget:
    """A deadline on the monotonic clock; `check` raises `OverBudget` once it has passed."""

    __slots__ = ("_count", "_deadline", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds
        self._count = 0

    def check(self) -> None:
        """Called once per item: every `EVERY` calls, compare the clock with the deadline."""
        self._count += 1
        if self._count % EVERY == 0:
            self.now()

    def now(self) -> None:
        """Compare the clock with the deadline at once (between phases)."""
        if time.monotonic() > self._deadline:
            raise OverBudget(f"too costly to judge: over the {round(self.seconds * 1000)} ms budget (limits.judge_ms)")


UNLIMITED = Budget(float("inf"))
