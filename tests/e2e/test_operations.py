"""Operations through a real mitmdump: a costly answer stalls nobody, signals, start-up folders,
`log.required`, audit mode's credential refusals, and reloads that follow included files.

Orderings are read from the decision log (the order lines were written in), never from clocks:
how long things take is measured by `make bench`, not asserted here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bench.costly import foreign_pox
from tests.conftest import FIXTURES, ROOT, pox_request
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.proxy import GuardProxy, run_mitmdump_to_exit
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

POX_PATH = "/autodiscover/autodiscover.xml"
XML = {"content-type": "text/xml; charset=utf-8"}
BIG_HOST = "autodiscover.costly.contoso.com"
BENIGN_HOST = "autodiscover.contoso.com"
BENIGN = (FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes()
AUTOCONFIG_HOST = "autoconfig.ops.northwind-traders.co.uk"
AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
ADDRESS = "alice@northwind-traders.co.uk"
DEFAULT = (ROOT / "policies" / "default.yaml").read_text()


@pytest.fixture(scope="module")
def _routes(upstream: Upstream) -> None:
    upstream.add_route(BIG_HOST, POX_PATH, body=foreign_pox(10_000), headers=XML)
    upstream.add_route(BENIGN_HOST, POX_PATH, body=BENIGN, headers=XML)
    upstream.add_route(AUTOCONFIG_HOST, AUTOCONFIG_PATH, headers={"content-type": "application/xml"},
                       body=(FIXTURES / "autoconfig__benign_own_domain.xml").read_bytes())


@pytest.fixture
def proxy(_routes: None, guard_proxy: ProxyFactory) -> Iterator[GuardProxy]:
    yield guard_proxy()


def _pox(proxy: GuardProxy, host: str) -> requests.Response:
    return proxy.session().post(f"https://{host}{POX_PATH}", data=pox_request("alice@contoso.com"), headers=XML,
                                timeout=60)


def _url(marker: str) -> str:
    return f"https://{AUTOCONFIG_HOST}{AUTOCONFIG_PATH}?emailaddress={ADDRESS}&n-{marker}"


def _markers(*files: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record["event"] == "decision" and "&n-" in record["url"]:
                found[record["url"].rpartition("&n-")[2]] += 1
    return found


def _clients(proxy: GuardProxy, folder: Path, clients: int, each: int) -> list[subprocess.Popen[str]]:
    """`clients` curl processes, each sending `each` requests (marker `<client>-<i>`) one after another."""
    started = []
    for c in range(clients):
        config = folder / f"client-{c}.curl"
        config.write_text("".join(f'url = "{_url(f"{c}-{i}")}"\noutput = "/dev/null"\n' for i in range(each)))
        started.append(subprocess.Popen(["curl", "-sS", "--noproxy", "", "-x", proxy.url, "--cacert",
                                         str(proxy.ca_bundle), "-w", "%{http_code}\n", "-K", str(config)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return started


def _all_answered(clients: list[subprocess.Popen[str]]) -> None:
    for client in clients:
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0 and set(out.split()) == {"200"}, err[-500:]


# --- one costly answer stalls nobody ------------------------------------------------------------


def test_a_benign_flow_is_answered_while_a_costly_answer_is_still_being_judged(
    _routes: None, guard_proxy: ProxyFactory, upstream: Upstream,
) -> None:
    assert 700_000 < len(foreign_pox(10_000)) < 1024 * 1024  # under the cap: it must be judged, not refused
    # a generous budget: the costly answer is judged in full (~1 s here), not cut short as "too costly"
    proxy = guard_proxy(policy=DEFAULT.replace("limits:\n", "limits:\n  judge_ms: 30000\n"))
    with ThreadPoolExecutor(1) as pool:
        costly = pool.submit(_pox, proxy, BIG_HOST)
        proxy.wait_for(lambda: upstream.requests_for(BIG_HOST), what="the costly request upstream")
        benign = _pox(proxy, BENIGN_HOST)  # sent once the costly answer is on its way to the guard
        assert benign.status_code == 200 and benign.content == BENIGN
        big = costly.result(timeout=120)
    decisions = proxy.wait_for(lambda: len(proxy.decisions()) >= 2 and proxy.decisions(), what="both decisions")
    order = [BIG_HOST if BIG_HOST in d["url"] else BENIGN_HOST for d in decisions]
    assert order == [BENIGN_HOST, BIG_HOST]  # judged meanwhile, not after the costly one
    line = decisions[1]
    assert (line["action"], line["rules"]) == ("block", ["foreign-host"])  # every server foreign: none left
    assert b"jnet.sei.co.jp" not in big.content


# --- signals ------------------------------------------------------------------------------------


def test_sighup_under_load_reopens_the_log_applies_the_policy_and_loses_no_flow(
    _routes: None, guard_proxy: ProxyFactory, tmp_path: Path,
) -> None:
    proxy = guard_proxy(policy=DEFAULT)
    log, rotated = proxy.log_path, proxy.log_path.with_name("decisions.jsonl.1")
    revision = proxy.events("policy_loaded")[0]["revision"]
    clients = _clients(proxy, tmp_path, 8, 25)
    proxy.wait_for(lambda: len(_markers(log)) >= 40, timeout=60, what="traffic")
    log.rename(rotated)  # an external rotation with `nocreate`: the guard learns of it from SIGHUP
    # the same size, inode and mtime: the once-a-second check cannot see it, only SIGHUP can
    info = proxy.policy_path.stat()
    with proxy.policy_path.open("r+") as policy:
        policy.write(DEFAULT.replace("foreign-host: rewrite", "foreign-host: warn   "))
    os.utime(proxy.policy_path, ns=(info.st_atime_ns, info.st_mtime_ns))
    proxy.process.send_signal(signal.SIGHUP)
    _all_answered(clients)
    assert proxy.process.poll() is None  # SIGHUP used to kill mitmdump
    expected = {f"{c}-{i}" for c in range(8) for i in range(25)}
    found = proxy.wait_for(lambda: expected <= set(f := _markers(log, rotated)) and f, timeout=30,
                           what="every decision")
    assert set(found) == expected and set(found.values()) == {1}  # none lost, none twice
    assert _markers(rotated) and _markers(log)  # both files took their share
    first = json.loads(log.read_text().splitlines()[0])
    assert (first["event"], first["reason"]) == ("log_reopened", "reopen")
    reloaded = proxy.events("policy_reloaded")
    assert len(reloaded) == 1 and reloaded[0]["revision"] != revision
    after = proxy.session().get(_url("after"), timeout=20)
    assert after.status_code == 200
    assert proxy.wait_for(lambda: proxy.decisions()[-1]["policy_revision"] == reloaded[0]["revision"],
                          what="the new revision in force")


def test_sigterm_leaves_every_record_on_disk(proxy: GuardProxy, tmp_path: Path) -> None:
    clients = _clients(proxy, tmp_path, 4, 10)
    _all_answered(clients)
    assert proxy.stop() == 0  # SIGTERM: mitmproxy shuts down, the guard's `done` flushes and closes the log
    assert set(_markers(proxy.log_path)) == {f"{c}-{i}" for c in range(4) for i in range(10)}


# --- start-up folders and log.required ----------------------------------------------------------


@pytest.mark.parametrize("missing", ["guard_log", "guard_metrics"])
def test_a_missing_log_or_metrics_folder_stops_the_start_with_the_fix(pki: TestPKI, upstream: Upstream,
                                                                      tmp_path: Path, missing: str) -> None:
    target = tmp_path / "no-such-folder" / "file"
    result = run_mitmdump_to_exit(pki, upstream, tmp_path, policy=ROOT / "policies" / "default.yaml",
                                  options={missing: str(target)})
    said = result.stdout + result.stderr
    assert result.returncode != 0, said
    assert f"folder {target.parent} does not exist" in said and f"mkdir -p {target.parent}" in said


@pytest.mark.parametrize("required", [True, False])
def test_log_required_refuses_discovery_flows_the_log_cannot_record(_routes: None, guard_proxy: ProxyFactory,
                                                                    upstream: Upstream, required: bool) -> None:
    text = DEFAULT.replace("log:\n", "log:\n  required: true\n") if required else DEFAULT
    proxy = guard_proxy(policy=text, log=Path("/dev/full"))  # opens; every write fails (ENOSPC)
    seen = len(upstream.requests_for(BENIGN_HOST))
    response = _pox(proxy, BENIGN_HOST)
    if required:
        assert response.status_code == 503 and b"log.required" in response.content
        assert len(upstream.requests_for(BENIGN_HOST)) == seen  # refused before any upstream connection
        proxy.wait_for(lambda: _refusals_counted(proxy), what="the refusal in the metrics")
    else:
        assert response.status_code == 200 and response.content == BENIGN  # judged, enforced, not recorded
    assert any("cannot write the decision log" in line for line in proxy.output)  # loud either way


def _refusals_counted(proxy: GuardProxy) -> bool:
    text = proxy.metrics_path.read_text() if proxy.metrics_path.exists() else ""
    return any(line.startswith("autodiscover_guard_unlogged_refusals_total{") and not line.endswith(" 0")
               for line in text.splitlines())


# --- audit mode and credentials -----------------------------------------------------------------


@pytest.mark.parametrize("enforce", [True, False])
def test_audit_mode_still_refuses_discovery_under_a_public_suffix_unless_told_not_to(
    guard_proxy: ProxyFactory, upstream: Upstream, enforce: bool,
) -> None:
    text = DEFAULT if enforce else DEFAULT + "\naudit:\n  enforce_credential_rules: false\n"
    proxy = guard_proxy(policy=text, mode="audit")
    host = "autodiscover.net.br"  # not another test's host: the upstream counts connections per host
    response = proxy.session().post(f"https://{host}{POX_PATH}", data=pox_request("user@example.net.br"),
                                    headers=XML, timeout=20)
    line = proxy.wait_for(lambda: [d for d in proxy.decisions() if host in d["url"]], what="the decision")[0]
    assert line["mode"] == "audit" and line["would_action"] == "block" and line["rules"] == ["discovery-tld"]
    if enforce:
        assert response.status_code == 403 and b"discovery-tld" in response.content
        assert upstream.requests_for(host) == []
        assert line["action"] == "block" and line["enforced_in_audit"] is True
    else:
        assert upstream.requests_for(host)  # forwarded: audit changes nothing
        assert line["action"] == "allow" and "enforced_in_audit" not in line


# --- reload follows included files --------------------------------------------------------------


def test_editing_only_the_included_provider_map_reloads_the_policy(_routes: None, guard_proxy: ProxyFactory) -> None:
    proxy = guard_proxy(policy=DEFAULT)
    revision = proxy.events("policy_loaded")[0]["revision"]
    providers = proxy.policy_path.parent / "providers.yaml"
    staged = providers.with_name(".providers.yaml.new")
    staged.write_text(providers.read_text() + "# reviewed\n")
    staged.replace(providers)  # the atomic replace docs/policy.md asks for
    reloaded = proxy.wait_for(lambda: proxy.events("policy_reloaded"), what="the reload")
    assert len(reloaded) == 1 and reloaded[0]["revision"] != revision
