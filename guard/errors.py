"""The project's exceptions.

GuardError
├── PolicyError            the policy author is wrong (carries file, line, column)
├── SetupError             a file the guard needs at start is unusable (log, metrics, pseudonym key)
└── UntrustedInputError    the remote side sent something the guard refuses to read
    ├── MalformedDocument  not fully parseable, forbidden XML features, wrong shape or types
    ├── BodyTooLarge       over a byte, decoded-size or nesting cap
    └── UnsupportedEncoding a Content-Encoding or charset the guard cannot decode safely

Only `UntrustedInputError` subclasses ever leave a parser; `guard.engine` turns them into a
fail-closed decision with rule `malformed` in exactly one place.
"""

from __future__ import annotations


class GuardError(Exception):
    """Base class of every error this project raises on purpose."""


class PolicyError(GuardError):
    """A policy file is invalid; the message names `file:line:column` and what is wrong."""

    def __init__(self, message: str, path: str = "<policy>", line: int = 0, column: int = 0) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.reason = message
        where = f"{path}:{line}:{column}" if line else path
        super().__init__(f"{where}: {message}")


class UntrustedInputError(GuardError):
    """The body (or header) a remote server sent cannot be trusted as a whole."""


class MalformedDocument(UntrustedInputError):
    """The document is not fully parseable or breaks the format it claims."""


class BodyTooLarge(UntrustedInputError):
    """A size, decompression or nesting cap was exceeded before the document was understood."""


class UnsupportedEncoding(UntrustedInputError):
    """A content or character encoding the guard does not decode."""


class SetupError(GuardError):
    """A file the guard needs at start (decision log, metrics folder, pseudonym key) is unusable.

    The message names the path, what is wrong and how to fix it; the adapter turns it into a
    start-up failure instead of running without an audit trail.
    """
