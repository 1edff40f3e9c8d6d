"""Request rules: refuse a discovery request, or a challenge around it, before credentials travel.

They read plain values the proxy took from the flow, so they are tested without mitmproxy.
"""

from __future__ import annotations

import re

from guard.model import Finding
from guard.names import User, parse_ip
from guard.ownership import Trust, owner_evidence, public_suffix, registrable
from guard.reserved import reserved_name
from guard.rules.catalogue import CREDENTIAL_LEAK, DISCOVERY_TLD

_BASIC_CHALLENGE = re.compile(r"(?:^|,)\s*basic(?:\s|,|$)", re.IGNORECASE)


def owned(user: User, host: str, trust: Trust) -> bool:
    """Some evidence says `host` belongs to the user's mail domain."""
    return owner_evidence(user.domain, host, trust) is not None


def discovery_tld(host: str, user: User | None, *, discovery_name: bool) -> Finding | None:
    """`autodiscover.com.br`: a discovery name whose registrable domain is the name itself (the 2021
    leak, see docs/rules.md), or a bare public suffix asked for discovery paths."""
    if not host or parse_ip(host) is not None:
        return None
    leak = (discovery_name and registrable(host) == host) or public_suffix(host) == host
    if not leak or (user is not None and registrable(user.domain) == host):
        return None
    return Finding(DISCOVERY_TLD, host, "(request host)",
                   f"{host} is a discovery name under a public suffix, owned by whoever registered it; "
                   "the request was not sent")


def credential_leak(host: str, scheme: str, user: User | None, credential: str | None,
                    trust: Trust) -> Finding | None:
    """Credentials (of kind `credential`, never their value) sent over http, to a host the user does
    not own, or for no known user: `user` must come from an address the request names (a domain
    read off the request's own host proves nothing about that host)."""
    if credential is None:
        return None
    if scheme == "http":
        return Finding(CREDENTIAL_LEAK, host, "(request credentials)",
                       f"{credential} credentials to {host} over plain http; the request was not sent")
    if user is None:
        return Finding(CREDENTIAL_LEAK, host, "(request credentials)",
                       f"{credential} credentials to {host} for an unknown user (no address in the request): "
                       "ownership of the host cannot be shown; the request was not sent")
    if not owned(user, host, trust):
        return Finding(CREDENTIAL_LEAK, host, "(request credentials)",
                       f"{credential} credentials to {host}, which {user.domain} does not own; "
                       "the request was not sent")
    return None


def basic_challenge(host: str, scheme: str, user: User | None, challenges: str | None,
                    trust: Trust) -> Finding | None:
    """A Basic challenge from a host the user does not own (or over http) would fetch the password.

    `challenges` is the folded `WWW-Authenticate` value. A probe naming a reserved domain
    (exchangelib asks for `DUMMY@example.com` to learn the auth type) does not name the user, so
    ownership is not judged against it: the credentialed request that follows names the real
    user and meets `credential_leak`.
    """
    if challenges is None or not _BASIC_CHALLENGE.search(challenges):
        return None
    probe = user is not None and reserved_name(user.domain) is not None
    if scheme == "http":
        why = f"Basic challenge from {host} over plain http"
    elif user is not None and not probe and not owned(user, host, trust):
        why = f"Basic challenge from {host}, which {user.domain} does not own"
    else:
        return None
    return Finding(CREDENTIAL_LEAK, host, "WWW-Authenticate", f"{why}; a client would answer it")
