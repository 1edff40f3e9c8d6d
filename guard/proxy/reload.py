"""What the guard's addons share: the policy in force (picked up when its file changes), the
options every hook reads, the MX lookups, the decision log and the metrics file rewritten once a second."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from guard.errors import PolicyError
from guard.log import DecisionLog
from guard.metrics import Metrics
from guard.mx import MxLookups, MxSettings
from guard.policy import Mode, Policy, load_policy

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # policy-file check and metrics-file rewrite


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is edited or replaced; None when it cannot be read."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class Runtime:
    """The policy, options, log and metrics of one guard process; the ticker that keeps them fresh."""

    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.policy_path = Path()
        self.log = DecisionLog()
        self.metrics = Metrics()
        self.mode_option = ""
        self.max_body_option = 0
        self.console = False
        self.metrics_path = ""
        self._stamp: tuple[int, int, int] | None = None
        self._pending_stamp: tuple[int, int, int] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._mx: MxLookups | None = None

    def policy_in_force(self) -> Policy:
        if self.policy is None:  # configure() always runs at load; this is a programming error
            raise RuntimeError("no policy loaded")
        return self.policy

    def mode(self, policy: Policy) -> Mode:
        """The `guard_mode` option, else the policy's own mode."""
        return Mode(self.mode_option) if self.mode_option else policy.mode

    def caps(self, policy: Policy) -> tuple[int, int]:
        """(wire, decoded) byte caps: the policy's limits, lowered by `guard_max_body` when set."""
        wire, decoded = policy.limits.max_body_bytes, policy.limits.max_decoded_bytes
        if self.max_body_option:
            return self.max_body_option, min(decoded, self.max_body_option)
        return wire, decoded

    def mx_lookups(self, settings: MxSettings) -> MxLookups:
        """The MX lookups (and their cache) for the policy's settings; a reload with new settings starts afresh."""
        if self._mx is None or self._mx.settings != settings:
            self._mx = MxLookups(settings)
        return self._mx

    def read_policy(self, path: Path) -> Policy:
        """Load the policy file the options name; it is installed by `install`.

        Raises:
            PolicyError: the file cannot be read or is invalid (file:line:column in the message).
        """
        stamp = _stamp(path)  # before reading: a write after it shows as a change next tick
        policy = load_policy(path)
        self.policy_path, self._stamp, self._pending_stamp = path, stamp, None
        return policy

    def install(self, policy: Policy) -> None:
        """Swap the policy in one assignment: a flow keeps the policy it started with."""
        self.policy = policy
        self.metrics.policy(policy.revision, loaded=True)
        self.log.write("policy_loaded", {"policy": policy.path, "revision": policy.revision,
                                         "mode": self.mode(policy).value})

    def start(self) -> None:
        """Start the once-a-second ticker (on mitmproxy's event loop)."""
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    def stop(self) -> None:
        """Stop the ticker, write the final metrics, close the log."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._write_metrics(force=True)
        self.log.close()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.tick()

    def tick(self) -> None:
        """Once a second: pick up a changed policy file, rewrite the metrics file. Never raises."""
        try:
            self._reload_if_changed()
            self._write_metrics()
        except Exception:  # the ticker must survive anything; flows do not depend on it
            logger.warning("autodiscover-guard: periodic task failed", exc_info=True)

    def _reload_if_changed(self) -> None:
        stamp = _stamp(self.policy_path)
        if stamp == self._stamp:
            self._pending_stamp = None
            return
        if stamp != self._pending_stamp:  # changed since the last tick: it may still be being written
            self._pending_stamp = stamp
            return
        self._stamp, self._pending_stamp = stamp, None
        try:
            policy = load_policy(self.policy_path)
        except PolicyError as exc:
            kept = self.policy_in_force().revision
            self.metrics.policy(kept, loaded=False)
            self.log.write("policy_rejected", {"policy": str(self.policy_path), "reason": str(exc),
                                               "revision_in_force": kept})
            logger.warning("autodiscover-guard: policy change rejected, revision %s stays: %s", kept, exc)
            return
        self.install(policy)
        logger.info("autodiscover-guard: policy reloaded, revision %s", policy.revision)

    def _write_metrics(self, *, force: bool = False) -> None:
        if not self.metrics_path or not (force or self.metrics.changed):
            return
        try:
            self.metrics.write(self.metrics_path)
        except OSError as exc:
            logger.warning("autodiscover-guard: cannot write metrics to %s: %s", self.metrics_path, exc)
