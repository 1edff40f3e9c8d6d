"""Local upstream servers for end-to-end tests: one HTTPS and one plain-HTTP listener sharing routes.

Every host name reaches them through the routing script (`scripts/route_upstream.py`), so one
pair of servers plays every discovery host of a session. TLS leaves are issued per SNI name on
first use. Both listeners record every request, and the HTTPS one every TLS connection by SNI,
so a test can prove that a blocked request never reached, or never even connected to, upstream.
`add_raw_route` hands the socket to a test's own writer instead, for answers no well-behaved
server sends (dripping, never-ending, truncated or reset); `distrust(host)` serves that host a
certificate from a CA no proxy trusts.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.e2e.support.pki import CertificateAuthority, TestPKI

Writer = Callable[[socket.socket], None]


@dataclass(frozen=True)
class Route:
    """A canned answer."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    challenge: str = ""  # WWW-Authenticate sent with a 401 to requests without Authorization
    writer: Writer | None = None  # writes the whole response itself (status line included)


@dataclass(frozen=True)
class Seen:
    """One request as upstream received it."""

    scheme: str
    host: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that refuse the origin certificate (as tests make them) are expected, not news."""


class Upstream:
    """`add_route(host, path, ...)`, then read `requests_for(host)` / `connections_for(host)`."""

    def __init__(self, pki: TestPKI) -> None:
        self._pki = pki
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Seen] = []
        self.connections: list[str] = []  # SNI of every TLS connection
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._stranger: CertificateAuthority | None = None  # issues `distrust`ed hosts' leaves
        self._distrusted: set[str] = set()
        self._https = self._serve("https")
        self._http = self._serve("http")
        self.https_port = self._https.server_address[1]
        self.http_port = self._http.server_address[1]

    def add_route(self, host: str, path: str, status: int = 200, headers: dict[str, str] | None = None,
                  body: bytes = b"", challenge: str = "") -> None:
        """Answer requests for `host` and `path` (query ignored; path `*` matches any path).

        With `challenge`, a request without an Authorization header gets `401` and
        `WWW-Authenticate: <challenge>` instead, as a server that requires authentication does
        (the credential itself is not checked).
        """
        with self._lock:
            self._routes[(host.lower(), path)] = Route(status, tuple((headers or {}).items()), body, challenge)

    def add_raw_route(self, host: str, path: str, writer: Writer) -> None:
        """Answer with `writer(socket)`, which sends raw bytes (status line, headers, body) as it likes;
        the connection is closed when it returns."""
        with self._lock:
            self._routes[(host.lower(), path)] = Route(0, (), b"", writer=writer)

    def distrust(self, host: str) -> None:
        """Serve `host` a leaf from a throw-away CA that nobody trusts (a bad upstream certificate)."""
        with self._lock:
            self._distrusted.add(host.lower())
            self._contexts.pop(host.lower(), None)

    def requests_for(self, host: str) -> list[Seen]:
        with self._lock:
            return [seen for seen in self.requests if seen.host == host.lower()]

    def connections_for(self, host: str) -> int:
        with self._lock:
            return self.connections.count(host.lower())

    def close(self) -> None:
        for server in (self._https, self._http):
            server.shutdown()
            server.server_close()

    # -- internals -------------------------------------------------------------------------------

    def _route(self, host: str, path: str) -> Route:
        with self._lock:
            plain = path.split("?", 1)[0]
            found = self._routes.get((host, plain)) or self._routes.get((host, "*"))
        return found or Route(404, (("content-type", "text/plain"),), b"no route\n")

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def _context_for(self, name: str) -> ssl.SSLContext:
        with self._lock:
            if name not in self._contexts:
                if name in self._distrusted:
                    self._stranger = self._stranger or CertificateAuthority("autodiscover-guard test stranger CA")
                    cert, key = self._pki.write_leaf(f"stranger-{name}", *self._stranger.issue(name))
                else:
                    cert, key = self._pki.leaf(name)
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(cert, key)
                self._contexts[name] = context
            return self._contexts[name]

    def _sni(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _context: ssl.SSLContext) -> None:
        name = (name or "localhost").lower()
        with self._lock:
            self.connections.append(name)
        sock.context = self._context_for(name)

    def _serve(self, scheme: str) -> ThreadingHTTPServer:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else Nagle and delayed ACKs stall each small answer by 40 ms

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                host = (self.headers.get("host") or "").rsplit(":", 1)[0].lower()
                upstream._record(Seen(scheme, host, self.command, self.path, dict(self.headers.items()), body))
                route = upstream._route(host, self.path)
                if route.challenge and "authorization" not in self.headers:
                    route = Route(401, (("www-authenticate", route.challenge),), b"")
                if route.writer is not None:
                    self.close_connection = True
                    route.writer(self.connection)
                    return
                self.send_response(route.status)
                for name, value in route.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(route.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(route.body)

            do_GET = do_POST = do_HEAD = do_PUT = do_OPTIONS = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _Server(("127.0.0.1", 0), Handler)
        if scheme == "https":
            default = self._context_for("localhost")
            default.sni_callback = self._sni
            server.socket = default.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=server.serve_forever, name=f"upstream-{scheme}", daemon=True).start()
        return server
