"""The strict JSON loader: caps, refusals and typed accessors every JSON format relies on."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.errors import BodyTooLarge, MalformedDocument, UntrustedInputError
from guard.formats._json import MAX_DEPTH, MAX_JSON_BYTES, as_obj, expect, find_key, load_json, optional
from tests.conftest import examples
from tests.formats._json_fuzz import fixture_bodies, mutated

ALL_JSON = fixture_bodies("adv2") + fixture_bodies("autodetect") + fixture_bodies("srv")


def test_loads_an_object_and_accepts_a_utf8_bom() -> None:
    assert load_json(b'{"a": [1, "x", true, null]}') == {"a": [1, "x", True, None]}
    assert load_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


def test_raw_utf8_text_is_kept() -> None:
    assert load_json('{"hostname": "imap.cοntoso.com"}'.encode()) == {"hostname": "imap.cοntoso.com"}


@pytest.mark.parametrize(
    "body", [b'{"a": "\xff"}', b'{"a": "\xc3"}', b"\xff\xfe{\x00}\x00", b'{"a": "\xed\xa0\x80"}']
)
def test_invalid_utf8_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument, match="not UTF-8"):
        load_json(body)


@pytest.mark.parametrize("body", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"[1e999]", b"[-1e400]"])
def test_nan_and_infinity_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        load_json(body)


def test_finite_floats_are_read() -> None:
    assert load_json(b"[1.5e3]") == [1500.0]


@pytest.mark.parametrize(
    "body",
    [
        b'{"Url": "https://good.example/", "Url": "https://evil.example/"}',
        b'{"Url": "https://good.example/", "url": "https://evil.example/"}',  # case-insensitive readers
        b'{"outer": [{"hostname": "a", "HostName": "b"}]}',
    ],
)
def test_duplicate_keys_are_refused_even_when_they_differ_only_in_case(body: bytes) -> None:
    with pytest.raises(MalformedDocument, match="duplicate"):
        load_json(body)


def test_lone_surrogate_escapes_are_refused_but_pairs_and_escaped_backslashes_pass() -> None:
    with pytest.raises(MalformedDocument, match="surrogate"):
        load_json(b'{"a": "x\\ud800y"}')
    with pytest.raises(MalformedDocument, match="surrogate"):
        load_json(b'{"\\udc00": 1}')
    assert load_json(b'["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert load_json(b'["\\\\ud800"]') == ["\\ud800"]


def test_trailing_data_and_truncation_are_malformed() -> None:
    with pytest.raises(MalformedDocument):
        load_json(b'{"a": 1} {"b": 2}')
    with pytest.raises(MalformedDocument):
        load_json(b'{"a": [1, 2')


def test_huge_integers_are_malformed_not_a_value_error() -> None:
    with pytest.raises(MalformedDocument):
        load_json(b"[" + b"9" * 5000 + b"]")


def test_nesting_up_to_the_cap_is_read() -> None:
    body = b'{"a":' * (MAX_DEPTH - 1) + b"[1]" + b"}" * (MAX_DEPTH - 1)
    value = load_json(body)
    for _ in range(MAX_DEPTH - 1):
        value = value["a"]
    assert value == [1]


@pytest.mark.parametrize("opener,closer", [(b"[", b"]"), (b'{"a":', b"}")])
def test_nesting_past_the_cap_is_too_large(opener: bytes, closer: bytes) -> None:
    with pytest.raises(BodyTooLarge, match="nesting"):
        load_json(opener * (MAX_DEPTH + 1) + b"1" + closer * (MAX_DEPTH + 1))


@pytest.mark.parametrize("body", [b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000])
def test_a_100k_deep_bomb_is_refused_as_too_large_without_recursion(body: bytes) -> None:
    with pytest.raises(BodyTooLarge):  # a RecursionError would escape this (its time is in make bench)
        load_json(body)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[" * 500 + '\\"' + "{" * 500
    assert load_json(json.dumps({"a": text, "b": [[]] * 100}).encode()) == {"a": text, "b": [[]] * 100}


def test_a_wide_but_shallow_document_is_read() -> None:
    assert len(load_json(b"[" + b"[1]," * 10_000 + b"[2]]")) == 10_001


def test_bodies_over_the_byte_cap_are_refused_before_parsing() -> None:
    with pytest.raises(BodyTooLarge, match="exceeds"):
        load_json(b"[" + b" " * MAX_JSON_BYTES + b"]")


def test_accessors_check_exact_json_types() -> None:
    obj = {"port": 993, "flag": True, "ratio": 1.0, "name": "x", "list": [], "obj": {}, "none": None}
    assert expect(obj, "port", "p", int) == 993
    assert expect(obj, "flag", "p", bool) is True
    assert expect(obj, "name", "p", str) == "x"
    assert expect(obj, "list", "p", list) == []
    assert expect(obj, "obj", "p", dict) == {}
    with pytest.raises(MalformedDocument, match=r"p\.flag: expected an integer, got a boolean"):
        expect(obj, "flag", "p", int)
    with pytest.raises(MalformedDocument, match="got a number"):
        expect(obj, "ratio", "p", int)
    with pytest.raises(MalformedDocument, match="got null"):
        expect(obj, "none", "p", str)
    with pytest.raises(MalformedDocument, match=r"p\.missing: required key is missing"):
        expect(obj, "missing", "p", str)


def test_optional_accessors_return_none_for_absent_or_null_and_check_present_values() -> None:
    obj = {"port": "993", "none": None}
    assert optional(obj, "absent", "", int) is None
    assert optional(obj, "none", "", int) is None
    with pytest.raises(MalformedDocument, match=r"^port: expected an integer, got a string"):
        optional(obj, "port", "", int)


def test_keys_are_found_ignoring_case() -> None:
    obj = {"HostName": "imap.contoso.com"}
    assert find_key(obj, "hostname") == "HostName"
    assert expect(obj, "hostname", "", str) == "imap.contoso.com"
    assert find_key(obj, "port") is None


def test_as_obj_refuses_non_objects() -> None:
    with pytest.raises(MalformedDocument, match=r"^\(document\): expected an object, got an array"):
        as_obj([], "")
    with pytest.raises(MalformedDocument, match=r"^protocols\[0\]: expected an object, got a string"):
        as_obj("x", "protocols[0]")


@settings(max_examples=examples(200), deadline=None)
@given(mutated(ALL_JSON))
def test_mutated_fixtures_raise_only_untrusted_input_errors(body: bytes) -> None:
    with contextlib.suppress(UntrustedInputError):
        load_json(body)


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_untrusted_input_errors(body: bytes) -> None:
    with contextlib.suppress(UntrustedInputError):
        load_json(body)
