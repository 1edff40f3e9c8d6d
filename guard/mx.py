"""MX evidence for `foreign-host`: the user domain's own MX names its mail provider (docs/policy.md).

A custom domain hosted at a provider (`you@company.de` on IONOS or Microsoft 365) is in no
provider map; its MX records are the one public statement of who runs its mail, and Thunderbird
uses them the same way. A suggested host passes when it shares the registrable domain of one of
the user domain's MX hosts, or when a provider map entry lists an MX host under `mx` and the
suggested host under `hosts`.

This is weaker evidence than a same-domain host or a provider-map entry: plain DNS is not
authenticated, and MX names the inbound relay, not the IMAP server. So:

- a null MX (RFC 7505, `0 .`) means the domain takes no mail: no evidence;
- reserved user domains are never looked up (nothing can excuse them);
- a lookup that fails or times out is "no evidence", never "allow";
- every excuse is logged as a note naming the MX host.

`judge` does no I/O: the caller passes the MX answer in. `MxLookups` is owned by whoever calls
(the proxy keeps one per settings; the CLI may resolve synchronously). Lookups use dnspython's
asyncio resolver, so the proxy's event loop never waits on DNS: the proxy starts a lookup when
the request arrives (`start`) and awaits it in the response hook (`answer`, at most `timeout` +
0.5 s). Results are cached for min(record TTL, `cache_ttl`) in a bounded LRU; failures for at
most `FAILURE_TTL`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from guard.names import InvalidHost, normalise_host
from guard.ownership import Trust, registrable
from guard.reserved import reserved_name

FAILURE_TTL = 30.0  # seconds a failed lookup is remembered (a resolver outage is not hammered)

@dataclass(frozen=True, slots=True)
class MxSettings:
    """The policy's `mx_evidence` section."""

    resolver: tuple[str, int] | None = None  # (address, port); None: the system's resolvers
    timeout: float = 2.0  # seconds for one lookup, retries included
    cache_ttl: float = 300.0  # upper bound on how long an answer is trusted
    cache_size: int = 4096  # domains remembered at most (least recently used dropped)


@dataclass(frozen=True, slots=True)
class MxAnswer:
    """What DNS says about a domain's mail exchangers."""

    hosts: tuple[str, ...] = ()  # normalised MX hosts, most preferred first
    null: bool = False  # RFC 7505 null MX: the domain accepts no mail
    error: str = ""  # why the lookup gave nothing usable ("" when it worked)
    ttl: float | None = None  # the record set's TTL, when DNS gave one

    def describe(self, domain: str) -> str:
        """One line for a finding's evidence list."""
        if self.error:
            return f"MX lookup for {domain} failed ({self.error}): no MX evidence"
        if self.null:
            return f"{domain} has a null MX (RFC 7505, no mail): no MX evidence"
        if not self.hosts:
            return f"{domain} has no MX records: no MX evidence"
        shown = ", ".join(self.hosts[:4]) + (", …" if len(self.hosts) > 4 else "")
        return f"MX of {domain} ({shown}) shares no registrable domain or provider with the host"


def mx_evidence(user_domain: str, host: str, answer: MxAnswer, trust: Trust) -> str | None:
    """Why the user domain's MX vouches for `host` (weaker evidence), or None."""
    if answer.null or answer.error:
        return None
    host_rd = registrable(host)
    for mx in answer.hosts:
        mx_rd = registrable(mx)
        if host_rd and mx_rd == host_rd:
            return f"weaker MX evidence: {host} shares registrable domain {mx_rd} with MX {mx} of {user_domain}"
        entry = trust.vouch_mx(mx, host)
        if entry is not None:
            return f"weaker MX evidence: MX {mx} of {user_domain} and {host} are both {entry.name} ({entry.source})"
    return None


def parse_resolver(text: str) -> tuple[str, int]:
    """`HOST[:PORT]` / `[v6]:PORT` as an IP address and port (53 by default).

    Raises:
        ValueError: not an IP address (a resolver named by host name would need a resolver itself).
    """
    text = text.strip()
    address, port = text, 53
    if text.startswith("["):  # [v6] or [v6]:port
        address, _, rest = text[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        port = int(rest[1:]) if rest else port
    elif text.count(":") == 1:  # v4:port
        address, _, digits = text.partition(":")
        if not digits.isdigit():
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        port = int(digits)
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"the resolver must be an IP address, not {address!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    return address, port


class MxLookups:
    """Cached, bounded MX lookups for one `MxSettings` (the proxy keeps one per settings)."""

    def __init__(self, settings: MxSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, asyncio.Future[MxAnswer]]] = OrderedDict()
        self._running: set[asyncio.Future[MxAnswer]] = set()  # asyncio keeps only weak references to tasks

    def start(self, domain: str) -> asyncio.Future[MxAnswer]:
        """Start (or reuse) the lookup for `domain` on the running loop; never blocks.

        Reserved domains and names without a registrable domain are never looked up.
        """
        now = self._clock()
        entry = self._cache.get(domain)
        if entry is not None and (not entry[1].done() or entry[0] > now):
            self._cache.move_to_end(domain)
            return entry[1]
        future: asyncio.Future[MxAnswer]
        refusal = _refusal(domain)
        if refusal is not None:
            future = asyncio.get_running_loop().create_future()
            future.set_result(MxAnswer(error=refusal))
        else:
            future = asyncio.ensure_future(self._resolve(domain))
            self._running.add(future)
        # expiry is set when the answer arrives; until then the entry counts as in flight
        self._cache[domain] = (float("inf"), future)
        self._cache.move_to_end(domain)
        while len(self._cache) > self.settings.cache_size:
            self._cache.popitem(last=False)
        future.add_done_callback(lambda done: self._expire(domain, done))
        return future

    async def answer(self, domain: str) -> MxAnswer:
        """The answer for `domain`, waiting at most `timeout` + 0.5 s; a late answer is a failure. Never raises."""
        future = self.start(domain)
        if future.done():
            return future.result()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.settings.timeout + 0.5)
        except TimeoutError:
            return MxAnswer(error="timed out")

    def lookup(self, domain: str) -> MxAnswer:
        """`answer` for callers without an event loop (the CLI): blocks until it is there."""
        return asyncio.run(self.answer(domain))

    def __len__(self) -> int:
        return len(self._cache)

    def _expire(self, domain: str, future: asyncio.Future[MxAnswer]) -> None:
        self._running.discard(future)
        answer = future.result() if not future.cancelled() else MxAnswer(error="cancelled")
        ttl = min(FAILURE_TTL if answer.error else self.settings.cache_ttl, answer.ttl or float("inf"))
        entry = self._cache.get(domain)
        if entry is not None and entry[1] is future:
            self._cache[domain] = (self._clock() + ttl, future)

    async def _resolve(self, domain: str) -> MxAnswer:
        """One lookup. Never raises."""
        try:
            resolver = _resolver(self.settings)
            result = await resolver.resolve(dns.name.from_text(domain), dns.rdatatype.MX, search=False,
                                            raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return MxAnswer()
        except (dns.exception.DNSException, OSError) as exc:
            return MxAnswer(error=type(exc).__name__)
        rrset = result.rrset
        if rrset is None:
            return MxAnswer()
        records = sorted(rrset, key=lambda r: (r.preference, r.exchange.to_text()))
        if any(r.exchange == dns.name.root for r in records):
            return MxAnswer(null=True, ttl=float(rrset.ttl))  # RFC 7505 §3; a mix with others counts as null
        hosts: list[str] = []
        for record in records:
            try:
                hosts.append(normalise_host(record.exchange.to_text(omit_final_dot=True)))
            except InvalidHost:
                continue
        return MxAnswer(tuple(dict.fromkeys(hosts)), ttl=float(rrset.ttl))


def _refusal(domain: str) -> str | None:
    if reserved_name(domain) is not None:
        return "reserved user domain: never looked up"
    if not registrable(domain):
        return "no registrable domain: never looked up"
    return None


def _resolver(settings: MxSettings) -> dns.asyncresolver.Resolver:
    if settings.resolver is None:
        resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf; raises when there is none
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [settings.resolver[0]]
        resolver.port = settings.resolver[1]
    resolver.lifetime = settings.timeout
    resolver.timeout = settings.timeout
    resolver.cache = None
    return resolver
