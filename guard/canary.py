"""Canaries: ask discovery services about addresses that must never have settings.

The January 2026 mapping (example.com → a real company's mail servers) went unnoticed for years
because nobody asked. A canary asks each configured service for addresses in reserved domains
(RFC 2606/6761: example.com/.net/.org, .test, .invalid, .example) and reports every service that
suggests anything at all: a settings answer or a redirect. The answers are read with the same
parsers and engine as the proxy uses, under the same body caps, over stdlib `urllib` with a
timeout, TLS verification on, no environment proxies (a guard proxy would hide the finding) and
no redirects followed (a redirect is itself reported).
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from guard._yaml import Located, items, load_located, mapping, string
from guard.decode import decode_body
from guard.engine import judge
from guard.errors import PolicyError, UntrustedInputError
from guard.formats import by_name, sniff_body
from guard.model import Suggestion
from guard.names import InvalidHost, User, target_of
from guard.policy import POLICY_VERSION, Policy
from guard.reserved import reserved_name
from guard.rules import reserved_user_domain

DEFAULT_ADDRESSES = (
    "canary@example.com", "canary@example.net", "canary@example.org",
    "canary@canary.test", "canary@canary.invalid", "canary@canary.example",
)
# kind → the format its answers are read as when the body does not say
KIND_FORMAT = {"autodetect": "autodetect", "adv2": "adv2", "autoconfig": "autoconfig", "ispdb": "autoconfig",
               "pox": "pox"}
# Added to a URL that names none of {address}, {domain}, {local}: where each client puts the address.
_DEFAULT_QUERY = {"adv2": "Email={address}&Protocol=AutodiscoverV1", "autoconfig": "emailaddress={address}"}
_POX_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/'
    'autodiscover/outlook/requestschema/2006"><Request><EMailAddress>{address}</EMailAddress>'
    "<AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    "</AcceptableResponseSchema></Request></Autodiscover>"
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
SUGGESTED, REDIRECT, REFUSED, UNREADABLE, ERROR = "suggested", "redirect", "refused", "unreadable", "error"
FINDING_OUTCOMES = frozenset({SUGGESTED, REDIRECT})


@dataclass(frozen=True, slots=True)
class Service:
    """One discovery endpoint to ask."""

    name: str
    kind: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Services:
    """A loaded services file."""

    services: tuple[Service, ...]
    addresses: tuple[str, ...] = DEFAULT_ADDRESSES


@dataclass(frozen=True, slots=True)
class Probe:
    """What one service said about one canary address."""

    service: Service
    address: str
    url: str
    outcome: str
    status: int | None = None
    hosts: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    detail: str = ""
    latency_ms: int = 0

    @property
    def is_finding(self) -> bool:
        return self.outcome in FINDING_OUTCOMES

    def as_dict(self) -> dict[str, object]:
        return {"service": self.service.name, "kind": self.service.kind, "url": self.url, "address": self.address,
                "outcome": self.outcome, "finding": self.is_finding, "status": self.status,
                "hosts": list(self.hosts), "rules": list(self.rules), "detail": self.detail,
                "latency_ms": self.latency_ms}


# --- the services file ---------------------------------------------------------------------------


def load_services(path: str | Path) -> Services:
    """Read and validate a services file; raises PolicyError naming file:line:column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read services file: {exc}", str(path)) from None
    root = load_located(text, str(path))
    keys = mapping(root, {"version", "addresses", "services", "description"})
    if "version" not in keys or keys["version"].value != POLICY_VERSION:
        raise (keys.get("version") or root).error(f"'version: {POLICY_VERSION}' is required")
    services = tuple(_service(item) for item in items(keys.get("services")))
    if not services:
        raise (keys.get("services") or root).error("'services' must list at least one service")
    seen: set[str] = set()
    for item, service in zip(items(keys.get("services")), services, strict=True):
        if service.name in seen:
            raise item.error(f"duplicate service name {service.name!r}")
        seen.add(service.name)
    addresses = tuple(_address(a) for a in items(keys.get("addresses"))) or DEFAULT_ADDRESSES
    return Services(services, addresses)


def _service(node: Located) -> Service:
    keys = mapping(node, {"name", "kind", "url", "headers"}, required=("name", "kind", "url"))
    kind = string(keys["kind"])
    if kind not in KIND_FORMAT:
        raise keys["kind"].error(f"unknown kind {kind!r}; expected one of: {', '.join(sorted(KIND_FORMAT))}")
    url = string(keys["url"])
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise keys["url"].error("expected an absolute http:// or https:// URL")
    headers: list[tuple[str, str]] = []
    if "headers" in keys:
        node = keys["headers"]
        for name, value in mapping(node, set(node.value) if isinstance(node.value, dict) else set()).items():
            if name.lower() in ("authorization", "cookie", "proxy-authorization"):
                raise value.error(f"{name}: canaries never send credentials")
            headers.append((name, string(value)))
    return Service(string(keys["name"]), kind, url, tuple(headers))


def _address(node: Located) -> str:
    text = string(node)
    try:
        user = User.from_address(text)
    except InvalidHost as exc:
        raise node.error(str(exc)) from None
    if reserved_name(user.domain) is None:
        raise node.error(f"{user.domain} is not a reserved domain; canaries only ask about reserved names")
    return text


# --- asking --------------------------------------------------------------------------------------


def request_for(service: Service, address: str) -> urllib.request.Request:
    """The HTTP request a client of this kind would send for `address` (never with credentials)."""
    user = User.from_address(address)
    url = service.url
    if not any(p in url for p in ("{address}", "{domain}", "{local}")):
        if service.kind == "ispdb":
            url = url.rstrip("/") + "/{domain}"
        elif service.kind in _DEFAULT_QUERY:
            url += ("&" if urlsplit(url).query else "?") + _DEFAULT_QUERY[service.kind]
    for placeholder, value in (("{address}", address), ("{domain}", user.domain), ("{local}", user.local)):
        url = url.replace(placeholder, quote(value, safe="@"))
    headers = {"Accept-Encoding": "identity", "User-Agent": "autodiscover-guard-canary/1"} | dict(service.headers)
    data = None
    if service.kind == "autodetect":
        headers["X-Email"] = address
    elif service.kind == "pox":
        data = _POX_REQUEST.format(address=address).encode()
        headers["Content-Type"] = "text/xml; charset=utf-8"
    # the scheme is http or https: load_services refuses anything else
    return urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")  # noqa: S310


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to report, not to follow (it would carry the address onward)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


Fetch = Callable[[urllib.request.Request], tuple[int, dict[str, str], bytes]]


def fetcher(policy: Policy, *, timeout: float, ca_bundle: str | None) -> Fetch:
    """(status, lower-cased headers, decoded body) over urllib: verified TLS, capped, no proxies."""
    context = ssl.create_default_context(cafile=ca_bundle)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context),
                                         _NoRedirects())
    wire, decoded = policy.limits.max_body_bytes, policy.limits.max_decoded_bytes

    def fetch(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
        try:
            response = opener.open(request, timeout=timeout)
            status = int(response.status)
        except urllib.error.HTTPError as exc:  # every non-2xx, redirects included
            response, status = exc, exc.code
        with response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            raw = response.read(wire + 1)
        if len(raw) > wire:
            raise UntrustedInputError(f"the body exceeds the {wire}-byte cap")
        return status, headers, decode_body(raw, headers.get("content-encoding", ""), decoded)

    return fetch


def probe(service: Service, address: str, policy: Policy, fetch: Fetch) -> Probe:
    """Ask one service about one canary address and classify the answer. Never raises."""
    request = request_for(service, address)
    started = time.perf_counter()

    def result(outcome: str, status: int | None = None, hosts: tuple[str, ...] = (), rules: tuple[str, ...] = (),
               detail: str = "") -> Probe:
        elapsed = round((time.perf_counter() - started) * 1000)
        return Probe(service, address, request.full_url, outcome, status, hosts, rules, detail, elapsed)

    try:
        status, headers, body = fetch(request)
    except UntrustedInputError as exc:
        return result(UNREADABLE, detail=str(exc))
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, timeouts, TLS, resets
        return result(ERROR, detail=f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
    user = User.from_address(address)
    reserved = reserved_user_domain(user)
    rules = (reserved.rule,) if reserved is not None else ()
    if status in _REDIRECTS and headers.get("location"):
        location = headers["location"]
        return result(REDIRECT, status, (_host_of(location) or location,), rules,
                      f"redirects to {location} (not followed)")
    if not 200 <= status < 300 or not body.strip():
        return result(REFUSED, status, detail="no answer body" if 200 <= status < 300 else f"HTTP {status}")
    fmt = by_name(sniff_body(body) or KIND_FORMAT[service.kind])
    extra = fmt.header_suggestions(headers)
    decision = judge(body, user, policy, fmt=fmt, url=request.full_url,
                     content_type=headers.get("content-type", ""), extra=extra)
    if decision.suggestions:
        hosts = tuple(dict.fromkeys(_suggested_host(s, user) for s in decision.suggestions))
        return result(SUGGESTED, status, hosts, decision.rules, f"{decision.format} answer with "
                      f"{len(decision.suggestions)} suggestion(s)")
    malformed = [f for f in decision.findings if f.rule not in rules]
    if malformed:
        return result(UNREADABLE, status, rules=decision.rules, detail=malformed[0].message)
    return result(REFUSED, status, detail=f"{decision.format} error answer")


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _suggested_host(suggestion: Suggestion, user: User) -> str:
    try:
        return target_of(suggestion, user).host
    except InvalidHost:
        return suggestion.value.strip()[:253]


def run(services: Services, policy: Policy, fetch: Fetch) -> Iterator[Probe]:
    """Every service asked about every canary address, in file order."""
    for service in services.services:
        for address in services.addresses:
            yield probe(service, address, policy, fetch)
