"""Configuration pinning: remember what a domain's discovery answer said last time.

The January 2026 mapping may have been live for years because nobody remembered yesterday's
answer. Per user domain and format, the guard keeps the set of (host, port, role, transport) it
last accepted, in SQLite (WAL mode, busy timeout, one IMMEDIATE transaction per comparison, so
two guard processes can share one file). An answer whose set differs raises `config-changed`:
`warn` (the policy's action, default) accepts the new set as the pin; `block` (domains listed
under `pinning.pinned`) keeps the old pin. The first answer seen for a domain is trusted and
recorded. Pins never hold addresses, local parts or credentials: suggestions are resolved for
the domain alone. A store that cannot be read or written never stops judging: the decision
carries a note that `config-changed` was not evaluated (docs/pinning.md).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from guard.engine import fold
from guard.errors import GuardError
from guard.formats import by_name, formats
from guard.model import Action, Decision, Finding, Suggestion, ValueKind
from guard.names import InvalidHost, User, expand_placeholders, target_of
from guard.policy import Policy, default_pin_store
from guard.rules import CONFIG_CHANGED, RuleAction

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0  # how long a writer waits for another process's transaction
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pins (
    domain TEXT NOT NULL,
    format TEXT NOT NULL,
    entries TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    updated TEXT NOT NULL,
    changes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (domain, format)
)
"""


class PinStoreError(GuardError):
    """The pin store cannot be opened, read or written (the message names the file)."""


@dataclass(frozen=True, slots=True, order=True)
class Pin:
    """One thing an accepted answer told clients to use; never who the user was."""

    host: str
    port: int | None
    role: str
    transport: str

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.host}{port} {self.role} {self.transport}"

    def as_dict(self) -> dict[str, object]:
        return {"host": self.host, "port": self.port, "role": self.role, "transport": self.transport}


@dataclass(frozen=True, slots=True)
class Record:
    """The stored pin of one (domain, format)."""

    domain: str
    format: str
    pins: frozenset[Pin]
    first_seen: str
    updated: str
    changes: int

    def as_dict(self) -> dict[str, object]:
        return {"domain": self.domain, "format": self.format, "first_seen": self.first_seen,
                "updated": self.updated, "changes": self.changes,
                "entries": [p.as_dict() for p in sorted(self.pins, key=_pin_key)]}


def _pin_key(pin: Pin) -> tuple[str, int, str, str]:
    return (pin.host, pin.port or 0, pin.role, pin.transport)


def pin_set(suggestions: Iterable[Suggestion], domain: str) -> frozenset[Pin]:
    """What an answer tells clients of `domain` to use, resolved without any local part."""
    nobody = User.for_domain(domain, strict=False)
    found: set[Pin] = set()
    for suggestion in suggestions:
        try:
            target = target_of(suggestion, nobody)
        except InvalidHost:
            continue  # judged `malformed` by the engine; such answers are never pinned
        found.add(Pin(target.host, suggestion.port or _url_port(suggestion, nobody), suggestion.role.value,
                      target.transport.value))
    return frozenset(found)


def _url_port(suggestion: Suggestion, nobody: User) -> int | None:
    if suggestion.kind is not ValueKind.URL:
        return None
    try:
        return urlsplit(expand_placeholders(suggestion.value, nobody).strip()).port
    except ValueError:
        return None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _encode(pins: frozenset[Pin]) -> str:
    return json.dumps([[p.host, p.port, p.role, p.transport] for p in sorted(pins, key=_pin_key)])


def _decode(text: str) -> frozenset[Pin]:
    return frozenset(Pin(str(h), None if p is None else int(p), str(r), str(t)) for h, p, r, t in json.loads(text))


class PinStore:
    """One SQLite pin file. Every method raises PinStoreError, never sqlite3 or OS errors."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._create = create
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if not self._create and not self.path.is_file():
            raise PinStoreError(f"{self.path}: no pin store here")
        if self._create and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))  # not world-readable
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if db.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
                raise sqlite3.OperationalError("cannot switch to WAL mode")
            db.execute("PRAGMA synchronous = NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, this guard reads {SCHEMA_VERSION}")
            if version == 0:
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: the write lock is taken before reading, so two processes never
        both compare against the same old pin."""
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except (sqlite3.Error, OSError, ValueError, TypeError) as exc:  # Value/TypeError: rows not ours
            self.close()  # the next call reopens: a repaired store is picked up
            raise PinStoreError(f"{self.path}: {exc}") from None

    def remember(self, domain: str, fmt: str, pins: frozenset[Pin], *, replace_changed: bool) -> frozenset[Pin] | None:
        """Compare `pins` with the stored pin and store them; return the previous pin (None: first sight).

        A changed set replaces the stored one only when `replace_changed` (the `warn` action).
        """
        now = _now()
        with self._transaction() as db:
            row = db.execute("SELECT entries FROM pins WHERE domain = ? AND format = ?", (domain, fmt)).fetchone()
            if row is None:
                db.execute("INSERT INTO pins VALUES (?, ?, ?, ?, ?, 0)", (domain, fmt, _encode(pins), now, now))
                return None
            before = _decode(row[0])
            if before == pins:
                db.execute("UPDATE pins SET updated = ? WHERE domain = ? AND format = ?", (now, domain, fmt))
            elif replace_changed:
                db.execute("UPDATE pins SET entries = ?, updated = ?, changes = changes + 1 "
                           "WHERE domain = ? AND format = ?", (_encode(pins), now, domain, fmt))
            return before

    def records(self, domain: str | None = None) -> list[Record]:
        """Stored pins, all or of one domain, sorted by domain and format."""
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM pins WHERE :domain IS NULL OR domain = :domain ORDER BY domain, format",
                              {"domain": domain}).fetchall()
            return [Record(d, f, _decode(e), str(first), str(updated), int(n)) for d, f, e, first, updated, n in rows]

    def forget(self, domain: str) -> int:
        """Delete a domain's pins; the next answer is trusted and recorded again. Returns rows deleted."""
        with self._transaction() as db:
            return db.execute("DELETE FROM pins WHERE domain = ?", (domain,)).rowcount

    def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with contextlib.suppress(sqlite3.Error):
                db.close()


class PinKeeper:
    """The adapter's pinning step: one open store per path, failures noted and never raised."""

    def __init__(self) -> None:
        self._stores: dict[str, PinStore] = {}
        self._failing: set[str] = set()

    def check(self, decision: Decision, user: User | None, policy: Policy) -> Decision:
        """`decision`, plus `config-changed` when the accepted answer differs from the domain's pin.

        Only answers that would reach the client whole (allow or warn) are compared and recorded:
        rewritten and blocked answers are already flagged, and error answers carry nothing to pin.
        """
        settings = policy.pinning
        if (not settings.enabled or user is None or decision.action not in (Action.ALLOW, Action.WARN)
                or not decision.suggestions or decision.format not in formats()):
            return decision
        action = RuleAction.BLOCK if user.domain in settings.pinned else policy.action_for(CONFIG_CHANGED)
        if action is RuleAction.OFF:
            return decision
        pins = pin_set(decision.suggestions, user.domain)
        path = settings.store or str(default_pin_store())
        store = self._stores.setdefault(path, PinStore(path))
        try:
            before = store.remember(user.domain, decision.format, pins, replace_changed=action is RuleAction.WARN)
        except PinStoreError as exc:
            if path not in self._failing:
                self._failing.add(path)
                logger.warning("autodiscover-guard: pinning unavailable: %s; answers are still judged", exc)
            note = f"pinning unavailable, config-changed not evaluated: {exc}"
            return replace(decision, notes=(*decision.notes, note))
        self._failing.discard(path)
        if before is None or before == pins:
            return decision
        return _changed(decision, user, before, pins, action, policy)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()


def describe_change(before: frozenset[Pin], after: frozenset[Pin]) -> str:
    """`added: …; removed: …`, sorted, for the log and the CLI."""
    parts = []
    if added := sorted(after - before, key=_pin_key):
        parts.append("added: " + ", ".join(str(p) for p in added))
    if removed := sorted(before - after, key=_pin_key):
        parts.append("removed: " + ", ".join(str(p) for p in removed))
    return "; ".join(parts)


def _changed(decision: Decision, user: User, before: frozenset[Pin], after: frozenset[Pin],
             action: RuleAction, policy: Policy) -> Decision:
    change = describe_change(before, after)
    kept = "kept (pinned domain)" if action is RuleAction.BLOCK else "replaced"
    finding = Finding(CONFIG_CHANGED, user.domain, "(answer)",
                      f"{decision.format} answer for {user.domain} differs from its pin ({change}); pin {kept}",
                      tuple(str(p) for p in sorted(before, key=_pin_key)))
    fmt = by_name(decision.format)  # `rewrite` is refused by the policy loader: this warns or blocks
    return fold(decision, [finding], policy, fmt.block(), action=action, drop_headers=fmt.sensitive_headers,
                notes=(f"config-changed: {change}",))
