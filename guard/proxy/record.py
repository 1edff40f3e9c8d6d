"""The one way a flow ends, HTTP or DNS: apply the decision (enforce only), log it once, count it.

Internal errors end the same way: the policy's `on_error` decides (`guard.engine.fold_error`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import dns, http

from guard.engine import fold_error
from guard.formats.base import GENERIC_BLOCK
from guard.log import Event, FlowFacts, console_line, decision_record
from guard.model import Action, Decision
from guard.mx import MxAnswer
from guard.names import User
from guard.policy import Mode, Policy
from guard.proxy.apply import annotate
from guard.proxy.reload import Runtime
from guard.rules.walk import NO_WALK, Walk

logger = logging.getLogger(__name__)

# flow.metadata keys the guard sets on every flow it logs (`replay` and other addons read them);
# they survive mitmproxy's flow files (`-w`, mitmweb's save). ORIGINAL: the upstream response
# (mitmproxy's state dict) the guard rewrote or replaced, when its body is within the wire cap.
DISCOVERY, ACTION, WOULD_ACTION, RULES, FORMAT, ORIGINAL = (
    "guard.discovery", "guard.action", "guard.would_action", "guard.rules", "guard.format", "guard.original")


@dataclass(slots=True)
class FlowState:
    """What the guard keeps about one discovery flow between its hooks."""

    policy: Policy
    mode: Mode
    client: str
    host: str
    url: str
    user: User | None = None
    user_source: str = "unknown"
    walk: Walk = NO_WALK
    mx: MxAnswer | None = None  # the user domain's MX answer, when the policy enables MX evidence
    elapsed: float = 0.0  # seconds spent in earlier hooks
    judged: Decision | None = None  # the answer's judgement, when a thread made it before `judge_response`
    enforced_in_audit: bool = False  # a refusal audit mode enforces too (docs/audit.md)
    done: bool = False


def settle(runtime: Runtime, flow: http.HTTPFlow | dns.DNSFlow, state: FlowState, facts: FlowFacts,
           decision: Decision, latency: float, apply: Callable[[], None]) -> bool:
    """Apply (enforce only, through `apply`), log once, count. Returns whether the record was written."""
    state.done = True
    changes = decision.action in (Action.REWRITE, Action.BLOCK)
    enforce = state.mode is Mode.ENFORCE or state.enforced_in_audit
    if enforce and changes:
        _keep_original(flow, runtime.caps(state.policy)[0])
        apply()
    applied = decision.action if enforce or not changes else Action.ALLOW
    record = decision_record(
        facts, decision, mode=state.mode.value, applied=applied, user=state.user,
        user_source=state.user_source, revision=state.policy.revision,
        hash_local=state.policy.log.hash_local_part, latency_us=round(latency * 1e6),
    )
    if state.enforced_in_audit and state.mode is not Mode.ENFORCE:
        record["enforced_in_audit"] = True
    failures = runtime.log.failures
    runtime.log.write(Event.DECISION, record)
    if runtime.console:
        logger.info(console_line(record))
    rules, would = decision.rules, str(record["would_action"])  # `error` when the upstream gave no answer
    runtime.metrics.observe(state.mode.value, would, rules, latency)
    flow.metadata.update({ACTION: record["action"], WOULD_ACTION: would, RULES: list(rules),
                          FORMAT: decision.format})
    annotate(flow, decision, applied=enforce)
    return runtime.log.failures == failures


def _keep_original(flow: http.HTTPFlow | dns.DNSFlow, cap: int) -> None:
    """Keep the upstream answer the guard is about to change, so `replay` can judge it later."""
    response = flow.response if isinstance(flow, http.HTTPFlow) else None
    if response is not None and response.raw_content is not None and len(response.raw_content) <= cap:
        flow.metadata[ORIGINAL] = response.get_state()  # type: ignore[no-untyped-call]


def internal_error(exc: Exception, policy: Policy, format_name: str = "unknown") -> Decision:
    """Log the failure loudly and decide as the policy's `on_error` says."""
    logger.warning("autodiscover-guard: internal error: %r", exc, exc_info=True)
    return fold_error(exc, policy, format_name, GENERIC_BLOCK)
