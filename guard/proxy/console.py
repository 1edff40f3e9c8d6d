"""JSON console: mitmproxy's and the guard's log lines as JSON, for gateway mode's journal.

mitmdump prints its log through one handler on the root logger (`TermLogHandler`, mitmproxy 11
and 12), whose level is `termlog_verbosity`. With `guard_json_console` on, this addon gives that
handler a formatter that writes one JSON object per line, so the journal holds JSON only: the
decision log (JSON already), warnings and errors from mitmproxy and the guard alike. Gateway mode
also sets `termlog_verbosity=warn`, which drops the four per-connection info lines.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader
from mitmproxy.addons.termlog import TermLogHandler

from guard.redact import redact_text

PROXY_LOG = "proxy_log"  # the `event` of these lines (docs/gateway.md, "Logs and metrics")
RUNNING = "running"  # the start line: the guard takes traffic from here on


def _now(created: float | None = None) -> str:
    moment = datetime.datetime.now(datetime.UTC) if created is None else datetime.datetime.fromtimestamp(
        created, datetime.UTC)
    return moment.isoformat().replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON line per record; the message and any traceback scrubbed like decision notes."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _now(record.created),
            "event": PROXY_LOG,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        client = getattr(record, "client", None)  # mitmproxy's connection lines carry the peer
        if isinstance(client, tuple) and client:
            line["client"] = str(client[0])
        if record.exc_info:
            line["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(line)


def _terminal_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, TermLogHandler)]


class JsonConsole:
    """Switches mitmdump's terminal log to JSON lines while `guard_json_console` is on."""

    def __init__(self) -> None:
        self._plain: dict[logging.Handler, logging.Formatter | None] = {}

    def load(self, loader: Loader) -> None:
        loader.add_option("guard_json_console", bool, False,
                          "Write mitmproxy's and the guard's log lines as JSON (gateway mode).")

    def configure(self, updated: set[str]) -> None:
        if "guard_json_console" not in updated:
            return
        if ctx.options.guard_json_console:
            for handler in _terminal_handlers():
                self._plain.setdefault(handler, handler.formatter)
                handler.setFormatter(JsonFormatter())
        else:
            for handler, formatter in self._plain.items():
                handler.setFormatter(formatter)
            self._plain.clear()

    def running(self) -> None:
        """The one start line in JSON mode (mitmproxy's "proxy listening" is info, below `warn`):
        the journal says when the guard took traffic. Listed last, it follows the guard's own start."""
        if ctx.options.guard_json_console:
            line = {"ts": _now(), "event": RUNNING, "modes": list(ctx.options.mode),
                    "listen": f"{ctx.options.listen_host or '*'}:{ctx.options.listen_port or 8080}"}
            print(json.dumps(line), file=sys.stdout, flush=True)
