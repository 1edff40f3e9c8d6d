"""The gateway lab: clients, a gateway and a fake internet in network namespaces of their own (root only).

    clients ns                 gateway ns                               internet ns
    10.18.1.10-15  --veth--  10.18.1.1 | HAProxy :8080 -> guards      10.18.2.1 --veth-- 10.18.2.2
                               (nftables REDIRECT for transparent)                         upstream :443 :80

Each namespace has its own network stack, so the addresses and interface names are the same in
every run; only the namespace names carry a per-run tag, so concurrent runs do not collide.
`ip netns exec` bind-mounts `/etc/netns/<ns>/hosts` over `/etc/hosts`: that is how the gateway (and
transparent clients) resolve the lab's host names to the internet namespace. `Lab.close()` stops
every process the lab started and deletes the namespaces (their veths go with them) and the
`/etc/netns` folders, also after a failed test.

Programs inside the namespaces are started with `ip netns exec`; the two helpers that have no
off-the-shelf program run from this module:

* ``python -m tests.e2e.support.lab upstream SPEC`` - the fake internet: HTTPS on 443 (one leaf
  per SNI name, issued by the tests' origin CA) and HTTP on 80, a canned answer per host and path,
  ``200 pass-through`` for everything else.
* ``python -m tests.e2e.support.lab load SPEC`` - the client load: a list of requests sent through a
  proxy (explicit: CONNECT/absolute form) or straight to the host (transparent), from several
  source addresses, one JSON line per request on stdout (times, source port, status or error).
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar, cast

from tests.e2e.support.process import stop

ROOT = Path(__file__).resolve().parents[3]
CLIENTS_NET, INTERNET_NET = "10.18.1", "10.18.2"
GATEWAY_CLIENT_SIDE, GATEWAY_INTERNET_SIDE = f"{CLIENTS_NET}.1", f"{INTERNET_NET}.1"
INTERNET = f"{INTERNET_NET}.2"
CLIENT_ADDRESSES = tuple(f"{CLIENTS_NET}.{n}" for n in range(10, 16))
_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def lab_unavailable() -> str:
    """Why the lab cannot run here ('' when it can): it needs root and the `ip` program."""
    if os.geteuid() != 0:
        return "the gateway lab needs root (network namespaces); CI runs as root"
    missing = [name for name in ("ip", "haproxy", "nft", "curl") if shutil.which(name) is None]
    return f"the gateway lab needs {', '.join(missing)} (.ci/run installs them)" if missing else ""


@dataclass
class Lab:
    """Three namespaces joined by veth pairs, and every process started in them."""

    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def clients(self) -> str:
        return f"adg-{self.tag}-clients"

    @property
    def gateway(self) -> str:
        return f"adg-{self.tag}-gateway"

    @property
    def internet(self) -> str:
        return f"adg-{self.tag}-internet"

    def build(self, hosts: Sequence[str]) -> None:
        """Make the namespaces, links, addresses and routes; `hosts` resolve to the internet ns."""
        for ns in (self.clients, self.gateway, self.internet):
            self.ip("netns", "add", ns)
            self.ip("-n", ns, "link", "set", "lo", "up")
            folder = Path("/etc/netns") / ns
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"{INTERNET} {h}\n" for h in hosts))
        self.ip("-n", self.clients, "link", "add", "gw0", "type", "veth", "peer", "name", "cl0", "netns", self.gateway)
        self.ip("-n", self.internet, "link", "add", "gw0", "type", "veth", "peer", "name", "in0",
                "netns", self.gateway)
        for address in CLIENT_ADDRESSES:
            self.ip("-n", self.clients, "addr", "add", f"{address}/24", "dev", "gw0")
        self.ip("-n", self.gateway, "addr", "add", f"{GATEWAY_CLIENT_SIDE}/24", "dev", "cl0")
        self.ip("-n", self.gateway, "addr", "add", f"{GATEWAY_INTERNET_SIDE}/24", "dev", "in0")
        self.ip("-n", self.internet, "addr", "add", f"{INTERNET}/24", "dev", "gw0")
        for ns, link in ((self.clients, "gw0"), (self.gateway, "cl0"), (self.gateway, "in0"), (self.internet, "gw0")):
            self.ip("-n", ns, "link", "set", link, "up")
        self.ip("-n", self.clients, "route", "add", "default", "via", GATEWAY_CLIENT_SIDE)
        self.ip("-n", self.internet, "route", "add", "default", "via", GATEWAY_INTERNET_SIDE)
        self.run(self.gateway, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), then remove the namespaces and their files."""
        for process in self.processes:
            stop(process)
        for ns in (self.clients, self.gateway, self.internet):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)

    @staticmethod
    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def run(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a program in namespace `ns` to its end; raises with its output if it fails."""
        check = kwargs.pop("check", True)
        done = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              check=False, **kwargs)
        if done.returncode != 0 and check:
            raise RuntimeError(f"{' '.join(argv)} in {ns} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def spawn(self, ns: str, argv: Sequence[str], output: Path) -> subprocess.Popen[bytes]:
        """Start a long-running program in `ns`, its stdout and stderr into `output`; stopped by `close`."""
        with output.open("wb") as sink:
            process = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=sink, stderr=subprocess.STDOUT,
                                       cwd=ROOT)
        self.processes.append(process)
        return process

    def inside(self, ns: str, work: Callable[[], T]) -> T:
        """Call `work` in a thread that has joined `ns` (setns is per thread), so its sockets live there."""
        result: list[T] = []
        failure: list[BaseException] = []

        def enter_and_work() -> None:
            try:
                with open(f"/run/netns/{ns}") as handle:
                    if ctypes.CDLL(None, use_errno=True).setns(handle.fileno(), _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns({ns})")
                result.append(work())
            except BaseException as exc:  # handed to the calling thread
                failure.append(exc)

        thread = threading.Thread(target=enter_and_work, name=f"in-{ns}")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return result[0]

    def wait_listening(self, ns: str, port: int, process: subprocess.Popen[bytes], output: Path,
                       timeout: float = 30.0) -> None:
        """Wait until a TCP socket listens on `port` in `ns` (asked with `ss`, not by connecting: a
        transparent instance treats a connection that was not redirected as an error, and
        mitmproxy 12 exits on an error logged at start-up); fail with the output if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if self.run(ns, ["ss", "-Hltn", f"sport = :{port}"]).stdout.strip():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{process.args!r} did not listen on port {port}:\n"
                           + output.read_text(errors="replace")[-4000:])


# -- the fake internet --------------------------------------------------------------------------


def serve_upstream(spec: dict[str, Any]) -> None:
    """HTTPS on 443 and HTTP on 80 in this namespace until killed; `spec` from the test (see `upstream_spec`)."""
    contexts: dict[str, ssl.SSLContext] = {}
    for host, (cert, key) in spec["leaves"].items():
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        contexts[host] = context
    routes: dict[str, dict[str, str]] = spec["routes"]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            host = (self.headers.get("host") or "").rsplit(":", 1)[0].lower()
            body_file = routes.get(host, {}).get(self.path.split("?", 1)[0])
            body, kind = (Path(body_file).read_bytes(), "text/xml; charset=utf-8") if body_file else (
                b"pass-through\n", "text/plain")
            self.send_response(200)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256

        def handle_error(self, request: Any, client_address: Any) -> None:
            """Clients killed mid-request (the failover test) are expected."""

    def choose(sock: ssl.SSLObject, name: str, _context: ssl.SSLContext) -> None:
        if name and name.lower() in contexts:
            sock.context = contexts[name.lower()]

    https = Server(("0.0.0.0", 443), Handler)
    default = next(iter(contexts.values()))
    default.sni_callback = choose
    https.socket = default.wrap_socket(https.socket, server_side=True)
    plain = Server(("0.0.0.0", 80), Handler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    https.serve_forever()


# -- the client load ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One request of the load: `n` is its marker (`?n-<n>`), `source` the client address it leaves from."""

    n: int
    source: str
    host: str
    path: str
    body: str = ""  # a POST body (discovery requests); GET without one


def send(ask: Ask, proxy: tuple[str, int] | None, context: ssl.SSLContext, timeout: float) -> dict[str, Any]:
    """Send one request on a new connection; a record of what happened (never raises)."""
    record: dict[str, Any] = {"n": ask.n, "source": ask.source, "host": ask.host, "start": time.time()}
    if proxy:
        connection = http.client.HTTPSConnection(*proxy, timeout=timeout, context=context,
                                                 source_address=(ask.source, 0))
        connection.set_tunnel(ask.host, 443)
    else:
        connection = http.client.HTTPSConnection(ask.host, 443, timeout=timeout, context=context,
                                                 source_address=(ask.source, 0))
    hookable = cast(Any, connection)  # http.client's seam for opening the TCP connection
    open_tcp = hookable._create_connection

    def open_and_note_port(*args: Any, **kwargs: Any) -> socket.socket:
        """The TCP connection, its source port noted before any TLS: a load balancer logs by it."""
        sock = open_tcp(*args, **kwargs)
        record["sport"] = sock.getsockname()[1]
        return cast(socket.socket, sock)

    hookable._create_connection = open_and_note_port
    try:
        connection.connect()
        url = f"{ask.path}?n-{ask.n}"
        if ask.body:
            connection.request("POST", url, body=ask.body.encode(), headers={"content-type": "text/xml"})
        else:
            connection.request("GET", url)
        response = connection.getresponse()
        record |= {"status": response.status, "body": response.read().decode(errors="replace")}
    except (OSError, http.client.HTTPException) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()
    record["end"] = time.time()
    return record


def run_load(spec: dict[str, Any]) -> None:
    """Send `spec["asks"]` with `spec["concurrency"]` workers, one JSON line per request, flushed as it ends."""
    context = ssl.create_default_context(cafile=spec["cafile"])
    proxy = tuple(spec["proxy"]) if spec.get("proxy") else None
    asks = [Ask(**ask) for ask in spec["asks"]]
    lock = threading.Lock()

    def one(ask: Ask) -> None:
        record = send(ask, proxy, context, spec.get("timeout", 20.0))
        with lock:
            print(json.dumps(record), flush=True)

    with ThreadPoolExecutor(spec["concurrency"]) as pool:
        list(pool.map(one, asks))


def load_argv(spec_file: Path) -> list[str]:
    """The command that runs `run_load` in a namespace."""
    return [sys.executable, "-m", "tests.e2e.support.lab", "load", str(spec_file)]


def upstream_argv(spec_file: Path) -> list[str]:
    """The command that runs `serve_upstream` in a namespace."""
    return [sys.executable, "-m", "tests.e2e.support.lab", "upstream", str(spec_file)]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a load wrote."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


# -- the lab's gateways --------------------------------------------------------------------------

POX = "/autodiscover/autodiscover.xml"
SEED, HONEST, FOREIGN = "autodiscover.example.com", "autodiscover.contoso.com", "autodiscover.fabrikam.com"
PASS_THROUGH = "www.contoso.com"  # not a discovery host: relayed without decryption
ANSWERS = {SEED: "pox__seed_example_com.xml", HONEST: "pox__benign_onprem_exchange.xml",
           FOREIGN: "pox__redirect_url_foreign.xml"}
USERS = {SEED: "email@example.com", HONEST: "alice@contoso.com", FOREIGN: "alice@contoso.com"}
FIXTURES = ROOT / "tests" / "fixtures"
POLICY = ROOT / "policies" / "gateway.example.yaml"
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
NFT_RULES = ROOT / "deploy" / "nftables" / "autodiscover-guard-transparent.nft"
PROXY_PORT, GUARD_PORTS = 8080, (8081, 8082)  # as in the shipped files


@dataclass
class Instance:
    """One guard (or bare) mitmdump in the gateway namespace."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    metrics: Path
    output: Path

    def decisions(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [line for line in lines if line["event"] == "decision"]


@dataclass
class Gateway:
    """A lab with its two instances, HAProxy (explicit) or the nftables spread (transparent)."""

    lab: Lab
    folder: Path
    bundle: Path  # proxy CA + origin CA: what the clients trust, for discovery and pass-through alike
    explicit: bool
    instances: list[Instance]
    haproxy: subprocess.Popen[bytes] | None = None
    haproxy_log: Path | None = None
    upstream: subprocess.Popen[bytes] | None = None

    def load(self, asks: Sequence[Ask], name: str, concurrency: int = 6) -> tuple[subprocess.Popen[bytes], Path]:
        """Start a client load in the clients namespace: its process and the file its records go to."""
        spec = self.folder / f"{name}.json"
        spec.write_text(json.dumps({
            "cafile": str(self.bundle), "concurrency": concurrency,
            "proxy": [GATEWAY_CLIENT_SIDE, PROXY_PORT] if self.explicit else None,
            "asks": [ask.__dict__ for ask in asks],
        }))
        records = self.folder / f"{name}.jsonl"
        return self.lab.spawn(self.lab.clients, load_argv(spec), records), records

    def run_load(self, asks: Sequence[Ask], name: str, concurrency: int = 6) -> list[dict[str, Any]]:
        """A client load to its end; its records."""
        process, records = self.load(asks, name, concurrency)
        process.wait(300)
        return read_records(records)

    def wait_for_haproxy_lines(self, count: int) -> list[str]:
        """HAProxy's log once it holds `count` client connections (it logs each when it ends)."""
        assert self.haproxy_log is not None
        deadline = time.monotonic() + 10
        while True:
            lines = self.haproxy_log.read_text().splitlines()
            if sum(line.startswith(CLIENTS_NET) for line in lines) >= count or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def all_decisions(self, count: int) -> list[list[dict[str, Any]]]:
        """Every instance's decisions of load requests once `count` have arrived in total (the logs are
        written async); decisions without a numeric marker (the curl tests') are left out."""
        deadline = time.monotonic() + 10
        while True:
            logs = [[line for line in instance.decisions() if marker(line) is not None]
                    for instance in self.instances]
            if sum(map(len, logs)) >= count or time.monotonic() > deadline:
                return logs
            time.sleep(0.05)


def marker(line: dict[str, Any]) -> int | None:
    """The `?n-<n>` marker of a decision's URL (a query key: the log keeps keys, never values), if a number."""
    found = str(line["url"]).rpartition("?n-")[2]
    return int(found) if found.isdigit() else None


def mixed(count: int, *, discovery_every: int = 1) -> list[Ask]:
    """`count` requests from all client addresses in turn: discovery (seed, honest, foreign in turn)
    every `discovery_every`-th request, a pass-through page otherwise."""
    from tests.conftest import pox_request  # not at the top: the namespace helpers run without pytest

    hosts = (SEED, HONEST, FOREIGN)
    asks = []
    for n in range(count):
        source = CLIENT_ADDRESSES[n % len(CLIENT_ADDRESSES)]
        if n % discovery_every == 0:
            host = hosts[(n // discovery_every) % len(hosts)]
            asks.append(Ask(n, source, host, POX, pox_request(USERS[host]).decode()))
        else:
            asks.append(Ask(n, source, PASS_THROUGH, "/"))
    return asks


def instance_argv(folder: Path, name: str, listen: str, extra: Sequence[str], origin_ca: Path, *,
                  bare: bool = False, trusted_haproxy: bool = False) -> list[str]:
    """What `autodiscover-guard run --mode gateway` execs, trusting the lab's origin CA upstream (and,
    with `trusted_haproxy`, HAProxy's X-Forwarded-For: `--trusted-proxy 127.0.0.1`); with `bare`, the
    same mitmdump options without the guard (the throughput baseline)."""
    from guard.launch import mitmdump_argv
    from guard.policy import load_policy

    args = argparse.Namespace(mode="gateway", listen=listen, confdir=str(folder / "confdir"),
                              log=str(folder / f"{name}.jsonl"), dns=None, dns_upstream=None,
                              web=None, metrics=None, save=None,
                              trusted_proxy=["127.0.0.1"] if trusted_haproxy else [],
                              mitmdump_args=[*extra, "--set", f"ssl_verify_upstream_trusted_ca={origin_ca}",
                                             *([] if bare else ["--set", f"guard_metrics={folder / f'{name}.prom'}"])])
    argv = mitmdump_argv(args, POLICY, load_policy(POLICY))
    if not bare:
        return argv
    kept: list[str] = []
    pairs = iter(argv)
    for item in pairs:
        value = next(pairs) if item in ("-s", "--set") else None
        if item == "-s" or (item == "--set" and str(value).startswith("guard_")):
            continue
        kept += [item] if value is None else [item, value]
    return kept


def start_gateway(pki: Any, folder: Path, *, explicit: bool, bare: bool = False) -> Gateway:
    """Build a lab and start its internet (upstream), two instances (guards, or bare mitmdumps), and
    HAProxy with the shipped config (explicit) or the shipped nftables rules (transparent).
    `pki` is a `tests.e2e.support.pki.TestPKI`."""
    lab = Lab()
    try:
        lab.build([*ANSWERS, PASS_THROUGH])
        pki.install_proxy_ca(folder / "confdir")
        bundle = folder / "trust.pem"
        bundle.write_bytes(pki.proxy_ca_bundle.read_bytes() + pki.origin_ca_bundle.read_bytes())
        spec = folder / "upstream.json"
        spec.write_text(json.dumps({
            "leaves": {host: [str(p) for p in pki.leaf(host)] for host in [*ANSWERS, PASS_THROUGH]},
            "routes": {host: {POX: str(FIXTURES / answer)} for host, answer in ANSWERS.items()},
        }))
        upstream = lab.spawn(lab.internet, upstream_argv(spec), folder / "upstream.out")
        lab.wait_listening(lab.internet, 443, upstream, folder / "upstream.out")
        instances = []
        for index, port in enumerate(GUARD_PORTS, 1):
            name = f"g{index}"
            listen, extra = (f"127.0.0.1:{port}", []) if explicit else (f"0.0.0.0:{port}", ["--mode", "transparent"])
            argv = instance_argv(folder, name, listen, extra, pki.origin_ca_bundle, bare=bare, trusted_haproxy=explicit)
            output = folder / f"{name}.out"
            process = lab.spawn(lab.gateway, argv, output)
            instances.append(Instance(name, port, process, folder / f"{name}.jsonl", folder / f"{name}.prom", output))
        for instance in instances:
            lab.wait_listening(lab.gateway, instance.port, instance.process, instance.output)
        gateway = Gateway(lab, folder, bundle, explicit, instances, upstream=upstream)
        if explicit:
            gateway.haproxy_log = folder / "haproxy.log"
            gateway.haproxy = lab.spawn(lab.gateway, ["haproxy", "-db", "-f", str(HAPROXY_CFG)], gateway.haproxy_log)
            lab.wait_listening(lab.gateway, PROXY_PORT, gateway.haproxy, gateway.haproxy_log)
        else:
            lab.run(lab.gateway, ["nft", "-D", "clients_if=cl0", "-f", str(NFT_RULES)])
        return gateway
    except BaseException:
        lab.close()
        raise


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.support.lab")
    parser.add_argument("role", choices=("upstream", "load"))
    parser.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    (serve_upstream if args.role == "upstream" else run_load)(spec)


if __name__ == "__main__":
    main()
