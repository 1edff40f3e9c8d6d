"""The HTTP addon: options, the policy in force, and the hooks that judge discovery flows.

Request side (`request`): pick out discovery flows by the endpoint table, learn whose discovery
it is, and refuse two kinds of request locally, before any upstream connection (`discovery-tld`,
`credential-leak`: see `guard.rules.request`).

A 2xx XML answer on a URL the table does not know is tracked from `response` when its body is a
discovery document (the URL a TXT `mailconf=` record names), so no such document passes unjudged.

Response side (`responseheaders`, `response`): decode the body with the guard's own capped
decoder, judge it with `guard.engine.judge`, judge a 30x `Location` like a redirect suggestion,
count redirect hops per client and user (`redirect-limit`), refuse Basic challenges from hosts
the user does not own, then pass, rewrite or block. Audit mode changes nothing and logs what
enforce would have done, except the request refusals whose only cost is a password
(`audit.enforce_credential_rules`, docs/audit.md).

Big answers are judged in the runtime's threads (`response` returns a coroutine that awaits
them), under the policy's time budget (`limits.judge_ms`): one costly answer never holds up the
event loop and every other client with it. Small ones are judged inline, where the thread hop
would cost more than the judgement (bench/hooks.py).

When the policy sets `log.required`, a flow the decision log cannot record is refused.

Every hook body is wrapped: mitmproxy forwards the upstream answer unchanged when an addon
raises, so an internal error becomes a block unless the policy's `on_error` is `allow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import socket
import time
import weakref
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from guard.engine import fold
from guard.errors import PolicyError, SetupError, UntrustedInputError
from guard.formats import hint
from guard.log import FlowFacts, use_pseudonym_key
from guard.metrics import MetricsFile
from guard.model import Action, Decision, Reply, Suggestion
from guard.mx import MxSettings
from guard.names import InvalidHost, User
from guard.ownership import load_suffix_list
from guard.pins import PinKeeper
from guard.policy import Mode, Policy, default_policy_path
from guard.proxy import answers, flows
from guard.proxy.apply import apply_http, hang_up_upstream
from guard.proxy.endpoints import is_discovery, is_discovery_host
from guard.proxy.identity import client_address
from guard.proxy.record import DISCOVERY, FlowState, internal_error, settle
from guard.proxy.reload import Runtime
from guard.proxy.walk import PendingRedirects
from guard.pseudonym import load_key
from guard.rules import request as request_rules
from guard.rules.walk import hop_key, redirect_limit

logger = logging.getLogger(__name__)

_DISCOVERY_ROOTS = (b"<clientConfig", b"<Autodiscover")  # Mozilla autoconfig, Outlook POX answers
_REDIRECT_STATUS = frozenset(range(300, 400))  # every 3xx with a Location: curl -L follows 300 and 305 too
# Answers up to this size are judged on the event loop: a thread hop costs ~35 µs (p99 ~0.6 ms on a
# busy host), a typical 2-4 KB answer ~100-200 µs to judge, the worst 8 KiB one ~3 ms (docs/security.md).
INLINE_BYTES = 8 * 1024
# What a client gets when the decision log cannot record its flow and the policy requires it.
UNLOGGED = Reply(503, "text/plain; charset=utf-8",
                 b"Refused by autodiscover-guard: the decision log cannot be written (log.required).\n")


def _event_loop_running() -> bool:
    """mitmproxy's loop runs the hooks; offline replay calls them without one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _default_instance() -> str:
    """`<hostname>:<listen port>` (mitmproxy's default 8080 when unset); `<hostname>` for an ephemeral port (0)."""
    port = ctx.options.listen_port if "listen_port" in ctx.options else None
    port = 8080 if port is None else port
    return f"{socket.gethostname()}:{port}" if port else socket.gethostname()


def _options_error(message: str) -> Exception:
    return exceptions.OptionsError(message)  # type: ignore[no-untyped-call]


_Hook = Callable[["AutodiscoverGuard", http.HTTPFlow], None]


def _fail_closed(*, can_replace: bool) -> Callable[[_Hook], _Hook]:
    """Turn any exception in a hook into the guard's decision instead of mitmproxy's pass-through."""

    def wrap(hook: _Hook) -> _Hook:
        @functools.wraps(hook)
        def guarded(self: AutodiscoverGuard, flow: http.HTTPFlow) -> None:
            try:
                hook(self, flow)
            except Exception as exc:  # an addon error would forward the upstream answer unchanged
                self._internal_error(flow, exc, can_replace=can_replace)

        return guarded

    return wrap


class AutodiscoverGuard:
    """Judges mail discovery answers (and requests) passing through mitmproxy."""

    def __init__(self, runtime: Runtime | None = None) -> None:
        self.runtime = runtime or Runtime()
        self.redirects = PendingRedirects()
        self.pins = PinKeeper()  # config-changed (docs/pinning.md), when the policy turns pinning on
        self._flows: weakref.WeakKeyDictionary[http.HTTPFlow, FlowState] = weakref.WeakKeyDictionary()

    @property
    def policy(self) -> Policy | None:
        """The policy in force (None before `configure`)."""
        return self.runtime.policy

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
        add("guard_instance", str, "", "The metrics' `instance` label; empty: <hostname>:<listen port>.")

    def configure(self, updated: set[str]) -> None:
        """Validate options (mitmproxy does not enforce choices) and load the policy; errors exit at start."""
        options, runtime = ctx.options, self.runtime
        if "guard_mode" in updated and options.guard_mode not in ("", "enforce", "audit"):
            raise _options_error(f"guard_mode must be enforce, audit or empty, not {options.guard_mode!r}")
        if "guard_max_body" in updated and options.guard_max_body < 0:
            raise _options_error("guard_max_body must be 0 (the policy's limits) or a positive byte count")
        policy = None
        if "guard_policy" in updated:
            try:
                policy = runtime.read_policy(Path(options.guard_policy).expanduser())
            except PolicyError as exc:
                raise _options_error(f"invalid policy: {exc}") from None
        log = runtime.new_log(options.guard_log) if "guard_log" in updated else None
        metrics_file = MetricsFile(options.guard_metrics) if options.guard_metrics else None
        try:
            if log is not None:
                log.open()
            if metrics_file is not None:
                metrics_file.check()
            if "confdir" in updated:  # the key beside the CA, unless the environment names one
                use_pseudonym_key(load_key(Path(options.confdir).expanduser()))
        except SetupError as exc:  # a missing folder: exit at start with the fix, not run without a trail
            raise _options_error(str(exc)) from None
        # everything is valid from here on: apply
        runtime.mode_option = options.guard_mode
        runtime.max_body_option = options.guard_max_body
        runtime.console = options.guard_console
        runtime.metrics_file = metrics_file
        runtime.metrics.instance = options.guard_instance or _default_instance()
        if log is not None:
            runtime.log.close()
            runtime.log = log
        if policy is not None:
            runtime.install(policy)
        if "body_size_limit" in options and options.body_size_limit is None and runtime.policy is not None:
            # as `run` does: without it mitmproxy buffers a chunked answer without end
            options.update(body_size_limit=str(runtime.caps(runtime.policy_in_force())[0]))  # type: ignore[no-untyped-call]

    def running(self) -> None:
        """Say what is in force (unknown `--set` names are silently ignored) and start the ticker."""
        load_suffix_list()
        runtime = self.runtime
        policy = runtime.policy_in_force()
        logger.info(
            "autodiscover-guard: policy %s (revision %s), mode %s, decision log %s, metrics %s",
            runtime.policy_path, policy.revision, runtime.mode(policy).value, runtime.log.path or "stderr",
            runtime.metrics_path or "off",
        )
        runtime.start()
        # The suffix list, policy and caches never die: keep them out of every collection. Full
        # collections then scan only what flows and judging keep alive (a 1 MiB answer's ~50,000
        # elements), not the whole start-up heap too. No gc.collect() first: measured, it made POX
        # flows cost more CPU (guard/bare 1.44 against 1.30, three alternating runs each).
        gc.freeze()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals: Windows, or not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, runtime.hangup)
        # SIGTERM is mitmproxy's (it shuts down, which calls `done`: the log is flushed and closed there)

    def done(self) -> None:
        """Stop the ticker, write the final metrics, close the log and the pin stores; give SIGHUP back."""
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        self.runtime.stop()
        self.pins.close()

    def tick(self) -> None:
        """What the ticker does once a second (tests call it directly)."""
        self.runtime.tick()

    # -- request side ----------------------------------------------------------------------------

    @_fail_closed(can_replace=True)
    def request(self, flow: http.HTTPFlow) -> None:
        """Start tracking discovery flows; refuse TLD discovery and misdirected credentials locally."""
        req = flow.request
        host = flows.request_host(req)
        if not is_discovery(host, req.path, req.headers):
            return
        started = time.perf_counter()
        if self.runtime.policy_in_force().log.required and self.runtime.log.failing:  # before any upstream
            self._refuse_unlogged(flow, self._start(flow, host), started)
            return
        state, body = self._track(flow, host)
        policy = state.policy
        user = state.user
        named = user if user is not None and user.address else None  # credentials need an address
        finding = (request_rules.discovery_tld(host, user, discovery_name=is_discovery_host(host))
                   or request_rules.credential_leak(host, req.scheme, named, flows.credential(req, body), policy.trust))
        if finding is not None:
            decision = fold(Decision(hint(state.url) or "request", Action.ALLOW), [finding], policy,
                            answers.local_reply(finding))
            if state.mode is Mode.AUDIT and policy.audit.enforce_credential_rules:
                state.enforced_in_audit = True  # a trial must not cost a password (docs/audit.md)
            self._finish(flow, state, decision, started)
        else:
            state.elapsed += time.perf_counter() - started

    def _track(self, flow: http.HTTPFlow, host: str, *, host_names_user: bool = False) -> tuple[FlowState, bytes]:
        """Start tracking a discovery flow: whose it is (with `host_names_user`, the host when nothing
        else names a user) and which redirect walk it continues; the request body it was read from."""
        req = flow.request
        state = self._start(flow, host)
        policy = state.policy
        body = flows.request_body(req, *self.runtime.caps(policy))
        state.user, state.user_source = flows.identify(req, host, body)
        if state.user is None and host_names_user:
            with contextlib.suppress(InvalidHost):
                state.user, state.user_source = User.for_domain(host), "document-host"
        if state.user is not None and policy.mx is not None and _event_loop_running():
            self.runtime.mx_lookups(policy.mx).start(state.user.domain)  # ready by the time the answer is
        state.walk, redirected = self.redirects.join(state.client, state.url, state.user)
        if redirected:
            state.user, state.user_source = state.walk.user, "redirect"
        return state, body

    def _sniffed(self, flow: http.HTTPFlow) -> FlowState | None:
        """A 2xx XML answer on a URL the endpoint table does not know (the one a TXT `mailconf=`
        record names, docs/dns.md) that is a discovery document: tracked from here, so it is judged.
        Its user is the one the walk or the request names, else the host that served it."""
        response = flow.response
        if response is None or not 200 <= response.status_code < 300 or not response.raw_content:
            return None
        if "xml" not in (flows.header(response.headers, b"content-type") or "").lower():
            return None
        try:
            head = flows.read_body(response, *self.runtime.caps(self.runtime.policy_in_force()))[:1024]
        except UntrustedInputError:  # over a cap: a plain body still shows its root, and is then `malformed`
            head = response.raw_content[:1024]
        if not any(root in head for root in _DISCOVERY_ROOTS):
            return None
        return self._track(flow, flows.request_host(flow.request), host_names_user=True)[0]

    def _start(self, flow: http.HTTPFlow, host: str) -> FlowState:
        runtime = self.runtime
        policy = runtime.policy_in_force()
        state = FlowState(policy, runtime.mode(policy), client_address(flow), host, flows.flow_url(flow.request))
        self._flows[flow] = state
        flow.metadata[DISCOVERY] = True
        return state

    # -- response side ---------------------------------------------------------------------------

    @_fail_closed(can_replace=False)
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        """Refuse an answer too big to read, or streamed past the guard, before its body arrives."""
        state = self._flows.get(flow)
        if state is None or state.done or flow.response is None or not 200 <= flow.response.status_code < 300:
            return
        started = time.perf_counter()
        length = flows.header(flow.response.headers, b"content-length") or ""
        wire, _ = self.runtime.caps(state.policy)
        if flow.response.stream:
            why = "the body is streamed (stream_large_bodies) and cannot be inspected"
        elif length.isdigit() and int(length) > wire:
            why = f"Content-Length {length} exceeds the {wire}-byte cap"
        else:
            state.elapsed += time.perf_counter() - started
            return
        decision = answers.unreadable(hint(state.url) or "unknown", why, state.policy)
        self._finish(flow, state, decision, started, kill=True)

    def response(self, flow: http.HTTPFlow) -> Coroutine[Any, Any, None] | None:
        """Judge the answer and pass, rewrite or block it.

        When the answer has to wait (the user domain's MX answer, when the policy enables MX
        evidence) or is big enough to judge in a thread, this returns a coroutine (mitmproxy awaits
        it) so the event loop keeps serving other flows; otherwise it judges at once, so the
        common path costs no coroutine.
        """
        state = self._flows.get(flow)
        if state is None and flow.metadata.get(DISCOVERY) is None:
            try:
                state = self._sniffed(flow)
            except Exception as exc:  # a bug here must not pass a discovery document unjudged
                self._internal_error(flow, exc, can_replace=True)
                return None
        if state is None or state.done or flow.response is None:
            return None
        # offline (replay, tests driving the hooks by hand) there is no loop to await a lookup on: no MX evidence
        mx = state.policy.mx if state.user is not None and _event_loop_running() else None
        big = (self.runtime.judges is not None and 200 <= flow.response.status_code < 300
               and len(flow.response.raw_content or b"") > INLINE_BYTES)
        if mx is None and not big:
            self.judge_response(flow)
            return None
        return self._judge_later(flow, state, mx, big=big)

    async def _judge_later(self, flow: http.HTTPFlow, state: FlowState, mx: MxSettings | None, *, big: bool) -> None:
        try:
            if mx is not None and state.user is not None:
                state.mx = await self.runtime.mx_lookups(mx).answer(state.user.domain)
            if big and flow.response is not None and self.runtime.judges is not None:
                state.judged = await asyncio.get_running_loop().run_in_executor(
                    self.runtime.judges, self._judge_in_thread, flow.response, state)
        except Exception as exc:  # neither raises by design; fail closed if one ever does
            self._internal_error(flow, exc, can_replace=True)
            return
        self.judge_response(flow)

    @_fail_closed(can_replace=True)
    def judge_response(self, flow: http.HTTPFlow) -> None:
        """The synchronous part of `response`: everything once the MX evidence (if any) is in."""
        state = self._flows.get(flow)
        if state is None or state.done or flow.response is None:
            return
        started = time.perf_counter()
        status = flow.response.status_code
        location = flows.header(flow.response.headers, b"location") if status in _REDIRECT_STATUS else None
        if location is not None:
            decision, suggestion = answers.judge_location(state, location)
            decision = self._judge_hops(state, decision, (suggestion,))
        elif 200 <= status < 300:
            answer = state.judged or answers.judge_body(flow.response, state, self.runtime.caps(state.policy))
            decision = self._judge_hops(state, answer, answer.suggestions)
        else:
            decision = Decision(hint(state.url) or "unknown", Action.ALLOW,
                                notes=(f"HTTP {status}: no answer to judge",))
        decision = self.pins.check(answers.judge_challenge(flow, state, decision), state.user, state.policy)
        self._finish(flow, state, decision, started)

    @_fail_closed(can_replace=False)
    def error(self, flow: http.HTTPFlow) -> None:
        """Log discovery flows that got no answer (upstream unreachable, over `body_size_limit`)."""
        hang_up_upstream(flow)
        state = self._flows.get(flow)
        if state is None or state.done:
            return
        why = flow.error.msg if flow.error is not None else "unknown error"
        decision = Decision(hint(state.url) or "unknown", Action.ALLOW, notes=(f"no answer: {why}",))
        self._finish(flow, state, decision, time.perf_counter(), error=why)  # logged as action `error`

    def _judge_in_thread(self, response: http.Response, state: FlowState) -> Decision:
        started = time.perf_counter()
        try:
            return answers.judge_body(response, state, self.runtime.caps(state.policy))
        finally:
            state.elapsed += time.perf_counter() - started  # the flow's latency includes the thread's work

    def _judge_hops(self, state: FlowState, decision: Decision, found: Sequence[Suggestion]) -> Decision:
        """Count the redirects an answer sends the client on; remember them for the walk's next hop."""
        hops = [(s, key) for s in found if (key := hop_key(s)) is not None]
        if not hops or decision.action is Action.BLOCK:
            return decision
        findings = redirect_limit(state.walk, hops, state.policy.limits.max_redirects)
        decision = fold(decision, findings, state.policy, answers.block_reply(decision.format))
        if decision.action is not Action.BLOCK:
            now = time.monotonic()
            for _suggestion, key in hops:
                self.redirects.offer(state.client, key, state.walk.next(key), now)
        return decision

    # -- applying and recording ------------------------------------------------------------------

    def _finish(self, flow: http.HTTPFlow, state: FlowState, decision: Decision, started: float,
                *, kill: bool = False, error: str | None = None) -> None:
        status = flow.response.status_code if flow.response is not None else None  # upstream's, if any
        latency = state.elapsed + time.perf_counter() - started
        facts = FlowFacts(flow.id, state.client, flow.request.method, state.url, status, error)
        recorded = settle(self.runtime, flow, state, facts, decision, latency,
                          lambda: apply_http(flow, decision, kill=kill))
        if not recorded and state.policy.log.required and error is None and decision.reply is not UNLOGGED:
            self.runtime.metrics.refused_unlogged()  # judged, but no record of it: the client gets none either
            apply_http(flow, Decision(decision.format, Action.BLOCK, reply=UNLOGGED), kill=kill)

    def _refuse_unlogged(self, flow: http.HTTPFlow, state: FlowState, started: float) -> None:
        """`log.required` and the log is failing: answer locally, in every mode (the record is tried all the same)."""
        self.runtime.metrics.refused_unlogged()
        state.enforced_in_audit = True
        decision = Decision(hint(state.url) or "request", Action.BLOCK, reply=UNLOGGED,
                            notes=("refused: the decision log cannot be written (log.required)",))
        self._finish(flow, state, decision, started)

    def _internal_error(self, flow: http.HTTPFlow, exc: Exception, *, can_replace: bool) -> None:
        """Fail closed (unless `on_error: allow`) and still log the flow exactly once."""
        state = self._flows.get(flow) or self._start(flow, flow.request.host)  # the plain attribute: cannot fail
        decision = internal_error(exc, state.policy)  # logged loudly even when the flow was already decided
        if not state.done:
            self._finish(flow, state, decision, time.perf_counter(), kill=not can_replace)
