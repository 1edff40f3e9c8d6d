"""Raw upstream answers no well-behaved server sends, for `Upstream.add_raw_route`.

A :class:`RawAnswer` writes a status line and headers, then body chunks (plain or chunked
transfer coding, optionally with a delay between them), and ends the way the test asks: cleanly,
by closing early (a truncated body), or with a TCP reset. It records when it had sent more than
`mark` body bytes (`passed_mark`), so a test can time the proxy's reaction from the moment a cap
was crossed, and stops by itself once the proxy stops reading.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


def repeat(chunk: bytes, total: int | None) -> Callable[[], Iterator[bytes]]:
    """Chunks of `chunk` up to `total` bytes; `total=None` never ends."""

    def chunks() -> Iterator[bytes]:
        sent = 0
        while total is None or sent < total:
            part = chunk if total is None else chunk[: total - sent]
            sent += len(part)
            yield part

    return chunks


@dataclass
class RawAnswer:
    """One raw answer (callable as an upstream writer); `content_length=None` means chunked."""

    headers: dict[str, str]
    chunks: Callable[[], Iterator[bytes]]
    content_length: int | None = None
    delay: float = 0.0  # seconds between chunks
    ending: str = "end"  # "end" | "close" (stop mid-body) | "reset" (RST mid-body)
    mark: int = 0  # body bytes after which `passed_mark` is recorded; -1: once the headers are sent
    give_up: float = 30.0  # never write for longer than this, whatever the proxy does
    status: str = "200 OK"
    passed_mark: float | None = None  # time.monotonic() when more than `mark` bytes were sent
    sent: int = 0
    finished: threading.Event = field(default_factory=threading.Event)

    def __call__(self, sock: socket.socket) -> None:
        try:
            self._write(sock)
        except OSError:
            pass  # the proxy hung up: what a refusal looks like from here
        finally:
            self.finished.set()

    def _write(self, sock: socket.socket) -> None:
        head = [f"HTTP/1.1 {self.status}", *(f"{k}: {v}" for k, v in self.headers.items())]
        head.append(f"content-length: {self.content_length}" if self.content_length is not None
                    else "transfer-encoding: chunked")
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        if self.mark < 0:  # the headers alone pass the cap (a Content-Length over it)
            self.passed_mark = time.monotonic()
        deadline = time.monotonic() + self.give_up
        for chunk in self.chunks():
            sock.sendall(chunk if self.content_length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.sent += len(chunk)
            if self.passed_mark is None and self.sent > self.mark:
                self.passed_mark = time.monotonic()
            if time.monotonic() > deadline:
                return
            if self.delay:
                time.sleep(self.delay)
        if self.ending == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        elif self.ending == "end" and self.content_length is None:
            sock.sendall(b"0\r\n\r\n")
