"""Run one real Python discovery client for one address and print what it ended with as one JSON object.

A separate process, so each run starts clean. The caller points it at the guard through the
environment requests reads (`HTTPS_PROXY`, `HTTP_PROXY`, `REQUESTS_CA_BUNDLE`). myl-discovery
resolves TXT/SRV with dnspython from /etc/resolv.conf; its resolver is pointed at the test DNS
server (the DNS_PORT argument) by configuration, as a user's resolv.conf would.

Usage: mail_client_discover.py maildiscover|myl EMAIL [DNS_PORT]
Output: {"servers": ["kind host:port", ...]} or {"error": "<exception class>", "message": ...}.
"""

import json
import sys

import dns.resolver


def maildiscover(email: str) -> list[str]:
    from maildiscover.autoconfig import Autoconfig

    config = Autoconfig(email, insecure=True).get()
    return [f"{kind} {conf.host}:{conf.port}" for kind, conf in vars(config).items() if conf is not None]


def myl(email: str) -> list[str]:
    from myldiscovery.discovery import autodiscover

    found = autodiscover(email) or {}
    return [f"{kind} {conf['server']}:{conf['port']}" for kind, conf in found.items() if conf and conf.get("server")]


def local_resolver(port: int) -> None:
    """Every dnspython Resolver made from now on asks only 127.0.0.1:`port`."""
    class Local(dns.resolver.Resolver):
        def __init__(self, filename: str = "/etc/resolv.conf", configure: bool = True) -> None:
            super().__init__(filename, configure=False)
            self.nameservers, self.port, self.lifetime = ["127.0.0.1"], port, 5.0

    dns.resolver.Resolver = Local  # type: ignore[misc,assignment]


def main() -> None:
    client, email = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        local_resolver(int(sys.argv[3]))
    try:
        servers = {"maildiscover": maildiscover, "myl": myl}[client](email)
    except Exception as exc:  # the class is the result
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)[:300]}))
        return
    print(json.dumps({"servers": servers}))


if __name__ == "__main__":
    main()
