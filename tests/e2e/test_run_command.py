"""`autodiscover-guard run`, `ca` and `pac` as a user runs them (docs/workstation.md, docs/audit.md).

The real CLI is started as a subprocess with `--mode`, `--listen`, `--policy`, `--confdir` and
`--log`; after `--` come only what the test harness needs: the routing script that sends every
upstream connection to the local test servers, and trust in the test origin CA. The confdir is
fresh, so mitmproxy makes its own CA there and the client trusts the file `ca --path` names, as
the docs tell a user to.
"""

from __future__ import annotations

import fnmatch
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import FIXTURES, ROOT
from tests.e2e.conftest import write_policy
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.proxy import ROUTE_SCRIPT, GuardProxy, wait_until_running
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

CLI = Path(sys.executable).parent / "autodiscover-guard"
AUTODETECT = "https://prod.autodetect.outlook.cloud.microsoft/autodetect/detect"
PASSTHROUGH = "https://www.run.contoso.com/"
DOC_CHECK = "https://autodiscover.com.br/autodiscover/autodiscover.xml"  # docs/workstation.md §3
OWN_DOMAIN = "tailspin-run.com"  # the policy's `discovery_hosts` entry


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module", autouse=True)
def routes(upstream: Upstream) -> None:
    upstream.add_route("prod.autodetect.outlook.cloud.microsoft", "/autodetect/detect",
                       body=(FIXTURES / "autodetect__seed_example_com.json").read_bytes(),
                       headers={"content-type": "application/json; charset=utf-8"})
    upstream.add_route("www.run.contoso.com", "/", body=b"<html>the origin itself</html>",
                       headers={"content-type": "text/html"})


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = (ROOT / "policies" / "default.yaml").read_text() + f"\ndiscovery_hosts:\n  - {OWN_DOMAIN}\n"
    return write_policy(tmp_path_factory.mktemp("run-policy"), text)


def start_run(pki: TestPKI, upstream: Upstream, workdir: Path, *options: str) -> GuardProxy:
    """`autodiscover-guard run OPTIONS --listen … --confdir … --log … -- <harness routing>`, once running."""
    confdir, log = workdir / "confdir", workdir / "decisions.jsonl"
    command = [
        str(CLI), "run", *options, "--listen", f"127.0.0.1:{free_port()}", "--confdir", str(confdir),
        "--log", str(log), "--",
        "-s", str(ROUTE_SCRIPT), "--set", f"route_https_port={upstream.https_port}",
        "--set", f"route_http_port={upstream.http_port}",
        "--set", f"ssl_verify_upstream_trusted_ca={pki.origin_ca_bundle}",
    ]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1)
    proxy = GuardProxy(process, 0, confdir, Path(), log, workdir / "unused.prom", Path())
    proxy.port = wait_until_running(proxy)
    # once running, mitmproxy has made its CA: `ca --path` names it (before that it exits 2, issue 15)
    proxy.ca_bundle = Path(subprocess.run([str(CLI), "ca", "--confdir", str(confdir), "--path"], capture_output=True,
                                          text=True, check=True, timeout=30).stdout.strip())
    return proxy


@pytest.fixture(scope="module")
def workstation(pki: TestPKI, upstream: Upstream, policy: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProxy]:
    proxy = start_run(pki, upstream, tmp_path_factory.mktemp("run-workstation"),
                      "--mode", "workstation", "--policy", str(policy))
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def audit(pki: TestPKI, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProxy]:
    proxy = start_run(pki, upstream, tmp_path_factory.mktemp("run-audit"), "--mode", "audit")
    yield proxy
    proxy.stop()


def seed_autodetect(proxy: GuardProxy) -> requests.Response:
    return proxy.session().get(AUTODETECT, params={"app": "outlookdesktopBasic"},
                               headers={"X-Email": "email@example.com"}, timeout=20)


def test_run_makes_its_own_ca_in_the_confdir_and_ca_names_it(workstation: GuardProxy) -> None:
    assert workstation.ca_bundle == workstation.confdir / "mitmproxy-ca-cert.pem"
    assert b"BEGIN CERTIFICATE" in workstation.ca_bundle.read_bytes()
    assert workstation.confdir.stat().st_mode & 0o777 == 0o700  # the CA key's folder is private


def test_run_workstation_blocks_the_seed_incident(workstation: GuardProxy) -> None:
    before = len(workstation.decisions())
    response = seed_autodetect(workstation)
    assert (response.status_code, response.content) == (404, b"")
    line = workstation.last_decision(before)
    assert (line["mode"], line["action"], line["format"]) == ("enforce", "block", "autodetect")
    assert "reserved-user-domain" in line["rules"]
    workstation.wait_for(lambda: any(re.search(r"autodiscover-guard: BLOCK autodetect for example\.com "
                                               r"\[reserved-user-domain, .*\] GET https://prod\.autodetect", out)
                                     for out in workstation.output), what="the console line")


def test_the_curl_check_in_the_workstation_doc_is_blocked_without_any_upstream(workstation: GuardProxy,
                                                                              upstream: Upstream) -> None:
    before = len(workstation.decisions())
    result = subprocess.run(["curl", "-sS", "--noproxy", "", "-x", workstation.url, "--cacert",
                             str(workstation.ca_bundle), "-w", "%{http_code}", DOC_CHECK],
                            capture_output=True, text=True, timeout=20, check=False)
    assert result.stdout.endswith("403") and "discovery-tld" in result.stdout, result.stderr
    line = workstation.last_decision(before)
    assert (line["rules"], line["action"]) == (["discovery-tld"], "block")
    assert upstream.connections_for("autodiscover.com.br") == 0  # answered by the guard: works on any network


@pytest.fixture(scope="module")
def discovery_only(pki: TestPKI, upstream: Upstream, policy: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardProxy]:
    proxy = start_run(pki, upstream, tmp_path_factory.mktemp("run-discovery-only"),
                      "--mode", "workstation", "--intercept", "discovery", "--policy", str(policy))
    yield proxy
    proxy.stop()


def test_intercept_discovery_passes_other_https_hosts_through_with_the_origin_certificate(
        discovery_only: GuardProxy, origin_ca_bundle: Path) -> None:
    before = len(discovery_only.lines())
    response = discovery_only.session(verify=origin_ca_bundle).get(PASSTHROUGH, timeout=20)
    assert response.content == b"<html>the origin itself</html>"
    with pytest.raises(requests.exceptions.SSLError):  # never the guard's certificate
        discovery_only.session().get(PASSTHROUGH, timeout=20)
    assert len(discovery_only.lines()) == before
    assert any("intercept=discovery: URLs on a bare mail domain" in out for out in discovery_only.output)


def test_the_workstation_decrypts_other_hosts_but_logs_no_decision_for_them(workstation: GuardProxy) -> None:
    before = len(workstation.decisions())
    assert workstation.session().get(PASSTHROUGH, timeout=20).content == b"<html>the origin itself</html>"
    assert len(workstation.decisions()) == before


def test_run_audit_logs_the_would_be_block_and_changes_nothing(audit: GuardProxy) -> None:
    before = len(audit.decisions())
    response = seed_autodetect(audit)
    assert response.status_code == 200
    assert response.content == (FIXTURES / "autodetect__seed_example_com.json").read_bytes()
    line = audit.last_decision(before)
    assert (line["mode"], line["action"], line["would_action"]) == ("audit", "allow", "block")
    # the console line arrives through mitmdump's output reader thread: wait for it, as for the log
    audit.wait_for(lambda: any("BLOCK (audit: allow) autodetect for example.com" in out for out in audit.output),
                   what="the console line of the audit decision")


def pac_route(pac: str, host: str) -> str:
    """What the PAC answers for `host`, read without JavaScript: its `shExpMatch` globs, then DIRECT."""
    globs = re.findall(r'shExpMatch\(host, "([^"]+)"\)', pac)
    proxy = re.findall(r'return "(PROXY [^"]+)";', pac)
    assert globs and len(proxy) == 1 and pac.rstrip().endswith('return "DIRECT";\n}')
    return proxy[0] if any(fnmatch.fnmatchcase(host.lower(), glob) for glob in globs) else "DIRECT"


def test_pac_sends_discovery_hosts_to_the_guard_and_the_rest_direct(workstation: GuardProxy, policy: Path) -> None:
    result = subprocess.run([str(CLI), "pac", "--proxy", f"127.0.0.1:{workstation.port}", "--policy", str(policy)],
                            capture_output=True, text=True, timeout=30, check=True)
    to_guard = f"PROXY 127.0.0.1:{workstation.port}"
    for host in ("autodiscover.contoso.com", "autoconfig.example.com", "prod.autodetect.outlook.cloud.microsoft",
                 "Autodiscover.Contoso.com", OWN_DOMAIN, f"autodiscover.{OWN_DOMAIN}"):
        assert pac_route(result.stdout, host) == to_guard, host
    for host in ("www.run.contoso.com", "contoso.com", "outlook.office365.com.evil.net", "login.microsoftonline.com"):
        assert pac_route(result.stdout, host) == "DIRECT", host
