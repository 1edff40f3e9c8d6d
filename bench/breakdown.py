"""Where the guard's proxy CPU goes on POX flows: `python -m bench.breakdown` (about 3 minutes).

Four mitmdumps run side by side on one core, rounds interleaved in rotating order: bare, an addon
that only judges the answer (`bench/addons/judge_only.py`), the guard with judging replaced by
"allow" (`bench/addons/guard_without_judgement.py`), and the guard. Each ratio is the median of
per-round ratios against bare.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from bench.proxy import POX_URL, Side, _round, _session, pox_upstream
from bench.servers import ROOT, Mitmdump, start_mitmdump

ADDONS = ROOT / "bench" / "addons"
# variant → the addon script mitmdump loads beside the routing one (None: bare)
VARIANTS: dict[str, Path | None] = {
    "bare": None,
    "judgement only": ADDONS / "judge_only.py",
    "guard without judgement": ADDONS / "guard_without_judgement.py",
    "guard": ROOT / "addons" / "autodiscover_guard.py",
}


def _start(folder: Path, ca: Path, upstream_port: int, name: str, script: Path | None) -> Mitmdump:
    extra: list[str] = []
    if script is not None:
        extra = ["-s", str(script)]
        if script.name != "judge_only.py":  # the guard's own options exist only where it is loaded
            extra += ["--set", f"guard_log={folder / f'{name}.jsonl'}"]
    return start_mitmdump(folder, ca, upstream_port, guard=False, name=name, extra=extra)


def run(rounds: int = 8, per_round: int = 100) -> dict[str, Side]:
    """{variant: its measurements} after `rounds` rotated rounds of `per_round` POX POSTs each."""
    with pox_upstream() as (folder, ca, upstream):
        proxies: dict[str, Mitmdump] = {}
        try:
            sessions = {}
            for number, (variant, script) in enumerate(VARIANTS.items()):
                proxies[variant] = _start(folder, ca, upstream.port, f"v{number}", script)
                sessions[variant] = _session(proxies[variant], folder / f"conf-v{number}")
                _round(proxies[variant], sessions[variant], "post", POX_URL, 30, Side())  # warm-up
            sides = {variant: Side() for variant in proxies}
            names = list(proxies)
            for number in range(rounds):  # rotate the order so drift in machine load hits all alike
                shift = number % len(names)
                for variant in names[shift:] + names[:shift]:
                    _round(proxies[variant], sessions[variant], "post", POX_URL, per_round, sides[variant])
            return sides
        finally:
            for proxy in proxies.values():
                proxy.stop()


def main() -> None:
    os.sched_setaffinity(0, {0})
    sides = run()
    bare = sides["bare"]
    print("| mitmdump | CPU ms/req | ratio to bare | extra ms/req |\n|---|---:|---:|---:|")
    for variant, side in sides.items():
        ratio = statistics.median(v / b for v, b in zip(side.rounds, bare.rounds, strict=True))
        extra = side.cpu_ms_per_request() - bare.cpu_ms_per_request()
        print(f"| {variant} | {side.cpu_ms_per_request():.2f} | {ratio:.3f} | {extra:+.2f} |")


if __name__ == "__main__":
    main()
