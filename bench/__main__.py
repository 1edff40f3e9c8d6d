"""`python -m bench` / `make bench`: judgement, growth and proxy-overhead benchmarks, then a report."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
from pathlib import Path

from bench import growth, judgement, proxy
from guard.policy import default_policy_path, load_policy

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--skip-proxy", action="store_true", help="only the in-process benchmarks")
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {0})  # one core, as the targets are stated
    from mitmproxy.version import VERSION

    print(f"# autodiscover-guard benchmark — Python {platform.python_version()}, mitmproxy {VERSION}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}\n")
    policy = load_policy(default_policy_path())

    print("## Judgement (parse + normalise + rules), one core\n")
    print("| answer | bytes | median µs | p99 µs | judgements/s |\n|---|---:|---:|---:|---:|")
    for label, size, median, p99, rate in judgement.run(policy):
        print(f"| {label} | {size} | {median:.0f} | {p99:.0f} | {rate:,.0f} |")

    print("\n## Growth\n")
    print("| answer bytes | median µs | µs per KB |\n|---:|---:|---:|")
    for size, median in growth.by_size(default_policy_path()):
        print(f"| {size} | {median:.0f} | {median / (size / 1024):.1f} |")
    with tempfile.TemporaryDirectory() as tmp:
        body = (FIXTURES / "pox__redirect_addr_foreign.xml").read_bytes()
        print("\n| provider-map entries | allowlist entries | median µs (foreign-host answer) |\n|---:|---:|---:|")
        for providers, allow, median in growth.by_trust_size(Path(tmp), body):
            print(f"| {providers} | {allow} | {median:.0f} |")
    print("\n| suggestions per answer | median µs per suggestion |\n|---:|---:|")
    for count, per in growth.by_suggestions(default_policy_path()):
        print(f"| {count} | {per:.1f} |")

    if args.skip_proxy:
        return
    rounds, per_round = (3, 60) if args.quick else (8, 150)
    print(f"\n## Proxy overhead ({rounds} interleaved rounds × {per_round} requests, keep-alive HTTPS)\n")
    print("| workload | bare CPU ms/req | guard CPU ms/req | guard/bare CPU | bare p50/p99 ms | guard p50/p99 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for workload, (bare, guarded) in proxy.run(rounds, per_round).items():
        print(f"| {workload} | {bare.cpu_ms_per_request():.2f} | {guarded.cpu_ms_per_request():.2f} | "
              f"{proxy.median_ratio(guarded, bare):.3f} | {bare.percentile(0.5):.2f}/{bare.percentile(0.99):.2f} | "
              f"{guarded.percentile(0.5):.2f}/{guarded.percentile(0.99):.2f} |")
    flows = 2000 if args.quick else 10_000
    before, after = proxy.rss_growth(flows)
    print(f"\n## Memory\n\nRSS after warm-up {before / 1024:.1f} MiB, after {flows:,} more judged flows "
          f"{after / 1024:.1f} MiB: growth {(after - before) / 1024:.2f} MiB")


if __name__ == "__main__":
    main()
