"""Offline replay of a saved mitmproxy flow file (docs/replay.md), as plain results.

A capture made through the guard holds the guard's own work: block pages and rewritten bodies.
Judging those would report "allow" for the incident the guard stopped, so each flow is taken on
the basis that tells the truth (`Basis`): the answer the guard recorded it changed is judged from
the original it kept, else reported as recorded; an answer it let through is judged again.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitmproxy import exceptions, http, io

from guard.errors import GuardError
from guard.log import DecisionLog
from guard.model import Action
from guard.policy import Mode, Policy
from guard.proxy.addon import AutodiscoverGuard
from guard.proxy.flows import flow_url
from guard.proxy.record import ACTION, DISCOVERY, FORMAT, ORIGINAL, RULES, WOULD_ACTION
from guard.proxy.reload import Runtime
from guard.redact import scrub_url

CHANGED = (Action.REWRITE.value, Action.BLOCK.value)  # the saved answer is the guard's, not upstream's


class NotAFlowFile(GuardError):
    """The file is not a mitmproxy flow file (the message says what mitmproxy found)."""


class Basis(enum.StrEnum):
    """What a replayed result rests on."""

    RECORDED = "recorded"  # the guard changed the answer and kept no original: its decision then
    ORIGINAL = "re-judged original"  # the upstream answer the guard kept before changing it
    REJUDGED = "re-judged"  # the saved answer is the upstream's own (no guard, allowed, or audit)


@dataclass(frozen=True, slots=True)
class Replayed:
    """What the guard did or would do with one saved discovery flow (URL scrubbed as in the log)."""

    url: str
    format: str
    would_action: str
    rules: tuple[str, ...]
    basis: Basis

    def as_dict(self) -> dict[str, object]:
        """The JSON line `replay --json` prints."""
        return {"url": self.url, "format": self.format, "would_action": self.would_action,
                "rules": list(self.rules), "basis": self.basis.value}


def replay_flows(path: Path, policy: Policy, log: DecisionLog) -> Iterator[Replayed]:
    """The discovery flows of a saved mitmproxy flow file, judged against `policy` or as recorded.

    Judging runs the live proxy's hooks in audit mode, so the flows read are never changed; each
    judged flow is logged to `log`.

    Raises:
        OSError: the file cannot be read.
        NotAFlowFile: it is not a mitmproxy flow file.
    """
    runtime = Runtime()
    runtime.log = log
    runtime.mode_option = Mode.AUDIT.value
    runtime.install(policy)
    guard = AutodiscoverGuard(runtime)
    with path.open("rb") as handle:
        try:
            yield from _replayed(guard, io.FlowReader(handle).stream())
        except exceptions.FlowReadException as exc:
            raise NotAFlowFile(str(exc)) from None


def _replayed(guard: AutodiscoverGuard, saved: Iterable[object]) -> Iterator[Replayed]:
    for flow in saved:
        if not isinstance(flow, http.HTTPFlow):
            continue
        recorded = {k: v for k, v in flow.metadata.items() if k.startswith("guard.")}
        if recorded.get(ACTION) in CHANGED and ORIGINAL not in recorded:
            yield _result(flow, recorded, Basis.RECORDED)
            continue
        if recorded.get(ACTION) in CHANGED:
            flow.response = http.Response.from_state(recorded[ORIGINAL])  # type: ignore[no-untyped-call]
            basis = Basis.ORIGINAL
        else:
            basis = Basis.REJUDGED
        if flow.response is None:
            continue  # no answer was saved: nothing to judge
        for key in recorded:
            del flow.metadata[key]  # verdicts of the run that saved the flow
        guard.request(flow)
        pending = guard.response(flow)  # a coroutine only when the policy asks for MX evidence
        if pending is not None:
            asyncio.run(pending)
        if flow.metadata.get(DISCOVERY):
            yield _result(flow, flow.metadata, basis)


def _result(flow: http.HTTPFlow, meta: dict[str, Any], basis: Basis) -> Replayed:
    return Replayed(scrub_url(flow_url(flow.request)), str(meta.get(FORMAT, "unknown")), str(meta[WOULD_ACTION]),
                    tuple(map(str, meta.get(RULES, ()))), basis)
