"""`autodiscover-guard run --mode gateway` as a service runs it: JSON lines only, and the guard's own CA.

The real CLI makes the CA (`ca --name`), then `run --mode gateway` starts with no `--log`, so its
decisions, mitmproxy's warnings and the start line all reach stdout/stderr (the journal under
systemd). The client trusts what docs/gateway.md tells an admin to give it: the system roots plus
the guard's CA (here the tests' origin CA stands in for the public CA of the sites passed through).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import FIXTURES, ROOT
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.process import stop
from tests.e2e.support.proxy import ROUTE_SCRIPT
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

CLI = Path(sys.executable).parent / "autodiscover-guard"
SYSTEM_ROOTS = Path("/etc/ssl/certs/ca-certificates.crt")  # Debian's bundle (ca-certificates)
AUTODETECT_HOST = "prod.autodetect.outlook.cloud.microsoft"
AUTODETECT = f"https://{AUTODETECT_HOST}/autodetect/detect"
PASS_THROUGH_HOST = "www.gateway-output.contoso.com"
DEPLOYMENT = "gw-test"


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    stdout: Path
    stderr: Path
    trust: Path  # system roots + origin CA (the public CA) + the guard's CA

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        return [line for path in (self.stdout, self.stderr) for line in path.read_text().splitlines()]

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + 30
        while not any(text in line for line in self.lines()):
            assert self.process.poll() is None and time.monotonic() < deadline, "\n".join(self.lines())
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def service(pki: TestPKI, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    if not SYSTEM_ROOTS.is_file():
        why = f"{SYSTEM_ROOTS} missing (Debian: apt-get install ca-certificates)"
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (.ci/run installs it)")
        pytest.skip(why)
    upstream.add_route(AUTODETECT_HOST, "/autodetect/detect",
                       body=(FIXTURES / "autodetect__seed_example_com.json").read_bytes(),
                       headers={"content-type": "application/json; charset=utf-8"})
    upstream.add_route(PASS_THROUGH_HOST, "/", body=b"pass-through\n", headers={"content-type": "text/plain"})
    work = tmp_path_factory.mktemp("gateway-output")
    confdir = work / "confdir"
    subprocess.run([str(CLI), "ca", "--confdir", str(confdir), "--name", DEPLOYMENT], check=True,
                   capture_output=True, timeout=60)
    trust = work / "trust.pem"
    trust.write_bytes(SYSTEM_ROOTS.read_bytes() + pki.origin_ca_bundle.read_bytes()
                      + (confdir / "mitmproxy-ca-cert.pem").read_bytes())
    port = free_port()
    stdout, stderr = work / "stdout", work / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen([
            str(CLI), "run", "--mode", "gateway", "--listen", f"127.0.0.1:{port}", "--confdir", str(confdir),
            "--trusted-proxy", "127.0.0.1", "--",
            "-s", str(ROUTE_SCRIPT), "--set", f"route_https_port={upstream.https_port}",
            "--set", f"route_http_port={upstream.http_port}",
            "--set", f"ssl_verify_upstream_trusted_ca={pki.origin_ca_bundle}",
        ], cwd=ROOT, stdout=out, stderr=err)
    found = Service(process, port, stdout, stderr, trust)
    try:
        found.wait_for('"event": "running"')
        yield found
    finally:
        stop(process)


def session(service: Service, verify: Path) -> requests.Session:
    client = requests.Session()
    client.trust_env = False
    client.proxies = {"https": service.proxy, "http": service.proxy}
    client.verify = str(verify)
    return client


def issuer_through(service: Service, host: str) -> str:
    """The issuer CN of the certificate a client sees for `host` through the guard (CONNECT by hand)."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=20) as raw:
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=str(service.trust))
        with context.wrap_socket(raw, server_hostname=host) as tls:
            cert = tls.getpeercert()
    assert cert is not None
    issuer: Any = cert["issuer"]  # typeshed's union of every peer-cert field
    return next(str(value) for rdn in issuer for key, value in rdn if key == "commonName")


def test_a_client_trusting_system_roots_and_the_guard_ca_reaches_pass_through_and_intercepted_hosts(
        service: Service) -> None:
    with session(service, service.trust) as client:
        assert client.get(f"https://{PASS_THROUGH_HOST}/", timeout=20).content == b"pass-through\n"
        blocked = client.get(AUTODETECT, params={"app": "x"}, headers={"X-Email": "email@example.com"}, timeout=20)
    assert (blocked.status_code, blocked.content) == (404, b"")  # the seed answer, blocked by the guard
    assert issuer_through(service, AUTODETECT_HOST) == f"autodiscover-guard CA ({DEPLOYMENT})"
    assert issuer_through(service, PASS_THROUGH_HOST) != f"autodiscover-guard CA ({DEPLOYMENT})"


def test_gateway_mode_writes_only_json_lines_decisions_and_errors_included(service: Service) -> None:
    with session(service, service.trust) as client:
        client.get(AUTODETECT, params={"app": "json"}, headers={"X-Email": "email@example.com"}, timeout=20)
        client.get(f"https://{PASS_THROUGH_HOST}/", timeout=20)
    with session(service, SYSTEM_ROOTS) as untrusting, pytest.raises(requests.exceptions.SSLError):
        untrusting.get(AUTODETECT, timeout=20)  # the client refuses the guard's certificate: mitmproxy warns
    service.wait_for("TLS handshake failed")
    stop(service.process)  # its last lines (shutdown) count too
    records = [json.loads(line) for line in service.lines()]  # raises on any line that is not JSON
    events = {record["event"] for record in records}
    assert {"starting", "running", "decision", "proxy_log"} <= events, events
    assert any(r["event"] == "proxy_log" and r["level"] == "warning" for r in records), records
    assert not any("client connect" in json.dumps(r) for r in records)  # per-connection lines off
