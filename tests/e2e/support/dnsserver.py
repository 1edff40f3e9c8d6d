"""A tiny authoritative DNS server for end-to-end tests (dnspython, UDP on a free 127.0.0.1 port).

Clients such as exchangelib check host names and look up SRV records with dnspython before they
send any HTTP request, and the test domains do not exist. Point the client's resolver at
``127.0.0.1:<port>`` (its nameserver configuration, not a mock) and add the records a test needs:
``add_a(name)``, ``add_srv(name, target, port)`` and ``add_txt(name, text)``. A name with no record
at all is NXDOMAIN; a name with records of another type answers NOERROR with no answer
(dnspython's ``NoAnswer``).
Every query is recorded as ``(name, type)`` in ``queries``.
"""

from __future__ import annotations

import socket
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60


class DnsServer:
    """Answers A, SRV and TXT queries from an in-memory table until `close()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[dns.name.Name, dict[dns.rdatatype.RdataType, list[str]]] = {}
        self.queries: list[tuple[str, str]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.1)  # closing a socket does not wake recvfrom on Linux: poll a flag
        self._stopped = threading.Event()
        self.port: int = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()

    def add_a(self, name: str, address: str = "127.0.0.1") -> None:
        self._add(name, dns.rdatatype.A, address)

    def add_srv(self, name: str, target: str, port: int, priority: int = 0, weight: int = 0) -> None:
        self._add(name, dns.rdatatype.SRV, f"{priority} {weight} {port} {target.rstrip('.')}.")

    def add_txt(self, name: str, text: str) -> None:
        self._add(name, dns.rdatatype.TXT, '"' + text.replace('"', '\\"') + '"')

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._socket.close()

    def _add(self, name: str, rdtype: dns.rdatatype.RdataType, text: str) -> None:
        with self._lock:
            self._records.setdefault(dns.name.from_text(name), {}).setdefault(rdtype, []).append(text)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for question in query.question:
            with self._lock:
                self.queries.append((question.name.to_text(omit_final_dot=True).lower(),
                                     dns.rdatatype.to_text(question.rdtype)))
                known = self._records.get(question.name)
                texts = list((known or {}).get(question.rdtype, []))
            if known is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif texts:
                response.answer.append(dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN,
                                                                question.rdtype, texts))
        return response

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                wire, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            try:
                query = dns.message.from_wire(wire)
            except dns.exception.DNSException:
                continue  # not DNS: nothing to answer
            self._socket.sendto(self._answer(query).to_wire(), peer)
