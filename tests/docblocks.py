"""Shell blocks of README.md and docs/*.md, and a sandbox that runs them as a reader would.

A block (```sh, ```bash or ```console) either runs or is marked, on the last non-blank line
above its fence, `<!-- example: why it is not run -->`: the reader's own values, root or system
changes, a live view. A marked block is still checked: `bash -n` and `--help` of every
`autodiscover-guard` command in it. A page's runnable blocks run in order in one sandbox: a
fresh clone-like folder (the repository's files linked in), a fresh HOME with a decision log of
the seed incident, the project's `.venv/bin` first on PATH. A block that starts the proxy
(`autodiscover-guard run`, `mitmdump`) runs in the background, on a free port in place of 8080,
until the next such block or the page's end. A block that would change the system (`SYSTEM`:
root, services, packages, files outside the sandbox, `make` targets that run for minutes) is never
run: it must be marked. sh blocks run under `set -euo pipefail`; console
blocks are transcripts, so only their `$ ` lines run and only "not found" (126, 127) or an
argparse usage error fails them (their exit codes are part of what they show).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE = re.compile(r"^<!-- example: .+ -->$")
_FENCE = re.compile(r"^```(sh|bash|console)\s*$")
_PROXY = re.compile(r"(?:^|\s)(?:\S*/)?(?:autodiscover-guard run|mitmdump|mitmweb)(?:\s|$)")
# `autodiscover-guard SUB [SUB]` where a command starts (not as an argument or a path part)
_GUARD_COMMAND = re.compile(r"(?:^|[;&|]|\$\()\s*(?:[^\s/]*/)*autodiscover-guard((?:[ \t]+[a-z][a-z-]*){1,2})",
                            re.MULTILINE)
# Commands and paths that change the machine, not the sandbox: such a block must be marked, never run.
SYSTEM = re.compile(
    r"(?:^|[\s;&|(])(?:sudo|su|systemctl|useradd|usermod|userdel|groupadd|update-ca-certificates|update-ca-trust"
    r"|security|certutil|keytool|nft|sysctl|resolvectl|pipx|git|make|pip|apt-get|apt|logrotate|haproxy|install)(?=\s|$)"
    r"|(?:^|[\s>=])/(?:etc|opt|usr|var|lib|srv|root|home)/|\brm\s+-\w*r", re.MULTILINE)
PORT = "8080"
BLOCK_SECONDS = 120
_LINKED = ("policies", "tests", "deploy", "addons", "docs", "guard", "bench", "Makefile", "pyproject.toml", ".venv")


@dataclass(frozen=True)
class Block:
    """One shell block of a page."""

    page: Path
    line: int  # of the opening fence
    kind: str  # sh, bash or console
    text: str
    example: bool

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def script(self) -> str:
        """What a reader pastes: a console block's `$ ` lines, or the whole block."""
        if self.kind != "console":
            return self.text
        return "\n".join(line[2:] for line in self.text.splitlines() if line.startswith("$ "))

    @property
    def changes_system(self) -> bool:
        return bool(SYSTEM.search(_code(self.script)))

    @property
    def starts_proxy(self) -> bool:
        return any(_PROXY.search(line) for line in self.script.splitlines() if not line.lstrip().startswith("#"))


def _code(script: str) -> str:
    """The script without comment lines and trailing comments (what a shell would run)."""
    return "\n".join(re.sub(r"(?:^|\s)#.*$", "", line) for line in script.splitlines())


def blocks(page: Path) -> Iterator[Block]:
    """The page's shell blocks, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match:
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            above = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            yield Block(page, index + 1, match[1], "\n".join(lines[index + 1:end]), bool(EXAMPLE.match(above)))
            index = end
        index += 1


def guard_commands(script: str) -> set[tuple[str, ...]]:
    """The `autodiscover-guard` sub-commands a script calls (`policy validate`, `run`, ...)."""
    found = set()
    for match in _GUARD_COMMAND.finditer(script):
        words = match[1].split()
        found.add(tuple(words[:2]) if words[0] in ("policy", "pins") and len(words) > 1 else (words[0],))
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Sandbox:
    """A reader's machine for one page: a clone-like folder, a HOME, at most one proxy running."""

    root: Path
    port: str = field(default_factory=lambda: str(free_port()))
    proxy: subprocess.Popen[str] | None = None

    def __post_init__(self) -> None:
        self.clone, self.home = self.root / "clone", self.root / "home"
        self.clone.mkdir(parents=True)
        self.home.mkdir()
        for name in _LINKED:
            (self.clone / name).symlink_to(ROOT / name)

    @property
    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TERM", "CI", "TMPDIR")}
        path = f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        return {**keep, "HOME": str(self.home), "PATH": path, "NO_PROXY": "", "no_proxy": ""}

    def resolve(self, script: str) -> str:
        """Placeholders a reader fills the same way everywhere: the proxy's port."""
        return script.replace(f"127.0.0.1:{PORT}", f"127.0.0.1:{self.port}").replace(
            f"--listen-port {PORT}", f"--listen-port {self.port}")

    def run(self, block: Block) -> str | None:
        """Run one block; None when it did what it says, else what went wrong."""
        script = self.resolve(block.script)
        if block.starts_proxy:
            return self._start_proxy(script)
        prelude = "set -uo pipefail\n" if block.kind == "console" else "set -euo pipefail\n"
        shell = subprocess.Popen(["bash", "-c", prelude + script], cwd=self.clone, env=self.env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = shell.communicate(timeout=BLOCK_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)  # the whole group: nothing it started outlives it
            shell.communicate()
            return f"still running after {BLOCK_SECONDS} s: mark it as an example, or make it end"
        if block.kind == "console":
            failed = shell.returncode in (126, 127) or "usage: autodiscover-guard" in err
        else:
            failed = shell.returncode != 0
        return f"exit {shell.returncode}:\n{out}{err}" if failed else None

    def _start_proxy(self, script: str) -> str | None:
        if self.port not in script:
            return (f"a block that starts the proxy names its address (127.0.0.1:{PORT} or --listen-port {PORT}), "
                    "so a reader sees it and the test can move it; else mark it <!-- example: why -->")
        self.stop()
        self.proxy = subprocess.Popen(["bash", "-c", "exec " + script.strip()], cwd=self.clone, env=self.env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True)
        deadline = time.monotonic() + BLOCK_SECONDS  # a start-up bound, not a speed assertion
        while time.monotonic() < deadline:
            if self.proxy.poll() is not None:
                output = self.proxy.stdout.read() if self.proxy.stdout else ""
                return f"the proxy exited with {self.proxy.returncode}:\n{output}"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", int(self.port))) == 0:
                    return None
            time.sleep(0.2)
        return "the proxy did not start listening"

    def stop(self) -> None:
        if self.proxy is not None and self.proxy.poll() is None:
            os.killpg(self.proxy.pid, signal.SIGTERM)
            self.proxy.wait(timeout=30)
        self.proxy = None


def check_example(block: Block) -> str | None:
    """A marked block: valid shell, and every guard command it names exists."""
    syntax = subprocess.run(["bash", "-n", "-c", block.script], capture_output=True, text=True, check=False)
    if syntax.returncode:
        return f"bash -n: {syntax.stderr.strip()}"
    for command in sorted(guard_commands(block.script)):
        cli = ROOT / ".venv" / "bin" / "autodiscover-guard"
        result = subprocess.run([str(cli), *command, "--help"], capture_output=True, text=True, check=False)
        if result.returncode:
            return f"autodiscover-guard {shlex.join(command)} --help: exit {result.returncode} {result.stderr.strip()}"
    return None


def seed_decision_log(path: Path) -> None:
    """The decision log a reader has after the guard met the seed incident once (the real addon)."""
    from mitmproxy import http
    from mitmproxy.test import taddons

    from guard.proxy.addon import AutodiscoverGuard
    from tests.flowkit import AUTODETECT_URL, fixture, make_flow

    path.parent.mkdir(parents=True, exist_ok=True)
    addon = AutodiscoverGuard()
    with taddons.context(addon) as tctx:
        tctx.options.update(guard_log=str(path))
        addon.configure(set(tctx.options.keys()))
        flow = make_flow(AUTODETECT_URL, headers={"X-Email": "email@example.com"})
        addon.request(flow)
        flow.response = http.Response.make(200, fixture("autodetect__seed_example_com.json"),
                                           {"content-type": "application/json"})
        addon.responseheaders(flow)
        addon.response(flow)
        addon.done()


def run_page(page: Path, root: Path) -> dict[str, str]:
    """Run a page's unmarked blocks in order in a fresh sandbox: {block location: what failed}."""
    sandbox = Sandbox(root)
    seed_decision_log(sandbox.home / ".autodiscover-guard" / "decisions.jsonl")
    failures = {}
    try:
        for block in blocks(page):
            if block.example:
                continue
            if block.changes_system:
                failures[block.where] = (f"{block.script}\n→ changes the system (root, services, files outside "
                                         "the sandbox or a long make target): mark it <!-- example: why -->")
            else:
                problem = sandbox.run(block)
                if problem is not None:
                    failures[block.where] = f"{block.script}\n→ {problem}"
    finally:
        sandbox.stop()
    return failures
