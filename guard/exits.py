"""The CLI's one exit-code vocabulary and its one error type (every command, docs/install.md)."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    """Exit codes, a contract for scripts and units."""

    OK = 0  # every input allowed, nothing to report
    FINDING = 1  # a violation (check, corpus, replay), a canary finding, a failed policy test, no such pin
    ERROR = 2  # usage, I/O or policy error, or an input that is not a discovery answer


class CommandError(Exception):
    """A usage, I/O or input problem: `error: MESSAGE` on stderr (the message says how to fix it), exit 2."""
