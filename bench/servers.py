"""Loopback fixtures for the proxy benchmark: a throw-away CA, an HTTPS upstream, mitmdump processes."""

from __future__ import annotations

import datetime
import os
import re
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
ROUTE_ADDON = """
from mitmproxy import ctx

def load(loader):
    loader.add_option("bench_upstream_port", int, 0, "route every upstream connection here")

def server_connect(data):
    data.server.address = ("127.0.0.1", ctx.options.bench_upstream_port)
"""


def make_ca(folder: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """(ca.pem, leaf.pem, leaf.key) for `names`, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "autodiscover-guard bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Upstream:
    """A threaded HTTPS server answering fixed bodies per path (keep-alive, Nagle off)."""

    def __init__(self, cert: Path, key: Path, routes: dict[str, tuple[str, bytes]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                if length:
                    self.rfile.read(length)
                ctype, body = routes.get(self.path.split("?", 1)[0], ("text/plain", b"not found"))
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class Mitmdump:
    """A running mitmdump and the port it listens on."""

    process: subprocess.Popen[str]
    port: int

    def cpu_seconds(self) -> float:
        """utime + stime of the process, from /proc/<pid>/stat."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        """Resident set size in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_mitmdump(folder: Path, ca: Path, upstream_port: int, guard: bool, name: str,
                   extra: list[str] | None = None) -> Mitmdump:
    """Start mitmdump (bare or with the guard) on a free loopback port; wait for its port line."""
    route = folder / "bench_route.py"
    route.write_text(ROUTE_ADDON)
    confdir = folder / f"conf-{name}"
    confdir.mkdir(exist_ok=True)
    argv = [str(Path(sys.executable).parent / "mitmdump"), "--listen-host", "127.0.0.1", "-p", "0",
            "-s", str(route), "--set", f"bench_upstream_port={upstream_port}", "--set", f"confdir={confdir}",
            "--set", f"ssl_verify_upstream_trusted_ca={ca}", "--set", "flow_detail=0"]
    if guard:
        log = folder / f"{name}.jsonl"
        argv += ["-s", str(ROOT / "addons" / "autodiscover_guard.py"), "--set", f"guard_log={log}"]
    process = subprocess.Popen([*argv, *(extra or [])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=ROOT)
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"listening at .*:(\d+)", line)
        if found:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()  # type: ignore[union-attr]
            return Mitmdump(process, int(found.group(1)))
    raise RuntimeError(f"mitmdump did not start: rc={process.wait()}")
