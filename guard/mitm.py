"""The mitmproxy adapter: the only module in guard/ that imports mitmproxy.

Request side (`request`): pick out discovery flows cheaply by host and path, learn whose
discovery it is (request body, URL, `X-Email`, Basic user-id, host), and refuse two kinds of
request locally, before any upstream connection: anything to `autodiscover.`/`autoconfig.` + a
public suffix (`discovery-tld`, the 2021 leak) and credentials sent to a discovery host the
user's domain does not own, or over plain http (`credential-leak`).

Response side (`responseheaders`, `response`): decode the body with the guard's own capped
decoder, judge it with `guard.engine.judge`, judge a 30x `Location` like a redirect suggestion,
count redirect hops per client and user (`redirect-limit`), refuse Basic challenges from hosts
the user does not own, then pass, rewrite or block. Audit mode changes nothing and logs what
enforce would have done.

Every hook body is wrapped: mitmproxy forwards the upstream answer unchanged when an addon
raises (research/mitmproxy.md §1.1), so an internal error becomes a block unless the policy's
`on_error` is `allow`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import re
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urljoin, urlsplit

from mitmproxy import ctx, dns, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net.dns import response_codes, types
from mitmproxy.net.http.url import default_port, hostport, parse_authority

from guard import rules
from guard.decode import decode_body
from guard.dnsjudge import DnsVerdict, Record, judge_answer, service_domain
from guard.engine import GENERIC_BLOCK, judge
from guard.errors import BodyTooLarge, MalformedDocument, PolicyError, UntrustedInputError
from guard.formats import Format, by_name, detect, hint
from guard.formats._xml import name as xml_name
from guard.formats._xml import read_xml, text
from guard.formats.autodetect import header_suggestions
from guard.log import DecisionLog, FlowFacts, console_line, decision_record
from guard.metrics import Metrics
from guard.model import Action, Decision, Finding, Parsed, Reply, Role, Suggestion, ValueKind
from guard.names import InvalidHost, User, normalise_host, parse_ip, to_unicode
from guard.ownership import load_suffix_list, owner_evidence, public_suffix, registrable
from guard.pins import PinKeeper
from guard.policy import Mode, Policy, RuleAction, default_policy_path, load_policy
from guard.reserved import reserved_name

logger = logging.getLogger(__name__)

# Rule ids of the proxy's own findings (the engine's are in guard.rules).

POLL_SECONDS = 1.0  # policy-file check and metrics-file rewrite
REDIRECT_TTL = 120.0  # seconds a client has to follow a redirect and stay in the same walk
REDIRECT_SLOTS = 4096  # pending redirect targets remembered at most (oldest dropped first)
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})

# --- which flows are discovery (research/formats.md §0, §1.1, §3.1, §4.1) -------------------------

_DISCOVERY_PREFIXES = ("autodiscover.", "autoconfig.")
_DISCOVERY_PATH = re.compile(
    r"/autodiscover/autodiscover\.(?:xml|svc|json)|/mail/config-v1\.1\.xml|/\.well-known/autoconfig/|mobileconfig",
    re.IGNORECASE,
)
_AUTODETECT_SUFFIX = ".autodetect.outlook.cloud.microsoft"
_AUTODETECT_HOSTS = frozenset({"prod-autodetect.outlookmobile.com"})
_AUTODETECT_PATH = re.compile(r"/(?:autodetect/)?detect/?$", re.IGNORECASE)
# ISPDB hosts serve other pages too (Thunderbird's start page), so only their lookup paths count.
_ISPDB = {
    "live.thunderbird.net": "/autoconfig/v1.1/",
    "live.mozillamessaging.com": "/autoconfig/v1.1/",
    "autoconfig.thunderbird.net": "/v1.1/",
    "v1.ispdb.net": "/",
}
_ISPDB_DOMAIN = re.compile(r"^/(?:autoconfig/)?(?:v1\.1/)?([^/]+)/?$", re.IGNORECASE)
_DOH_PATH = re.compile(r"^/(?:dns-query|resolve)$", re.IGNORECASE)
_SERVICE_LABELS = re.compile(r"^(?:_[^.]+\.)+")
_V2_PATH_ADDRESS = re.compile(r"/autodiscover\.json/v1\.0/([^/]+)", re.IGNORECASE)
_ADDRESS_KEYS = frozenset({"email", "emailaddress"})
_ADDRESS_ELEMENTS = frozenset({"emailaddress", "mailbox"})  # POX/mobilesync, SOAP (formats.md §1.2, §1b)
_PASSWORD_FIELD = re.compile(
    rb'(?:^|&)(?:password|passwd|pwd|pass|client_secret)=|name="(?:password|passwd|pwd|pass|client_secret)"'
    rb'|"(?:password|passwd|pwd|pass|client_secret)"\s*:',
    re.IGNORECASE,
)
_BASIC_CHALLENGE = re.compile(r"(?:^|,)\s*basic(?:\s|,|$)", re.IGNORECASE)


def is_discovery(host: str, path: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a request is mail discovery, from host and path (cheap: every flow asks)."""
    if host.startswith(_DISCOVERY_PREFIXES):
        return True
    plain, _, query = path.partition("?")
    if _DISCOVERY_PATH.search(plain):
        return True
    if host.endswith(_AUTODETECT_SUFFIX) or host in _AUTODETECT_HOSTS:
        return _AUTODETECT_PATH.match(plain) is not None
    prefix = _ISPDB.get(host)
    if prefix is not None:
        return plain.lower().startswith(prefix)
    # DoH JSON lookups of SRV service names (formats.md §5): `?name=_imaps._tcp.<domain>`
    if _DOH_PATH.match(plain) is None or "name=_" not in query.lower():
        return False
    accept = (headers or {}).get("accept", "")
    return "dns-json" in (accept + query).lower()


def _header(headers: http.Headers, name: bytes) -> str | None:
    """`headers.get(name)` (values folded with ", "), `name` in lower case: one pass over the raw
    fields, where mitmproxy's lookup converts every name and value through three layers (4× slower)."""
    found, size = None, len(name)
    for key, value in headers.fields:
        if len(key) == size and key.lower() == name:  # the length first: lower() makes a new bytes
            found = value if found is None else found + b", " + value
    return None if found is None else found.decode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=1024)
def _authority(host_header: str) -> tuple[str, int | None]:
    """(host, port) of a Host header as `pretty_host` and `pretty_url` read it: mitmproxy checks the
    name with IDNA round trips on every call (~30 µs), and clients send the same few hosts all day."""
    return parse_authority(host_header, check=False)


def _host_header(request: http.Request) -> str | None:
    """`request.host_header` (HTTP/2 and 3: `:authority`), with the cheap header lookup."""
    return (request.authority if request.is_http2 or request.is_http3 else "") or _header(request.headers, b"host")


def flow_url(request: http.Request) -> str:
    """`request.pretty_url`: the URL as the client named it."""
    if request.first_line_format == "authority":
        return request.authority
    host_header = _host_header(request)
    if not host_header:
        return request.url
    scheme, path = request.scheme, request.path
    host, port = _authority(host_header)
    return f"{scheme}://{hostport(scheme, host, port or default_port(scheme) or 443)}{'' if path == '*' else path}"


def request_host(request: http.Request) -> str:
    """The host a request is for. `host` is the proxy target; the Host header (as `pretty_host` reads
    it) only when the target is an address, as in transparent mode."""
    host = request.host
    if host[-1:].isdigit() or ":" in host:
        host_header = _host_header(request)
        if host_header:
            host = _authority(host_header)[0]
    return host.lower().rstrip(".")


# --- who the discovery is for --------------------------------------------------------------------


def _domain_user(domain: str) -> User | None:
    """A user known only by domain (autoconfig host, ISPDB path, SRV name): no local part."""
    try:
        ascii_domain = normalise_host(domain)
    except InvalidHost:
        return None
    if parse_ip(ascii_domain) is not None:
        return None
    return User("", "", ascii_domain, to_unicode(ascii_domain))


def _basic_credentials(authorization: str) -> tuple[str, bool] | None:
    """(user-id, has a password) of a Basic header; None if not Basic. The password is dropped here."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user_id, _, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return ("", True)  # undecodable: cannot tell, so it counts as a credential
    return (user_id, bool(password))


def _body_address(body: bytes) -> str | None:
    """`EMailAddress` (POX, mobilesync) or `Mailbox` (SOAP) from a request body."""
    if body.lstrip()[:1] != b"<":
        return None
    try:
        root = read_xml(body)
    except UntrustedInputError:
        return None
    for element in root.iter():
        if xml_name(element).key in _ADDRESS_ELEMENTS and text(element).strip():
            return text(element).strip()
    return None


def _addresses(request: http.Request, body: bytes) -> Iterator[tuple[str, str]]:
    """(source, address) candidates, most trustworthy first (formats.md §0 "where the address travels")."""
    if body:
        found = _body_address(body)
        if found:
            yield "body", found
    plain, _, query = request.path.partition("?")
    v2 = _V2_PATH_ADDRESS.search(unquote(plain))
    if v2:
        yield "url", v2.group(1)
    for key, value in parse_qsl(query):
        if key.lower() in _ADDRESS_KEYS:
            yield "url", value
    x_email = _header(request.headers, b"x-email")
    if x_email is not None:
        yield "x-email", x_email
    basic = _basic_credentials(_header(request.headers, b"authorization") or "")
    if basic is not None and "@" in basic[0]:
        yield "basic", basic[0]


def _domain_hint(host: str, path: str) -> tuple[str, str] | None:
    """(source, domain) when only a domain is known: ISPDB path, SRV name, discovery host."""
    plain, _, query = path.partition("?")
    if host in _ISPDB:
        match = _ISPDB_DOMAIN.match(plain)
        return ("ispdb", unquote(match.group(1))) if match else None
    for key, value in parse_qsl(query):
        if key == "name" and value.startswith("_"):
            return "dns-name", _SERVICE_LABELS.sub("", value)
    if host.startswith(_DISCOVERY_PREFIXES):
        return "host", host.partition(".")[2]
    return None


def identify(request: http.Request, host: str, body: bytes) -> tuple[User | None, str]:
    """Whose discovery this is, and where that was read; (None, "unknown") when nothing says."""
    for source, address in _addresses(request, body):
        try:
            return User.from_address(address), source
        except InvalidHost:
            continue
    found = _domain_hint(host, request.path)
    if found is not None:
        user = _domain_user(found[1])
        if user is not None:
            return user, found[0]
    return None, "unknown"


# --- redirect walks ------------------------------------------------------------------------------


def _url_key(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        return None
    return f"{parts.scheme.lower()}://{host}{parts.path.lower()}" if host else None


_HOP_ROLES = frozenset({Role.REDIRECT, Role.AUTODISCOVER})


def _hop_key(suggestion: Suggestion) -> str | None:
    """Where a redirect suggestion sends the client next, as a walk key (URL or mailto)."""
    if suggestion.role not in _HOP_ROLES:  # first: most suggestions are server settings
        return None
    if suggestion.kind is ValueKind.EMAIL:
        return "mailto:" + suggestion.value.strip().lower() if suggestion.role is Role.REDIRECT else None
    return _url_key(suggestion.value)


def _key_host(key: str) -> str:
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


class PendingRedirects:
    """Redirect targets clients were just sent to, each with the walk that led there.

    A request from the same client to a pending target continues that walk, so every hop is
    judged for the ORIGINAL user and counted. Bounded (oldest dropped) and expiring, so memory
    stays flat whatever clients do; entries are not consumed, because clients try several URLs
    for one redirect address in parallel.
    """

    def __init__(self, ttl: float = REDIRECT_TTL, slots: int = REDIRECT_SLOTS) -> None:
        self.ttl = ttl
        self.slots = slots
        self._pending: OrderedDict[tuple[str, str], tuple[float, Walk]] = OrderedDict()

    def offer(self, client: str, key: str, walk: Walk, now: float) -> None:
        self._pending[(client, key)] = (now + self.ttl, walk)
        self._pending.move_to_end((client, key))
        while len(self._pending) > self.slots:
            self._pending.popitem(last=False)

    def claim(self, client: str, keys: Iterable[str], now: float) -> Walk | None:
        for key in keys:
            entry = self._pending.get((client, key))
            if entry is not None and entry[0] > now:
                return entry[1]
        return None

    def __len__(self) -> int:
        return len(self._pending)


# --- decisions the adapter makes itself ----------------------------------------------------------


def _no_suggestions(_body: bytes) -> Parsed:
    return Parsed("http-redirect", ())


def _nothing_left(_body: bytes, _parsed: Parsed, _drop: Sequence[Suggestion]) -> bytes | None:
    return None


def _generic_block() -> Reply:
    return GENERIC_BLOCK


# A 30x whose only suggestion is its Location header (formats.md §1.5 kind 1, §2 hybrid redirect):
# judged through the engine like any answer, the Location passed as an extra suggestion.
HTTP_REDIRECT = Format("http-redirect", _no_suggestions, _nothing_left, _generic_block)


def _block_reply(format_name: str) -> Reply:
    """The format's own block answer (what its clients already handle), else a plain 403."""
    try:
        return by_name(format_name).block()
    except KeyError:
        return GENERIC_BLOCK


def _local_reply(finding: Finding) -> Reply:
    return Reply(403, "text/plain; charset=utf-8",
                 f"Blocked by autodiscover-guard ({finding.rule}): {finding.message}\n".encode())


def _merge(decision: Decision, findings: Sequence[Finding], policy: Policy, reply: Reply) -> Decision:
    """Add the adapter's own findings. Nothing can be cut out for them, so they warn or block."""
    kept = tuple(f for f in findings if policy.action_for(f.rule) is not RuleAction.OFF)
    if not kept:
        return decision
    merged = decision.findings + kept
    if all(policy.action_for(f.rule) is RuleAction.WARN for f in kept):
        action = Action.WARN if decision.action is Action.ALLOW else decision.action
        return replace(decision, action=action, findings=merged)
    return replace(decision, action=Action.BLOCK, findings=merged, body=None, reply=decision.reply or reply)


def _unreadable(format_name: str, why: str, policy: Policy) -> Decision:
    """An answer the guard cannot read is `malformed`: clients act on fragments (formats.md §1.5)."""
    return _merge(Decision(format_name, Action.ALLOW), [Finding(rules.MALFORMED, "", "(body)", why)], policy,
                  _block_reply(format_name))


def _read_body(response: http.Response, wire: int, decoded: int) -> bytes:
    """The decoded body, never through `.content` (unbounded decompression, research §1.3)."""
    raw = response.raw_content
    if raw is None:
        raise MalformedDocument("the body was streamed past the guard and cannot be inspected")
    if len(raw) > wire:
        raise BodyTooLarge(f"the body of {len(raw)} bytes exceeds the {wire}-byte cap")
    return decode_body(raw, _header(response.headers, b"content-encoding") or "", decoded)


def _owned(user: User, host: str, policy: Policy) -> bool:
    return owner_evidence(user.domain, host, policy.trust) is not None


def _tld_discovery(host: str, user: User | None) -> bool:
    """`autodiscover.com.br`: a discovery name whose registrable domain is the name itself (2021 leak,
    formats.md §1.1), or a bare public suffix asked for discovery paths."""
    if not host or parse_ip(host) is not None:
        return False
    leak = (host.startswith(_DISCOVERY_PREFIXES) and registrable(host) == host) or public_suffix(host) == host
    return leak and not (user is not None and registrable(user.domain) == host)


def _credential(request: http.Request, body: bytes) -> str | None:
    """What kind of credential the request carries (never its value), or None."""
    authorization = _header(request.headers, b"authorization") or ""
    if authorization.strip():
        basic = _basic_credentials(authorization)
        if basic is None:
            return authorization.strip().partition(" ")[0][:20] or "authorization"
        if basic[1]:  # a bare user-id (AutoDetect, formats.md §3.1) carries no secret
            return "basic"
    if body and _PASSWORD_FIELD.search(body):
        return "password field"
    return None


# --- the addon -----------------------------------------------------------------------------------


_NO_WALK = Walk(None, frozenset())


@dataclass(slots=True)
class _FlowState:
    """What the guard keeps about one discovery flow between its hooks."""

    policy: Policy
    mode: Mode
    client: str
    host: str
    url: str
    user: User | None = None
    user_source: str = "unknown"
    walk: Walk = _NO_WALK
    elapsed: float = 0.0  # seconds spent in earlier hooks
    done: bool = False


_Hook = Callable[["AutodiscoverGuard", http.HTTPFlow], None]


def _fail_closed(*, can_replace: bool) -> Callable[[_Hook], _Hook]:
    """Turn any exception in a hook into the guard's decision instead of mitmproxy's pass-through."""

    def wrap(hook: _Hook) -> _Hook:
        @functools.wraps(hook)
        def guarded(self: AutodiscoverGuard, flow: http.HTTPFlow) -> None:
            try:
                hook(self, flow)
            except Exception as exc:  # research/mitmproxy.md §1.1: an addon error forwards the answer
                self._internal_error(flow, exc, can_replace=can_replace)

        return guarded

    return wrap


class AutodiscoverGuard:
    """Judges mail discovery answers (and requests) passing through mitmproxy."""

    def __init__(self) -> None:
        self.policy: Policy | None = None
        self.policy_path = Path()
        self.log = DecisionLog()
        self.metrics = Metrics()
        self.redirects = PendingRedirects()
        self.pins = PinKeeper()  # config-changed (docs/pinning.md), when the policy turns pinning on
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, _FlowState] = weakref.WeakKeyDictionary()
        self._mode_option = ""
        self._max_body_option = 0
        self._console = False
        self._metrics_path = ""
        self._stamp: tuple[int, int, int] | None = None
        self._pending_stamp: tuple[int, int, int] | None = None
        self._ticker: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def load(self, loader: Loader) -> None:
        """Declare the options (names are a contract with `autodiscover-guard run`)."""
        add = loader.add_option
        add("guard_policy", str, str(default_policy_path()), "Policy file (YAML); reloaded when it changes.")
        add("guard_mode", str, "", "enforce | audit; empty: the policy's own mode.", choices=("", "enforce", "audit"))
        add("guard_log", str, "", "Decision log file (JSON lines); empty: stderr.")
        add("guard_console", bool, False, "Print one human-readable line per decision.")
        add("guard_max_body", int, 0, "Cap in bytes on any body the guard reads (wire and decoded); "
                                      "0: the policy's limits.")
        add("guard_metrics", str, "", "Prometheus text file rewritten every second and at exit; empty: off.")

    def configure(self, updated: set[str]) -> None:
        """Validate options (mitmproxy does not enforce choices) and load the policy; errors exit at start."""
        options = ctx.options
        if "guard_mode" in updated and options.guard_mode not in ("", "enforce", "audit"):
            raise _options_error(f"guard_mode must be enforce, audit or empty, not {options.guard_mode!r}")
        if "guard_max_body" in updated and options.guard_max_body < 0:
            raise _options_error("guard_max_body must be 0 (the policy's limits) or a positive byte count")
        policy = None
        if "guard_policy" in updated:
            path = Path(options.guard_policy).expanduser()
            stamp = _stamp(path)  # before reading: a write after it shows as a change next tick
            try:
                policy = load_policy(path)
            except PolicyError as exc:
                raise _options_error(f"invalid policy: {exc}") from None
            self.policy_path, self._stamp, self._pending_stamp = path, stamp, None
        # everything is valid from here on: apply
        self._mode_option = options.guard_mode
        self._max_body_option = options.guard_max_body
        self._console = options.guard_console
        self._metrics_path = options.guard_metrics
        if "guard_log" in updated:
            self.log.close()
            self.log = DecisionLog(options.guard_log)
        if policy is not None:
            self._install(policy)
        if "body_size_limit" in options and options.body_size_limit is None:
            # as `run` does: without it mitmproxy buffers a chunked answer without end (research §1.4)
            options.update(body_size_limit=str(self._caps(self._policy())[0]))  # type: ignore[no-untyped-call]

    def running(self) -> None:
        """Say what is in force (unknown `--set` names are silently ignored) and start the ticker."""
        load_suffix_list()
        policy = self._policy()
        logger.info(
            "autodiscover-guard: policy %s (revision %s), mode %s, decision log %s, metrics %s",
            self.policy_path, policy.revision, self._mode(policy).value, self.log.path or "stderr",
            self._metrics_path or "off",
        )
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    def done(self) -> None:
        """Stop the ticker, write the final metrics, close the log."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._write_metrics(force=True)
        self.log.close()
        self.pins.close()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            self.tick()

    def tick(self) -> None:
        """Once a second: pick up a changed policy file, rewrite the metrics file. Never raises."""
        try:
            self._reload_if_changed()
            self._write_metrics()
        except Exception:  # the ticker must survive anything; flows do not depend on it
            logger.warning("autodiscover-guard: periodic task failed", exc_info=True)

    # -- policy ----------------------------------------------------------------------------------

    def _policy(self) -> Policy:
        if self.policy is None:  # configure() always runs at load; this is a programming error
            raise RuntimeError("no policy loaded")
        return self.policy

    def _mode(self, policy: Policy) -> Mode:
        return Mode(self._mode_option) if self._mode_option else policy.mode

    def _install(self, policy: Policy) -> None:
        """Swap the policy in one assignment: a flow keeps the policy it started with."""
        self.policy = policy
        self.metrics.policy(policy.revision, loaded=True)
        self.log.write("policy_loaded", {"policy": policy.path, "revision": policy.revision,
                                         "mode": self._mode(policy).value})

    def _reload_if_changed(self) -> None:
        stamp = _stamp(self.policy_path)
        if stamp == self._stamp:
            self._pending_stamp = None
            return
        if stamp != self._pending_stamp:  # changed since the last tick: it may still be being written
            self._pending_stamp = stamp
            return
        self._stamp, self._pending_stamp = stamp, None
        try:
            policy = load_policy(self.policy_path)
        except PolicyError as exc:
            kept = self._policy().revision
            self.metrics.policy(kept, loaded=False)
            self.log.write("policy_rejected", {"policy": str(self.policy_path), "reason": str(exc),
                                               "revision_in_force": kept})
            logger.warning("autodiscover-guard: policy change rejected, revision %s stays: %s", kept, exc)
            return
        self._install(policy)
        logger.info("autodiscover-guard: policy reloaded, revision %s", policy.revision)

    def _write_metrics(self, *, force: bool = False) -> None:
        if not self._metrics_path or not (force or self.metrics.changed):
            return
        try:
            self.metrics.write(self._metrics_path)
        except OSError as exc:
            logger.warning("autodiscover-guard: cannot write metrics to %s: %s", self._metrics_path, exc)

    def _caps(self, policy: Policy) -> tuple[int, int]:
        """(wire, decoded) byte caps: the policy's limits, lowered by `guard_max_body` when set."""
        wire, decoded = policy.limits.max_body_bytes, policy.limits.max_decoded_bytes
        if self._max_body_option:
            return self._max_body_option, min(decoded, self._max_body_option)
        return wire, decoded

    # -- request side ----------------------------------------------------------------------------

    @_fail_closed(can_replace=True)
    def request(self, flow: http.HTTPFlow) -> None:
        """Start tracking discovery flows; refuse TLD discovery and misdirected credentials locally."""
        request = flow.request
        host = request_host(request)
        if not is_discovery(host, request.path, request.headers):
            return
        started = time.perf_counter()
        state = self._start(flow, host)
        body = self._request_body(request, state.policy)
        state.user, state.user_source = identify(request, host, body)
        if state.user is not None and state.policy.mx is not None:
            state.policy.mx.prefetch(state.user.domain)  # MX evidence ready by the time the answer is
        self._continue_walk(state)
        finding = self._request_finding(request, state, _credential(request, body))
        if finding is not None:
            decision = _merge(Decision(hint(state.url) or "request", Action.ALLOW), [finding],
                              state.policy, _local_reply(finding))
            self._finish(flow, state, decision, started)
        else:
            state.elapsed += time.perf_counter() - started

    def _start(self, flow: http.HTTPFlow, host: str) -> _FlowState:
        policy = self._policy()
        peer = flow.client_conn.peername
        state = _FlowState(policy, self._mode(policy), str(peer[0]) if peer else "?", host, flow_url(flow.request))
        self._flows[flow] = state
        flow.metadata["guard.discovery"] = True
        return state

    def _request_body(self, request: http.Request, policy: Policy) -> bytes:
        raw = request.raw_content
        wire, decoded = self._caps(policy)
        if not raw or len(raw) > wire:
            return b""
        try:
            return decode_body(raw, _header(request.headers, b"content-encoding") or "", decoded)
        except UntrustedInputError:
            return b""

    def _continue_walk(self, state: _FlowState) -> None:
        """Join the walk of a redirect this client was sent on, keeping its original user."""
        keys = [key for key in (_url_key(state.url),) if key]
        if state.user is not None and state.user.address:
            keys.append("mailto:" + state.user.address.lower())
        walk = self.redirects.claim(state.client, keys, time.monotonic())
        if walk is not None and walk.user is not None:
            state.user, state.user_source = walk.user, "redirect"
        visited, hops = (walk.visited, walk.hops) if walk is not None else (frozenset(), 0)
        state.walk = Walk(state.user, visited.union(keys), hops)

    @staticmethod
    def _request_finding(request: http.Request, state: _FlowState, credential: str | None) -> Finding | None:
        host, user = state.host, state.user
        if _tld_discovery(host, user):
            return Finding(rules.DISCOVERY_TLD, host, "(request host)",
                           f"{host} is a discovery name under a public suffix, owned by whoever registered "
                           "it; the request was not sent")
        if credential is None:
            return None
        if request.scheme == "http":
            return Finding(rules.CREDENTIAL_LEAK, host, "(request credentials)",
                           f"{credential} credentials to {host} over plain http; the request was not sent")
        if user is not None and not _owned(user, host, state.policy):
            return Finding(rules.CREDENTIAL_LEAK, host, "(request credentials)",
                           f"{credential} credentials to {host}, which {user.domain} does not own; "
                           "the request was not sent")
        return None

    # -- response side ---------------------------------------------------------------------------

    @_fail_closed(can_replace=False)
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Refuse an answer too big to read, or streamed past the guard, before its body arrives."""
        state = self._flows.get(flow)
        if state is None or state.done or flow.response is None or not 200 <= flow.response.status_code < 300:
            return
        started = time.perf_counter()
        length = _header(flow.response.headers, b"content-length") or ""
        wire, _ = self._caps(state.policy)
        if flow.response.stream:
            why = "the body is streamed (stream_large_bodies) and cannot be inspected"
        elif length.isdigit() and int(length) > wire:
            why = f"Content-Length {length} exceeds the {wire}-byte cap"
        else:
            state.elapsed += time.perf_counter() - started
            return
        self._finish(flow, state, _unreadable(hint(state.url) or "unknown", why, state.policy), started, kill=True)

    @_fail_closed(can_replace=True)
    def response(self, flow: http.HTTPFlow) -> None:
        """Judge the answer and pass, rewrite or block it."""
        state = self._flows.get(flow)
        if state is None or state.done or flow.response is None:
            return
        started = time.perf_counter()
        status = flow.response.status_code
        location = _header(flow.response.headers, b"location") if status in _REDIRECT_STATUS else None
        if location is not None:
            decision = self._judge_location(state, location)
        elif 200 <= status < 300:
            decision = self._judge_body(flow, state)
        else:
            decision = Decision(hint(state.url) or "unknown", Action.ALLOW,
                                notes=(f"HTTP {status}: no answer to judge",))
        decision = self.pins.check(self._judge_challenge(flow, state, decision), state.user, state.policy)
        self._finish(flow, state, decision, started)

    @_fail_closed(can_replace=False)
    def error(self, flow: http.HTTPFlow) -> None:
        """Log discovery flows that got no answer (upstream unreachable, over `body_size_limit`)."""
        _hang_up_upstream(flow)
        state = self._flows.get(flow)
        if state is None or state.done:
            return
        why = flow.error.msg if flow.error is not None else "unknown error"
        decision = Decision(hint(state.url) or "unknown", Action.ALLOW, notes=(f"no answer: {why}",))
        self._finish(flow, state, decision, time.perf_counter())

    def _judge_body(self, flow: http.HTTPFlow, state: _FlowState) -> Decision:
        assert flow.response is not None
        response, policy = flow.response, state.policy
        url, content_type = state.url, _header(response.headers, b"content-type") or ""
        try:
            body = _read_body(response, *self._caps(policy))
        except UntrustedInputError as exc:
            return _unreadable(hint(url, content_type) or "unknown", str(exc), policy)
        if not body or body.isspace():  # not body.strip(): no copy of the body
            return Decision(hint(url, content_type) or "unknown", Action.ALLOW, notes=("empty body: no suggestion",))
        fmt = detect(body, url, content_type)
        extra = header_suggestions(response.headers) if fmt is not None and fmt.sensitive_headers else ()
        decision = judge(body, state.user, policy, fmt=fmt, url=url, content_type=content_type, extra=extra)
        return self._judge_hops(state, decision, decision.suggestions)

    def _judge_location(self, state: _FlowState, location: str) -> Decision:
        with contextlib.suppress(ValueError):  # else judged as written: unreadable means malformed
            location = urljoin(state.url, location)
        suggestion = Suggestion(location, ValueKind.URL, Role.REDIRECT, "Location")
        decision = judge(b"", state.user, state.policy, fmt=HTTP_REDIRECT, extra=(suggestion,))
        if decision.action is Action.REWRITE:  # the Location is the whole answer: nothing is left
            decision = replace(decision, action=Action.BLOCK, body=None, reply=GENERIC_BLOCK)
        return self._judge_hops(state, decision, (suggestion,))

    def _judge_hops(self, state: _FlowState, decision: Decision, found: Sequence[Suggestion]) -> Decision:
        """Count the redirects an answer sends the client on; remember them for the walk's next hop."""
        hops = [(s, key) for s in found if (key := _hop_key(s)) is not None]
        if not hops or decision.action is Action.BLOCK:
            return decision
        limit = state.policy.limits.max_redirects
        findings = [
            Finding(rules.REDIRECT_LIMIT, _key_host(key), s.field, why)
            for s, key in hops if (why := state.walk.refuse(key, limit)) is not None
        ]
        decision = _merge(decision, findings, state.policy, _block_reply(decision.format))
        if decision.action is not Action.BLOCK:
            now = time.monotonic()
            for _suggestion, key in hops:
                nxt = Walk(state.walk.user, state.walk.visited | {key}, state.walk.hops + 1)
                self.redirects.offer(state.client, key, nxt, now)
        return decision

    def _judge_challenge(self, flow: http.HTTPFlow, state: _FlowState, decision: Decision) -> Decision:
        """A Basic challenge from a host the user does not own (or over http) would fetch the password.

        A probe naming a reserved domain (exchangelib asks for `DUMMY@example.com` to learn the auth
        type) does not name the user, so ownership is not judged against it: the credentialed request
        that follows names the real user and meets the request-side check.
        """
        assert flow.response is not None
        challenges = _header(flow.response.headers, b"www-authenticate")  # folded: the pattern splits at commas
        if challenges is None or not _BASIC_CHALLENGE.search(challenges):
            return decision
        host, user = state.host, state.user
        probe = user is not None and reserved_name(user.domain) is not None
        if flow.request.scheme == "http":
            why = f"Basic challenge from {host} over plain http"
        elif user is not None and not probe and not _owned(user, host, state.policy):
            why = f"Basic challenge from {host}, which {user.domain} does not own"
        else:
            return decision
        finding = Finding(rules.CREDENTIAL_LEAK, host, "WWW-Authenticate", f"{why}; a client would answer it")
        return _merge(decision, [finding], state.policy, _local_reply(finding))

    # -- applying and recording ------------------------------------------------------------------

    def _finish(self, flow: http.HTTPFlow, state: _FlowState, decision: Decision, started: float,
                *, kill: bool = False) -> None:
        """Apply (enforce only), log once, count."""
        state.done = True
        status = flow.response.status_code if flow.response is not None else None  # upstream's, if any
        changes = decision.action in (Action.REWRITE, Action.BLOCK)
        enforce = state.mode is Mode.ENFORCE
        applied = decision.action if enforce or not changes else Action.ALLOW
        if enforce and changes:
            _apply(flow, decision, kill=kill)
        latency = state.elapsed + time.perf_counter() - started
        facts = FlowFacts(flow.id, state.client, flow.request.method, state.url, status)
        self._record(flow, state, facts, decision, applied=applied, latency=latency)

    def _record(self, flow: http.HTTPFlow | dns.DNSFlow, state: _FlowState, facts: FlowFacts, decision: Decision, *,
                applied: Action, latency: float) -> None:
        record = decision_record(
            facts, decision, mode=state.mode.value, applied=applied, user=state.user,
            user_source=state.user_source, revision=state.policy.revision,
            hash_local=state.policy.log.hash_local_part, latency_us=round(latency * 1e6),
        )
        self.log.write("decision", record)
        if self._console:
            logger.info(console_line(record))
        rules, would = decision.rules, decision.action.value  # rules is worked out on every read
        self.metrics.observe(state.mode.value, would, rules, latency)
        flow.metadata.update({
            "guard.action": applied.value,
            "guard.would_action": would,
            "guard.rules": list(rules),
            "guard.format": decision.format,
        })

    def _internal_error(self, flow: http.HTTPFlow, exc: Exception, *, can_replace: bool) -> None:
        """Fail closed (unless `on_error: allow`) and still log the flow exactly once."""
        logger.warning("autodiscover-guard: internal error: %r", exc, exc_info=True)
        state = self._flows.get(flow)
        if state is None:
            state = self._start(flow, flow.request.host)  # the plain attribute: nothing left to fail
        elif state.done:
            return
        finding = Finding(rules.INTERNAL_ERROR, "", "(guard)", f"internal error: {type(exc).__name__}")
        if state.policy.on_error is Action.ALLOW:
            note = "on_error allow: passed unjudged"
            decision = Decision("unknown", Action.ALLOW, (finding,), notes=(note,))
        else:
            decision = Decision("unknown", Action.BLOCK, (finding,), reply=GENERIC_BLOCK)
        self._finish(flow, state, decision, time.perf_counter(), kill=not can_replace)

    # -- DNS side --------------------------------------------------------------------------------

    async def dns_response(self, flow: dns.DNSFlow) -> None:
        """Judge answers to mail service SRV lookups; strip offending records or answer REFUSED."""
        question = flow.request.question
        domain = service_domain(question.name) if question is not None else None
        if flow.response is None or question is None or domain is None:
            return  # every other lookup passes untouched, unlogged
        started = time.perf_counter()
        policy = self._policy()
        peer = flow.client_conn.peername
        state = _FlowState(policy, self._mode(policy), str(peer[0]) if peer else "?", question.name,
                           f"dns:{question.name}", user_source="dns-name")
        try:
            if policy.mx is not None:  # look MX up off the event loop before judging
                await asyncio.wrap_future(policy.mx.prefetch(domain.lower().rstrip(".")))
            verdict = judge_answer(question.name, question.type, _records(flow.response.answers),
                                   _records(flow.response.additionals), policy)
        except Exception as exc:  # fail closed, as the HTTP hooks do
            logger.warning("autodiscover-guard: internal error: %r", exc, exc_info=True)
            verdict = None
            finding = Finding(rules.INTERNAL_ERROR, "", "(guard)", f"internal error: {type(exc).__name__}")
            action = Action.ALLOW if policy.on_error is Action.ALLOW else Action.BLOCK
            decision = Decision("srv", action, (finding,))
        else:
            if verdict is None:
                return  # a mail service name asked for another type (A, TXT...)
            state.user, decision = verdict.user, verdict.decision
        facts = FlowFacts(flow.id, state.client, types.to_str(question.type), state.url,
                          flow.response.response_code)  # upstream's RCODE, as the HTTP side logs its status
        changes = decision.action in (Action.REWRITE, Action.BLOCK)
        enforce = state.mode is Mode.ENFORCE
        if enforce and changes:
            _apply_dns(flow, decision, verdict)
        applied = decision.action if enforce or not changes else Action.ALLOW
        self._record(flow, state, facts, decision, applied=applied, latency=time.perf_counter() - started)


def _records(records: Iterable[dns.ResourceRecord]) -> list[Record]:
    return [Record(r.name, r.type, r.ttl, r.data) for r in records]


def _apply_dns(flow: dns.DNSFlow, decision: Decision, verdict: DnsVerdict | None) -> None:
    """Enforce on a DNS answer: REFUSED for a block, the answer without the dropped records for a rewrite."""
    response = flow.response
    assert response is not None
    if decision.action is Action.BLOCK or verdict is None:
        flow.response = flow.request.fail(response_codes.REFUSED)
        flow.comment = f"autodiscover-guard: refused ({', '.join(decision.rules)})"
        return
    response.answers = [r for i, r in enumerate(response.answers) if i not in verdict.drop_answers]
    response.additionals = [r for i, r in enumerate(response.additionals) if i not in verdict.drop_additionals]
    flow.comment = f"autodiscover-guard: rewritten ({', '.join(decision.rules)})"


def _apply(flow: http.HTTPFlow, decision: Decision, *, kill: bool) -> None:
    """Enforce: a fresh local answer for a block (never in responseheaders: research §1.3), a new
    identity-encoded body and fewer headers for a rewrite."""
    if decision.action is Action.BLOCK:
        if kill:
            if flow.killable:
                flow.kill()  # type: ignore[no-untyped-call]
            return
        reply = decision.reply or GENERIC_BLOCK
        flow.response = http.Response.make(reply.status, reply.body, {"content-type": reply.content_type})
        flow.metadata["guard.local"] = True
        flow.comment = f"autodiscover-guard: blocked ({', '.join(decision.rules)})"
        return
    response = flow.response
    assert response is not None
    for name in decision.drop_headers:
        response.headers.pop(name, None)
    if decision.body is not None:
        response.headers.pop("content-encoding", None)
        response.set_content(decision.body)  # fixes Content-Length
    flow.comment = f"autodiscover-guard: rewritten ({', '.join(decision.rules)})"


def _hang_up_upstream(flow: http.HTTPFlow) -> None:
    """Close the HTTP/1 upstream connection of a flow abandoned mid-answer (over a cap, killed).

    mitmproxy 12 stops reading such a connection but leaves it open: its read task is then
    referenced only from a garbage cycle, so the socket lives until the next full collection and
    a hostile server could hold one per answer. mitmproxy 11 closes it itself; closing twice is
    harmless. This reaches into proxyserver internals, so whatever is missing means "do nothing".
    """
    server = flow.server_conn
    if not server.connected or flow.response is None or flow.response.http_version not in ("HTTP/1.0", "HTTP/1.1"):
        return  # an HTTP/2 connection carries other flows' streams
    try:
        proxyserver = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
    except AttributeError:
        return  # no running master (replay)
    handler = getattr(proxyserver, "connections", {}).get(flow.client_conn.id)
    transport = getattr(handler, "transports", {}).get(server)
    writer = getattr(transport, "writer", None)
    if writer is not None and not writer.is_closing():
        writer.close()


def _options_error(message: str) -> Exception:
    return exceptions.OptionsError(message)  # type: ignore[no-untyped-call]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is edited or replaced; None when it cannot be read."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def replay_flows(path: Path, policy: Policy, log: DecisionLog) -> Iterator[http.HTTPFlow]:
    """Re-judge the discovery flows of a saved mitmproxy flow file against `policy`.

    Runs the same hooks as the live proxy, in audit mode so the flows read are never changed;
    each judged flow is logged to `log` and yielded with `guard.*` metadata set.

    Raises:
        OSError: the file cannot be read.
        mitmproxy.exceptions.FlowReadException: it is not a flow file.
    """
    from mitmproxy import io

    guard = AutodiscoverGuard()
    guard.log = log
    guard._mode_option = Mode.AUDIT.value
    guard._install(policy)
    with path.open("rb") as handle:
        for flow in io.FlowReader(handle).stream():
            if not isinstance(flow, http.HTTPFlow) or flow.response is None:
                continue
            for key in [k for k in flow.metadata if k.startswith("guard.")]:
                del flow.metadata[key]  # verdicts of the run that saved the flow
            guard.request(flow)
            guard.response(flow)
            if flow.metadata.get("guard.discovery"):
                yield flow
