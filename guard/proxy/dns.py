"""The DNS addon: judge answers to mail service SRV lookups; strip offending records or answer REFUSED.

It shares the HTTP addon's `Runtime` (policy, options, log, metrics) and ends every flow through
the same `settle` path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from mitmproxy import dns
from mitmproxy.net.dns import types

from guard.dnsjudge import DnsVerdict, Record, judge_answer, service_user
from guard.log import FlowFacts
from guard.proxy.apply import apply_dns
from guard.proxy.record import FlowState, internal_error, settle
from guard.proxy.reload import Runtime


def _records(records: Iterable[dns.ResourceRecord]) -> list[Record]:
    return [Record(r.name, r.type, r.ttl, r.data) for r in records]


class DnsGuard:
    """Judges DNS answers to `_imaps._tcp.<domain>` and the other mail service names."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def dns_response(self, flow: dns.DNSFlow) -> None:
        """Judge answers to mail service SRV lookups; every other lookup passes untouched, unlogged."""
        question = flow.request.question
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
