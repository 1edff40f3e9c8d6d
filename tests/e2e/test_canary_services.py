"""`autodiscover-guard canary` against real local discovery services.

An AutoDetect stand-in (real HTTPS on `localhost`, certificate from the session's origin CA)
answers per `X-Email` domain: in incident mode it maps example.com to imapgms/smtpgms.jnet.sei.co.jp
exactly as the January 2026 capture shows (tests/fixtures/autodetect__seed_example_com.json), in
honest mode it answers 404 for every reserved domain. automx2 (the real server, seeded as in
test_automx2.py) answers for example.com the same way. The canary must reproduce the finding.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from guard.cli import main
from tests.conftest import FIXTURES
from tests.e2e.support.automx2 import SEED_HOSTS, Automx2
from tests.e2e.support.pki import TestPKI

pytestmark = pytest.mark.e2e

INCIDENT = {"example.com": (FIXTURES / "autodetect__seed_example_com.json").read_bytes()}
JNET = ["imapgms.jnet.sei.co.jp", "smtpgms.jnet.sei.co.jp"]


class AutoDetectStandIn:
    """HTTPS `/autodetect/detect`: the body mapped to the `X-Email` domain, else 404; `/moved` redirects."""

    def __init__(self, pki: TestPKI, answers: dict[str, bytes]) -> None:
        self.seen: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                address = self.headers.get("x-email", "")
                stand_in.seen.append(address)
                if self.path.startswith("/moved"):
                    self._reply(302, b"", {"location": "https://autodiscover.jnet.sei.co.jp/autodiscover/"})
                    return
                body = answers.get(address.rpartition("@")[2].lower())
                self._reply(200 if body else 404, body or b"", {"content-type": "application/json; charset=utf-8"})

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        cert, key = pki.leaf("localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, name="autodetect-stand-in", daemon=True).start()
        self.url = f"https://localhost:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def incident(pki: TestPKI) -> Iterator[AutoDetectStandIn]:
    server = AutoDetectStandIn(pki, INCIDENT)
    yield server
    server.close()


@pytest.fixture(scope="module")
def honest(pki: TestPKI) -> Iterator[AutoDetectStandIn]:
    server = AutoDetectStandIn(pki, {"contoso.com": b'{"email":"x","services":[],"protocols":[]}'})
    yield server
    server.close()


@pytest.fixture(scope="module")
def automx2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Automx2]:
    server = Automx2(tmp_path_factory.mktemp("automx2-canary"))
    yield server
    server.stop()


def services_file(folder: Path, *services: tuple[str, str, str], addresses: tuple[str, ...] = ()) -> Path:
    lines = ["version: 1", "services:"]
    for name, kind, url in services:
        lines += [f"  - name: {name}", f"    kind: {kind}", f"    url: {url}"]
    if addresses:
        lines.append("addresses: [" + ", ".join(addresses) + "]")
    path = folder / "services.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def canary_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["canary", "--json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_the_canary_reproduces_the_january_2026_autodetect_finding(
        incident: AutoDetectStandIn, origin_ca_bundle: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    services = services_file(tmp_path, ("autodetect-stand-in", "autodetect",
                                        incident.url + "/autodetect/detect?app=outlookdesktopBasic"))
    code, report, progress = canary_json(capsys, "--services", str(services), "--ca-bundle", str(origin_ca_bundle))
    assert code == 1
    assert (report["probes"], report["findings"], report["errors"]) == (6, 1, 0)
    (finding,) = [r for r in report["results"] if r["finding"]]
    assert (finding["service"], finding["address"], finding["outcome"]) == (
        "autodetect-stand-in", "canary@example.com", "suggested")
    assert finding["hosts"] == JNET and finding["rules"][0] == "reserved-user-domain"
    assert {r["outcome"] for r in report["results"] if not r["finding"]} == {"refused"}
    assert "canary@canary.invalid" in incident.seen  # every reserved domain was really asked
    assert "autodetect-stand-in" not in progress  # --json and no TTY: no progress on stderr


def test_an_honest_service_that_refuses_reserved_domains_exits_0(
        honest: AutoDetectStandIn, origin_ca_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = services_file(tmp_path, ("honest", "autodetect", honest.url + "/autodetect/detect"))
    code, report, _ = canary_json(capsys, "--services", str(services), "--ca-bundle", str(origin_ca_bundle))
    assert code == 0 and report["findings"] == 0
    assert [r["status"] for r in report["results"]] == [404] * 6


def test_the_canary_finds_automx2_answering_for_example_com_in_autoconfig_and_pox(
        automx2: Automx2, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = f"http://127.0.0.1:{automx2.port}"
    services = services_file(tmp_path, ("automx2-autoconfig", "autoconfig", base + "/mail/config-v1.1.xml"),
                             ("automx2-pox", "pox", base + "/autodiscover/autodiscover.xml"),
                             addresses=("canary@example.com", "canary@mail.test"))
    code, report, _ = canary_json(capsys, "--services", str(services))
    assert code == 1
    found = {(r["service"], r["address"]): r for r in report["results"]}
    for service in ("automx2-autoconfig", "automx2-pox"):
        hit = found[(service, "canary@example.com")]
        assert hit["outcome"] == "suggested" and {h.encode() for h in hit["hosts"]} >= set(SEED_HOSTS)
        assert not found[(service, "canary@mail.test")]["finding"]


def test_a_redirect_for_a_reserved_domain_is_reported_not_followed(
        incident: AutoDetectStandIn, origin_ca_bundle: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    services = services_file(tmp_path, ("moved", "autodetect", incident.url + "/moved"),
                             addresses=("canary@example.org",))
    code, report, _ = canary_json(capsys, "--services", str(services), "--ca-bundle", str(origin_ca_bundle))
    (result,) = report["results"]
    assert code == 1 and (result["outcome"], result["status"]) == ("redirect", 302)
    assert result["hosts"] == ["autodiscover.jnet.sei.co.jp"]


def test_tls_is_verified_unless_a_ca_bundle_is_given(
        incident: AutoDetectStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    services = services_file(tmp_path, ("untrusted", "autodetect", incident.url + "/autodetect/detect"),
                             addresses=("canary@example.com",))
    code, report, _ = canary_json(capsys, "--services", str(services))
    (result,) = report["results"]
    assert code == 2 and result["outcome"] == "error" and "CERTIFICATE_VERIFY_FAILED" in result["detail"]


def test_a_scheduled_run_logs_each_probe_like_a_decision_and_exits_1(
        incident: AutoDetectStandIn, origin_ca_bundle: Path, tmp_path: Path) -> None:
    services = services_file(tmp_path, ("autodetect-stand-in", "autodetect", incident.url + "/autodetect/detect"),
                             addresses=("canary@example.com", "canary@canary.test"))
    log = tmp_path / "canary.jsonl"
    done = subprocess.run([sys.executable, "-m", "guard.cli", "canary", "--services", str(services),
                           "--ca-bundle", str(origin_ca_bundle), "--log", str(log)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "FINDING autodetect-stand-in (autodetect) answered for canary@example.com" in done.stdout
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["event"], x["user_domain"], x["outcome"]) for x in lines] == [
        ("canary", "example.com", "suggested"), ("canary", "canary.test", "refused")]
    assert lines[0]["hosts"] == JNET and "ts" in lines[0] and "policy_revision" in lines[0]
