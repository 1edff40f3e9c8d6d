"""Who owns a suggested host: the user's registrable domain, a trusted provider map, or an allowlist.

Ownership is judged on registrable domains from the Public Suffix List bundled with tldextract
(built with `suffix_list_urls=()`, so it never touches the network; the private section is
included, so `user.github.io` and `other.github.io` are different owners). An empty registrable
domain (`corp.internal`, IP literals) never matches anything, not even another empty one.

Provider map and allowlist entries are hash-indexed, so a lookup costs the same with 10 or
10,000 entries: the host's few parent domains and the user's domain and brand label are probed
in dicts, never scanned.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import tldextract

_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


def load_suffix_list() -> None:
    """Build the Public Suffix List trie now (tldextract does it on first use, ~50 ms), so the
    first discovery flow after start does not wait for it."""
    _EXTRACT("warm-up.example")


@lru_cache(maxsize=16384)
def registrable(host: str) -> str:
    """eTLD+1 of a normalised host, or "" when it has none (reserved TLDs, IP literals, suffixes)."""
    result = _EXTRACT(host)
    if not result.suffix or not result.domain:
        return ""
    return f"{result.domain}.{result.suffix}"


@lru_cache(maxsize=16384)
def public_suffix(host: str) -> str:
    """The public suffix of a normalised host ("" when the PSL knows none)."""
    return str(_EXTRACT(host).suffix)


@dataclass(frozen=True, slots=True)
class TrustEntry:
    """One statement "these user domains may be served by these hosts", with where it came from.

    `domains` holds exact user domains, `label.*` (that brand under any public suffix, e.g.
    `hotmail.*`), `*.parent` (any subdomain) or `*` (every user: reserved for big multi-tenant
    platforms that authenticate per tenant). `hosts` holds domains matched with all their
    subdomains; `mx` (provider maps only) the provider's MX host names, also matched with all
    their subdomains, consulted only by MX evidence (guard/mx.py).
    """

    name: str
    source: str
    domains: tuple[str, ...]
    hosts: tuple[str, ...]
    weak: bool = False  # evidence that holds for any user (domains "*"); logged as such
    mx: tuple[str, ...] = ()


@dataclass(slots=True)
class Trust:
    """The indexed union of provider-map and allowlist entries."""

    entries: list[TrustEntry] = field(default_factory=list)
    _by_domain: dict[str, set[int]] = field(default_factory=dict)
    _by_label: dict[str, set[int]] = field(default_factory=dict)
    _by_parent: dict[str, set[int]] = field(default_factory=dict)
    _any_user: set[int] = field(default_factory=set)
    _by_host: dict[str, set[int]] = field(default_factory=dict)
    _by_mx: dict[str, set[int]] = field(default_factory=dict)
    _evidence: dict[tuple[str, str], str | None] = field(default_factory=dict)

    @classmethod
    def build(cls, entries: Iterable[TrustEntry]) -> Trust:
        """Index entries once, at policy load."""
        trust = cls()
        for entry in entries:
            trust.add(entry)
        return trust

    def add(self, entry: TrustEntry) -> None:
        """Index one more entry."""
        index = len(self.entries)
        self.entries.append(entry)
        self._evidence.clear()
        for pattern in entry.domains:
            if pattern == "*":
                self._any_user.add(index)
            elif pattern.startswith("*."):
                self._by_parent.setdefault(pattern[2:], set()).add(index)
            elif pattern.endswith(".*"):
                self._by_label.setdefault(pattern[:-2], set()).add(index)
            else:
                self._by_domain.setdefault(pattern, set()).add(index)
        for host in entry.hosts:
            self._by_host.setdefault(host, set()).add(index)
        for mx in entry.mx:
            self._by_mx.setdefault(mx, set()).add(index)

    def _user_entries(self, domain: str) -> set[int]:
        found = set(self._any_user)
        found |= self._by_domain.get(domain, set())
        labels = domain.split(".")
        for i in range(1, len(labels)):
            found |= self._by_parent.get(".".join(labels[i:]), set())
        rd = registrable(domain)
        if rd:
            found |= self._by_label.get(rd.split(".", 1)[0], set())
        return found

    def _host_entries(self, host: str, index: dict[str, set[int]] | None = None) -> set[int]:
        """Entries listing `host` or a parent of it (in `index`: hosts by default)."""
        index = self._by_host if index is None else index
        found: set[int] = set()
        labels = host.split(".")
        for i in range(len(labels)):
            found |= index.get(".".join(labels[i:]), set())
        return found

    def vouch(self, user_domain: str, host: str) -> TrustEntry | None:
        """The first entry (strongest first) that lists both the user's domain and the host."""
        common = self._host_entries(host)
        if not common:
            return None
        common &= self._user_entries(user_domain)
        if not common:
            return None
        return self.entries[min(common, key=lambda i: (self.entries[i].weak, i))]

    def evidence(self, user_domain: str, host: str) -> str | None:
        """`owner_evidence`, remembered per (user domain, host): answers repeat hosts, gateways repeat users."""
        key = (user_domain, host)
        try:
            return self._evidence[key]
        except KeyError:
            pass
        found = _evidence(user_domain, host, self)
        if len(self._evidence) >= EVIDENCE_SLOTS:  # bounded: forget everything rather than grow
            self._evidence.clear()
        self._evidence[key] = found
        return found

    def vouch_mx(self, mx_host: str, host: str) -> TrustEntry | None:
        """The first entry whose `mx` lists the MX host (or a parent of it) and whose `hosts` list `host`."""
        common = self._host_entries(mx_host, self._by_mx)
        if common:
            common &= self._host_entries(host)
        return self.entries[min(common)] if common else None


EVIDENCE_SLOTS = 16384

def owner_evidence(user_domain: str, host: str, trust: Trust) -> str | None:
    """Why `host` may serve `user_domain`, or None when nothing says so."""
    return trust.evidence(user_domain, host)


def _evidence(user_domain: str, host: str, trust: Trust) -> str | None:
    user_rd = registrable(user_domain)
    if user_rd and registrable(host) == user_rd:
        return f"same registrable domain {user_rd}"
    entry = trust.vouch(user_domain, host)
    if entry is None:
        return None
    strength = "weak evidence, any user domain: " if entry.weak else ""
    return f"{strength}{entry.name} ({entry.source})"
