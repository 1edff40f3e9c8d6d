"""End-to-end harness: real `mitmdump` with the guard, real local upstream servers, real clients.

Nothing here is mocked. A test gets a `mitmdump` subprocess from this venv running
`addons/autodiscover_guard.py` plus a test-only routing script, talking to local HTTPS/HTTP
servers that play every host name, with clients (`requests`, `curl`) pointed at it.

Fixtures
--------
``pki`` (session)
    Two throw-away CAs made at session start in a tmp dir (never committed): the *origin* CA
    signs the upstream servers' leaves (one per SNI name, issued on first use); the *proxy* CA is
    installed as every mitmdump's own CA.
``ca_bundle`` / ``origin_ca_bundle`` (session)
    PEM files: trust ``ca_bundle`` to talk through any guard proxy of the session; trust
    ``origin_ca_bundle`` to prove a connection was *not* intercepted (the origin cert came through).
``upstream`` (session)
    :class:`~tests.e2e.support.upstream.Upstream`. ``upstream.add_route(host, path, status=200,
    headers={...}, body=b"...", challenge="")`` (query ignored; ``path="*"`` for any path; with
    ``challenge``, requests without Authorization get 401 + that WWW-Authenticate). Every request is
    recorded: ``upstream.requests_for(host)`` (scheme, host, method, path, headers, body) and
    ``upstream.connections_for(host)`` (TLS handshakes by SNI). Routes and records are shared by
    the session: use host names of your own.
``make_guard_proxy`` (session) / ``guard_proxy`` (function)
    Factories: ``guard_proxy(policy=None, mode="", allow_hosts=LIKE_RUN, options=None, extra_args=(),
    log=None)`` starts mitmdump and returns a :class:`~tests.e2e.support.proxy.GuardProxy` once the guard is
    running. ``policy`` is a path or YAML text (written to a file; relative ``providers:`` includes
    resolve next to the shipped policies' ``providers.yaml``, copied beside it); default: the
    shipped default policy. ``allow_hosts`` defaults to the patterns ``autodiscover-guard run``
    uses for that policy (``LIKE_RUN``); pass ``INTERCEPT_ALL`` to decrypt everything. ``options``
    are ``--set`` values overriding the harness defaults below (mitmdump refuses an option given
    twice); ``extra_args`` are appended verbatim (``--mode``, more ``-s`` scripts, ...).
    ``guard_proxy`` stops its processes when the test ends; ``make_guard_proxy`` at session end
    (so a module can share one proxy through its own module-scoped fixture).

A :class:`GuardProxy` gives ``.url`` (for ``curl -x`` / ``proxies``), ``.ca_bundle``,
``.session()`` (a ``requests.Session`` through the proxy, env proxies ignored),
``.curl(url, *args)``, ``.decisions()`` / ``.events(name)`` / ``.lines()`` (the JSON-lines
decision log), ``.last_decision(count_before)``, ``.wait_for(condition)``, ``.metrics_path``,
``.policy_path``, ``.output`` (mitmdump's drained stdout+stderr) and ``.stop()``.
``run_mitmdump_to_exit(...)`` runs a guard mitmdump expected to fail at start-up;
``wait_until_running(proxy)`` waits for any guard process (e.g. one started by the CLI's ``run``).
``support/dnsserver.py`` is a small DNS server (A and SRV) for clients that resolve names themselves.

Secrets: send credentials only from :mod:`tests.e2e.support.secrets` (``PASSWORD``,
``basic(user)``, ``bearer()``). Every proxy's work folder and output is registered with its
``SWEEP``; when the session ends, ``secrets_sweep`` fails the run if any of them holds one.

Mark test modules ``pytestmark = pytest.mark.e2e`` so ``make test-fast`` (``-m "not e2e"``) skips them.
Every proxy runs with ``--set confdir=<tmp>``, ``connection_strategy=lazy``, ``flow_detail=0`` and
``ssl_verify_upstream_trusted_ca=<origin CA>``: isolated from the user's mitmproxy config, never
connecting upstream for a request the guard answers, never dumping flows, trusting only the test CA.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.e2e.support.dnsserver import DnsServer
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.proxy import LIKE_RUN, GuardProxy, start_guard_proxy
from tests.e2e.support.secrets import SWEEP
from tests.e2e.support.upstream import Upstream

ProxyFactory = Callable[..., GuardProxy]


@pytest.fixture(scope="session", autouse=True)
def secrets_sweep() -> Iterator[None]:
    """Set up first, so torn down last: after every proxy has stopped and flushed its log."""
    yield
    leaks = SWEEP.leaks()
    if leaks:
        pytest.fail("test credentials were written:\n" + "\n".join(leaks), pytrace=False)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def ca_bundle(pki: TestPKI) -> Path:
    return pki.proxy_ca_bundle


@pytest.fixture(scope="session")
def origin_ca_bundle(pki: TestPKI) -> Path:
    return pki.origin_ca_bundle


@pytest.fixture(scope="session")
def upstream(pki: TestPKI) -> Iterator[Upstream]:
    server = Upstream(pki)
    yield server
    server.close()


def write_policy(folder: Path, text: str) -> Path:
    """A policy file from YAML text, with the shipped provider map beside it for `providers:`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "policies" / "providers.yaml", folder / "providers.yaml")
    path = folder / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class _Factory:
    """Starts guard proxies in fresh tmp dirs and stops them all on `close`."""

    def __init__(self, pki: TestPKI, upstream: Upstream, tmp: pytest.TempPathFactory) -> None:
        self.pki, self.upstream, self.tmp = pki, upstream, tmp
        self.started: list[GuardProxy] = []

    def __call__(self, policy: Path | str | None = None, mode: str = "", allow_hosts: Any = LIKE_RUN,
                 options: dict[str, str] | None = None, extra_args: tuple[str, ...] = (),
                 log: Path | None = None) -> GuardProxy:
        workdir = self.tmp.mktemp("guard")
        if policy is None:
            policy = ROOT / "policies" / "default.yaml"
        elif isinstance(policy, str):
            policy = write_policy(workdir / "policy", policy)
        proxy = start_guard_proxy(self.pki, self.upstream, workdir, policy=policy, mode=mode,
                                  allow_hosts=allow_hosts, options=options, extra_args=extra_args, log=log)
        self.started.append(proxy)
        SWEEP.watch_path(workdir)
        SWEEP.watch_path(proxy.log_path)  # when given outside the work folder
        SWEEP.watch_text(f"mitmdump output ({workdir.name})", lambda: "\n".join(proxy.output))
        return proxy

    def close(self) -> None:
        for proxy in self.started:
            proxy.stop()


@pytest.fixture(scope="module")
def enforcing(make_guard_proxy: ProxyFactory) -> Iterator[GuardProxy]:
    """One guard proxy per module on the shipped default policy (a module may define its own)."""
    proxy = make_guard_proxy()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DnsServer]:
    """A test DNS server (dnspython) for clients that resolve names themselves (exchangelib, myl-discovery)."""
    server = DnsServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def make_guard_proxy(pki: TestPKI, upstream: Upstream,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyFactory]:
    factory = _Factory(pki, upstream, tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture
def guard_proxy(pki: TestPKI, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyFactory]:
    factory = _Factory(pki, upstream, tmp_path_factory)
    yield factory
    factory.close()
