"""The hardened span-keeping XML reader every XML format shares (guard/formats/_xml.py)."""

from __future__ import annotations

import pytest

from guard.errors import BodyTooLarge, MalformedDocument
from guard.formats._xml import MAX_DEPTH, Element, parse_xml
from tests.conftest import FIXTURES

XML_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.xml"))
# fixtures the reader must refuse: broken on purpose, or carrying entities
REFUSED = {"autoconfig__truncated.xml", "autoconfig__xxe_external_entity.xml", "pox__entity_expansion.xml",
           "pox__truncated.xml"}


def _parsed(name: str) -> Element | None:
    try:
        return parse_xml((FIXTURES / name).read_bytes(), allow_doctype=name.startswith("mobileconfig"))
    except (MalformedDocument, BodyTooLarge):
        return None


def test_exactly_the_hostile_and_broken_fixtures_are_refused() -> None:
    assert {name for name in XML_FIXTURES if _parsed(name) is None} == REFUSED


def test_direct_text_is_kept_per_element_and_excludes_the_childrens_text() -> None:
    root = parse_xml(b"<a>one<b>inner</b>two<c/>three</a>")
    assert root.text == "onetwothree"
    assert [(c.tag, c.text) for c in root.children] == [("b", "inner"), ("c", "")]


def test_text_split_by_comments_cdata_and_references_is_joined() -> None:
    root = parse_xml(b"<a><h>mail.<!-- x -->contoso<![CDATA[.com]]>&#46;</h></a>")
    assert root.children[0].text == "mail.contoso.com."


def test_text_longer_than_the_expat_buffer_arrives_whole() -> None:
    host = "a" * 20_000
    assert parse_xml(f"<a><h>{host}</h></a>".encode()).children[0].text == host


@pytest.mark.parametrize("name", sorted(set(XML_FIXTURES) - REFUSED))
def test_every_element_span_covers_exactly_its_start_to_end_tag(name: str) -> None:
    body = (FIXTURES / name).read_bytes()
    root = _parsed(name)
    assert root is not None
    for element in root.iter():
        start, end = element.span
        chunk = body[start:end]
        assert chunk.startswith(b"<") and chunk.endswith(b">"), (element.path(), chunk[:40])
        if element.children:
            first, last = element.children[0].span, element.children[-1].span
            assert start < first[0] and last[1] < end


def test_spans_skip_a_greater_than_sign_inside_quoted_attribute_values() -> None:
    body = b'<a><b x="1>2" y=\'>\'/><c q=">">t</c></a>'
    root = parse_xml(body)
    assert [body[slice(*c.span)] for c in root.children] == [b'<b x="1>2" y=\'>\'/>', b'<c q=">">t</c>']


def test_depth_cap_and_forbidden_constructs_are_refused() -> None:
    with pytest.raises(BodyTooLarge):
        parse_xml(b"<a>" * (MAX_DEPTH + 1) + b"</a>" * (MAX_DEPTH + 1))
    for hostile in (b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>', b'<!DOCTYPE a SYSTEM "http://x/"><a/>',
                    b"<a></a><b></b>", b"<a>"):
        with pytest.raises(MalformedDocument):
            parse_xml(hostile)
