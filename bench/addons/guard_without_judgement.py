"""Benchmark variant: the whole guard addon, with every answer judged "allow" without reading it."""

import guard.proxy.addon
import guard.proxy.answers
from guard.model import Action, Decision


def _allow(_body: bytes, *_args: object, **_kwargs: object) -> Decision:
    return Decision("pox", Action.ALLOW)


guard.proxy.answers.judge = _allow  # type: ignore[assignment,attr-defined]
addons = [guard.proxy.addon.AutodiscoverGuard()]
