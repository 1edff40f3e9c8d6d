"""Help text for every `autodiscover-guard` command: examples, exit codes, docs page, option defaults.

Kept apart from guard/cli.py (which only parses and dispatches) because it is a table, not logic; the
commands other modules register (`run`, `replay`, `canary`, `pins`) get the same style through it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs keep their layout; an option's default is shown unless its help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (not action.option_strings or action.required or "default" in text
                or action.default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


EXIT_CODES = {
    "check": "0 every answer allowed, 1 a violation (malformed counts), 2 usage/I/O/policy error, an input "
             "that is not a discovery answer (empty, an HTML page, plain text) or one of another format than --format",
    "policy": "0 valid / every case passed, 1 a case failed, 2 an invalid policy",
    "policy validate": "0 every policy valid, 2 an invalid policy (file:line:column on stderr)",
    "policy test": "0 every case passed, 1 a case failed, 2 policy error or no cases",
    "corpus": "0 nothing flagged, 1 a flagged (domain, host) pair, 2 usage/I/O/policy error",
    "report": "0 report printed (Ctrl-C ends --follow), 2 unreadable log or bad --since",
    "run": "does not return while the proxy runs; 2 for a bad policy or option before it starts",
    "pac": "0 written, 2 usage or policy error",
    "ca": "0 created or present, and printed; 2 --path with no CA yet",
    "replay": "0 every flow allowed, 1 a flow would be rewritten or blocked, 2 unreadable flows or policy error",
    "pins": "0 done, 1 no pin for that domain, 2 unreadable store",
    "canary": "0 no finding, 1 a service suggested a server for a reserved domain, 2 errors only or bad input",
    "completion": "0 script printed",
}
EXAMPLES = {
    "check": ["autodiscover-guard check --email email@example.com answer.json",
              "curl -s URL | autodiscover-guard check --email you@yourdomain.example --json -"],
    "policy": ["autodiscover-guard policy validate my-policy.yaml",
               "autodiscover-guard policy test my-policy.yaml cases/"],
    "policy test": ["autodiscover-guard policy test my-policy.yaml cases/"],
    "corpus": ["autodiscover-guard corpus --json path/to/ispdb > flagged.jsonl"],
    "report": ["autodiscover-guard report ~/.autodiscover-guard/decisions.jsonl",
               "autodiscover-guard report --since 2h --json /var/log/autodiscover-guard/decisions.jsonl*",
               "autodiscover-guard report --follow /var/log/autodiscover-guard/decisions.jsonl"],
    "run": ["autodiscover-guard run", "autodiscover-guard run --mode audit --listen 127.0.0.1:8081",
            "autodiscover-guard run --web", "autodiscover-guard run --save capture.flows --metrics 127.0.0.1:9464",
            "autodiscover-guard run --mode gateway --policy /etc/autodiscover-guard/policy.yaml"],
    "pac": ["autodiscover-guard pac --proxy 127.0.0.1:8080 -o guard.pac"],
    "ca": ["autodiscover-guard ca --name mail-gw", "autodiscover-guard ca --path"],
    "replay": ["autodiscover-guard replay capture.flows", "autodiscover-guard replay --json capture.flows"],
    "pins": ["autodiscover-guard pins list", "autodiscover-guard pins forget contoso.com"],
    "canary": ["autodiscover-guard canary --services services.yaml --json"],
    "completion": ["autodiscover-guard completion bash > ~/.local/share/bash-completion/completions/"
                   "autodiscover-guard", "autodiscover-guard completion zsh > ~/.zfunc/_autodiscover-guard"],
}
DOC_PAGES = {
    "check": "docs/rules.md", "policy": "docs/policy.md", "corpus": "docs/rules.md", "report": "docs/report.md",
    "run": "docs/workstation.md", "pac": "docs/workstation.md", "ca": "docs/install.md",
    "replay": "docs/replay.md", "pins": "docs/pinning.md", "canary": "docs/canary.md", "completion": "docs/install.md",
}
# Options registered by guard.launch whose help did not say their default or their choices.
OPTION_HELP = {
    ("run", "--mode"): "workstation: 127.0.0.1:8080, console lines, log in the confdir; gateway: 0.0.0.0:8080, "
                       "log to stderr; audit: like workstation but never changes an answer "
                       "(default: workstation)",
    ("run", "--listen"): "HOST:PORT to listen on (default: 127.0.0.1:8080; gateway mode: 0.0.0.0:8080)",
    ("run", "--log"): "decision log file, JSON lines (default: CONFDIR/decisions.jsonl; gateway mode: stderr)",
    ("run", "mitmdump_args"): "after --, arguments passed to mitmdump unchanged, e.g. -- --set termlog_verbosity=warn",
    ("pac", "--policy"): "policy whose discovery_hosts are added (default: the shipped default policy)",
    ("pac", "-o"): "file to write (default: standard output)",
    ("replay", "flows"): "a flow file saved by run --save, mitmdump -w or mitmweb",
    ("replay", "--json"): "one JSON object per flow (url, format, would_action, rules, basis) instead of a table",
}


def _epilog(name: str) -> str:
    top = name.split(maxsplit=1)[0]  # `policy validate` falls back to `policy`'s entries
    examples = EXAMPLES.get(name) or EXAMPLES.get(top, [])
    codes = EXIT_CODES.get(name) or EXIT_CODES.get(top, "")
    lines = ["examples:", *(f"  {e}" for e in examples), "", f"exit codes: {codes}",
             f"docs: {DOC_PAGES.get(top, 'README.md')}"]
    return "\n".join(lines)


def subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every sub-command parser, with its name path (`policy validate`)."""
    for action in parser._actions:  # argparse has no public walk of sub-commands
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                path = f"{prefix}{name}"
                yield path, child
                yield from subparsers(child, path + " ")


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    """The action of `--flag`, or of the positional argument whose dest is `flag`."""
    if flag in parser._option_string_actions:
        return parser._option_string_actions[flag]
    return next(a for a in parser._actions if a.dest == flag and not a.option_strings)


def polish_help(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """One help style for every command, including those other modules register; the commands by name."""
    commands = dict(subparsers(parser))
    for name, child in commands.items():
        child.formatter_class = HelpFormatter
        child.epilog = _epilog(name)
    for (command, flag), text in OPTION_HELP.items():
        option(commands[command], flag).help = text
    return commands
