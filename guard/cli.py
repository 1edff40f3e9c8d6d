"""`autodiscover-guard`: a thin shell over the same core the proxy uses.

Exit codes (a contract, `guard.exits.Exit`): 0 every input allowed, 1 any violation or finding
(malformed counts), 2 usage, I/O or policy errors and inputs that are not discovery answers.
Every command reports errors the same way: it raises `CommandError` (or `PolicyError`), and
`main` prints `error: …` on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TextIO

import shtab
from rich.console import Console

from guard import launch, report, watchcmds
from guard.cli_help import HelpFormatter, option, polish_help
from guard.corpus import judge_folder
from guard.engine import judge
from guard.errors import PolicyError
from guard.exits import CommandError, Exit
from guard.formats import by_name, formats, sniff_body
from guard.model import Decision
from guard.names import InvalidHost, User
from guard.policy import Policy, default_policy_path, load_policy
from guard.terminal import progress, wants_progress

_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})")
FOLLOW_POLL_SECONDS = 0.5
_HEAD_BYTES = 1024
_HTML = re.compile(rb"(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE | re.DOTALL)


def _policy(path: str | None) -> Policy:
    return load_policy(path or default_policy_path())


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise CommandError(f"{name}: {exc.strerror or exc}") from None


def _error(message: str) -> None:
    """The one place errors are printed."""
    print(f"error: {message}", file=sys.stderr)


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


def not_an_answer(body: bytes) -> str | None:
    """Why a body cannot be a discovery answer at all (empty, an HTML page, plain text), or None.

    Anything else that no format claims (XML or JSON of an unknown shape, another encoding) is a
    document the proxy would block as `malformed`, and `check` judges it the same way.
    """
    head = body[:_HEAD_BYTES].lstrip()
    if not head:
        return "an empty body"
    if _HTML.match(head):
        return "an HTML page (an error page from a server or proxy?)"
    try:
        first = head.decode("utf-8")[:1]
    except UnicodeDecodeError:  # possibly cut mid-character, or not UTF-8: judge it
        return None
    return None if first in "<{[" else "plain text"


def _answer_format(name: str, body: bytes, forced: str | None) -> None:
    """Refuse (exit 2) what is not a discovery answer, or is one of another format than `--format` says."""
    claimed = sniff_body(body)
    why = None if claimed else not_an_answer(body)
    if why is not None:
        raise CommandError(f"{name}: not a discovery answer ({why})")
    if forced is not None and claimed in formats() and claimed != forced:
        raise CommandError(f"{name}: --format {forced}, but the document is a {claimed} answer "
                           f"(drop --format to detect it, or pass --format {claimed})")


def cmd_check(args: argparse.Namespace) -> int:
    """Judge answer files for one user."""
    policy = _policy(args.policy)
    try:
        user = User.from_address(args.email)
    except InvalidHost as exc:
        raise CommandError(f"--email: {exc}") from None
    fmt = by_name(args.format) if args.format else None
    worst = Exit.OK
    for name in args.files:
        body = _read_input(name)
        try:
            _answer_format(name, body, args.format)
        except CommandError as exc:  # judge the other inputs, then exit 2
            _error(str(exc))
            worst = Exit.ERROR
            continue
        decision = judge(body, user, policy, fmt=fmt, url=args.url or "")
        if args.json:
            print(json.dumps(_decision_json(name, decision), ensure_ascii=False))
        else:
            _print_human(name, decision, sys.stdout)
        if decision.verdict == "violation":
            worst = max(worst, Exit.FINDING)
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
    return Exit.ERROR if failed else Exit.OK


def cmd_policy_test(args: argparse.Namespace) -> int:
    """Run YAML test cases against a policy, like `opa test`."""
    from guard.policytest import run_cases

    policy = load_policy(args.policy)
    results = run_cases(Path(args.cases), policy)
    if not results:
        raise CommandError(f"{args.cases}: no test cases found (*.yaml files with email, document, expect)")
    passed = sum(1 for r in results if r.ok)
    for r in results:
        mark = "PASS" if r.ok else "FAIL"
        print(f"{mark} {r.name}" + ("" if r.ok else f": {r.reason}"))
    print(f"{passed} passed, {len(results) - passed} failed")
    return Exit.OK if passed == len(results) else Exit.FINDING


def cmd_corpus(args: argparse.Namespace) -> int:
    """Judge an ISPDB-style folder and report flagged (provider, domain, host) triples."""
    policy = _policy(args.policy)
    folder = Path(args.dir)
    if not folder.is_dir():
        raise CommandError(f"{folder}: not a directory")
    total = len(list(folder.glob("*.xml")))
    summary = None
    with progress(total, enabled=wants_progress(args.json)) as advance:
        for name, running, new in judge_folder(folder, policy):
            summary = running
            advance(name)
            for flagged in new:
                if args.json:
                    print(json.dumps({"provider": flagged.provider, "domain": flagged.domain,
                                      "host": flagged.host, "rules": list(flagged.rules)}))
                else:
                    print(f"{flagged.provider}: {flagged.domain} → {flagged.host} [{', '.join(flagged.rules)}]")
    if summary is None:
        raise CommandError(f"{folder}: no *.xml files (expected one clientConfig file per provider, ISPDB layout)")
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        s = summary.as_dict()
        print(f"{s['providers']} providers, {s['domains']} domains, {s['pairs']} (domain, host) pairs; "
              f"flagged {s['flagged_pairs']} pairs ({summary.flagged_rate:.2%}) "
              f"in {s['flagged_providers']} providers")
        for name in summary.unreadable:
            print(f"skipped (no clientConfig domain list): {name}")
    return Exit.FINDING if summary.flagged else Exit.OK


def cmd_report(args: argparse.Namespace) -> int:
    """Summarise decision logs; with --follow, then print each new block or rewrite as it is logged."""
    paths = [Path(p) for p in args.logs]
    since = report.parse_since(args.since, datetime.datetime.now(datetime.UTC)) if args.since else None
    summary = report.build(report.read_logs(paths), since=since, recent=args.recent)
    console = Console(highlight=False, soft_wrap=False)
    if args.json:
        print(json.dumps(summary.as_dict(args.top)), flush=True)
    else:
        report.render(summary, console, args.top)
    if not args.follow:
        return Exit.OK
    plain = [p for p in paths if not p.name.endswith(".gz")]
    if not plain:
        raise CommandError("--follow needs a plain log file (the live one, not a rotated .gz)")
    try:
        for record, entry in report.follow(plain, summary, FOLLOW_POLL_SECONDS):
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                console.print(report.entry_line(entry))
                console.file.flush()
    except KeyboardInterrupt:  # Ctrl-C is how a live view ends
        pass
    return Exit.OK


def _ca(args: argparse.Namespace) -> int:
    """`ca --path` names a certificate only once it exists (a script would install a missing file)."""
    if args.path:
        confdir = Path(args.confdir) if args.confdir else launch.default_confdir()
        cert = confdir / "mitmproxy-ca-cert.pem"
        if not cert.is_file():
            raise CommandError(f"{cert} does not exist yet: create it with "
                               f"`autodiscover-guard ca{' --confdir ' + str(confdir) if args.confdir else ''}` "
                               "(`autodiscover-guard run` also creates it at start), then ask again")
    return launch.cmd_ca(args)


def host_port(text: str) -> str:
    """argparse type for HOST:PORT (IPv6 in brackets), port 1-65535."""
    match = _HOST_PORT.fullmatch(text)
    if match is None or not 0 < int(match[1]) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8080 or [::1]:8080, got {text!r}")
    return text


def cmd_completion(args: argparse.Namespace) -> int:
    """Print the shell completion script (shtab) for bash, zsh or tcsh."""
    print(shtab.complete(build_parser(), shell=args.shell))
    return Exit.OK


# --- the parser ----------------------------------------------------------------------------------


def _polish(parser: argparse.ArgumentParser) -> None:
    """One help style for every command, and the checks of options other modules register."""
    commands = polish_help(parser)
    option(commands["pac"], "--proxy").type = host_port
    commands["ca"].set_defaults(func=_ca)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; sub-commands register themselves here."""
    parser = argparse.ArgumentParser(
        prog="autodiscover-guard", formatter_class=HelpFormatter,
        description="Judge autodiscover/autoconfig answers against a policy, or run the guarding proxy.",
        epilog="exit codes: 0 allowed / nothing found, 1 violation or finding, 2 usage, I/O or policy error\n"
               "docs: README.md and docs/ (docs/install.md to install, docs/workstation.md to start)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="judge answer files for one user")
    check.add_argument("--email", required=True, help="the address the answers are for (required)")
    check.add_argument("--policy", help="policy file (default: the shipped default policy)")
    check.add_argument("--url", help="the URL the answer came from, to tell its format (default: none)")
    check.add_argument("--format", choices=sorted(formats()),
                       help="the answer's format; an input of another format is an error (default: detected)")
    check.add_argument("--json", action="store_true", help="one JSON object per input instead of text")
    check.add_argument("files", nargs="+", metavar="FILE", help="answer files; - for standard input")
    check.set_defaults(func=cmd_check)

    policy = sub.add_parser("policy", help="validate or test policies")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    validate = policy_sub.add_parser("validate", help="check policy files")
    validate.add_argument("files", nargs="+", metavar="FILE", help="policy files")
    validate.set_defaults(func=cmd_policy_validate)
    ptest = policy_sub.add_parser("test", help="run YAML test cases against a policy")
    ptest.add_argument("policy", metavar="POLICY", help="policy file")
    ptest.add_argument("cases", metavar="CASES_DIR", help="folder of *.yaml cases (docs/policy.md)")
    ptest.set_defaults(func=cmd_policy_test)

    corpus = sub.add_parser("corpus", help="judge a folder of clientConfig files (ISPDB layout)")
    corpus.add_argument("--policy", help="policy file (default: the shipped default policy)")
    corpus.add_argument("--json", action="store_true", help="JSON lines: flagged triples, then a summary")
    corpus.add_argument("dir", metavar="DIR", help="folder of <provider>.xml clientConfig files")
    corpus.set_defaults(func=cmd_corpus)

    rep = sub.add_parser("report", help="what the guard blocked and rewrote, from its decision logs")
    rep.add_argument("--since", metavar="WHEN",
                     help="only records at or after WHEN: 30m, 2h, 1d, 1w or an ISO time (default: all)")
    rep.add_argument("--json", action="store_true", help="one JSON object (with --follow: then one record per line)")
    rep.add_argument("--follow", "-f", action="store_true",
                     help="then print each new block or rewrite as it is logged; survives log rotation")
    rep.add_argument("--top", type=int, default=10, metavar="N", help="entries in each top list")
    rep.add_argument("--recent", type=int, default=20, metavar="N", help="recent blocks and rewrites listed")
    rep.add_argument("logs", nargs="+", metavar="LOG",
                     help="decision log files: plain, rotated (.1) or gzipped (.gz)").complete = shtab.FILE  # type: ignore[attr-defined]
    rep.set_defaults(func=cmd_report)

    launch.register(sub)
    watchcmds.register(sub)

    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell")
    completion.set_defaults(func=cmd_completion)
    _polish(parser)
    return parser


def _version() -> str:
    try:
        return version("autodiscover-guard")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return int(func(args))
    except (PolicyError, CommandError, report.ReportError) as exc:
        _error(str(exc))
        return Exit.ERROR
    except BrokenPipeError:
        return Exit.ERROR


if __name__ == "__main__":
    sys.exit(main())
