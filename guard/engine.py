"""Judging one answer: detect, parse, normalise, apply the rules, and fold findings into a Decision.

This is the one place where findings become decisions (`judge` for an answer's own findings,
`fold` for findings added around it: request rules, the redirect walk, pins) and exceptions
become findings: untrusted-input errors are the `malformed` rule, anything else is
`internal-error` handled by the policy's `on_error` (`fold_error`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from guard import rules
from guard.budget import UNLIMITED, Budget, OverBudget
from guard.errors import UntrustedInputError
from guard.formats import Format, detect
from guard.formats.base import GENERIC_BLOCK
from guard.model import Action, Decision, Finding, Parsed, Reply, Role, Suggestion, Transport, ValueKind
from guard.mx import MxAnswer, mx_evidence
from guard.names import InvalidHost, User, target_of
from guard.ownership import owner_evidence
from guard.policy import Policy
from guard.rules import RuleAction

_SEVERITY = {RuleAction.OFF: 0, RuleAction.WARN: 1, RuleAction.REWRITE: 2, RuleAction.BLOCK: 3}
_ACTION = {0: Action.ALLOW, 1: Action.WARN, 2: Action.REWRITE, 3: Action.BLOCK}


def judge(
    body: bytes,
    user: User | None,
    policy: Policy,
    *,
    fmt: Format | None = None,
    url: str = "",
    content_type: str = "",
    extra: Sequence[Suggestion] = (),
    mx: MxAnswer | None = None,
    budget: Budget = UNLIMITED,
) -> Decision:
    """Judge one answer for one user under one policy. Never raises.

    Args:
        body: the decoded response body.
        user: whom the answer is for; None when the adapter could not tell: then no host is
            owned (`foreign-host`) unless the policy says `unknown_user: skip-ownership`.
        fmt: the format, when the caller knows it; otherwise detected from body, URL, type.
        extra: suggestions found outside the body (AutoDetect's debug headers); judged like the
            body's, removed by dropping the format's sensitive headers.
        mx: the MX answer for the user's domain, looked up by the caller when the policy enables
            MX evidence (`judge` itself does no I/O); None: no MX evidence.
        budget: the time this answer may cost (`limits.judge_ms`); over it the answer is `malformed`.
    """
    try:
        fmt = fmt or detect(body, url, content_type)
        if fmt is None:
            finding = Finding(rules.MALFORMED, "", "(document)", "not a recognised discovery answer")
            return _decide("unknown", (finding,), (), policy, None, body)
        try:
            parsed = fmt.parse(body)
        except UntrustedInputError as exc:
            finding = Finding(rules.MALFORMED, "", "(document)", f"{fmt.name}: {exc}")
            return _decide(fmt.name, (finding,), (), policy, fmt, body)
        try:
            budget.now()
            findings, notes = _findings(parsed, tuple(extra), user, policy, mx, budget)
            decision = _decide(fmt.name, findings, parsed.suggestions + tuple(extra), policy, fmt, body, parsed,
                               budget)
        except OverBudget as exc:
            finding = Finding(rules.MALFORMED, "", "(document)", f"{fmt.name}: {exc}")
            return _decide(fmt.name, (finding,), (), policy, fmt, body)
        return replace(decision, notes=notes + decision.notes) if notes else decision
    except Exception as exc:
        if fmt is None:
            return fold_error(exc, policy, "unknown", GENERIC_BLOCK)
        return fold_error(exc, policy, fmt.name, fmt.block(), fmt.sensitive_headers)


def _findings(parsed: Parsed, extra: tuple[Suggestion, ...], user: User | None,
              policy: Policy, mx: MxAnswer | None, budget: Budget) -> tuple[list[Finding], tuple[str, ...]]:
    """The rules' findings, and notes on foreign-host findings excused by MX evidence.

    Answers name the same host many times (a POX answer lists mail.contoso.com in a dozen
    URLs); the rules see only where a suggestion leads, so a value found clean once in this
    answer is clean again and is not judged twice.
    """
    found: list[Finding] = []
    notes: list[str] = []
    clean: set[tuple[str, ValueKind, Transport, bool]] = set()
    reserved = rules.reserved_user_domain(user) if user is not None else None
    if reserved is not None:
        found.append(reserved)
    for suggestion in parsed.suggestions + extra:
        budget.check()
        leads_to = (suggestion.value, suggestion.kind, suggestion.transport, suggestion.role is Role.INFO)
        if leads_to in clean:
            continue
        known = len(found)
        try:
            target = target_of(suggestion, user) if user is not None else target_of(suggestion, _NOBODY)
        except InvalidHost as exc:
            found.append(Finding(rules.MALFORMED, suggestion.value.strip()[:253], suggestion.field, str(exc),
                                 suggestion=suggestion))
            continue
        subject = rules.Subject(suggestion, target, user)
        hard = rules.reserved_domain(subject) or rules.ip_literal(subject)
        if hard is not None:
            found.append(hard)
        else:
            foreign = rules.foreign_host(subject, policy.trust,
                                         unknown_owns_nothing=policy.unknown_user_owns_nothing)
            if foreign is not None and mx is not None and user is not None and reserved is None:
                excuse = mx_evidence(user.domain, target.host, mx, policy.trust)
                if excuse is not None:
                    notes.append(excuse)
                    foreign = None
                else:
                    foreign = replace(foreign, evidence=(*foreign.evidence, mx.describe(user.domain)))
            if foreign is not None:
                found.append(foreign)
            elif user is not None:  # trusted for any tenant (Microsoft 365, Exchange hybrid): the log says so
                why = owner_evidence(user.domain, target.host, policy.trust) or ""
                if why.startswith("weak"):
                    notes.append(f"{target.host}: {why}")
        for soft in (rules.idn_lookalike(subject), rules.plaintext(subject)):
            if soft is not None:
                found.append(soft)
        if len(found) == known:
            clean.add(leads_to)
    return found, tuple(dict.fromkeys(notes))


# Placeholders in answers judged without a known user expand to a name that is never owned.
_NOBODY = User("unknown@unknown.invalid", "unknown", "unknown.invalid", "unknown.invalid")


def _decide(
    name: str,
    findings: Sequence[Finding],
    suggestions: tuple[Suggestion, ...],
    policy: Policy,
    fmt: Format | None,
    body: bytes,
    parsed: Parsed | None = None,
    budget: Budget = UNLIMITED,
) -> Decision:
    kept = [f for f in findings if policy.action_for(f.rule) is not RuleAction.OFF]
    level = max((_SEVERITY[policy.action_for(f.rule)] for f in kept), default=0)
    action = _ACTION[level]
    notes: tuple[str, ...] = ()
    rewritten: bytes | None = None
    if action is Action.REWRITE:
        drop = [f.suggestion for f in kept if policy.action_for(f.rule) is RuleAction.REWRITE]
        if fmt is None or parsed is None or any(s is None for s in drop):
            action = Action.BLOCK
        else:
            present = set(parsed.suggestions)  # a set: one lookup per dropped suggestion keeps this linear
            in_body = [s for s in drop if s in present and s is not None]
            budget.now()
            rewritten = fmt.rewrite(body, parsed, in_body) if in_body else body
            if rewritten is None:
                action = Action.BLOCK
                notes = ("no safe remainder after removing the offending suggestions",)
    budget.now()  # the rewrite is the last costly step
    reply = None
    drop_headers: tuple[str, ...] = ()
    if action is Action.BLOCK:
        reply = fmt.block() if fmt is not None else GENERIC_BLOCK
    if action in (Action.BLOCK, Action.REWRITE) and fmt is not None:
        drop_headers = fmt.sensitive_headers
    return Decision(name, action, tuple(kept), suggestions, reply, rewritten if action is Action.REWRITE else None,
                    drop_headers, notes)


def fold(decision: Decision, findings: Sequence[Finding], policy: Policy, reply: Reply, *,
         action: RuleAction | None = None, drop_headers: tuple[str, ...] = (),
         notes: tuple[str, ...] = ()) -> Decision:
    """Add findings nothing can be cut out for (request rules, the walk, pins): they warn or block.

    `action` overrides the policy's action for these findings (a pinned domain blocks);
    `reply` and `drop_headers` apply when the decision becomes a block.
    """
    def action_for(rule: str) -> RuleAction:
        return action or policy.action_for(rule)

    kept = tuple(f for f in findings if action_for(f.rule) is not RuleAction.OFF)
    if not kept:
        return decision
    merged, noted = decision.findings + kept, decision.notes + notes
    if all(action_for(f.rule) is RuleAction.WARN for f in kept):
        warned = Action.WARN if decision.action is Action.ALLOW else decision.action
        return replace(decision, action=warned, findings=merged, notes=noted)
    return replace(decision, action=Action.BLOCK, findings=merged, notes=noted, body=None,
                   reply=decision.reply or reply, drop_headers=decision.drop_headers or drop_headers)


def fold_error(exc: Exception, policy: Policy, format_name: str, reply: Reply,
               drop_headers: tuple[str, ...] = ()) -> Decision:
    """The decision for a failure of the guard itself: the policy's `on_error` (block unless `allow`).

    Only the exception's type is recorded: its message may quote the answer or the request.
    """
    finding = Finding(rules.INTERNAL_ERROR, "", "(guard)", f"internal error: {type(exc).__name__}")
    if policy.on_error is Action.ALLOW:
        return Decision(format_name, Action.ALLOW, (finding,), notes=("on_error: allow — passed unjudged",))
    return Decision(format_name, Action.BLOCK, (finding,), reply=reply, drop_headers=drop_headers)
