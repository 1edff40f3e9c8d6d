"""Differential tests: the hosts a real client's parser extracts are hosts the guard judged, or the
guard refuses the document. Oracles (tests/oracles.py): exchangelib's own SOAP parser, lxml's
reading of text around comments and processing instructions, Python's plistlib, and node's
WHATWG `URL`. Each runs over every fixture and over hypothesis-generated documents; a
difference the generators find becomes a fixture (tests/fixtures/INDEX.md).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guard.errors import UntrustedInputError
from guard.formats import by_name, detect
from guard.formats._xml import read_xml
from guard.model import Role, Suggestion, ValueKind
from guard.names import InvalidHost, User, target_of
from tests.conftest import FIXTURES, IndexedFixture, examples, indexed_fixtures
from tests.oracles import (
    WhatwgUrl,
    exchangelib_soap_hosts,
    guard_hosts,
    host_key,
    lxml_leaf_texts,
    plistlib_hosts,
)

CASES = indexed_fixtures()
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
ALICE = User.from_address("alice@contoso.com")
SOAP = by_name("soap")
MOBILECONFIG = by_name("mobileconfig")


@pytest.fixture(scope="module")
def whatwg() -> Iterator[WhatwgUrl]:
    if shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed (.ci/run installs it)")
        pytest.skip("node is not installed (apt-get install nodejs)")
    oracle = WhatwgUrl()
    yield oracle
    oracle.close()


def _agrees(oracle: set[str] | None, guard: set[str] | None) -> bool:
    return guard is None or oracle is None or oracle <= guard


def _et_leaf_texts(body: bytes, allow_doctype: bool) -> list[str] | None:
    try:
        root = read_xml(body, allow_doctype=allow_doctype)
    except UntrustedInputError:
        return None
    return [(element.text or "").strip() for element in root.iter() if not len(element)]


# --- every fixture -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in CASES if c.format == "soap"], ids=lambda c: c.file)
def test_every_host_exchangelib_reads_from_a_soap_fixture_is_judged_or_refused(case: IndexedFixture) -> None:
    body = case.path.read_bytes()
    user = User.from_address(case.user)
    oracle, guard = exchangelib_soap_hosts(body), guard_hosts(SOAP, body, user)
    assert _agrees(oracle, guard), (oracle, guard)


@pytest.mark.parametrize("case", [c for c in CASES if c.file.endswith(".xml")], ids=lambda c: c.file)
def test_every_xml_fixture_reads_the_same_text_in_lxml_or_is_refused(case: IndexedFixture) -> None:
    body = case.path.read_bytes()
    ours = _et_leaf_texts(body, allow_doctype=case.format == "mobileconfig")
    theirs = lxml_leaf_texts(body)
    assert ours is None or theirs is None or ours == theirs


@pytest.mark.parametrize("case", [c for c in CASES if c.format == "mobileconfig"], ids=lambda c: c.file)
def test_every_host_plistlib_reads_from_a_profile_fixture_is_judged_or_refused(case: IndexedFixture) -> None:
    body = case.path.read_bytes()
    user = User.from_address(case.user)
    oracle, guard = plistlib_hosts(body), guard_hosts(MOBILECONFIG, body, user)
    assert _agrees(oracle, guard), (oracle, guard)


def test_the_streamed_signed_profile_yields_what_plistlib_reads_from_its_content() -> None:
    signed = (FIXTURES / "mobileconfig__signed_streamed_ber.mobileconfig").read_bytes()
    guard = guard_hosts(MOBILECONFIG, signed, ALICE)
    assert guard == {"imap.contoso.com", "smtp.contoso.com"}
    content_start = signed.index(b"<?xml")
    content = signed[content_start:signed.index(b"</plist>") + len(b"</plist>")]
    assert b"<plist" in content  # the first chunk is readable; the whole plist is not one slice
    assert plistlib_hosts(content) is None  # a byte slice through the BER chunks is no plist


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_every_http_url_in_a_fixture_has_the_host_node_reads_or_is_refused(case: IndexedFixture,
                                                                       whatwg: WhatwgUrl) -> None:
    fmt = by_name(case.format)
    user = User.from_address(case.user)
    try:
        suggestions = fmt.parse(case.path.read_bytes()).suggestions
    except UntrustedInputError:
        return
    for suggestion in suggestions:
        if suggestion.kind is not ValueKind.URL or not suggestion.value.strip(_C0_OR_SPACE).lower().startswith("http"):
            continue
        _assert_url_agrees(suggestion.value, whatwg, user, suggestion.kind)


def _assert_url_agrees(url: str, whatwg: WhatwgUrl, user: User, kind: ValueKind = ValueKind.URL) -> None:
    try:
        ours = target_of(Suggestion(url, kind, Role.OTHER, "Url"), user).host
    except InvalidHost:
        return  # refused: malformed
    theirs = whatwg.host(url)
    assert theirs is None or host_key(theirs) == ours, (url, theirs, ours)


# --- generated documents ---------------------------------------------------------------------------

_URL_PIECES = st.tuples(
    st.sampled_from(["", "\x01", " ", "\t", "\x00", "\x1f "]),
    st.sampled_from(["https://", "https:", "https:/", "HTTPS://", "https:\\\\", "http://", "https:///", "hTtP:\\/"]),
    st.sampled_from(["", "user@", "mail.contoso.com@", "a:b@", "x\\@", "u@v@"]),
    st.sampled_from(["mail.contoso.com", "evil.net", "０ｘ７ｆ.０.０.１", "127.1", "0x7f.1", "[::1]",
                     "[::ffff:127.0.0.1]", "xn--cntoso-i0e.com", "MAIL.Contoso.COM.", "a%2eb.com", "évil.net",
                     "ex\tample.com",
                     "mail．contoso．com", "2130706433", "ｍａｉｌ.contoso.com"]),
    st.sampled_from(["", ":443", ":", ":0443", ":99999"]),
    st.sampled_from(["/", "\\evil.net/", "?x@evil.net", "#@evil.net", "/@evil.net", "", "\\@evil.net/", "/ews\n"]),
    st.sampled_from(["", " ", "\x01", "\r\n"]),
)


@settings(max_examples=examples(300), deadline=None)
@given(pieces=_URL_PIECES)
def test_generated_urls_have_the_host_node_reads_or_are_refused(pieces: tuple[str, ...], whatwg: WhatwgUrl) -> None:
    _assert_url_agrees("".join(pieces), whatwg, ALICE)


_SVC = "http://schemas.microsoft.com/exchange/2010/Autodiscover"
_EWS_GOOD = "https://mail.contoso.com/EWS/Exchange.asmx"
_EWS_BAD = "https://ews.collector-mail.net/EWS/Exchange.asmx"
_SETTING_PARTS = st.lists(st.sampled_from([
    f"<UserSetting><Name>ExternalEwsUrl</Name><Value>{_EWS_GOOD}</Value></UserSetting>",
    f"<UserSetting><Name>ExternalEwsUrl</Name><Value>{_EWS_BAD}</Value></UserSetting>",
    f"<UserSetting><d:Name xmlns:d='urn:d'>UserDisplayName</d:Name><Name>ExternalEwsUrl</Name>"
    f"<Value>{_EWS_BAD}</Value></UserSetting>",
    f"<UserSetting><Name>ExternalEwsUrl</Name><d:Value xmlns:d='urn:d'>{_EWS_GOOD}</d:Value>"
    f"<Value>{_EWS_BAD}</Value></UserSetting>",
    f"<StringSetting><Name>ExternalEwsUrl</Name><Value>{_EWS_BAD}</Value></StringSetting>",
    f"<UserSetting><Name>ExternalEwsUrl</Name><Value>{_EWS_GOOD}</Value><Value>{_EWS_BAD}</Value></UserSetting>",
    "<UserSetting><Name>ExternalEwsUrl</Name><Value>https://ews.collector-mail.net<!---->.contoso.com/</Value>"
    "</UserSetting>",
    "<UserSetting><Name>ExternalEwsUrl</Name><Value><!---->https://ews.collector-mail.net/</Value></UserSetting>",
    "<UserSetting><Name>EwsSupportedSchemas</Name><Value>Exchange2016</Value></UserSetting>",
    f"<UserSetting><Name>ExternalEwsUrl</Name><Value i:nil='true'>{_EWS_BAD}</Value></UserSetting>",
    f"<UserSetting><Value>{_EWS_BAD}</Value><Name>ExternalEwsUrl</Name></UserSetting>",
]), max_size=4)
_HEAD_PARTS = st.lists(st.sampled_from([
    "<ErrorCode>NoError</ErrorCode>", "<ErrorCode>RedirectAddress</ErrorCode>", "<ErrorCode>RedirectUrl</ErrorCode>",
    "<ErrorCode>redirectaddress</ErrorCode>", "<d:ErrorCode xmlns:d='urn:d'>RedirectUrl</d:ErrorCode>",
    "<RedirectTarget i:nil='true'/>", "<RedirectTarget>alice@collector-mail.net</RedirectTarget>",
    "<RedirectTarget>alice@collector-mail.net@contoso.com</RedirectTarget>",
    "<RedirectTarget i:nil='true'>https://autodiscover.collector-mail.net/autodiscover/autodiscover.svc"
    "</RedirectTarget>",
    "<RedirectTarget>https://autodiscover.collector-mail.net/autodiscover/autodiscover.svc</RedirectTarget>",
    "<RedirectTarget>https://autodiscover.collector-mail.net/x@contoso.com</RedirectTarget>",
    "<RedirectTarget>alice@contoso.com</RedirectTarget>",
    "<ErrorMessage/>",
]), min_size=1, max_size=4)


def _soap(head: list[str], settings_: list[str]) -> bytes:
    return (
        "<?xml version='1.0' encoding='utf-8'?>"
        "<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body>"
        f"<GetUserSettingsResponseMessage xmlns='{_SVC}'>"
        "<Response xmlns:i='http://www.w3.org/2001/XMLSchema-instance'><ErrorCode>NoError</ErrorCode>"
        "<UserResponses><UserResponse>" + "".join(head)
        + "<UserSettings>" + "".join(settings_) + "</UserSettings>"
        "</UserResponse></UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>"
    ).encode()


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=_HEAD_PARTS, settings_=_SETTING_PARTS)
def test_generated_soap_answers_lead_exchangelib_only_where_the_guard_judged(head: list[str],
                                                                           settings_: list[str]) -> None:
    body = _soap(head, settings_)
    oracle, guard = exchangelib_soap_hosts(body), guard_hosts(SOAP, body, ALICE)
    assert _agrees(oracle, guard), (body, oracle, guard)


_TEXT_PIECES = st.lists(st.sampled_from(["mail.", "contoso.com", "evil.net", "<!---->", "<!-- x -->", "<?pi x?>",
                                         "<![CDATA[.com]]>", "&#46;", " ", "\n"]), max_size=6)


@settings(max_examples=examples(300), deadline=None)
@given(pieces=_TEXT_PIECES, wrap=st.booleans())
def test_generated_text_reads_the_same_in_lxml_or_is_refused(pieces: list[str], wrap: bool) -> None:
    inner = "".join(pieces)
    body = (f"<a><b><h>{inner}</h></b><!-- c --></a>" if wrap else f"<a><h>{inner}</h><h>x</h></a>").encode()
    ours, theirs = _et_leaf_texts(body, allow_doctype=False), lxml_leaf_texts(body)
    assert ours is None or theirs is None or ours == theirs, (body, ours, theirs)


_PAYLOADS = st.lists(st.sampled_from([
    "<dict><key>PayloadType</key><string>com.apple.mail.managed</string><key>EmailAccountType</key>"
    "<string>EmailTypeIMAP</string><key>IncomingMailServerHostName</key><string>imap.contoso.com</string></dict>",
    "<dict><key>PayloadType</key><string>com.apple.mail.managed</string><key>IncomingMailServerHostName</key>"
    "<string>imap.contoso.com</string><key>IncomingMailServerHostName</key><string>imap.evil.net</string></dict>",
    "<dict><key>PayloadType</key><string>com.apple.subscribedcalendar.account</string>"
    "<key>SubCalAccountHostName</key><string>https://cal.evil.net/x.ics</string></dict>",
    "<dict><key>PayloadType</key><string>com.apple.dnsSettings.managed</string><key>DNSSettings</key><dict>"
    "<key>ServerURL</key><string>https://doh.evil.net/dns-query</string></dict></dict>",
    "<dict><key>PayloadType</key><string>com.apple.eas.account</string><key>Host</key>"
    "<string>eas.contoso.com</string><key>OAuthSignInURL</key><string>https://login.evil.net/</string></dict>",
    "<dict><key>PayloadType</key><string>com.apple.caldav.account</string><key>CalDAVHostName</key>"
    "<string>dav.contoso.com</string><key>CalDAVPrincipalURL</key><string>/principals/a/</string></dict>",
    "<dict><key>PayloadType</key><string>com.apple.webClip.managed</string><key>URL</key>"
    "<string>https://webmail.evil.net/</string></dict>",
    "<dict><key>PayloadType</key><string>com.apple.eas.account</string><key>Host</key>"
    "<string>eas.con<!---->toso.com</string></dict>",
]), max_size=3)


@settings(max_examples=examples(300), deadline=None)
@given(payloads=_PAYLOADS)
def test_generated_profiles_name_only_hosts_the_guard_judged(payloads: list[str]) -> None:
    body = ("<?xml version='1.0' encoding='UTF-8'?><plist version='1.0'><dict><key>PayloadContent</key><array>"
            + "".join(payloads) + "</array><key>PayloadType</key><string>Configuration</string></dict></plist>"
            ).encode()
    oracle, guard = plistlib_hosts(body), guard_hosts(MOBILECONFIG, body, ALICE)
    assert _agrees(oracle, guard), (body, oracle, guard)


# --- the benign corpus (tests/benign) ---------------------------------------------------------------

BENIGN = sorted((Path(__file__).resolve().parent / "benign").glob("*.xml"))


@pytest.mark.parametrize("answer", BENIGN, ids=lambda p: p.name)
def test_every_benign_answer_reads_alike_in_the_guard_and_the_real_readers(answer: Path) -> None:
    body = answer.read_bytes()
    fmt = detect(body)
    assert fmt is not None
    ours = _et_leaf_texts(body, allow_doctype=fmt.name == "mobileconfig")
    assert ours is not None and ours == lxml_leaf_texts(body)
    guard = guard_hosts(fmt, body, ALICE)
    assert guard is not None  # benign: never refused
    oracle = {"soap": exchangelib_soap_hosts, "mobileconfig": plistlib_hosts}.get(fmt.name)
    if oracle is not None:
        assert _agrees(oracle(body), guard)
