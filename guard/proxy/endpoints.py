"""The one table of discovery endpoints: which requests are mail discovery, and whose.

Flow classification (`is_discovery`), the user's domain when only a host or path names it
(`domain_hint`), `run`'s interception patterns (`allow_host_patterns`) and the PAC file's globs
(`pac_globs`) are all derived from `ENDPOINTS`; docs/architecture.md says how to add one. This
module does not import mitmproxy, so the launcher can read it without starting a proxy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qsl, unquote

from guard.reserved import RESERVED_NAMES


class HostMatch(Enum):
    """How an endpoint's `host` is compared with a request's host."""

    PREFIX = "prefix"  # `autodiscover.` + anything
    EXACT = "exact"
    SUFFIX = "suffix"  # anything + `.autodetect.outlook.cloud.microsoft`
    ANY = "any"  # any host: the path alone says it is discovery


# Outlook's POX/SOAP/v2 paths, Thunderbird's autoconfig paths, Apple profiles (docs/formats.md).
_DISCOVERY_PATH = re.compile(
    r"/autodiscover/autodiscover\.(?:xml|svc|json)|/mail/config-v1\.1\.xml|/\.well-known/autoconfig/|mobileconfig",
    re.IGNORECASE,
)
# The paths a client fetches on the bare mail domain itself (Thunderbird's .well-known URL, Outlook's
# and exchangelib's first POX/SOAP URL): the host names the user's domain by construction.
_BARE_DOMAIN_PATH = re.compile(r"/\.well-known/autoconfig/|^/autodiscover/autodiscover\.(?:xml|svc|json)",
                               re.IGNORECASE)
_AUTODETECT_PATH = re.compile(r"^/(?:autodetect/)?detect/?$", re.IGNORECASE)
_DOH_PATH = re.compile(r"^/(?:dns-query|resolve)$", re.IGNORECASE)
_SERVICE_LABELS = re.compile(r"^(?:_[^.]+\.)+")


def _txt_name(query: str) -> str | None:
    """The domain a DoH JSON TXT lookup asks about (`?name=<domain>&type=TXT|16`), else None."""
    params = dict(parse_qsl(query))
    name = params.get("name", "")
    return name.rstrip(".") if params.get("type", "").upper() in ("TXT", "16") and name[:1] not in ("", "_") else None


def _doh_lookup(query: str, headers: Mapping[str, str]) -> bool:
    """DoH JSON lookups of SRV service names (`?name=_imaps._tcp.<domain>`) and of a domain's TXT
    records, where `mailconf=` URLs live (docs/dns.md); other DoH queries are not discovery."""
    if "dns-json" not in (headers.get("accept", "") + query).lower():
        return False
    lowered = query.lower()
    return "name=_" in lowered or ("type=" in lowered and _txt_name(query) is not None)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One discovery endpoint.

    `path` is searched in the path without its query; None means any path. `claims_host`: a
    request to this host is discovery only on these paths (ISPDB hosts serve other pages too).
    `domain_from` says which part of the request names the user's domain, when no address does:
    "host" (after the first label), "bare-host" (the host itself, on `_BARE_DOMAIN_PATH`),
    "ispdb" (the last path segment), "dns-name" (the `name=`
    query). `intercept`: `run` decrypts this host and the PAC file sends it to the guard.
    """

    host: str
    match: HostMatch
    doc: str
    path: re.Pattern[str] | None = None
    claims_host: bool = False
    domain_from: str | None = None
    intercept: bool = True
    query: Callable[[str, Mapping[str, str]], bool] | None = None


_ISPDB_DOC = "Thunderbird's ISPDB lookup (/<prefix>/<domain>)"

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("autodiscover.", HostMatch.PREFIX, "Outlook/ActiveSync autodiscover host of the mail domain",
             domain_from="host"),
    Endpoint("autoconfig.", HostMatch.PREFIX, "Thunderbird autoconfig host of the mail domain", domain_from="host"),
    Endpoint("", HostMatch.ANY, "the bare mail domain's own autoconfig/autodiscover URLs", path=_BARE_DOMAIN_PATH,
             domain_from="bare-host", intercept=False),
    Endpoint("", HostMatch.ANY, "autodiscover/autoconfig/mobileconfig paths on any host", path=_DISCOVERY_PATH,
             intercept=False),
    Endpoint(".autodetect.outlook.cloud.microsoft", HostMatch.SUFFIX, "Outlook AutoDetect",
             path=_AUTODETECT_PATH, claims_host=True),
    Endpoint("prod-autodetect.outlookmobile.com", HostMatch.EXACT, "Outlook mobile AutoDetect",
             path=_AUTODETECT_PATH, claims_host=True),
    Endpoint("outlook.office365.com", HostMatch.EXACT, "Microsoft 365 autodiscover (POX, SOAP, v2)",
             path=_DISCOVERY_PATH),
    Endpoint("live.thunderbird.net", HostMatch.EXACT, _ISPDB_DOC, path=re.compile(r"^/autoconfig/v1\.1/", re.I),
             claims_host=True, domain_from="ispdb"),
    Endpoint("live.mozillamessaging.com", HostMatch.EXACT, _ISPDB_DOC,  # Horde_Mail_Autoconfig's ISPDB URL
             path=re.compile(r"^/autoconfig/v1\.1/", re.I), claims_host=True, domain_from="ispdb"),
    Endpoint("autoconfig.thunderbird.net", HostMatch.EXACT, _ISPDB_DOC, path=re.compile(r"^/v1\.1/", re.I),
             claims_host=True, domain_from="ispdb"),
    Endpoint("v1.ispdb.net", HostMatch.EXACT, _ISPDB_DOC, path=re.compile(r"^/"), claims_host=True,
             domain_from="ispdb"),
    Endpoint("", HostMatch.ANY, "DNS-over-HTTPS JSON lookups of mail SRV names and TXT mailconf=", path=_DOH_PATH,
             domain_from="dns-name", intercept=False, query=_doh_lookup),
)

# The table, indexed once so that classifying a flow (every flow asks) stays a few C-level calls.
_PREFIXES = tuple(e.host for e in ENDPOINTS if e.match is HostMatch.PREFIX)
_DOMAIN_PREFIXES = tuple(e.host for e in ENDPOINTS if e.match is HostMatch.PREFIX and e.domain_from == "host")
_EXACT = {e.host: e for e in ENDPOINTS if e.match is HostMatch.EXACT and e.claims_host}
_SUFFIXES = tuple((e.host, e) for e in ENDPOINTS if e.match is HostMatch.SUFFIX and e.claims_host)
_ANY_SUFFIX = tuple(suffix for suffix, _ in _SUFFIXES)
_ANY_HOST_PATHS = tuple(e.path.search for e in ENDPOINTS if e.match is HostMatch.ANY and e.query is None and e.path
                        and e.domain_from != "bare-host")  # _DISCOVERY_PATH already finds those
_ANY_HOST_QUERIES = tuple((e.path.search, e.query) for e in ENDPOINTS
                          if e.match is HostMatch.ANY and e.query is not None and e.path)
_NAMED_HOSTS = frozenset(e.host for e in ENDPOINTS if e.match is HostMatch.EXACT)
_BARE_PATHS = tuple(e.path.search for e in ENDPOINTS if e.domain_from == "bare-host" and e.path)
_ISPDB_DOMAIN = re.compile(r"^/(?:autoconfig/)?(?:v1\.1/)?([^/]+)/?$", re.IGNORECASE)


def _claimed(host: str) -> Endpoint | None:
    """The endpoint that alone decides for `host` (its other paths are not discovery), if any."""
    found = _EXACT.get(host)
    if found is None:
        for suffix, endpoint in _SUFFIXES:
            if host.endswith(suffix):
                return endpoint
    return found


def is_discovery(host: str, path: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a request is mail discovery, from host and path (cheap: every flow asks)."""
    if host.startswith(_PREFIXES):
        return True
    plain, _, query = path.partition("?")
    for search in _ANY_HOST_PATHS:
        if search(plain):
            return True
    claimed = _EXACT.get(host) or (_claimed(host) if host.endswith(_ANY_SUFFIX) else None)
    if claimed is not None:
        return claimed.path is None or claimed.path.search(plain) is not None
    for search, wanted in _ANY_HOST_QUERIES:  # noqa: SIM110 - a loop: any() builds a generator on every flow
        if search(plain) and wanted(query, headers or {}):
            return True
    return False


def domain_hint(host: str, path: str) -> tuple[str, str] | None:
    """(source, domain) when only a domain is known: ISPDB path, SRV name, discovery host."""
    plain, _, query = path.partition("?")
    claimed = _claimed(host)
    if claimed is not None and claimed.domain_from == "ispdb":
        match = _ISPDB_DOMAIN.match(plain)
        return ("ispdb", unquote(match.group(1))) if match else None
    for key, value in parse_qsl(query):
        if key == "name" and value.startswith("_"):
            return "dns-name", _SERVICE_LABELS.sub("", value)
    txt_name = _txt_name(query) if _DOH_PATH.search(plain) else None
    if txt_name is not None:
        return "dns-name", txt_name
    if host.startswith(_DOMAIN_PREFIXES):
        return "host", host.partition(".")[2]
    if claimed is None and host not in _NAMED_HOSTS and any(search(plain) for search in _BARE_PATHS):
        return "bare-host", host
    return None


def is_discovery_host(host: str) -> bool:
    """`host` is a discovery name by its first label (`autodiscover.`, `autoconfig.`)."""
    return host.startswith(_DOMAIN_PREFIXES)


def _pattern(endpoint: Endpoint) -> str:
    """A regex for mitmproxy's `allow_hosts`, matched with re.search against "host:port"."""
    escaped = re.escape(endpoint.host)
    return {HostMatch.PREFIX: f"^{escaped}", HostMatch.EXACT: f"^{escaped}:", HostMatch.SUFFIX: f"{escaped}:"}[
        endpoint.match]


def _glob(endpoint: Endpoint) -> str:
    """A shell glob for a PAC file's shExpMatch."""
    return {HostMatch.PREFIX: f"{endpoint.host}*", HostMatch.EXACT: endpoint.host,
            HostMatch.SUFFIX: f"*{endpoint.host}"}[endpoint.match]


_INTERCEPTED = tuple(e for e in ENDPOINTS if e.intercept and e.match is not HostMatch.ANY)
DISCOVERY_HOST_PATTERNS: tuple[str, ...] = tuple(_pattern(e) for e in _INTERCEPTED)
DISCOVERY_HOST_GLOBS: tuple[str, ...] = tuple(_glob(e) for e in _INTERCEPTED)


# Reserved and special-use names (guard/reserved.py) are never a legitimate mail domain: whatever a
# client fetches there is decrypted and judged, bare domain included (the example.com incident).
RESERVED_HOST_PATTERNS: tuple[str, ...] = tuple(rf"(?:^|\.){re.escape(name)}:" for name in RESERVED_NAMES)
RESERVED_HOST_GLOBS: tuple[str, ...] = tuple(glob for name in RESERVED_NAMES for glob in (name, f"*.{name}"))


def allow_host_patterns(own_hosts: Iterable[str]) -> list[str]:
    """Regexes for `--allow-hosts`: the table's hosts, reserved names, and the user's own mail
    domains (bare, where Thunderbird's .well-known and Outlook's first POX URL live) with their
    discovery names."""
    own = [rf"^({'|'.join(re.escape(p) for p in _DOMAIN_PREFIXES)})?{re.escape(host)}:" for host in own_hosts]
    return [*DISCOVERY_HOST_PATTERNS, *RESERVED_HOST_PATTERNS, *own]


def pac_globs(own_hosts: Iterable[str]) -> list[str]:
    """Globs for a PAC file: the table's hosts, reserved names, and the user's own mail domains
    with their discovery names (a PAC sees no https path, so it must name the bare domain)."""
    globs = [*DISCOVERY_HOST_GLOBS, *RESERVED_HOST_GLOBS]
    for host in own_hosts:
        globs += [host, *(prefix + host for prefix in _DOMAIN_PREFIXES)]
    return globs
