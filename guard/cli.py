"""`autodiscover-guard`: a thin shell over the same core the proxy uses.

Exit codes (a contract): 0 every input allowed, 1 any violation (malformed counts), 2 usage,
I/O or policy errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from guard.corpus import judge_folder
from guard.engine import judge
from guard.errors import PolicyError
from guard.formats import by_name, formats
from guard.model import Decision
from guard.names import InvalidHost, User
from guard.policy import Policy, default_policy_path, load_policy

EXIT_ALLOW, EXIT_VIOLATION, EXIT_ERROR = 0, 1, 2


class CommandError(Exception):
    """A usage or I/O problem: printed as one line on stderr, exit code 2."""


def _policy(path: str | None) -> Policy:
    return load_policy(path or default_policy_path())


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise CommandError(f"{name}: {exc.strerror or exc}") from None


def _decision_json(name: str, decision: Decision) -> dict[str, object]:
    return {
        "file": name,
        "format": decision.format,
        "verdict": decision.verdict,
        "action": decision.action.value,
        "findings": [f.as_dict() for f in decision.findings],
    }


def _print_human(name: str, decision: Decision, out: TextIO) -> None:
    out.write(f"{name}: {decision.verdict} ({decision.format}) → {decision.action.value}\n")
    for f in decision.findings:
        out.write(f"  {f.rule:<21} {f.host or '-':<32} {f.field}\n      {f.message}\n")
    for note in decision.notes:
        out.write(f"  note: {note}\n")


def cmd_check(args: argparse.Namespace) -> int:
    """Judge answer files for one user."""
    policy = _policy(args.policy)
    try:
        user = User.from_address(args.email)
    except InvalidHost as exc:
        raise CommandError(f"--email: {exc}") from None
    fmt = None
    if args.format:
        try:
            fmt = by_name(args.format)
        except KeyError as exc:
            raise CommandError(str(exc.args[0])) from None
    worst = EXIT_ALLOW
    for name in args.files:
        decision = judge(_read_input(name), user, policy, fmt=fmt, url=args.url or "")
        if args.json:
            print(json.dumps(_decision_json(name, decision), ensure_ascii=False))
        else:
            _print_human(name, decision, sys.stdout)
        if decision.verdict == "violation":
            worst = EXIT_VIOLATION
    return worst


def cmd_policy_validate(args: argparse.Namespace) -> int:
    """Load each policy and report it valid or the first error with file:line:column."""
    failed = False
    for path in args.files:
        try:
            policy = load_policy(path)
        except PolicyError as exc:
            print(f"invalid: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"valid: {path} (revision {policy.revision}, mode {policy.mode.value}, "
              f"{len(policy.trust.entries)} trust entries)")
    return EXIT_ERROR if failed else EXIT_ALLOW


def cmd_policy_test(args: argparse.Namespace) -> int:
    """Run YAML test cases against a policy, like `opa test`."""
    from guard.policytest import run_cases

    policy = load_policy(args.policy)
    results = run_cases(Path(args.cases), policy)
    passed = sum(1 for r in results if r.ok)
    for r in results:
        mark = "PASS" if r.ok else "FAIL"
        print(f"{mark} {r.name}" + ("" if r.ok else f": {r.reason}"))
    print(f"{passed} passed, {len(results) - passed} failed")
    if not results:
        raise CommandError(f"{args.cases}: no test cases found")
    return EXIT_ALLOW if passed == len(results) else EXIT_VIOLATION


def cmd_corpus(args: argparse.Namespace) -> int:
    """Judge an ISPDB-style folder and report flagged (provider, domain, host) triples."""
    policy = _policy(args.policy)
    folder = Path(args.dir)
    if not folder.is_dir():
        raise CommandError(f"{folder}: not a directory")
    total = len(list(folder.glob("*.xml")))
    summary = None
    for done, (name, running, new) in enumerate(judge_folder(folder, policy), start=1):
        summary = running
        for flagged in new:
            if args.json:
                print(json.dumps({"provider": flagged.provider, "domain": flagged.domain,
                                  "host": flagged.host, "rules": list(flagged.rules)}))
            else:
                print(f"{flagged.provider}: {flagged.domain} → {flagged.host} [{', '.join(flagged.rules)}]")
        if sys.stderr.isatty() and not args.json:
            print(f"\r[{done}/{total}] {name:<40}", end="", file=sys.stderr)
    if summary is None:
        raise CommandError(f"{folder}: no *.xml files")
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        s = summary.as_dict()
        print(f"{s['providers']} providers, {s['domains']} domains, {s['pairs']} (domain, host) pairs; "
              f"flagged {s['flagged_pairs']} pairs ({summary.flagged_rate:.2%}) "
              f"in {s['flagged_providers']} providers")
        for name in summary.unreadable:
            print(f"skipped (no clientConfig domain list): {name}")
    return EXIT_VIOLATION if summary.flagged else EXIT_ALLOW


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; sub-commands register themselves here."""
    parser = argparse.ArgumentParser(
        prog="autodiscover-guard",
        description="Judge autodiscover/autoconfig answers against a policy, or run the guarding proxy.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="judge answer files for one user")
    check.add_argument("--email", required=True, help="the user the answers are for")
    check.add_argument("--policy", help="policy file (default: the shipped default policy)")
    check.add_argument("--url", help="the URL the answer came from (helps format detection)")
    check.add_argument("--format", choices=sorted(formats()), help="skip detection")
    check.add_argument("--json", action="store_true", help="one JSON object per input")
    check.add_argument("files", nargs="+", metavar="FILE", help="answer files; - for standard input")
    check.set_defaults(func=cmd_check)

    policy = sub.add_parser("policy", help="validate or test policies")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    validate = policy_sub.add_parser("validate", help="check policy files")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.set_defaults(func=cmd_policy_validate)
    ptest = policy_sub.add_parser("test", help="run YAML test cases against a policy")
    ptest.add_argument("policy", metavar="POLICY")
    ptest.add_argument("cases", metavar="CASES_DIR")
    ptest.set_defaults(func=cmd_policy_test)

    corpus = sub.add_parser("corpus", help="judge a folder of clientConfig files (ISPDB layout)")
    corpus.add_argument("--policy", help="policy file (default: the shipped default policy)")
    corpus.add_argument("--json", action="store_true", help="JSON lines: flagged triples, then a summary")
    corpus.add_argument("dir", metavar="DIR")
    corpus.set_defaults(func=cmd_corpus)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


def _proxy_commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    from guard import launch, watchcmds

    return [launch.register, watchcmds.register]


# Proxy-side commands (run, pac, ca, replay) register themselves through this hook.
_EXTRA_COMMANDS = _proxy_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except PolicyError as exc:
        print(f"policy error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
