"""The hardened XML reader every XML format shares (guard/formats/_xml.py): C trees for judging,
byte spans by ordinal for rewriting."""

from __future__ import annotations

import re

import pytest

from guard.errors import BodyTooLarge, MalformedDocument, UntrustedInputError
from guard.formats._xml import (
    MAX_DEPTH,
    Element,
    cut_ordinals,
    element_spans,
    name,
    named_children,
    read_xml,
    spans_of,
    text,
)
from tests.conftest import FIXTURES

XML_FIXTURES = sorted(p.name for p in FIXTURES.glob("*.xml"))
# fixtures the reader must refuse: broken on purpose, or carrying entities
REFUSED = {"autoconfig__truncated.xml", "autoconfig__xxe_external_entity.xml", "pox__entity_expansion.xml",
           "pox__truncated.xml"}
# well-formed, but a comment or processing instruction splits a value's text: refused by read_xml only
SPLIT_TEXT = {"autoconfig__comment_inside_hostname.xml", "pox__pi_inside_server.xml",
              "soap__comment_inside_ews_url.xml"}
READABLE = sorted(set(XML_FIXTURES) - REFUSED - SPLIT_TEXT)
PLIST_DOCTYPE = b'<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">'
HOSTILE = (
    b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
    b'<!DOCTYPE a SYSTEM "http://x/"><a/>',
    b'<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY % p SYSTEM "http://x/">%p;]><a/>',
    b"<a></a><b></b>",
    b"<a>",
    b"",
    b'<?xml version="1.0" encoding="TF-8"?><a/>',
)


def _doctype_allowed(name_: str) -> bool:
    return name_.startswith("mobileconfig")


def _tree(name_: str) -> Element | None:
    try:
        return read_xml((FIXTURES / name_).read_bytes(), allow_doctype=_doctype_allowed(name_))
    except UntrustedInputError:
        return None


def test_exactly_the_hostile_and_broken_fixtures_are_refused() -> None:
    assert {n for n in XML_FIXTURES if _tree(n) is None} == REFUSED | SPLIT_TEXT


@pytest.mark.parametrize("name_", sorted(REFUSED))
def test_the_span_reader_refuses_the_same_fixtures(name_: str) -> None:
    with pytest.raises(UntrustedInputError):
        element_spans((FIXTURES / name_).read_bytes())


def test_text_split_by_cdata_and_references_is_joined_and_by_a_comment_is_malformed() -> None:
    root = read_xml(b"<a><h>mail.contoso<![CDATA[.com]]>&#46;</h></a>")
    assert text(root[0]) == "mail.contoso.com."
    with pytest.raises(MalformedDocument, match="comment"):
        read_xml(b"<a><h>mail.<!-- x -->contoso.com</h></a>")


def test_text_longer_than_the_expat_buffer_arrives_whole() -> None:
    host = "a" * 20_000
    assert text(read_xml(f"<a><h>{host}</h></a>".encode())[0]) == host


def test_names_split_namespace_and_local_name_and_compare_lower_case() -> None:
    root = read_xml(b'<A xmlns="urn:x"><p:Server xmlns:p="urn:y"/><Port/></A>')
    assert [tuple(name(e)) for e in root.iter()] == [
        ("urn:x", "A", "a"), ("urn:y", "Server", "server"), ("urn:x", "Port", "port")]


def test_named_children_index_only_the_names_that_repeat() -> None:
    root = read_xml(b"<a><P/><Q/><P/></a>")
    assert [field for _, _, field in named_children(root, "a/")] == ["a/P[1]", "a/Q", "a/P[2]"]


@pytest.mark.parametrize("name_", READABLE)
def test_each_span_is_the_element_at_the_same_ordinal_of_the_tree(name_: str) -> None:
    body = (FIXTURES / name_).read_bytes()
    root = _tree(name_)
    assert root is not None
    spans = element_spans(body, allow_doctype=_doctype_allowed(name_))
    elements = list(root.iter())
    assert len(spans) == len(elements)
    for element, (start, end) in zip(elements, spans, strict=True):
        chunk = body[start:end]
        local = name(element).local.encode()
        opening = re.match(rb"<([\w.:-]+)", chunk)
        closing = re.search(rb"</([\w.:-]+)\s*>$", chunk)
        assert opening is not None and opening.group(1).rpartition(b":")[2] == local, chunk[:40]
        assert chunk.endswith(b"/>") or (closing is not None and closing.group(1).rpartition(b":")[2] == local)


@pytest.mark.parametrize("name_", READABLE)
def test_spans_of_wanted_ordinals_are_those_of_the_full_span_list_and_no_others(name_: str) -> None:
    body = (FIXTURES / name_).read_bytes()
    allow = _doctype_allowed(name_)
    every = element_spans(body, allow_doctype=allow)
    wanted = set(range(0, len(every) + 3, 3))  # every third ordinal, and some past the last element
    assert spans_of(body, wanted, allow_doctype=allow) == {i: every[i] for i in wanted if i < len(every)}
    assert spans_of(body, (), allow_doctype=allow) == {}


def test_spans_skip_a_greater_than_sign_inside_quoted_attribute_values() -> None:
    body = b'<a><b x="1>2" y=\'>\'/><c q=">">t</c></a>'
    assert [body[start:end] for start, end in element_spans(body)[1:]] == [b'<b x="1>2" y=\'>\'/>',
                                                                          b'<c q=">">t</c>']


def test_cutting_ordinals_removes_those_elements_and_the_whitespace_before_them() -> None:
    body = b"<a>\n  <b>1</b>\n  <c><d/></c>\n  <e/>\n</a>"
    assert cut_ordinals(body, [1, 2]) == b"<a>\n  <e/>\n</a>"
    assert cut_ordinals(body, [2, 3]) == b"<a>\n  <b>1</b>\n  <e/>\n</a>"  # <d/> goes with its <c>
    assert cut_ordinals(body, [3]) == b"<a>\n  <b>1</b>\n  <c></c>\n  <e/>\n</a>"


def test_depth_cap_is_enforced_by_both_readers() -> None:
    deep = b"<a>" * (MAX_DEPTH + 1) + b"</a>" * (MAX_DEPTH + 1)
    at_cap = b"<a>" * MAX_DEPTH + b"</a>" * MAX_DEPTH
    for reader in (read_xml, element_spans):
        with pytest.raises(BodyTooLarge):
            reader(deep)
        reader(at_cap)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_forbidden_and_broken_documents_are_refused_by_both_readers(hostile: bytes) -> None:
    for reader in (read_xml, element_spans):
        with pytest.raises(MalformedDocument):
            reader(hostile)


def test_a_doctype_hidden_in_utf16_is_still_refused() -> None:
    body = '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'.encode("utf-16")
    assert b"<!DOCTYPE" not in body and b"<!ENTITY" not in body  # the byte scan cannot see it
    with pytest.raises(MalformedDocument):
        read_xml(body)
    assert text(read_xml('<?xml version="1.0" encoding="utf-16"?><a>x</a>'.encode("utf-16"))) == "x"


def test_a_bare_doctype_is_read_only_where_allowed_and_an_internal_subset_never() -> None:
    body = b'<?xml version="1.0"?>\n' + PLIST_DOCTYPE + b'\n<plist version="1.0"><dict/></plist>'
    with pytest.raises(MalformedDocument):
        read_xml(body)
    assert name(read_xml(body, allow_doctype=True)).local == "plist"
    subset = b'<!DOCTYPE plist [<!ELEMENT plist ANY>]><plist/>'
    with pytest.raises(MalformedDocument):
        read_xml(subset, allow_doctype=True)


def test_markup_declaration_words_inside_comments_and_text_are_harmless() -> None:
    root = read_xml(b"<a><!-- <!ENTITY x> <!DOCTYPE y> --><b>&lt;!DOCTYPE</b></a>")
    assert text(root[0]) == "<!DOCTYPE"
