"""Provider-map entries from a folder of clientConfig files the operator trusts (an ISPDB checkout).

Each file says "these address domains are served by these hosts"; the guard turns that into a
`TrustEntry` keyed by the hosts' registrable domains. This data is trusted because the operator
chose it, never because a server sent it: the answer being judged is never read here.
"""

from __future__ import annotations

from pathlib import Path

from guard.errors import UntrustedInputError
from guard.formats._xml import Element, kid, kids, name, read_xml, text
from guard.model import Role, Suggestion, ValueKind
from guard.names import InvalidHost, User, normalise_host, target_of
from guard.ownership import TrustEntry, registrable

_MAX_FILES = 50_000
# Elements naming a server, matched case-sensitively as the ISPDB spells them.
_SERVER_ELEMENTS = frozenset({"hostname", "url", "owaURL", "ewsURL", "easURL", "exchangeURL"})


def read_provider_db(folder: Path) -> list[TrustEntry]:
    """One entry per readable `*.xml` clientConfig file; unreadable files are skipped, not fatal."""
    entries: list[TrustEntry] = []
    for count, path in enumerate(sorted(folder.glob("*.xml"))):
        if count >= _MAX_FILES:
            break
        try:
            root = read_xml(path.read_bytes())
        except (OSError, UntrustedInputError):
            continue
        entry = _entry(path, root)
        if entry is not None:
            entries.append(entry)
    return entries


def _entry(path: Path, root: Element) -> TrustEntry | None:
    provider = kid(root, "emailprovider")
    if name(root).local != "clientConfig" or provider is None:
        return None
    domains = tuple(sorted({d for d in (_domain(text(e)) for e in kids(provider, "domain")) if d}))
    if not domains:
        return None
    placeholder_user = User("user@" + domains[0], "user", domains[0], domains[0])
    hosts: set[str] = set()
    for element in provider.iter():
        local = name(element).local
        if local in _SERVER_ELEMENTS:
            kind = ValueKind.HOST if local == "hostname" else ValueKind.URL
            value = text(element)
            try:
                target = target_of(Suggestion(value, kind, Role.OTHER, f"emailProvider/{local}"), placeholder_user)
            except InvalidHost:
                continue
            rd = registrable(target.host)
            if rd and "%" not in value:
                hosts.add(rd)
    if not hosts:
        return None
    return TrustEntry(f"provider_db {path.stem}", str(path), domains, tuple(sorted(hosts)))


def _domain(text: str) -> str | None:
    try:
        return normalise_host(text)
    except InvalidHost:
        return None
