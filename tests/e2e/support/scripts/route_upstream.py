"""Test-only mitmproxy script: every upstream connection goes to the local test servers.

TLS verification and SNI keep the original name (only the address is changed in `server_connect`),
so `autodiscover.contoso.com` is served by the local HTTPS server with a leaf for that
name, without /etc/hosts or DNS. Port 80 goes to the plain-HTTP server, everything else to HTTPS,
except port 1 (tcpmux, never served here): it stays 127.0.0.1:1, so connecting is refused.
"""

from typing import Any

from mitmproxy import ctx

REFUSED_PORT = 1


def load(loader: Any) -> None:
    loader.add_option("route_https_port", int, 0, "local HTTPS upstream port")
    loader.add_option("route_http_port", int, 0, "local plain-HTTP upstream port")


def server_connect(data: Any) -> None:
    if data.server.transport_protocol == "udp":
        return  # DNS listeners (tests/e2e/test_dns.py) go to the address their mode names
    _host, port = data.server.address
    if port == REFUSED_PORT:
        data.server.address = ("127.0.0.1", REFUSED_PORT)
        return
    target = ctx.options.route_http_port if port == 80 else ctx.options.route_https_port
    data.server.address = ("127.0.0.1", target)
