"""The discovery answers real clients meet, served on every URL a client fetches for a mail domain.

A :class:`Scenario` is one mail domain and the answer its (or an attacker's) servers give:
`seed` (the January 2026 incident: example.com → imapgms/smtpgms.jnet.sei.co.jp), `foreign`
(a fabrikam.com user sent to another company's servers), `honest` (all servers under the
user's own domain) and `partly_foreign` (own IMAP/SMTP plus a foreign POP3 alternative, which a
rewrite removes). `serve(upstream)` routes the answer on every URL measured in docs/clients.md:
`autoconfig.D` and `D/.well-known/autoconfig` (both schemes), the ISPDBs, Exchange POX on `D` and
`autodiscover.D`, and the URL D's TXT `mailconf=` record names (`https://D/mailconf.xml`).

`Internet` is a plain mitmdump that only relays (no guard, no decryption): what `DIRECT` in a
PAC file reaches, since test domains resolve only through the harness routing script.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import FIXTURES
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.process import stop as stop_process
from tests.e2e.support.proxy import ROUTE_SCRIPT
from tests.e2e.support.upstream import Upstream

AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
WELL_KNOWN_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"
POX_PATH = "/autodiscover/autodiscover.xml"
ISPDB = (  # (host, path prefix): Thunderbird's, maildiscover's and Horde's ISPDB URLs
    ("live.thunderbird.net", "/autoconfig/v1.1/"),
    ("autoconfig.thunderbird.net", "/v1.1/"),
    ("live.mozillamessaging.com", "/autoconfig/v1.1/"),
)
MAILCONF_PATH = "/mailconf.xml"  # the URL the TXT `mailconf=` record names (on the bare domain D)
XML = {"content-type": "application/xml"}


def server(kind: str, host: str, port: int) -> str:
    tag = "outgoingServer" if kind == "smtp" else "incomingServer"
    return (f'    <{tag} type="{kind}">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n'
            "      <socketType>SSL</socketType>\n      <authentication>password-cleartext</authentication>\n"
            f"      <username>%EMAILADDRESS%</username>\n    </{tag}>\n")


def autoconfig(domain: str, *servers: str) -> bytes:
    """A Mozilla clientConfig 1.1 document for `domain` with `servers` (from `server`)."""
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n  <emailProvider id="{domain}">\n'
            f"    <domain>{domain}</domain>\n    <displayName>{domain}</displayName>\n{''.join(servers)}"
            "  </emailProvider>\n</clientConfig>\n").encode()


@dataclass(frozen=True)
class Scenario:
    """A mail user, the answer served for the domain, and what a safe client may end with."""

    name: str
    email: str
    autoconfig: bytes
    own: frozenset[str]  # hosts a configured client must end with (all of them)
    hostile: frozenset[str]  # hosts a client must never end with
    pox: bytes = b""  # Exchange POX answer (empty: no route, 404)

    @property
    def domain(self) -> str:
        return self.email.rsplit("@", 1)[1]

    def urls(self) -> list[tuple[str, str]]:
        """(host, path) of every URL served for this domain."""
        d = self.domain
        return [(f"autoconfig.{d}", AUTOCONFIG_PATH), (d, WELL_KNOWN_PATH),
                *[(host, prefix + d) for host, prefix in ISPDB], (d, MAILCONF_PATH), (d, POX_PATH),
                (f"autodiscover.{d}", POX_PATH)]

    @property
    def mailconf(self) -> str:
        """The TXT record `D` publishes for myl-discovery and pimalaya: `mailconf=<URL>`."""
        return f"mailconf=https://{self.domain}{MAILCONF_PATH}"

    def serve(self, upstream: Upstream) -> None:
        for host, path in self.urls():
            if path == POX_PATH:
                if self.pox:
                    upstream.add_route(host, path, body=self.pox, headers=XML)
            else:
                upstream.add_route(host, path, body=self.autoconfig, headers=XML)


SEED = Scenario(
    "seed", "email@example.com", (FIXTURES / "autoconfig__seed_example_com.xml").read_bytes(),
    own=frozenset(), hostile=frozenset({"imapgms.jnet.sei.co.jp", "smtpgms.jnet.sei.co.jp"}),
    pox=(FIXTURES / "pox__seed_example_com.xml").read_bytes())
FOREIGN = Scenario(
    "foreign", "erin@fabrikam.com",
    autoconfig("fabrikam.com", server("imap", "imap.collector-mail.net", 993),
               server("smtp", "smtp.collector-mail.net", 465)),
    own=frozenset(), hostile=frozenset({"imap.collector-mail.net", "smtp.collector-mail.net"}))
HONEST = Scenario(
    "honest", "frank@wingtip-mail.com",
    autoconfig("wingtip-mail.com", server("imap", "imap.wingtip-mail.com", 993),
               server("smtp", "smtp.wingtip-mail.com", 465)),
    own=frozenset({"imap.wingtip-mail.com", "smtp.wingtip-mail.com"}), hostile=frozenset())
PARTLY_FOREIGN = Scenario(
    "partly_foreign", "gail@adatum-mail.com",
    autoconfig("adatum-mail.com", server("imap", "imap.adatum-mail.com", 993),
               server("pop3", "pop.collector-mail.net", 995), server("smtp", "smtp.adatum-mail.com", 465)),
    own=frozenset({"imap.adatum-mail.com", "smtp.adatum-mail.com"}), hostile=frozenset({"pop.collector-mail.net"}))
SCENARIOS = (SEED, FOREIGN, HONEST, PARTLY_FOREIGN)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Internet:
    """A relay-only mitmdump (`--ignore-hosts .*`) that routes every name to the local upstreams."""

    def __init__(self, pki: TestPKI, upstream: Upstream, workdir: Path) -> None:
        self.port = _free_port()
        mitmdump = Path(sys.executable).parent / "mitmdump"
        self.log = (workdir / "internet.log").open("w")
        self.process = subprocess.Popen(
            [str(mitmdump), "--listen-host", "127.0.0.1", "-p", str(self.port), "-s", str(ROUTE_SCRIPT),
             "--set", f"confdir={workdir / 'confdir'}", "--set", f"route_https_port={upstream.https_port}",
             "--set", f"route_http_port={upstream.http_port}", "--ignore-hosts", ".*", "--set", "flow_detail=0"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        self.close()
        raise RuntimeError(f"the relay mitmdump did not listen; see {workdir / 'internet.log'}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        stop_process(self.process)
        self.log.close()
