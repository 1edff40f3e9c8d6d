"""The one way a flow ends, HTTP or DNS: apply the decision (enforce only), log it once, count it.

Internal errors end the same way: the policy's `on_error` decides (`guard.engine.fold_error`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import dns, http

from guard.engine import GENERIC_BLOCK, fold_error
from guard.log import FlowFacts, console_line, decision_record
from guard.model import Action, Decision
from guard.mx import MxAnswer
from guard.names import User
from guard.policy import Mode, Policy
from guard.proxy.reload import Runtime
from guard.rules.walk import NO_WALK, Walk

logger = logging.getLogger(__name__)

# flow.metadata keys the guard sets on every flow it logs (`replay` and other addons read them)
DISCOVERY, ACTION, WOULD_ACTION, RULES, FORMAT = (
    "guard.discovery", "guard.action", "guard.would_action", "guard.rules", "guard.format")


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
    done: bool = False


def settle(runtime: Runtime, flow: http.HTTPFlow | dns.DNSFlow, state: FlowState, facts: FlowFacts,
           decision: Decision, latency: float, apply: Callable[[], None]) -> None:
    """Apply (enforce only, through `apply`), log once, count."""
    state.done = True
    changes = decision.action in (Action.REWRITE, Action.BLOCK)
    enforce = state.mode is Mode.ENFORCE
    if enforce and changes:
        apply()
    applied = decision.action if enforce or not changes else Action.ALLOW
    record = decision_record(
        facts, decision, mode=state.mode.value, applied=applied, user=state.user,
        user_source=state.user_source, revision=state.policy.revision,
        hash_local=state.policy.log.hash_local_part, latency_us=round(latency * 1e6),
    )
    runtime.log.write("decision", record)
    if runtime.console:
        logger.info(console_line(record))
    rules, would = decision.rules, decision.action.value  # rules is worked out on every read
    runtime.metrics.observe(state.mode.value, would, rules, latency)
    flow.metadata.update({ACTION: applied.value, WOULD_ACTION: would, RULES: list(rules), FORMAT: decision.format})


def internal_error(exc: Exception, policy: Policy, format_name: str = "unknown") -> Decision:
    """Log the failure loudly and decide as the policy's `on_error` says."""
    logger.warning("autodiscover-guard: internal error: %r", exc, exc_info=True)
    return fold_error(exc, policy, format_name, GENERIC_BLOCK)
