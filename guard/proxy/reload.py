"""What the guard's addons share: the policy in force (picked up when its files change, or on
SIGHUP), the options every hook reads, the MX lookups, the judges' threads, the decision log and
the metrics file rewritten once a second.

A changed policy is taken only whole: every file it was built from (the policy and the provider
maps it includes) must show the same size, mtime and inode on two polls in a row, and again
after the read; a file still being written is picked up on a later tick (docs/policy.md,
"Changing a policy safely").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from guard.errors import PolicyError
from guard.log import DecisionLog, Event
from guard.metrics import Metrics, MetricsFile
from guard.mx import MxLookups, MxSettings
from guard.policy import Mode, Policy, load_policy

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # policy-file check and metrics-file rewrite
JUDGES = 2  # threads that judge big answers off the event loop

Stamp = tuple[int, int, int] | None
Stamps = tuple[Stamp, ...]


def _stamp(path: str | Path) -> Stamp:
    """What changes when a file is edited or replaced; None when it cannot be read."""
    try:
        info = Path(path).stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _stamps(paths: Sequence[str]) -> Stamps:
    return tuple(_stamp(p) for p in paths)


class Runtime:
    """The policy, options, log and metrics of one guard process; the ticker that keeps them fresh."""

    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.policy_path = Path()
        self.metrics = Metrics()
        self.log = self.new_log("")
        self.mode_option = ""
        self.max_body_option = 0
        self.console = False
        self.metrics_file: MetricsFile | None = None
        self.judges: ThreadPoolExecutor | None = None  # started with the ticker
        self._files: tuple[str, ...] = ()  # what the policy in force was read from
        self._stamps: Stamps = ()
        self._pending: Stamps | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._mx: MxLookups | None = None

    @property
    def metrics_path(self) -> str:
        return str(self.metrics_file.path) if self.metrics_file is not None else ""

    def new_log(self, path: str) -> DecisionLog:
        """A decision log whose write failures the metrics count."""
        return DecisionLog(path, on_failure=self.metrics.log_write_failed)

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
        before = _stamp(path)  # a write during the read shows as a change next tick
        policy = load_policy(path)
        self.policy_path, self._files, self._pending = path, policy.files, None
        self._stamps = (before, *_stamps(policy.files[1:]))
        return policy

    def install(self, policy: Policy, event: Event = Event.POLICY_LOADED) -> None:
        """Swap the policy in one assignment: a flow keeps the policy it started with."""
        self.policy = policy
        self.metrics.policy(policy.revision, loaded=True)
        self.log.write(event, {"policy": policy.path, "revision": policy.revision, "mode": self.mode(policy).value})

    def start(self) -> None:
        """Start the once-a-second ticker (on mitmproxy's event loop) and the judges' threads."""
        self.judges = ThreadPoolExecutor(JUDGES, thread_name_prefix="guard-judge")
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    def stop(self) -> None:
        """Stop the ticker and the judges, write the final metrics, flush and close the log."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        if self.judges is not None:
            self.judges.shutdown(wait=False, cancel_futures=True)
            self.judges = None
        self._write_metrics(force=True)
        self.log.close()

    def hangup(self) -> None:
        """SIGHUP: reopen the decision log (after an external rotation) and re-read the policy now. Never raises."""
        try:
            self.log.reopen()
            self._reload(_stamps(self._files))
        except Exception:  # a signal handler must not take the proxy down
            logger.warning("autodiscover-guard: SIGHUP handling failed", exc_info=True)

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
        stamps = _stamps(self._files)
        if stamps == self._stamps:
            self._pending = None
            return
        if stamps != self._pending:  # changed since the last tick: it may still be being written
            self._pending = stamps
            return
        self._reload(stamps)

    def _reload(self, stamps: Stamps) -> None:
        """Read the policy; take it only if none of its files changed since `stamps` were taken."""
        self._pending = None
        try:
            policy = load_policy(self.policy_path)
        except PolicyError as exc:
            self._stamps = stamps  # not retried until a file changes again
            kept = self.policy_in_force().revision
            self.metrics.policy(kept, loaded=False)
            self.log.write(Event.POLICY_REJECTED, {"policy": str(self.policy_path), "reason": str(exc),
                                                   "revision_in_force": kept})
            logger.warning("autodiscover-guard: policy change rejected, revision %s stays: %s", kept, exc)
            return
        after = _stamps(policy.files)
        if policy.files != self._files or after != stamps:  # written during the read, or other includes
            self._files, self._pending = policy.files, after  # taken on a later tick once stable
            return
        self._stamps = stamps
        self.install(policy, Event.POLICY_RELOADED)
        logger.info("autodiscover-guard: policy reloaded, revision %s", policy.revision)

    def _write_metrics(self, *, force: bool = False) -> None:
        if self.metrics_file is not None and (force or self.metrics.changed):
            self.metrics_file.write(self.metrics)
