"""The contract every format keeps (guard/formats/base.py), checked once for all of them.

Format-specific behaviour (what each suggestion is, how a rewrite cuts) stays in each format's
own test file; this file holds what must be true of any `Format`.
"""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings

from guard.errors import UntrustedInputError
from guard.formats import Format, formats, sniff_body
from tests.conftest import examples
from tests.formats._json_fuzz import FIXTURES, mutated

NAMES = sorted(formats())


def keeps_the_contract(fmt: Format, body: bytes) -> None:
    """`parse` raises only UntrustedInputError; a rewrite asked to drop one suggestion drops it (or refuses)."""
    try:
        parsed = fmt.parse(body)
    except UntrustedInputError:
        return
    if parsed.suggestions:
        out = fmt.rewrite(body, parsed, parsed.suggestions[:1])
        if out is not None:
            assert len(fmt.parse(out).suggestions) < len(parsed.suggestions)


def fixture_bodies(name: str) -> list[bytes]:
    """Every fixture of one format (`<format>__<case>.<ext>`)."""
    return [p.read_bytes() for p in sorted(FIXTURES.glob(f"{name}__*"))]


@pytest.mark.parametrize("name", NAMES)
def test_each_format_object_is_its_modules_functions_and_its_fixtures_sniff_as_it(name: str) -> None:
    fmt, module = formats()[name], importlib.import_module(f"guard.formats.{name}")
    assert module.FORMAT is fmt and fmt.name == name
    assert (fmt.parse, fmt.rewrite, fmt.block) == (module.parse, module.rewrite, module.block)
    bodies = fixture_bodies(name)
    assert bodies, f"no fixture for {name}"
    assert [sniff_body(body) for body in bodies] == [name] * len(bodies)


@pytest.mark.parametrize("name", NAMES)
def test_a_formats_block_answer_is_read_by_its_clients_as_that_format_or_plain_text(name: str) -> None:
    reply = formats()[name].block()
    assert 400 <= reply.status < 600 or sniff_body(reply.body) == name


@pytest.mark.parametrize("name", NAMES)
def test_mutated_fixtures_raise_only_untrusted_input_errors_and_rewrites_drop_what_they_were_asked_to(
        name: str) -> None:
    fmt = formats()[name]

    @settings(max_examples=examples(200), deadline=None)
    @given(mutated(fixture_bodies(name)))
    def check(body: bytes) -> None:
        keeps_the_contract(fmt, body)

    check()
