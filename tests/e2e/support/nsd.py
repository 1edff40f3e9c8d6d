"""A real authoritative DNS server (NLnet Labs' NSD) on loopback, serving the zones in tests/fixtures/dns.

Started in the foreground (`nsd -d`) with a config of its own in a tmp dir: no chroot, no
privilege drop, no database file, no remote control, loopback only. `free_port()` picks a port
free for both UDP and TCP (NSD binds both).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from tests.e2e.support.process import stop as stop_process

ZONES = Path(__file__).resolve().parents[2] / "fixtures" / "dns"
STARTUP_SECONDS = 10.0


def free_port() -> int:
    """A loopback port no one uses for UDP or TCP right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port")


def zone_names() -> list[str]:
    """The zones under tests/fixtures/dns (one `<zone>.zone` file each)."""
    return sorted(path.name.removesuffix(".zone") for path in ZONES.glob("*.zone"))


@dataclass
class Nsd:
    """One running NSD: its address and process."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def nsd_binary() -> str | None:
    """`nsd` from PATH or Debian's /usr/sbin (not on a non-root PATH)."""
    return shutil.which("nsd") or shutil.which("nsd", path="/usr/sbin:/usr/local/sbin")


def start_nsd(workdir: Path) -> Nsd:
    """Start NSD on a free loopback port and wait until it answers for every fixture zone."""
    binary = nsd_binary()
    if binary is None:
        raise FileNotFoundError("nsd")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    zones = "".join(f'zone:\n  name: "{name}"\n  zonefile: "{ZONES / (name + ".zone")}"\n' for name in zone_names())
    config = workdir / "nsd.conf"
    config.write_text(
        "server:\n"
        f"  ip-address: 127.0.0.1@{port}\n"
        f"  port: {port}\n"
        "  do-ip6: no\n"
        '  username: ""\n'
        '  chroot: ""\n'
        '  database: ""\n'
        f'  zonelistfile: "{workdir}/zone.list"\n'
        f'  xfrdfile: "{workdir}/xfrd.state"\n'
        f'  xfrdir: "{workdir}"\n'
        f'  pidfile: "{workdir}/nsd.pid"\n'
        f'  logfile: "{workdir}/nsd.log"\n'
        "  server-count: 1\n"
        "  verbosity: 1\n"
        "  rrl-ratelimit: 0\n"  # response rate limiting would drop the tests' bursts of queries
        "remote-control:\n"
        "  control-enable: no\n" + zones,
        encoding="utf-8",
    )
    process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    server = Nsd(process, port, workdir)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (workdir / "nsd.log").read_text(errors="replace") if (workdir / "nsd.log").exists() else ""
            raise RuntimeError(f"nsd exited with {process.returncode}: {log}")
        if all(_answers(port, name) for name in zone_names()):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError("nsd did not answer in time")


def _answers(port: int, zone: str) -> bool:
    try:
        reply = dns.query.udp(dns.message.make_query(zone, "SOA"), "127.0.0.1", port=port, timeout=0.2)
    except (OSError, dns.exception.Timeout):
        return False
    return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)
