"""The DNS addon: judge answers to mail service SRV lookups and TXT `mailconf=` records; strip
offending records or answer REFUSED.

It shares the HTTP addon's `Runtime` (policy, options, log, metrics) and ends every flow through
the same `settle` path; the URLs an allowed `mailconf=` record names are offered to the HTTP
addon's pending redirects, so their fetch is judged for the queried domain's user.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from mitmproxy import dns
from mitmproxy.net.dns import types

from guard.dnsjudge import TXT, DnsVerdict, Record, judge_answer, judge_mailconf, service_user
from guard.log import FlowFacts
from guard.proxy.apply import apply_dns
from guard.proxy.record import FlowState, internal_error, settle
from guard.proxy.reload import Runtime
from guard.proxy.walk import PendingRedirects
from guard.rules.walk import Walk, hop_key


def _records(records: Iterable[dns.ResourceRecord]) -> list[Record]:
    return [Record(r.name, r.type, r.ttl, r.data) for r in records]


class DnsGuard:
    """Judges DNS answers to `_imaps._tcp.<domain>` and the other mail service names."""

    def __init__(self, runtime: Runtime, redirects: PendingRedirects | None = None) -> None:
        self.runtime = runtime
        self.redirects = PendingRedirects() if redirects is None else redirects  # the HTTP addon's (shim)

    async def dns_response(self, flow: dns.DNSFlow) -> None:
        """Judge answers to mail service SRV lookups and `mailconf=` TXT records; every other
        lookup passes untouched, unlogged."""
        question = flow.request.question
        if question is not None and flow.response is not None and question.type == TXT:
            self._judge_txt(flow, question.name, question.type)
            return
        user = service_user(question.name) if question is not None else None
        if flow.response is None or question is None or user is None:
            return
        started = time.perf_counter()
        runtime = self.runtime
        policy = runtime.policy_in_force()
        peer = flow.client_conn.peername
        state = FlowState(policy, runtime.mode(policy), str(peer[0]) if peer else "?", question.name,
                          f"dns:{question.name}", user_source="dns-name")
        verdict: DnsVerdict | None = None
        try:
            mx = None if policy.mx is None else await runtime.mx_lookups(policy.mx).answer(user.domain)
            verdict = judge_answer(question.name, question.type, _records(flow.response.answers),
                                   _records(flow.response.additionals), policy, mx)
            if verdict is None:
                return  # a mail service name asked for another type (A, TXT...)
            state.user, decision = verdict.user, verdict.decision
        except Exception as exc:  # fail closed, as the HTTP hooks do
            decision = internal_error(exc, policy, "srv")
        facts = FlowFacts(flow.id, state.client, types.to_str(question.type), state.url,
                          flow.response.response_code)  # upstream's RCODE, as the HTTP side logs its status
        settle(runtime, flow, state, facts, decision, time.perf_counter() - started,
               lambda: apply_dns(flow, decision, verdict))

    def _judge_txt(self, flow: dns.DNSFlow, name: str, qtype: int) -> None:
        """A TXT answer with `mailconf=` records: judge the URLs, remember the allowed ones."""
        assert flow.response is not None
        started = time.perf_counter()
        runtime = self.runtime
        policy = runtime.policy_in_force()
        answers = _records(flow.response.answers)
        try:
            verdict = judge_mailconf(name, qtype, answers, policy)
        except Exception as exc:  # fail closed, as the HTTP hooks do
            verdict, decision = None, internal_error(exc, policy, "txt-mailconf")
        else:
            if verdict is None:
                return  # no mailconf= record: any other TXT passes unlogged
            decision = verdict.decision
        peer = flow.client_conn.peername
        state = FlowState(policy, runtime.mode(policy), str(peer[0]) if peer else "?", name, f"dns:{name}",
                          user=verdict.user if verdict else None, user_source="dns-name")
        facts = FlowFacts(flow.id, state.client, types.to_str(qtype), state.url, flow.response.response_code)
        settle(runtime, flow, state, facts, decision, time.perf_counter() - started,
               lambda: apply_dns(flow, decision, verdict))
        if verdict is not None and not verdict.refuse:
            now = time.monotonic()
            for suggestion in decision.suggestions:
                key = hop_key(suggestion)
                if key is not None and suggestion.locator[1] not in verdict.drop_answers:
                    self.redirects.offer(state.client, key, Walk(verdict.user, frozenset(), 0), now)
