"""The capped Content-Encoding decoder: round trips, bombs, truncation, unknown codings."""

from __future__ import annotations

import contextlib
import gzip
import importlib
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.decode import decode_body
from guard.errors import BodyTooLarge, MalformedDocument, UnsupportedEncoding, UntrustedInputError
from tests.conftest import FIXTURES

BODY = (FIXTURES / "pox__benign_onprem_exchange.xml").read_bytes()
CAP = 1024 * 1024


def _zstd_compress(data: bytes) -> bytes:
    for name in ("compression.zstd", "backports.zstd"):
        try:
            return bytes(importlib.import_module(name).compress(data))
        except ImportError:
            continue
    return bytes(importlib.import_module("zstandard").ZstdCompressor().compress(data))


def _brotli_compress(data: bytes) -> bytes:
    return bytes(importlib.import_module("brotli").compress(data, quality=5))


def _raw_deflate(data: bytes) -> bytes:
    engine = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return engine.compress(data) + engine.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": _brotli_compress,
    "zstd": _zstd_compress,
}


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_round_trips(coding: str) -> None:
    assert decode_body(ENCODERS[coding](BODY), coding, CAP) == BODY


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_refuses_a_bomb_at_the_cap(coding: str) -> None:
    bomb = ENCODERS[coding](b"\0" * (16 * CAP))
    with pytest.raises(BodyTooLarge):  # decoding stops at the cap (its time is in make bench)
        decode_body(bomb, coding, CAP)


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_refuses_a_truncated_stream(coding: str) -> None:
    whole = ENCODERS[coding](BODY)
    with pytest.raises(MalformedDocument):
        decode_body(whole[: len(whole) // 2], coding, CAP)


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_refuses_garbage(coding: str) -> None:
    with pytest.raises(MalformedDocument):
        decode_body(b"this is not compressed at all" * 4, coding, CAP)


def test_identity_and_missing_header_return_the_body_unchanged() -> None:
    assert decode_body(BODY, "", CAP) == BODY
    assert decode_body(BODY, "identity", CAP) == BODY


def test_identity_body_over_the_cap_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        decode_body(BODY, "", len(BODY) - 1)


def test_a_body_exactly_at_the_cap_passes() -> None:
    assert decode_body(gzip.compress(BODY), "gzip", len(BODY)) == BODY


def test_raw_deflate_without_zlib_header_is_accepted() -> None:
    assert decode_body(_raw_deflate(BODY), "deflate", CAP) == BODY


def test_multi_member_gzip_is_one_body() -> None:
    assert decode_body(gzip.compress(BODY[:100]) + gzip.compress(BODY[100:]), "gzip", CAP) == BODY


def test_data_after_a_deflate_stream_is_refused() -> None:
    with pytest.raises(MalformedDocument):
        decode_body(zlib.compress(BODY) + b"trailing", "deflate", CAP)


def test_stacked_codings_are_undone_last_first() -> None:
    assert decode_body(_brotli_compress(gzip.compress(BODY)), "gzip, br", CAP) == BODY


def test_each_layer_is_capped() -> None:
    inner = gzip.compress(b"\0" * (4 * CAP))
    with pytest.raises(BodyTooLarge):
        decode_body(gzip.compress(inner), "gzip, gzip", CAP)


def test_more_than_two_codings_are_refused() -> None:
    with pytest.raises(UnsupportedEncoding):
        decode_body(BODY, "gzip, gzip, gzip", CAP)


@pytest.mark.parametrize("coding", ["compress", "x-compress", "exi", "pack200-gzip", "aes128gcm"])
def test_unknown_codings_are_refused(coding: str) -> None:
    with pytest.raises(UnsupportedEncoding):
        decode_body(BODY, coding, CAP)


def test_coding_names_are_case_and_space_insensitive() -> None:
    assert decode_body(gzip.compress(BODY), " GZip ", CAP) == BODY


def test_an_empty_body_decodes_to_empty_whatever_the_coding() -> None:
    assert decode_body(b"", "gzip", CAP) == b""


@given(data=st.binary(max_size=2048), coding=st.sampled_from([*ENCODERS, "identity", "gzip, br", "zstd, deflate"]))
def test_any_input_decodes_within_the_cap_or_raises_an_untrusted_input_error(data: bytes, coding: str) -> None:
    with contextlib.suppress(UntrustedInputError):
        assert len(decode_body(data, coding, 4096)) <= 4096
