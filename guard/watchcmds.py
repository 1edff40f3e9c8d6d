"""`pins` and `canary`: the commands that watch discovery over time, thin over guard.pins and guard.canary.

Exit codes as the rest of the CLI (`guard.exits.Exit`): 0 nothing to report, 1 a finding (a canary
service suggested a server; `pins show/forget` found no pin), 2 usage, I/O or policy errors, raised
as `CommandError` and printed by `guard.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys

from guard import canary
from guard.errors import PolicyError
from guard.exits import CommandError, Exit
from guard.log import DecisionLog, scrub_url
from guard.names import InvalidHost, normalise_host
from guard.pins import PinStore, PinStoreError, Record
from guard.policy import Policy, default_policy_path, load_policy
from guard.terminal import progress, wants_progress


def _policy(path: str | None) -> Policy:
    return load_policy(path or default_policy_path())


# --- pins ----------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> PinStore:
    """`--store`, else the store named by the policy's `pinning.store` (default policy: the default path)."""
    path = args.store or _policy(args.policy).pinning.store
    return PinStore(path, create=False)


def _print_record(record: Record) -> None:
    print(f"{record.domain} {record.format} (first seen {record.first_seen}, updated {record.updated}, "
          f"{record.changes} change(s))")
    for entry in sorted(record.pins, key=str):
        print(f"  {entry}")


def cmd_pins(args: argparse.Namespace) -> int:
    """list | show DOMAIN | forget DOMAIN | export."""
    try:
        domain = normalise_host(args.domain) if getattr(args, "domain", None) else None
    except InvalidHost as exc:
        raise CommandError(f"DOMAIN: {exc}") from None
    store = _store(args)
    try:
        if args.pins_command == "list":
            records = store.records()
            for record in records:
                print(f"{record.domain:<40} {record.format:<12} {len(record.pins):>3} entries  updated "
                      f"{record.updated}  changes {record.changes}")
            print(f"{len(records)} pin(s) in {store.path}", file=sys.stderr)
            return Exit.OK
        if args.pins_command == "export":
            records = store.records()
            print(json.dumps({"store": str(store.path), "pins": [r.as_dict() for r in records]}, indent=2))
            return Exit.OK
        assert domain is not None
        if args.pins_command == "show":
            records = store.records(domain)
            for record in records:
                _print_record(record)
            if not records:
                print(f"no pins for {domain}", file=sys.stderr)
            return Exit.OK if records else Exit.FINDING
        deleted = store.forget(domain)
        print(f"forgot {deleted} pin(s) for {domain}" if deleted else f"no pins for {domain}", file=sys.stderr)
        return Exit.OK if deleted else Exit.FINDING
    except PinStoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()


# --- canary --------------------------------------------------------------------------------------


def cmd_canary(args: argparse.Namespace) -> int:
    """Ask every service about every canary address; exit 1 when any suggested a server."""
    policy = _policy(args.policy)
    try:
        services = canary.load_services(args.services)
    except PolicyError as exc:
        raise CommandError(f"services file: {exc}") from None
    if args.timeout <= 0:
        raise CommandError("--timeout must be positive")
    try:
        fetch = canary.fetcher(policy, timeout=args.timeout, ca_bundle=args.ca_bundle)
    except OSError as exc:
        raise CommandError(f"--ca-bundle: {exc}") from None
    log = DecisionLog(args.log) if args.log else None
    total = len(services.services) * len(services.addresses)
    probes: list[canary.Probe] = []
    with progress(total, enabled=wants_progress(args.json)) as advance:
        for probe in canary.run(services, policy, fetch):
            probes.append(probe)
            advance(f"{probe.service.name} {probe.address}")
            if log is not None:
                log.write("canary", _log_fields(probe, policy))
    if log is not None:
        log.close()
    findings = [p for p in probes if p.is_finding]
    errors = [p for p in probes if p.outcome == canary.ERROR]
    if args.json:
        print(json.dumps({"policy_revision": policy.revision, "services": len(services.services),
                          "probes": len(probes), "findings": len(findings), "errors": len(errors),
                          "results": [p.as_dict() for p in probes]}, indent=2))
    else:
        for p in findings:
            print(f"FINDING {p.service.name} ({p.service.kind}) answered for {p.address}: {', '.join(p.hosts)}")
        for p in errors:
            print(f"ERROR {p.service.name} ({p.service.kind}) for {p.address}: {p.detail}")
        print(f"{len(probes)} probes of {len(services.services)} services: {len(findings)} finding(s), "
              f"{len(errors)} error(s)")
    if findings:
        return Exit.FINDING
    return Exit.ERROR if errors else Exit.OK


def _log_fields(probe: canary.Probe, policy: Policy) -> dict[str, object]:
    """A canary line for the decision log: the same field names as decisions where they mean the same."""
    domain = probe.address.rpartition("@")[2].lower()
    return {"service": probe.service.name, "kind": probe.service.kind, "url": scrub_url(probe.url),
            "status": probe.status, "user_domain": domain, "outcome": probe.outcome, "finding": probe.is_finding,
            "hosts": list(probe.hosts), "rules": list(probe.rules), "detail": probe.detail,
            "policy_revision": policy.revision, "latency_us": probe.latency_ms * 1000}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `pins` and `canary` to the CLI."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", help="pin store file (default: the policy's pinning.store)")
    store.add_argument("--policy", help="policy whose pinning.store is used (default: the shipped default policy)")
    pins = sub.add_parser("pins", help="list, show, forget or export configuration pins")
    pins_sub = pins.add_subparsers(dest="pins_command", required=True, metavar="ACTION")
    pins_sub.add_parser("list", parents=[store], help="one line per pinned (domain, format)")
    pins_sub.add_parser("show", parents=[store], help="the pinned entries of one domain").add_argument(
        "domain", help="the mail domain")
    pins_sub.add_parser("forget", parents=[store], help="drop a domain's pins (next answer is trusted again)"
                        ).add_argument("domain", help="the mail domain")
    pins_sub.add_parser("export", parents=[store], help="every pin as JSON")
    pins.set_defaults(func=cmd_pins)

    probe = sub.add_parser("canary", help="ask discovery services about reserved-domain addresses")
    probe.add_argument("--policy", help="policy file: body caps and rules (default: the shipped default policy)")
    probe.add_argument("--services", required=True, metavar="FILE", help="services file (YAML, see docs/canary.md)")
    probe.add_argument("--ca-bundle", help="PEM file of CAs to trust (default: the system store)")
    probe.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    probe.add_argument("--log", help="also append one JSON line per probe to this decision log file (default: none)")
    probe.add_argument("--json", action="store_true", help="print the report as JSON")
    probe.set_defaults(func=cmd_canary)
