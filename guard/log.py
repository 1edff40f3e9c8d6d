"""The decision log: one JSON line per judged flow, holding nothing a log reader must not see.

A line says who asked (client address, user domain, a keyed hash of the local part), what was
asked (method, URL with addresses and secrets scrubbed from path and query), what the guard
found (rule, host, field) and did (`action`), what enforce mode would have done
(`would_action`), under which policy revision and at what latency cost. Authorization values,
passwords, tokens, cookies and bodies are never passed in, so they can never be written.

Local parts are hashed with HMAC-SHA256 under a random key made once per process (first 16 hex
digits): lines of one run correlate, but a hash cannot be reversed by hashing guessed addresses,
and runs cannot be joined. Writing never raises: a full or unwritable destination is reported
once on stderr and the guard keeps enforcing.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TextIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import structlog

from guard.model import Action, Decision
from guard.names import User

_KEY = secrets.token_bytes(32)
REDACTED = "REDACTED"

# Query keys whose values are addresses or secrets (research/formats.md §0: `Email`,
# `emailaddress`; OAuth and signed-URL parameters). Compared case-insensitively.
SECRET_KEYS = frozenset({
    "email", "emailaddress", "mail", "user", "username", "login", "upn", "address",
    "password", "passwd", "pwd", "pass", "secret", "client_secret", "token", "access_token",
    "id_token", "refresh_token", "code", "key", "apikey", "api_key", "auth", "authorization",
    "sig", "signature", "session", "sid", "assertion",
})
_ADDRESS = re.compile(r"[^/?#&=@\s]+@")


@lru_cache(maxsize=1024)
def hash_local_part(local: str) -> str:
    """Keyed, truncated hash of an address's local part (case-folded: mail systems ignore case).

    Memoised, like `scrub_url`: a client repeats its discovery, so the same values recur.
    """
    return hmac.new(_KEY, local.casefold().encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def redact_addresses(text: str) -> str:
    """`alice@contoso.com` → `REDACTED@contoso.com`: domains stay readable, local parts go."""
    return _ADDRESS.sub(REDACTED + "@", text)


def _scrub_value(key: str, value: str) -> str:
    return REDACTED if key.lower() in SECRET_KEYS else quote(redact_addresses(value), safe="@/")


@lru_cache(maxsize=1024)
def scrub_url(url: str) -> str:
    """The URL without userinfo, fragment, secret query values or addresses anywhere."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        query = "&".join(
            f"{quote(key, safe='')}={_scrub_value(key, value)}"
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        path = quote(redact_addresses(unquote(parts.path)), safe="/@:")
        return urlunsplit((parts.scheme, host, path, query, ""))
    except ValueError:
        return "(unparseable URL)"


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """What the proxy knows about one flow, in plain values (this module never sees mitmproxy)."""

    id: str
    client: str
    method: str
    url: str
    status: int | None = None  # upstream status; None when the guard answered the request itself


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
        "action": applied.value,
        "would_action": decision.action.value,
        "policy_revision": revision,
        "latency_us": latency_us,
    }
    if decision.notes:
        record["notes"] = [redact_addresses(n) for n in decision.notes]
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


class _Sink:
    """Appends lines to a file (or a stream); failures are reported once per episode, never raised."""

    def __init__(self, path: str, stream: TextIO) -> None:
        self.path = path
        self.stream = stream
        self.fd: int | None = None
        self.failing = False

    def msg(self, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        try:
            if not self.path:
                self.stream.write(data.decode("utf-8"))
                self.stream.flush()
            else:
                if self.fd is None:
                    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                    self.fd = os.open(self.path, flags, 0o600)
                view = memoryview(data)
                while view:
                    view = view[os.write(self.fd, view):]
        except (OSError, ValueError) as exc:
            self._report(exc)
        else:
            self.failing = False

    def _report(self, exc: Exception) -> None:
        if self.failing:
            return
        self.failing = True
        where = self.path or "stderr"
        with contextlib.suppress(OSError, ValueError):
            print(f"autodiscover-guard: WARNING: cannot write the decision log ({where}): {exc}; "
                  "decisions are still enforced", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            with contextlib.suppress(OSError):
                os.close(fd)


class DecisionLog:
    """JSON lines (structlog) to a file, or to stderr when no path is given."""

    def __init__(self, path: str = "", stream: TextIO | None = None) -> None:
        self.path = path
        self._sink = _Sink(path, stream or sys.stderr)
        # bound once: the lazy proxy `wrap_logger` returns would bind a new logger on every line
        self._logger = structlog.wrap_logger(
            self._sink,
            wrapper_class=structlog.BoundLogger,  # proxies `msg` by name, whatever the global config
            processors=[_render],
        ).bind()

    def write(self, event: str, fields: Mapping[str, object]) -> None:
        """One line: `{"event": event, **fields, "ts": …}`. Never raises."""
        self._logger.msg(event, **fields)

    def close(self) -> None:
        """Release the file descriptor (a new write reopens it)."""
        self._sink.close()
