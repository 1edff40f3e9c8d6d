"""The normalised vocabulary every format, rule and adapter speaks.

A `Suggestion` is one thing a mail client would act on (connect to, post credentials to, or
restart discovery for). Formats produce them; rules turn them into `Finding`s; the engine folds
findings into a `Decision`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class Role(StrEnum):
    """What the client does with a suggestion."""

    IMAP = "imap"
    POP3 = "pop3"
    SMTP = "smtp"
    EWS = "ews"
    EAS = "eas"
    MAPI = "mapi"
    OAB = "oab"
    WEB = "web"
    DAV = "dav"
    JMAP = "jmap"
    SIEVE = "sieve"
    DIRECTORY = "directory"
    REDIRECT = "redirect"
    AUTODISCOVER = "autodiscover"
    OAUTH = "oauth"
    INFO = "info"  # a help page shown to the user; no credentials or mail go there
    OTHER = "other"


class ValueKind(StrEnum):
    """How the raw value names a host."""

    HOST = "host"  # a bare host name or IP literal, maybe GUID@domain or msstd:host
    URL = "url"  # an absolute URL; the host is its authority
    EMAIL = "email"  # an address; discovery restarts for its domain (redirectAddr)


class Transport(StrEnum):
    """Transport security the suggestion asks the client to use."""

    TLS = "tls"
    STARTTLS = "starttls"
    PLAIN = "plain"
    UNKNOWN = "unknown"


class Action(StrEnum):
    """What the guard does (or, in audit mode, would do) with an answer."""

    ALLOW = "allow"
    WARN = "warn"
    REWRITE = "rewrite"
    BLOCK = "block"


Locator = tuple[int | str, ...]
"""Format-private address of the unit to cut when a suggestion is removed.

XML formats store `(ordinal,)`, the unit element's position in document order (a rewrite turns it
into byte offsets with a second parse); JSON formats store the key/index path of the list item to drop.
"""


class Suggestion(NamedTuple):
    """One host, URL, redirect or endpoint taken from a document, exactly as written there.

    A NamedTuple, not a frozen dataclass: formats build one per value and judging reads them
    many times; a tuple is built in half the time and is just as immutable and hashable.
    """

    value: str
    kind: ValueKind
    role: Role
    field: str
    port: int | None = None
    transport: Transport = Transport.UNKNOWN
    locator: Locator = ()


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a format parser understood of one document."""

    format: str
    suggestions: tuple[Suggestion, ...]
    error_answer: bool = False  # the document is a protocol error (no settings), e.g. POX ErrorCode 500


@dataclass(frozen=True, slots=True)
class Finding:
    """One rule's objection to one suggestion (or to the user's domain, or to the document)."""

    rule: str
    host: str
    field: str
    message: str
    evidence: tuple[str, ...] = ()
    suggestion: Suggestion | None = None

    def as_dict(self) -> dict[str, object]:
        """The JSON shape shared by the CLI and the decision log."""
        out: dict[str, object] = {
            "rule": self.rule,
            "host": self.host,
            "field": self.field,
            "message": self.message,
        }
        if self.evidence:
            out["evidence"] = list(self.evidence)
        return out


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete HTTP answer the guard sends instead of the upstream one (a block)."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one answer: what was found and what the policy says to do about it."""

    format: str
    action: Action
    findings: tuple[Finding, ...] = ()
    suggestions: tuple[Suggestion, ...] = ()
    reply: Reply | None = None  # BLOCK: the answer sent instead
    body: bytes | None = None  # REWRITE: the upstream body without the offending suggestions
    drop_headers: tuple[str, ...] = ()  # REWRITE/BLOCK: upstream headers that repeat suggestions
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> str:
        """`violation` when enforcement changes the answer (rewrite or block), else `allow`.

        Findings whose rule is set to `warn` are reported but do not make a violation.
        """
        return "violation" if self.action in (Action.REWRITE, Action.BLOCK) else "allow"

    @property
    def rules(self) -> tuple[str, ...]:
        """Distinct rule ids in first-seen order."""
        return tuple(dict.fromkeys(f.rule for f in self.findings))
