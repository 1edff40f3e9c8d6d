"""The redirect-walk rule: every hop of one discovery walk counts, and no URL is visited twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from guard.model import Finding, Role, Suggestion, ValueKind
from guard.names import User
from guard.rules.catalogue import REDIRECT_LIMIT


def url_key(url: str) -> str | None:
    """A URL as a walk key: scheme, host and lower-cased path; None when it names no host."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return None
    return f"{parts.scheme.lower()}://{host}{parts.path.lower()}" if host else None


_HOP_ROLES = frozenset({Role.REDIRECT, Role.AUTODISCOVER})


def hop_key(suggestion: Suggestion) -> str | None:
    """Where a redirect suggestion sends the client next, as a walk key (URL or mailto)."""
    if suggestion.role not in _HOP_ROLES:  # first: most suggestions are server settings
        return None
    if suggestion.kind is ValueKind.EMAIL:
        return "mailto:" + suggestion.value.strip().lower() if suggestion.role is Role.REDIRECT else None
    return url_key(suggestion.value)


def key_host(key: str) -> str:
    """The host a walk key leads to."""
    return key.rpartition("@")[2] if key.startswith("mailto:") else key.partition("://")[2].partition("/")[0]


@dataclass(frozen=True, slots=True)
class Walk:
    """One discovery walk: whose it is, where it has been, how many redirects it took."""

    user: User | None
    visited: frozenset[str]
    hops: int = 0

    def refuse(self, key: str, limit: int) -> str | None:
        """Why following `key` next is refused (a loop, or past the hop limit), or None."""
        if key in self.visited:
            return f"redirect loop: {key} was already visited in this discovery walk"
        if self.hops + 1 > limit:
            return f"more than {limit} redirects in one discovery walk (limits.max_redirects)"
        return None

    def next(self, key: str) -> Walk:
        """The walk after following `key`."""
        return Walk(self.user, self.visited | {key}, self.hops + 1)


NO_WALK = Walk(None, frozenset())


def redirect_limit(walk: Walk, hops: Sequence[tuple[Suggestion, str]], limit: int) -> list[Finding]:
    """`redirect-limit` findings for the hops (suggestion, walk key) an answer sends the client on."""
    return [Finding(REDIRECT_LIMIT, key_host(key), s.field, why)
            for s, key in hops if (why := walk.refuse(key, limit)) is not None]
