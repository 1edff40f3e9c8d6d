"""Answer rules: small functions over one normalised suggestion of an answer.

Reserved names and IP ranges come first and are never excused by ownership evidence.
"""

from __future__ import annotations

from typing import NamedTuple

from guard.model import Finding, Role, Suggestion, Transport
from guard.names import Target, User, skeleton, to_unicode
from guard.ownership import Trust, owner_evidence, registrable
from guard.reserved import non_global_range, reserved_name
from guard.rules.catalogue import (
    FOREIGN_HOST,
    IDN_LOOKALIKE,
    IP_LITERAL,
    PLAINTEXT,
    RESERVED_DOMAIN,
    RESERVED_USER_DOMAIN,
)


class Subject(NamedTuple):
    """One suggestion, where it really leads, and for whom (a NamedTuple: one is built per suggestion)."""

    suggestion: Suggestion
    target: Target
    user: User | None

    def finding(self, rule: str, message: str, *evidence: str) -> Finding:
        """A finding about this suggestion."""
        return Finding(rule, self.target.host, self.suggestion.field, message, evidence, self.suggestion)


def reserved_user_domain(user: User) -> Finding | None:
    """The user's own domain is reserved: no answer for it can be legitimate (the example.com case)."""
    hit = reserved_name(user.domain)
    if hit is None:
        return None
    name, source = hit
    return Finding(
        RESERVED_USER_DOMAIN, user.domain, "(user address)",
        f"the user's domain {user.domain} is under reserved name {name!r} ({source}); "
        "no discovery answer for it can be legitimate",
        (source,),
    )


def reserved_domain(subject: Subject) -> Finding | None:
    """The suggested host is under a reserved or special-use name."""
    if subject.target.ip is not None:
        return None
    hit = reserved_name(subject.target.host)
    if hit is None:
        return None
    name, source = hit
    return subject.finding(RESERVED_DOMAIN, f"{subject.target.host} is under reserved name {name!r} ({source})", source)


def ip_literal(subject: Subject) -> Finding | None:
    """The suggested host is an IP literal; non-global ranges name their registry entry."""
    ip = subject.target.ip
    if ip is None:
        return None
    raw = subject.suggestion.value.strip()
    shown = f"{raw} (= {ip})" if raw.strip("[]") != str(ip) else str(ip)
    hit = non_global_range(ip)
    if hit is None:
        return subject.finding(IP_LITERAL, f"{shown} is an IP literal; no legitimate discovery answer needs one")
    network, source = hit
    return subject.finding(IP_LITERAL, f"{shown} is in non-global range {network} ({source})", source)


def foreign_host(subject: Subject, trust: Trust, *, unknown_owns_nothing: bool = True) -> Finding | None:
    """Nothing says the suggested host belongs to the user's mail domain; for an unknown user
    nothing can say so (policy `unknown_user: skip-ownership` skips the check instead)."""
    user = subject.user
    if subject.suggestion.role is Role.INFO:
        return None  # help pages carry no credentials; reserved names and IP literals still apply
    host = subject.target.host
    if user is None:
        if not unknown_owns_nothing:
            return None
        return subject.finding(
            FOREIGN_HOST, f"ownership of {host} cannot be shown: the user is unknown (no address in the request, "
            "and its URL names no mail domain)", "user_source unknown")
    if owner_evidence(user.domain, host, trust) is not None:
        return None
    user_rd = registrable(user.domain) or "(none)"
    host_rd = registrable(host) or "(none)"
    tried = (
        f"registrable domain {host_rd} != {user_rd}",
        "no provider map entry lists both",
        "no allowlist entry",
    )
    message = f"{host} is not owned by {user.domain} (registrable domain {host_rd}, user's {user_rd})"
    if subject.target.userinfo:
        message += "; the URL hides it behind a user@ prefix"
    return subject.finding(FOREIGN_HOST, message, *tried)


def idn_lookalike(subject: Subject) -> Finding | None:
    """The host's Unicode form imitates the user's domain (homoglyphs), while its A-label differs."""
    user = subject.user
    host = subject.target.host
    if user is None or subject.target.display == host:
        return None
    user_rd = registrable(user.domain) or user.domain
    host_rd = registrable(host)
    if host_rd == user_rd:
        return None
    shadow = skeleton(subject.target.display)
    imitated = skeleton(to_unicode(user_rd))
    if shadow != imitated and not shadow.endswith("." + imitated):
        return None
    return subject.finding(
        IDN_LOOKALIKE, f"{subject.target.display} ({host}) imitates {user_rd}", f"skeleton {shadow}",
    )


def plaintext(subject: Subject) -> Finding | None:
    """The suggestion sends credentials or mail without transport security."""
    if subject.target.transport is not Transport.PLAIN:
        return None
    return subject.finding(PLAINTEXT, f"{subject.suggestion.role} on {subject.target.host} is offered without TLS")
