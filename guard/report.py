"""`autodiscover-guard report`: what the guard decided, read back from its decision logs.

Pure reading and counting here (records in, a `Report` out); rendering with rich and the
`--follow` loop sit at the bottom, thin. The record schema is guard/log.py's `decision_record`
(docs/rules.md): `ts`, `event`, `mode`, `user_domain`, `rules`, `findings[]` (`rule`, `host`,
`field`), `action` (what was applied) and `would_action` (what enforce mode does). Counts use
`would_action`, the judgement, so an audit-mode log reports what enforcing would have stopped;
the applied action is shown beside it.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

FLAGGED = ("block", "rewrite")
_NOT_SUGGESTED = frozenset({"reserved-user-domain"})  # its finding's host is the user's own domain
_GZIP_MAGIC = b"\x1f\x8b"
_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ACTION_STYLE = {"block": "bold red", "rewrite": "yellow", "warn": "cyan", "allow": "green"}


class ReportError(ValueError):
    """A log that cannot be read or a `--since` that cannot be understood."""


def parse_since(text: str, now: datetime.datetime) -> datetime.datetime:
    """`2h`, `30m`, `1d`, `1w` (before `now`) or an ISO 8601 time (UTC when no offset is given)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return now - datetime.timedelta(seconds=int(relative[1]) * _UNIT_SECONDS[relative[2]])
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(f"--since {text!r}: expected a duration such as 2h, 30m, 1d, or an ISO time "
                          "such as 2026-01-15T08:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def record_time(record: Mapping[str, Any]) -> datetime.datetime | None:
    """The record's `ts` as an aware datetime; None when missing or unreadable."""
    ts = record.get("ts")
    if not isinstance(ts, str):
        return None
    try:
        when = datetime.datetime.fromisoformat(ts)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def open_log(path: Path) -> IO[str]:
    """A text stream over a plain or gzipped log; gzip is told by its magic bytes, not the name."""
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == _GZIP_MAGIC
        if gzipped:
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ReportError(f"{path}: {exc.strerror or exc}") from None


def parse_line(line: str) -> dict[str, Any] | None:
    """One JSON object per line; None for anything else (a torn last line, a stray message)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read_logs(paths: Iterable[Path]) -> Iterator[dict[str, Any] | None]:
    """Every line of every log, parsed (None for unreadable lines), file after file."""
    for path in paths:
        with open_log(path) as stream:
            try:
                for line in stream:
                    if line.strip():
                        yield parse_line(line)
            except (OSError, EOFError) as exc:  # a truncated .gz: report what was read, then fail loudly
                raise ReportError(f"{path}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Entry:
    """One flagged decision, as the report lists it."""

    ts: str
    would_action: str
    action: str
    mode: str
    format: str
    user_domain: str
    rules: tuple[str, ...]
    hosts: tuple[str, ...]
    url: str

    def as_dict(self) -> dict[str, object]:
        return {"ts": self.ts, "would_action": self.would_action, "action": self.action, "mode": self.mode,
                "format": self.format, "user_domain": self.user_domain, "rules": list(self.rules),
                "hosts": list(self.hosts), "url": self.url}


def entry_of(record: Mapping[str, Any]) -> Entry:
    """The listed fields of a decision record, tolerant of missing ones (older or partial lines)."""
    findings = [f for f in record.get("findings") or [] if isinstance(f, dict) and f.get("rule") not in _NOT_SUGGESTED]
    return Entry(
        ts=str(record.get("ts") or ""),
        would_action=str(record.get("would_action") or record.get("action") or "?"),
        action=str(record.get("action") or "?"),
        mode=str(record.get("mode") or "?"),
        format=str(record.get("format") or "?"),
        user_domain=str(record.get("user_domain") or "?"),
        rules=tuple(str(r) for r in record.get("rules") or []),
        hosts=tuple(dict.fromkeys(str(f["host"]) for f in findings if f.get("host"))),
        url=str(record.get("url") or ""),
    )


@dataclass(slots=True)
class Report:
    """Counts over decision records, and the most recent flagged ones."""

    since: datetime.datetime | None = None
    recent_limit: int = 20
    decisions: int = 0
    unreadable_lines: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    rules: Counter[str] = field(default_factory=Counter)
    user_domains: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    hours: dict[str, Counter[str]] = field(default_factory=dict)
    flagged: list[Entry] = field(default_factory=list)
    first: str = ""
    last: str = ""

    def add(self, record: Mapping[str, Any] | None) -> Entry | None:
        """Count one parsed line; returns its entry when it is a flagged decision."""
        if record is None:
            self.unreadable_lines += 1
            return None
        when = record_time(record)
        if self.since is not None and (when is None or when < self.since):
            return None
        event = str(record.get("event") or "?")
        self.events[event] += 1
        if event != "decision":
            return None
        entry = entry_of(record)
        self.decisions += 1
        self.actions[entry.would_action] += 1
        self.first = min(self.first, entry.ts) if self.first else entry.ts
        self.last = max(self.last, entry.ts)
        if when is not None:
            hour = when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:00Z")
            self.hours.setdefault(hour, Counter())[entry.would_action] += 1
        if entry.would_action not in FLAGGED:
            return None
        self.rules.update(entry.rules)
        self.user_domains[entry.user_domain] += 1
        self.hosts.update(entry.hosts)
        self.flagged.append(entry)
        return entry

    @property
    def recent(self) -> list[Entry]:
        """The newest flagged decisions, newest first."""
        return sorted(self.flagged, key=lambda e: e.ts, reverse=True)[: self.recent_limit]

    def as_dict(self, top: int = 10) -> dict[str, Any]:
        """The `report --json` object."""
        return {
            "since": self.since.isoformat().replace("+00:00", "Z") if self.since else None,
            "first": self.first or None,
            "last": self.last or None,
            "decisions": self.decisions,
            "actions": dict(self.actions.most_common()),
            "events": dict(self.events.most_common()),
            "unreadable_lines": self.unreadable_lines,
            "top_rules": _top(self.rules, top),
            "top_user_domains": _top(self.user_domains, top),
            "top_hosts": _top(self.hosts, top),
            "per_hour": [{"hour": hour, **dict(counts)} for hour, counts in sorted(self.hours.items())],
            "recent": [e.as_dict() for e in self.recent],
        }


def _top(counter: Counter[str], n: int) -> list[dict[str, object]]:
    return [{"name": name, "count": count} for name, count in counter.most_common(n)]


def build(records: Iterable[Mapping[str, Any] | None], *, since: datetime.datetime | None = None,
          recent: int = 20) -> Report:
    """A report over parsed log lines."""
    report = Report(since=since, recent_limit=recent)
    for record in records:
        report.add(record)
    return report


# --- following a log (tail -F) ---------------------------------------------------------------------


class Tail:
    """New complete lines of a log file, across rotation (rename + create) and truncation.

    Non-blocking: `poll()` returns what is there now; the caller decides how long to wait. When
    the path names a new file (other inode) the old one is drained first, then the new one is
    read from its start, so lines written just before a rotation are not lost.
    """

    def __init__(self, path: Path, *, from_start: bool = False) -> None:
        self.path = path
        self._stream: IO[bytes] | None = None
        self._partial = b""
        self._open(seek_end=not from_start)

    def _open(self, *, seek_end: bool) -> None:
        try:
            self._stream = self.path.open("rb")
        except FileNotFoundError:
            self._stream = None
            return
        if seek_end:
            self._stream.seek(0, os.SEEK_END)

    def _drain(self) -> list[str]:
        assert self._stream is not None
        data = self._partial + self._stream.read()
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines if line.strip()]

    def poll(self) -> list[str]:
        """Complete lines appended since the last call (a line without its newline waits)."""
        if self._stream is None:
            self._open(seek_end=False)
            return self._drain() if self._stream is not None else []
        lines = self._drain()
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return lines  # rotated away and not recreated yet: keep the old file until it is
        opened = os.fstat(self._stream.fileno())
        if (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
            self._stream.close()
            self._partial = b""
            self._open(seek_end=False)
            lines += self._drain() if self._stream is not None else []
        elif current.st_size < self._stream.tell():  # truncated in place (copytruncate)
            self._stream.seek(0)
            self._partial = b""
            lines += self._drain()
        return lines

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def follow(paths: Iterable[Path], summary: Report, poll_seconds: float,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[tuple[dict[str, Any], Entry]]:
    """New flagged decisions appended to any of the logs (counted into `summary`); endless."""
    tails = [Tail(path) for path in paths]
    try:
        while True:
            for tail in tails:
                for line in tail.poll():
                    record = parse_line(line)
                    entry = summary.add(record)
                    if record is not None and entry is not None:
                        yield record, entry
            sleep(poll_seconds)
    finally:
        for tail in tails:
            tail.close()


# --- rendering -------------------------------------------------------------------------------------


def _counts_table(title: str, counter: Counter[str], top: int) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("name")
    table.add_column("count", justify="right")
    for name, count in counter.most_common(top):
        table.add_row(Text(name), str(count))
    return table


def _action(entry: Entry, text: str) -> str:
    style = _ACTION_STYLE.get(entry.would_action)
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


def entry_line(entry: Entry) -> str:
    """One rich-markup line for a flagged decision, for `--follow`.

    Every value from the log is escaped: a malformed finding's host is the answer's raw text, and
    would otherwise be read as markup (or break it).
    """
    applied = "" if entry.action == entry.would_action else f" (audit: {escape(entry.action)})"
    rules = escape(", ".join(entry.rules) or "no findings")
    return (f"{escape(entry.ts)} {_action(entry, entry.would_action.upper())}{applied} {escape(entry.format)} for "
            f"{escape(entry.user_domain)} \\[{rules}] {escape(', '.join(entry.hosts) or '-')}")


def render(report: Report, console: Console, top: int = 10) -> None:
    """The human report: summary, recent blocks and rewrites, top lists, per-hour counts."""
    span = f"{report.first} … {report.last}" if report.first else "no decisions"
    actions = ", ".join(f"{n} {a}" for a, n in sorted(report.actions.items())) or "none"
    console.print(f"[bold]{report.decisions} decisions[/] ({escape(actions)}); {escape(span)}")
    if report.since is not None:
        console.print(f"since {report.since.isoformat()}")
    if report.unreadable_lines:
        console.print(f"[yellow]{report.unreadable_lines} unreadable line(s) skipped[/]")
    recent = Table(title="Recent blocks and rewrites (newest first)", title_justify="left")
    for column in ("time", "action", "format", "user domain", "rules", "suggested hosts"):
        recent.add_column(column, overflow="fold")
    for e in report.recent:  # values from the log are plain Text, never markup (see entry_line)
        applied = "" if e.action == e.would_action else f"\n(audit: {escape(e.action)})"
        recent.add_row(Text(e.ts), _action(e, e.would_action) + applied, Text(e.format), Text(e.user_domain),
                       Text("\n".join(e.rules)), Text("\n".join(e.hosts) or "-"))
    console.print(recent)
    console.print(_counts_table("Top rules", report.rules, top))
    console.print(_counts_table("Top user domains (blocked or rewritten)", report.user_domains, top))
    console.print(_counts_table("Top suggested hosts acted on", report.hosts, top))
    hours = Table(title="Per hour (UTC)", title_justify="left")
    hours.add_column("hour")
    names = sorted({a for counts in report.hours.values() for a in counts})
    for name in names:
        hours.add_column(Text(name), justify="right")
    for hour, counts in sorted(report.hours.items()):
        hours.add_row(hour, *(str(counts.get(n, 0)) for n in names))
    console.print(hours)
