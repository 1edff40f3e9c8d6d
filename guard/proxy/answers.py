"""Judging one answer of a tracked flow: its body, its `Location`, its Basic challenge.

Functions of the flow's state and the response alone, with no hook state, so the body's judgement
may run in one of the runtime's threads (guard/proxy/addon.py decides where it runs).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from urllib.parse import urljoin

from mitmproxy import http

from guard.budget import Budget
from guard.engine import fold, judge
from guard.errors import UntrustedInputError
from guard.formats import by_name, detect, hint
from guard.formats.base import GENERIC_BLOCK, extras_only
from guard.model import Action, Decision, Finding, Reply, Role, Suggestion, ValueKind
from guard.policy import Policy
from guard.proxy import flows
from guard.proxy.record import FlowState
from guard.rules import MALFORMED
from guard.rules import request as request_rules

# A 30x whose only suggestion is its Location header (docs/formats.md, redirects): judged through
# the engine like any answer, the Location passed as an extra suggestion.
HTTP_REDIRECT = extras_only("http-redirect", body_survives=False)


def block_reply(format_name: str) -> Reply:
    """The format's own block answer (what its clients already handle), else a plain 403."""
    try:
        return by_name(format_name).block()
    except KeyError:
        return GENERIC_BLOCK


def local_reply(finding: Finding) -> Reply:
    return Reply(403, "text/plain; charset=utf-8",
                 f"Blocked by autodiscover-guard ({finding.rule}): {finding.message}\n".encode())


def unreadable(format_name: str, why: str, policy: Policy) -> Decision:
    """An answer the guard cannot read is `malformed`: clients act on fragments (docs/rules.md)."""
    return fold(Decision(format_name, Action.ALLOW), [Finding(MALFORMED, "", "(body)", why)], policy,
                block_reply(format_name))


def judge_body(response: http.Response, state: FlowState, caps: tuple[int, int]) -> Decision:
    """Decode and judge the body under the policy's time budget (`caps`: wire and decoded byte caps)."""
    policy, url = state.policy, state.url
    content_type = flows.header(response.headers, b"content-type") or ""
    try:
        body = flows.read_body(response, *caps)
    except UntrustedInputError as exc:
        return unreadable(hint(url, content_type) or "unknown", str(exc), policy)
    if not body or body.isspace():  # not body.strip(): no copy of the body
        return Decision(hint(url, content_type) or "unknown", Action.ALLOW, notes=("empty body: no suggestion",))
    fmt = detect(body, url, content_type)
    extra = fmt.header_suggestions(response.headers) if fmt is not None else ()
    return judge(body, state.user, policy, fmt=fmt, url=url, content_type=content_type, extra=extra,
                 mx=state.mx, budget=Budget(policy.limits.judge_ms / 1000))


def judge_location(state: FlowState, location: str) -> tuple[Decision, Suggestion]:
    """A redirect's `Location` judged as the answer's only suggestion (returned too, for the walk)."""
    with contextlib.suppress(ValueError):  # else judged as written: unreadable means malformed
        location = urljoin(state.url, location)
    suggestion = Suggestion(location, ValueKind.URL, Role.REDIRECT, "Location")
    decision = judge(b"", state.user, state.policy, fmt=HTTP_REDIRECT, extra=(suggestion,), mx=state.mx)
    if decision.action is Action.REWRITE:  # the Location is the whole answer: nothing is left
        decision = replace(decision, action=Action.BLOCK, body=None, reply=GENERIC_BLOCK)
    return decision, suggestion


def judge_challenge(flow: http.HTTPFlow, state: FlowState, decision: Decision) -> Decision:
    """A Basic challenge from a host the user does not own (or over http) would fetch the password."""
    assert flow.response is not None
    challenges = flows.header(flow.response.headers, b"www-authenticate")  # folded: the rule splits at commas
    finding = request_rules.basic_challenge(state.host, flow.request.scheme, state.user, challenges,
                                            state.policy.trust)
    return decision if finding is None else fold(decision, [finding], state.policy, local_reply(finding))
