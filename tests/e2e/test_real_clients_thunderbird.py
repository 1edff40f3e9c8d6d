"""Stock Thunderbird (Debian `thunderbird`) runs its own account discovery through the guard.

One Thunderbird per module (support/thunderbird.py) serves every case: the proxy and privacy prefs
are switched at runtime. Setups, as docs/workstation.md describes them:

* `run`: `autodiscover-guard run --mode workstation` (intercept all), Thunderbird's manual proxy pointed at it;
* `pac`: the PAC file `autodiscover-guard pac --domain D…` writes (proxy type 2) in front of that same `run`;
  its `DIRECT` is replaced by a relay-only mitmdump (support/discovery_sites.py `Internet`),
  because test names resolve only through the harness routing — DIRECT still means "not the guard";
* `mitmdump`: plain `mitmdump -s addons/autodiscover_guard.py` (no `--allow-hosts`: every host is
  decrypted), as "Running mitmdump yourself" shows.

The profile trusts the guard CAs *and* the origin CA: a real attacker's (or a real provider's) site
on the bare domain has a publicly trusted certificate, so a flow the guard does not decrypt must
reach Thunderbird intact, as it would in the field.

Contract (issue 14): the seed and a foreign answer end with no configuration or one free of the
hostile hosts; an honest domain configures normally; a partly foreign answer is rewritten and the
remainder accepted; every judged flow is logged once.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.discovery_sites import HONEST, SCENARIOS, SEED, Internet, Scenario
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.proxy import INTERCEPT_ALL, GuardProxy
from tests.e2e.support.thunderbird import Discovered, HubState, Thunderbird, pac_prefs, proxy_prefs, require_thunderbird
from tests.e2e.support.upstream import Upstream
from tests.e2e.test_run_command import CLI, start_run

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "tests" / "e2e" / "artifacts"
SEND_ADDRESS = "mailnews.auto_config.fetchFromISP.sendEmailAddress"


@dataclass
class Setups:
    run: GuardProxy
    mitmdump: GuardProxy
    pac_url: str
    first_request: int  # upstream.requests before this module's first client request


@pytest.fixture(scope="module")
def setups(pki: TestPKI, upstream: Upstream, make_guard_proxy: ProxyFactory,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setups]:
    for scenario in SCENARIOS:
        scenario.serve(upstream)
    first_request = len(upstream.requests)
    workdir = tmp_path_factory.mktemp("tb-setups")
    (workdir / "run").mkdir()
    run = start_run(pki, upstream, workdir / "run", "--mode", "workstation")
    internet = Internet(pki, upstream, workdir)
    # as docs/workstation.md says: the PAC names the user's mail domains (reserved names are always in it)
    domains = [arg for s in SCENARIOS if s is not SEED for arg in ("--domain", s.domain)]
    pac = subprocess.run([str(CLI), "pac", "--proxy", f"127.0.0.1:{run.port}", *domains], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert pac.count('return "DIRECT";') == 1
    pac_file = workdir / "guard.pac"
    pac_file.write_text(pac.replace('return "DIRECT";', f'return "PROXY {internet.address}";'), encoding="utf-8")
    mitmdump = make_guard_proxy(allow_hosts=INTERCEPT_ALL)
    yield Setups(run, mitmdump, pac_file.as_uri(), first_request)
    run.stop()
    internet.close()


@pytest.fixture(scope="module")
def thunderbird(setups: Setups, pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Thunderbird]:
    require_thunderbird()
    cas = {"guard-run": setups.run.ca_bundle, "guard-mitmdump": pki.proxy_ca_bundle, "origin": pki.origin_ca_bundle}
    client = Thunderbird(tmp_path_factory.mktemp("thunderbird"), proxy_prefs(setups.run.port), cas)
    yield client
    client.close()


def prefs_for(setup: str, setups: Setups) -> dict[str, bool | int | str]:
    if setup == "pac":
        return pac_prefs(setups.pac_url)
    return proxy_prefs((setups.run if setup == "run" else setups.mitmdump).port)


def guard_of(setup: str, setups: Setups) -> GuardProxy:
    return setups.mitmdump if setup == "mitmdump" else setups.run


def judged_since(guard: GuardProxy, decided: int) -> list[str]:
    """The URLs (query dropped) of the decisions logged after the first `decided`."""
    return [line["url"].split("?", 1)[0] for line in guard.decisions()[decided:]]


@dataclass
class Outcome:
    found: Discovered
    fetched: list[str]  # scheme://host/path of every request upstream saw for the case
    judged: list[str]  # the decision lines' URLs (query dropped)


def run_case(thunderbird: Thunderbird, setups: Setups, upstream: Upstream, setup: str, scenario: Scenario,
             send_address: bool) -> Outcome:
    guard = guard_of(setup, setups)
    thunderbird.set_prefs({**prefs_for(setup, setups), SEND_ADDRESS: send_address})
    seen, decided = len(upstream.requests), len(guard.decisions())
    found = thunderbird.discover(scenario.email)
    urls = set(scenario.urls())
    fetched = [f"{s.scheme}://{s.host}{s.path.split('?', 1)[0]}" for s in upstream.requests[seen:]
               if (s.host, s.path.split("?", 1)[0]) in urls]
    # a decision is written in the response hook, before the answer goes on: every flow Thunderbird got an
    # answer for is logged by now (a flow it abandoned is logged by the error hook, possibly later)
    judged = judged_since(guard, decided)
    print(f"\n[{setup} {scenario.name} sendEmailAddress={send_address}] {found}\n  fetched: {sorted(set(fetched))}"
          f"\n  judged: {sorted(judged)}")
    return Outcome(found, fetched, judged)


def assert_contract(outcome: Outcome, scenario: Scenario) -> None:
    found = outcome.found
    assert not found.hosts() & scenario.hostile, found
    if scenario.own:
        assert found.configured and scenario.own <= found.hosts(), found
    repeated = [url for url, count in Counter(outcome.judged).items() if count > 1]
    fetched_twice = {url for url, count in Counter(outcome.fetched).items() if count > 1}
    assert not set(repeated) - fetched_twice, f"a flow was logged more than once: {repeated}"


CASES = [
    pytest.param(setup, s, send, id=f"{setup}-{s.name}-{'address' if send else 'no-address'}")
    for setup in ("run", "pac", "mitmdump") for s in SCENARIOS for send in (True, False)
]


@pytest.mark.parametrize(("setup", "scenario", "send_address"), CASES)
def test_thunderbird_ends_without_hostile_servers(thunderbird: Thunderbird, setups: Setups, upstream: Upstream,
                                                   setup: str, scenario: Scenario, send_address: bool) -> None:
    assert_contract(run_case(thunderbird, setups, upstream, setup, scenario, send_address), scenario)


@pytest.mark.parametrize("setup", ["run", "pac", "mitmdump"])
def test_the_guard_judges_every_url_thunderbird_fetches(thunderbird: Thunderbird, setups: Setups, upstream: Upstream,
                                                        setup: str) -> None:
    guard, decided = guard_of(setup, setups), len(guard_of(setup, setups).decisions())
    outcome = run_case(thunderbird, setups, upstream, setup, HONEST, send_address=True)
    assert outcome.fetched, "Thunderbird fetched nothing"
    with contextlib.suppress(AssertionError):  # flows Thunderbird abandoned are logged when mitmproxy sees it go
        guard.wait_for(lambda: set(outcome.fetched) <= set(judged_since(guard, decided)), timeout=5,
                       what="a decision for every fetched URL")
    assert sorted(set(outcome.fetched) - set(judged_since(guard, decided))) == []


def hub_settled(thunderbird: Thunderbird, started: str) -> HubState:
    """Wait for the Account Hub to finish discovery: not busy, and on a new step or showing an error there.

    A step is filled (host names, notification) in the same task that shows it; between two steps none
    is visible (`step == ""`) while the next one's template loads.
    """
    for _ in range(600):  # polls, not a time limit on the client: discovery ends with an answer or a failure
        state = thunderbird.account_hub()
        if not state.busy and state.step and (state.step != started or state.notice):
            return state
        time.sleep(0.1)
    raise AssertionError(f"the Account Hub never settled: {state}")


@pytest.mark.parametrize(("setup", "scenario"), [
    pytest.param("mitmdump", SEED, id="mitmdump-seed"),
    pytest.param("run", SEED, id="run-seed"),
    pytest.param("run", HONEST, id="run-honest"),
])
def test_the_account_hub_offers_no_hostile_server(thunderbird: Thunderbird, setups: Setups, setup: str,
                                                  scenario: Scenario, request: pytest.FixtureRequest) -> None:
    thunderbird.set_prefs({**prefs_for(setup, setups), SEND_ADDRESS: True})
    thunderbird.open_account_hub(scenario.email)
    try:
        state = hub_settled(thunderbird, "autoConfigSubview")
    finally:
        shot = thunderbird.screenshot(Path(thunderbird.workdir) / f"account-hub-{request.node.callspec.id}.png")
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(shot, ARTIFACTS / shot.name)
        print(f"\nAccount Hub screenshot: {shot} (copy: {ARTIFACTS / shot.name})")
        thunderbird.close_account_hub()
    print(f"Account Hub: {state}")
    assert not any(host in state.text for host in scenario.hostile), state
    if scenario.own:
        assert state.step == "emailConfigFoundSubview" and all(host in state.text for host in scenario.own), state
        assert state.notice == "account-hub-config-success-title"  # "Account settings found automatically."
    else:
        # the manual form under "Thunderbird failed to find the settings for your email account."
        assert (state.step, state.notice) == ("emailIncomingConfigSubview", "account-hub-find-account-settings-failed")



REMOTE_SETTINGS = "thunderbird-settings.thunderbird.net"  # polled at start; `services.settings.server` is ignored


def test_thunderbird_fetches_nothing_but_discovery_urls_and_its_settings_server(setups: Setups, upstream: Upstream,
                                                                                 thunderbird: Thunderbird) -> None:
    """Runs last in the module: the quiet profile prefs keep Thunderbird off everything else."""
    discovery = {f"{host}{path}" for scenario in SCENARIOS for host, path in scenario.urls()}
    seen = {f"{s.host}{s.path.split('?', 1)[0]}" for s in upstream.requests[setups.first_request:]}
    assert {url for url in seen if not url.startswith(REMOTE_SETTINGS + "/")} <= discovery
