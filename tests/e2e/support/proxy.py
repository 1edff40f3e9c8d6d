"""A real `mitmdump` running the guard, as a subprocess on an ephemeral port."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from guard.interception import allow_host_patterns
from guard.policy import load_policy
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.process import stop as stop_process
from tests.e2e.support.upstream import Upstream

ROOT = Path(__file__).resolve().parents[3]
MITMDUMP = Path(sys.executable).parent / "mitmdump"
ADDON = ROOT / "addons" / "autodiscover_guard.py"
ROUTE_SCRIPT = Path(__file__).resolve().parent / "scripts" / "route_upstream.py"
_LISTENING = re.compile(r"proxy listening at 127\.0\.0\.1:(\d+)")
_RUNNING = "autodiscover-guard: policy "  # the guard's `running` line: startup is over
STARTUP_SECONDS = 30.0
INTERCEPT_ALL: Sequence[str] = ()  # `allow_hosts=INTERCEPT_ALL`: decrypt every host
LIKE_RUN = None  # `allow_hosts=LIKE_RUN`: the patterns `autodiscover-guard run` passes for the policy


class ProxyExited(RuntimeError):
    """mitmdump stopped before it listened; the message holds its output."""


@dataclass
class GuardProxy:
    """One mitmdump process with the guard: where to point clients and what it wrote."""

    process: subprocess.Popen[str]
    port: int
    confdir: Path
    policy_path: Path
    log_path: Path
    metrics_path: Path
    ca_bundle: Path
    output: list[str] = field(default_factory=list)  # mitmdump's stdout and stderr, drained

    @property
    def url(self) -> str:
        """The proxy URL for `curl -x` / requests' `proxies`."""
        return f"http://127.0.0.1:{self.port}"

    def session(self, verify: Path | bool | None = None) -> requests.Session:
        """A requests session through the proxy, trusting the proxy CA (unless told otherwise)."""
        session = requests.Session()
        session.trust_env = False  # no HTTP(S)_PROXY/NO_PROXY from the environment
        session.proxies = {"http": self.url, "https": self.url}
        trust = self.ca_bundle if verify is None else verify
        session.verify = str(trust) if isinstance(trust, Path) else trust
        return session

    def curl(self, url: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        """`curl -sS -x <proxy> --cacert <proxy CA> ... <url>`; `-w` output and body on stdout."""
        return subprocess.run(
            ["curl", "-sS", "--noproxy", "", "-x", self.url, "--cacert", str(self.ca_bundle), *args, url],
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def lines(self) -> list[dict[str, Any]]:
        """Every line of the decision log so far."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text(encoding="utf-8").splitlines() if line]

    def decisions(self) -> list[dict[str, Any]]:
        """The `decision` lines (one per judged flow)."""
        return [line for line in self.lines() if line["event"] == "decision"]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == name]

    def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
        """Poll until `condition()` is truthy; return it, or fail with mitmdump's output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; mitmdump said:\n" + "\n".join(self.output[-40:]))

    def last_decision(self, count_before: int) -> dict[str, Any]:
        """The one decision logged after `count_before` lines (waits briefly: the log is written async)."""
        found = self.wait_for(lambda: self.decisions()[count_before:], what="a decision line")
        assert len(found) == 1, found
        return dict(found[0])

    def stop(self) -> int:
        """SIGTERM (runs the addon's `done`), then wait; returns the exit code."""
        return stop_process(self.process)


def mitmdump_command(pki: TestPKI, upstream: Upstream, confdir: Path, options: Mapping[str, str],
                     allow_hosts: Sequence[str], extra_args: Sequence[str]) -> list[str]:
    """The argument list: guard addon, routing script, isolated confdir, upstream trust, `options`."""
    pki.install_proxy_ca(confdir)
    settings = {
        "confdir": str(confdir),  # mitmproxy reads confdir/config.yaml: a user's must not beat --set
        "ssl_verify_upstream_trusted_ca": str(pki.origin_ca_bundle),
        "flow_detail": "0",
        "connection_strategy": "lazy",  # as `run`: refused requests never connect upstream
        "route_https_port": str(upstream.https_port),
        "route_http_port": str(upstream.http_port),
    } | dict(options)  # mitmdump refuses an option set twice, so callers override here
    command = [str(MITMDUMP), "--listen-host", "127.0.0.1", "-p", "0", "-s", str(ADDON), "-s", str(ROUTE_SCRIPT)]
    for name, value in settings.items():
        command += ["--set", f"{name}={value}"]
    for pattern in allow_hosts:
        command += ["--allow-hosts", pattern]
    return [*command, *extra_args]


def start_guard_proxy(pki: TestPKI, upstream: Upstream, workdir: Path, *, policy: Path, mode: str = "",
                      allow_hosts: Sequence[str] | None = LIKE_RUN, options: Mapping[str, str] | None = None,
                      extra_args: Sequence[str] = (), log: Path | None = None) -> GuardProxy:
    """Start mitmdump with the guard and wait until it is running (or raise `ProxyExited`).

    `options` are `--set` values that override the harness defaults (mitmdump refuses an option
    given twice, so do not pass `--set` in `extra_args` for those).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = log or workdir / "decisions.jsonl"
    metrics_path = workdir / "guard.prom"
    settings = {"guard_policy": str(policy), "guard_log": str(log_path), "guard_metrics": str(metrics_path)}
    if mode:
        settings["guard_mode"] = mode
    patterns = allow_host_patterns(load_policy(policy)) if allow_hosts is LIKE_RUN else allow_hosts
    command = mitmdump_command(pki, upstream, workdir / "confdir", settings | dict(options or {}), patterns or (),
                               extra_args)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1)
    proxy = GuardProxy(process, 0, workdir / "confdir", policy, log_path, metrics_path, pki.proxy_ca_bundle)
    port = wait_until_running(proxy)
    proxy.port = port
    return proxy


def wait_until_running(proxy: GuardProxy) -> int:
    """Drain the process's output for its life; the listening port once the guard runs (or `ProxyExited`)."""
    found: list[int] = []
    ready = threading.Event()

    def drain() -> None:  # keeps the pipe from filling for the life of the process
        assert proxy.process.stdout is not None
        for line in proxy.process.stdout:
            proxy.output.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not found:
                found.append(int(match.group(1)))
            if _RUNNING in line:
                ready.set()
        ready.set()  # exited

    threading.Thread(target=drain, name="mitmdump-output", daemon=True).start()
    if not ready.wait(STARTUP_SECONDS) or not found or proxy.process.poll() is not None:
        proxy.stop()
        raise ProxyExited("mitmdump did not start:\n" + "\n".join(proxy.output))
    return found[0]


def run_mitmdump_to_exit(pki: TestPKI, upstream: Upstream, workdir: Path, *, policy: Path,
                         timeout: float = 30.0, options: Mapping[str, str] | None = None,
                         ) -> subprocess.CompletedProcess[str]:
    """Start mitmdump with the guard and expect it to stop by itself (a start-up failure)."""
    settings = {"guard_policy": str(policy), "guard_log": str(workdir / "decisions.jsonl")} | dict(options or {})
    command = mitmdump_command(pki, upstream, workdir / "confdir", settings, (), ())
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
