"""Provider-map entries from a folder of clientConfig files the operator trusts (an ISPDB checkout).

Each file says "these address domains are served by these hosts"; the guard turns that into a
`TrustEntry` keyed by the hosts' registrable domains. This data is trusted because the operator
chose it, never because a server sent it: the answer being judged is never read here.
"""

from __future__ import annotations

from pathlib import Path

from guard.errors import UntrustedInputError
from guard.formats._xml import Element, parse_xml
from guard.model import Role, Suggestion, ValueKind
from guard.names import InvalidHost, User, normalise_host, target_of
from guard.ownership import TrustEntry, registrable

_MAX_FILES = 50_000


def read_provider_db(folder: Path) -> list[TrustEntry]:
    """One entry per readable `*.xml` clientConfig file; unreadable files are skipped, not fatal."""
    entries: list[TrustEntry] = []
    for count, path in enumerate(sorted(folder.glob("*.xml"))):
        if count >= _MAX_FILES:
            break
        try:
            root = parse_xml(path.read_bytes())
        except (OSError, UntrustedInputError):
            continue
        entry = _entry(path, root)
        if entry is not None:
            entries.append(entry)
    return entries


def _entry(path: Path, root: Element) -> TrustEntry | None:
    provider = root.kid("emailProvider")
    if root.tag != "clientConfig" or provider is None:
        return None
    domains = tuple(sorted({d for d in (_domain(e.text) for e in provider.kids("domain")) if d}))
    if not domains:
        return None
    placeholder_user = User("user@" + domains[0], "user", domains[0], domains[0])
    hosts: set[str] = set()
    for element in provider.iter():
        if element.tag in ("hostname", "url", "owaURL", "ewsURL", "easURL", "exchangeURL"):
            kind = ValueKind.HOST if element.tag == "hostname" else ValueKind.URL
            try:
                target = target_of(Suggestion(element.text, kind, Role.OTHER, element.path()), placeholder_user)
            except InvalidHost:
                continue
            rd = registrable(target.host)
            if rd and "%" not in element.text:
                hosts.add(rd)
    if not hosts:
        return None
    return TrustEntry(f"provider_db {path.stem}", str(path), domains, tuple(sorted(hosts)))


def _domain(text: str) -> str | None:
    try:
        return normalise_host(text)
    except InvalidHost:
        return None
