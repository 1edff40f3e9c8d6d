"""The decision log: one JSON line per judged flow, holding nothing a log reader must not see.

A line says who asked (client address, user domain, a keyed hash of the local part), what was
asked (method, URL scrubbed default-deny by `guard.redact`), what the guard found (rule, host,
field) and did (`action`), what enforce mode would have done (`would_action`), under which policy
revision and at what latency cost. Authorization values, passwords, tokens, cookies and bodies
are never passed in, so they can never be written.

Local parts are hashed with HMAC-SHA256 under the deployment's pseudonym key (`guard.pseudonym`):
a user hashes alike across restarts and instances sharing the key, and a hash cannot be reversed
by hashing guessed addresses without it.

The log survives operations: before each write the path is compared with the open file (device
and inode, one `stat`), so after logrotate renames the file, or someone deletes it, the next line
goes to a new file at the configured path (WatchedFileHandler semantics). `reopen()` does the same
on demand (SIGHUP). Writing never raises: a line that cannot be written is counted
(`failures`, and the injected `on_failure`, which the metrics count) and reported on stderr —
at once, then at most every `REPORT_SECONDS` while it lasts, and once more when writing works again.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TextIO

import structlog

from guard.errors import SetupError
from guard.model import Action, Decision
from guard.names import User
from guard.pseudonym import Pseudonyms, default_state_dir, load_key
from guard.redact import REDACTED, redact_text, scrub_url

__all__ = ["REDACTED", "DecisionLog", "Event", "FlowFacts", "console_line", "decision_record", "hash_local_part",
           "scrub_url", "use_pseudonym_key"]

REPORT_SECONDS = 10.0  # while the log cannot be written, a stderr line at most this often
RECREATE_AFTER_SECONDS = 1.0  # the path vanished but the open file was only renamed: logrotate's `create` follows


class Event(StrEnum):
    """The `event` of each line (documented in docs/gateway.md, "Logs and metrics")."""

    DECISION = "decision"
    POLICY_LOADED = "policy_loaded"  # at start
    POLICY_RELOADED = "policy_reloaded"  # a changed file, taken
    POLICY_REJECTED = "policy_rejected"  # a changed file, refused; the old policy stays
    LOG_REOPENED = "log_reopened"  # first line of a new file after rotation, deletion or `reopen()`


ERROR_ACTION = "error"  # `action` of a flow the upstream never answered: nothing was judged, nothing allowed

_pseudonyms: Pseudonyms | None = None


def use_pseudonym_key(key: bytes) -> None:
    """Hash local parts under `key` from now on (the adapter loads it at start: `guard.pseudonym.load_key`)."""
    global _pseudonyms  # noqa: PLW0603 - one key per process, as one policy is in force per process
    _pseudonyms = Pseudonyms(key)


def hash_local_part(local: str) -> str:
    """Keyed, truncated hash of an address's local part, case-folded.

    Without `use_pseudonym_key`, the key is loaded on first use from the default places; if that
    fails the reason goes to stderr and a key for this process only is used (hashes then do not
    match other runs), so a flow is never held up by the key.
    """
    if _pseudonyms is None:
        try:
            use_pseudonym_key(load_key(default_state_dir()))
        except SetupError as exc:
            _stderr(f"autodiscover-guard: ERROR: {exc}; user_local_hash uses a key for this process only")
            use_pseudonym_key(os.urandom(32))
    assert _pseudonyms is not None
    return _pseudonyms.of(local)


def _stderr(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """What the proxy knows about one flow, in plain values (this module never sees mitmproxy)."""

    id: str
    client: str
    method: str
    url: str
    status: int | None = None  # upstream status; None when the guard answered the request itself
    error: str | None = None  # why the upstream gave no answer (mitmproxy's flow error): action `error`


def decision_record(
    facts: FlowFacts,
    decision: Decision,
    *,
    mode: str,
    applied: Action,
    user: User | None,
    user_source: str,
    revision: str,
    hash_local: bool,
    latency_us: int,
) -> dict[str, object]:
    """The fields of one decision line, in a stable order (documented in docs/rules.md)."""
    record: dict[str, object] = {
        "id": facts.id,
        "mode": mode,
        "client": facts.client,
        "method": facts.method,
        "url": scrub_url(facts.url),
        "status": facts.status,
        "format": decision.format,
        "user_domain": user.domain if user else None,
    }
    if user is not None and user.local:
        record["user_local_hash" if hash_local else "user_local"] = (
            hash_local_part(user.local) if hash_local else user.local
        )
    record |= {
        "user_source": user_source,
        "rules": list(decision.rules),
        "findings": [
            {"rule": f.rule, "host": f.host.rpartition("@")[2], "field": f.field} for f in decision.findings
        ],
        "action": ERROR_ACTION if facts.error is not None else applied.value,
        "would_action": ERROR_ACTION if facts.error is not None else decision.action.value,
        "policy_revision": revision,
        "latency_us": latency_us,
    }
    if facts.error is not None:
        record["error"] = redact_text(facts.error)
    if decision.notes:
        record["notes"] = [redact_text(n) for n in decision.notes]
    return record


def console_line(record: Mapping[str, object]) -> str:
    """One human-readable line for workstation mode."""
    would, action = str(record["would_action"]), str(record["action"])
    verdict = would.upper() if would == action else f"{would.upper()} (audit: {action})"
    rules = record.get("rules") or []
    why = ", ".join(str(r) for r in rules) if isinstance(rules, list) and rules else "no findings"
    return (f"autodiscover-guard: {verdict} {record['format']} for {record.get('user_domain') or '?'} "
            f"[{why}] {record['method']} {record['url']}")


_UTC = datetime.UTC
_ENCODER = json.JSONEncoder(default=repr)  # one for every line: json.dumps(default=…) builds a new one per call


def _render(_logger: object, _method: str, event: structlog.typing.EventDict) -> str:
    """The JSON line, `ts` and `event` first so a human tailing the file reads them first."""
    ts = datetime.datetime.now(_UTC).isoformat().replace("+00:00", "Z")
    return _ENCODER.encode({"ts": ts, "event": event.pop("event"), **event})


class _FileSink:
    """Appends to the file at `path`, following it when the path stops naming the open file.

    Before each write one `stat` of the path is compared with the open file's device and inode
    (cheap next to a judgement: docs/security.md, "Measured limits"). A different file there
    (logrotate's `create`, or whoever recreated it) or an unlinked open file (deleted) means
    reopen. When the path is missing but the open file still has a name (renamed, `create` not
    yet done) lines keep going to it for `RECREATE_AFTER_SECONDS`, so the guard never races
    logrotate to create the new file; after that (logrotate's `nocreate`) the guard creates it.
    """

    FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self._ident: tuple[int, int] = (0, 0)
        self._missing_since: float | None = None

    def open(self) -> None:
        """Open (creating, mode 600) the file at the path now; raises OSError."""
        fd = os.open(self.path, self.FLAGS, 0o600)
        stat = os.fstat(fd)
        self.close()
        self.fd, self._ident, self._missing_since = fd, (stat.st_dev, stat.st_ino), None

    def write(self, data: bytes) -> str | None:
        """Append `data` whole. Returns why the file was reopened first (`moved`, `deleted`), if it was.

        Raises OSError.
        """
        why = None if self.fd is None else self._why_reopen(self.fd)
        if self.fd is None or why is not None:
            self.open()
        assert self.fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        return why

    def _why_reopen(self, fd: int) -> str | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return self._why_reopen_missing(fd)
        except OSError:
            return None  # the path cannot be looked at (a folder's permissions): keep the file we have
        self._missing_since = None
        return None if (stat.st_dev, stat.st_ino) == self._ident else "moved"

    def _why_reopen_missing(self, fd: int) -> str | None:
        if os.fstat(fd).st_nlink == 0:
            return "deleted"  # a line written to it would be lost
        now = time.monotonic()
        if self._missing_since is None:
            self._missing_since = now
        return None if now - self._missing_since < RECREATE_AFTER_SECONDS else "moved"

    def close(self) -> None:
        """Flush to disk and release the descriptor."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            with contextlib.suppress(OSError):
                os.fsync(fd)
            with contextlib.suppress(OSError):
                os.close(fd)


class _Failures:
    """Counts lines that could not be written and says so on stderr without flooding it."""

    def __init__(self, where: str, on_failure: Callable[[], None]) -> None:
        self.where = where
        self.count = 0  # lines lost since start
        self._on_failure = on_failure
        self._episode = 0  # lines lost since writing last worked
        self._reported = -REPORT_SECONDS

    def failed(self, exc: Exception) -> None:
        self.count += 1
        self._episode += 1
        self._on_failure()
        now = time.monotonic()
        if self._episode == 1 or now - self._reported >= REPORT_SECONDS:
            self._reported = now
            _stderr(f"autodiscover-guard: ERROR: cannot write the decision log ({self.where}): {exc}; "
                    f"{self._episode} decision line(s) lost so far ({self.count} since start); "
                    "decisions are still enforced")

    @property
    def failing(self) -> bool:
        return self._episode > 0

    def worked(self) -> None:
        """Writing works (again): end the episode, saying how many lines it lost."""
        if self._episode:
            _stderr(f"autodiscover-guard: the decision log ({self.where}) is written again "
                    f"after {self._episode} lost line(s)")
            self._episode = 0


class DecisionLog:
    """JSON lines (structlog) to a file, or to stderr when no path is given."""

    def __init__(self, path: str = "", stream: TextIO | None = None, *,
                 on_failure: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self._file = _FileSink(path) if path else None
        self._stream = stream or sys.stderr
        self._failures = _Failures(path or "stderr", on_failure)
        # bound once: the lazy proxy `wrap_logger` returns would bind a new logger on every line
        self._logger = structlog.wrap_logger(
            self, wrapper_class=structlog.BoundLogger,  # proxies `msg` by name, whatever the global config
            processors=[_render],
        ).bind()

    @property
    def failures(self) -> int:
        """Lines that could not be written since start."""
        return self._failures.count

    @property
    def failing(self) -> bool:
        """The last line could not be written (`log.required` then refuses flows until one is)."""
        return self._failures.failing

    def open(self) -> None:
        """Open the file now, at start: a missing or unwritable folder is a `SetupError` naming the fix."""
        if self._file is None:
            return
        try:
            self._file.open()
        except OSError as exc:
            raise SetupError(_open_error(self.path, exc)) from None

    def write(self, event: str, fields: Mapping[str, object]) -> None:
        """One line: `{"ts": …, "event": event, **fields}`. Never raises."""
        self._logger.msg(event, **fields)

    def reopen(self) -> None:
        """Close the file and open the one at the path now (SIGHUP after an external rotation). Never raises."""
        if self._file is not None:
            self._file.close()
            self.write(Event.LOG_REOPENED, {"reason": "reopen"})

    def close(self) -> None:
        """Flush to disk and release the file descriptor (a new write reopens it)."""
        if self._file is not None:
            self._file.close()
        else:
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()

    def msg(self, line: str) -> None:
        """structlog's sink: write one rendered line; count and report a failure."""
        try:
            reopened = self._append((line + "\n").encode("utf-8"))
        except (OSError, ValueError) as exc:
            self._failures.failed(exc)
            return
        self._failures.worked()
        if reopened is not None:  # for log readers: the lines before this one are in the old file
            self.write(Event.LOG_REOPENED, {"reason": reopened})

    def _append(self, data: bytes) -> str | None:
        if self._file is not None:
            return self._file.write(data)
        self._stream.write(data.decode("utf-8"))
        self._stream.flush()
        return None


def _open_error(path: str, exc: OSError) -> str:
    folder = Path(path).parent
    if exc.errno == errno.ENOENT:
        return (f"{path}: cannot open the decision log: folder {folder} does not exist; create it for the "
                f"guard's user (mkdir -p {folder}) or set guard_log to a file in an existing folder")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"{path}: cannot open the decision log: {exc.strerror}; make {folder} writable by the "
                "guard's user (chown / chmod) or set guard_log to another file")
    return f"{path}: cannot open the decision log: {exc.strerror}"
