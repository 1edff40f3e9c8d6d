"""Offline replay: re-judge the discovery flows of a saved mitmproxy flow file, as plain results."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mitmproxy import exceptions, http, io

from guard.errors import GuardError
from guard.log import DecisionLog
from guard.policy import Mode, Policy
from guard.proxy.addon import AutodiscoverGuard
from guard.proxy.flows import flow_url
from guard.proxy.record import DISCOVERY, FORMAT, RULES, WOULD_ACTION
from guard.proxy.reload import Runtime


class NotAFlowFile(GuardError):
    """The file is not a mitmproxy flow file (the message says what mitmproxy found)."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """What the guard would have done with one saved discovery flow."""

    url: str
    format: str
    would_action: str
    rules: tuple[str, ...]


def replay_flows(path: Path, policy: Policy, log: DecisionLog) -> Iterator[Replayed]:
    """Re-judge the discovery flows of a saved mitmproxy flow file against `policy`.

    Runs the same hooks as the live proxy, in audit mode so the flows read are never changed;
    each judged flow is logged to `log`.

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
            yield from _judged(guard, io.FlowReader(handle).stream())
        except exceptions.FlowReadException as exc:
            raise NotAFlowFile(str(exc)) from None


def _judged(guard: AutodiscoverGuard, saved: Iterable[object]) -> Iterator[Replayed]:
    """Each saved discovery flow, run through the hooks in audit mode."""
    for flow in saved:
        if not isinstance(flow, http.HTTPFlow) or flow.response is None:
            continue
        for key in [k for k in flow.metadata if k.startswith("guard.")]:
            del flow.metadata[key]  # verdicts of the run that saved the flow
        guard.request(flow)
        pending = guard.response(flow)  # a coroutine only when the policy asks for MX evidence
        if pending is not None:
            asyncio.run(pending)
        if flow.metadata.get(DISCOVERY):
            meta = flow.metadata
            yield Replayed(flow_url(flow.request), str(meta[FORMAT]), str(meta[WOULD_ACTION]),
                           tuple(map(str, meta[RULES])))
