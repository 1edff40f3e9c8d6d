"""Content-Encoding decoding that stops at a size cap, for bodies the guard must read.

mitmproxy decodes `.content` in one call with no limit: a 97 KB gzip answer became 100 MB and
blocked the event loop for a second. Every decoder here produces
output in bounded steps and raises `BodyTooLarge` as soon as the cap is passed, so memory stays
near the cap whatever the compression ratio. Truncated or corrupt streams raise
`MalformedDocument` (clients act on fragments, so a partial body is never returned); unknown
codings raise `UnsupportedEncoding`.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from guard.errors import BodyTooLarge, MalformedDocument, UnsupportedEncoding, UntrustedInputError

STEP = 64 * 1024  # most output one decompressor call may produce
MAX_CODINGS = 2  # RFC 9110 §8.4 allows stacking; real servers use one, a proxy in front may add one


def _module(*names: str) -> ModuleType | None:
    # Imported by name: brotli ships no type information, and the zstd module differs per line
    # (stdlib on 3.14, backports.zstd with mitmproxy 12, zstandard with mitmproxy 11).
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


_BROTLI = _module("brotli")
_ZSTD = _module("compression.zstd", "backports.zstd")
_ZSTANDARD = None if _ZSTD is not None else _module("zstandard")


def decode_body(raw: bytes, content_encoding: str, cap: int) -> bytes:
    """Undo `Content-Encoding` (last applied, first undone) and return at most `cap` bytes.

    Raises:
        BodyTooLarge: the decoded body (or any intermediate layer) exceeds `cap`.
        UnsupportedEncoding: a coding other than identity, gzip, x-gzip, deflate, br, zstd,
            or more than `MAX_CODINGS` of them.
        MalformedDocument: a corrupt or truncated compressed stream.
    """
    body = raw
    if content_encoding:  # most bodies have none
        body = _undo(raw, content_encoding, cap)
    if len(body) > cap:
        raise BodyTooLarge(f"body of {len(body)} bytes exceeds {cap}")
    return body


def _undo(body: bytes, content_encoding: str, cap: int) -> bytes:
    """The codings of a non-empty `Content-Encoding`, undone last applied first."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if len(codings) > MAX_CODINGS:
        raise UnsupportedEncoding(f"{len(codings)} stacked content codings (at most {MAX_CODINGS})")
    for coding in reversed(codings):
        decoder = _DECODERS.get(coding)
        if decoder is None:
            raise UnsupportedEncoding(f"content coding {coding[:40]!r} is not decoded by the guard")
        body = _collect(decoder(body), cap, coding) if body else b""
    return body


def _collect(chunks: Iterator[bytes], cap: int, coding: str) -> bytes:
    out = bytearray()
    try:
        for chunk in chunks:
            out += chunk
            if len(out) > cap:
                raise BodyTooLarge(f"{coding} body decodes to more than {cap} bytes")
    except UntrustedInputError:
        raise
    except Exception as exc:  # zlib.error, brotli.error, zstd errors: no common base to name
        raise MalformedDocument(f"corrupt {coding} stream: {type(exc).__name__}: {exc}") from None
    return bytes(out)


def _zlib(wbits: int, *, members: bool = False) -> Callable[[bytes], Iterator[bytes]]:
    def inflate(data: bytes) -> Iterator[bytes]:
        while data:  # a gzip body may hold several members (RFC 1952 §2.2); deflate just one
            engine = zlib.decompressobj(wbits)
            pending = data
            while pending:
                yield engine.decompress(pending, STEP)
                pending = engine.unconsumed_tail
            while not engine.eof and (chunk := engine.decompress(b"", STEP)):
                yield chunk
            if not engine.eof:
                raise MalformedDocument("truncated compressed stream")
            data = engine.unused_data
            if data and not members:
                raise MalformedDocument("data after the end of the deflate stream")

    return inflate


_gzip = _zlib(16 + zlib.MAX_WBITS, members=True)
_zlib_deflate = _zlib(zlib.MAX_WBITS)
_raw_deflate = _zlib(-zlib.MAX_WBITS)


def _deflate(data: bytes) -> Iterator[bytes]:
    """HTTP `deflate` is zlib-wrapped (RFC 9110 §8.4.1.2), but servers also send raw deflate."""
    header_ok = len(data) >= 2 and (data[0] & 0x0F) == 8 and (data[0] << 8 | data[1]) % 31 == 0
    return _zlib_deflate(data) if header_ok else _raw_deflate(data)


def _brotli(data: bytes) -> Iterator[bytes]:
    if _BROTLI is None:
        raise UnsupportedEncoding("br: no brotli module installed")
    engine: Any = _BROTLI.Decompressor()
    if hasattr(engine, "can_accept_more_data"):  # brotli ≥ 1.2: bounded output per call
        yield engine.process(data, output_buffer_limit=STEP)
        while not engine.can_accept_more_data():
            yield engine.process(b"", output_buffer_limit=STEP)
    else:
        # brotli 1.1 (mitmproxy 11) has no output limit: one input byte at a time bounds a call's
        # output by one meta-block (at most 16 MiB, RFC 7932 §9.2), whatever the ratio.
        for i in range(len(data)):
            yield engine.process(data[i : i + 1])
    if not engine.is_finished():
        raise MalformedDocument("truncated br stream")


def _zstd(data: bytes) -> Iterator[bytes]:
    if _ZSTD is not None:
        yield from _zstd_stdlib(data)
    elif _ZSTANDARD is not None:
        yield from _zstd_zstandard(data)
    else:
        raise UnsupportedEncoding("zstd: no zstd module installed")


def _zstd_stdlib(data: bytes) -> Iterator[bytes]:
    assert _ZSTD is not None
    while data:  # concatenated frames are one stream (RFC 8878 §3)
        engine: Any = _ZSTD.ZstdDecompressor()
        yield engine.decompress(data, STEP)
        while not engine.eof and not engine.needs_input:
            yield engine.decompress(b"", STEP)
        if not engine.eof:
            raise MalformedDocument("truncated zstd stream")
        data = engine.unused_data


# zstandard's decompressobj has no output limit; a zstd block regenerates at most 128 KiB from
# at least 4 input bytes (RFC 8878 §3.1.1.2), so 64-byte slices bound one call to 2 MiB.
_ZSTANDARD_SLICE = 64


def _zstd_zstandard(data: bytes) -> Iterator[bytes]:
    assert _ZSTANDARD is not None
    while data:
        engine: Any = _ZSTANDARD.ZstdDecompressor().decompressobj()
        offset = 0
        while offset < len(data) and not engine.eof:
            yield engine.decompress(data[offset : offset + _ZSTANDARD_SLICE])
            offset += _ZSTANDARD_SLICE
        if not engine.eof:
            raise MalformedDocument("truncated zstd stream")
        data = engine.unused_data + data[offset:]


_DECODERS: dict[str, Callable[[bytes], Iterator[bytes]]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}
