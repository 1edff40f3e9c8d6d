"""Who the client is behind a load balancer: `X-Forwarded-For`, believed only from trusted proxies.

Behind HAProxy every connection comes from HAProxy's address. HAProxy in `mode http` with
`option forwardfor` adds `X-Forwarded-For: <client address>` to each request it forwards,
CONNECT included (deploy/haproxy/haproxy.cfg deletes any header the client sent first). This
addon believes that header only when the direct peer is in `guard_trusted_proxies`, and then only
its **last** element: the one the trusted peer itself appended. Earlier elements were written by
whoever sent the request to that peer, the client included, so they prove nothing.

* A CONNECT's address holds for the whole client connection (the requests inside the tunnel are
  encrypted end to end from HAProxy's view, and any `X-Forwarded-For` in them is the client's own):
  remembered per `client_conn.id`, bounded, and dropped on `client_disconnected`.
* An absolute-form request (`GET http://host/...` through the proxy, in clear, on a connection
  that opened no tunnel) carries its own header.
* Anything else (an untrusted peer, a transparent-mode connection, a header that is not one
  address) is the peer address, as before.

The address reaches the guard through `flow.metadata[CLIENT]`; `client_address` reads it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from mitmproxy import connection, ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from guard.proxy.flows import header

CLIENT = "autodiscover_guard.client"  # flow.metadata key: the client address the guard records
MAX_TUNNELS = 65536  # remembered CONNECT addresses; far above HAProxy's maxconn (4096)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(spec: str) -> tuple[Network, ...]:
    """`guard_trusted_proxies`: comma-separated addresses or CIDRs; empty trusts no one.

    Raises:
        ValueError: an element that is not an address or network, with the element named.
    """
    networks = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"guard_trusted_proxies: {item!r} is not an IP address or CIDR "
                             "(example: 127.0.0.1,10.0.0.0/24)") from None
    return tuple(networks)


def last_hop(forwarded_for: str | None) -> str | None:
    """The last element of an `X-Forwarded-For` value (header lines folded with ", "), if it is one
    IP address; None otherwise. A port or brackets make it unreadable: HAProxy writes neither."""
    if not forwarded_for:
        return None
    try:
        return str(ipaddress.ip_address(forwarded_for.rpartition(",")[2].strip()))
    except ValueError:
        return None


def is_trusted(peer: str, networks: Iterable[Network]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
    return any(address in network for network in networks)


def client_address(flow: http.HTTPFlow) -> str:
    """The client address for the decision record and the redirect walk."""
    found = flow.metadata.get(CLIENT)
    if isinstance(found, str):
        return found
    peer = flow.client_conn.peername
    return str(peer[0]) if peer else "?"


class ClientIdentity:
    """Marks each flow from a trusted load balancer with the client address it forwarded."""

    def __init__(self) -> None:
        self.trusted: tuple[Network, ...] = ()
        self.tunnels: dict[str, str] = {}  # client_conn.id -> address its CONNECT carried

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "guard_trusted_proxies", str, "",
            "Load balancers whose X-Forwarded-For is believed (last element only): comma-separated "
            "addresses or CIDRs; empty: trust none (docs/gateway.md, trust boundary).")

    def configure(self, updated: set[str]) -> None:
        if "guard_trusted_proxies" in updated:
            try:
                self.trusted = parse_trusted(ctx.options.guard_trusted_proxies)
            except ValueError as exc:
                raise exceptions.OptionsError(str(exc)) from None  # type: ignore[no-untyped-call]

    def _trusted_peer(self, flow: http.HTTPFlow) -> bool:
        peer = flow.client_conn.peername
        return bool(self.trusted and peer and is_trusted(str(peer[0]), self.trusted))

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """Remember what a trusted peer's CONNECT says for the whole tunnel ("": nothing, the peer)."""
        if not self._trusted_peer(flow):
            return
        if len(self.tunnels) >= MAX_TUNNELS:  # connections that never said goodbye: forget the oldest
            del self.tunnels[next(iter(self.tunnels))]
        address = last_hop(header(flow.request.headers, b"x-forwarded-for")) or ""
        self.tunnels[flow.client_conn.id] = address
        if address:
            flow.metadata[CLIENT] = address

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Inside a tunnel: the CONNECT's address, never the request's own header. A request sent in
        clear straight to the proxy (absolute-form; mitmproxy has made it origin-form by now): its own."""
        address = self.tunnels.get(flow.client_conn.id)
        if address is None and not flow.client_conn.tls and self._trusted_peer(flow):
            address = last_hop(header(flow.request.headers, b"x-forwarded-for"))
        if address:
            flow.metadata[CLIENT] = address

    def client_disconnected(self, client: connection.Client) -> None:
        self.tunnels.pop(client.id, None)
