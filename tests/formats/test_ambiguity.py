"""One reading or none (issue 17): documents two conforming readers could read differently are
malformed; shapes with one reading that real servers emit are accepted."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.engine import judge
from guard.errors import MalformedDocument
from guard.formats import AMBIGUOUS, adv2, autodetect, mobileconfig, mobilesync, pox, sniff_body, soap, srv
from guard.formats._exchange import _Cover
from guard.model import Action, Role, Suggestion, ValueKind
from guard.names import InvalidHost, User, mailbox_domain, normalise_host, target_of, whatwg_prepare
from guard.policy import Policy
from tests.conftest import FIXTURES, ROOT, examples

ALICE = User.from_address("alice@contoso.com")
SVC = "http://schemas.microsoft.com/exchange/2010/Autodiscover"


def _soap_response(inner: str) -> bytes:
    return (
        "<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body>"
        f"<GetUserSettingsResponseMessage xmlns='{SVC}'>"
        "<Response xmlns:i='http://www.w3.org/2001/XMLSchema-instance'><ErrorCode>NoError</ErrorCode>"
        f"<UserResponses><UserResponse>{inner}</UserResponse></UserResponses></Response>"
        "</GetUserSettingsResponseMessage></s:Body></s:Envelope>"
    ).encode()


EWS = "<UserSettings><UserSetting><Name>ExternalEwsUrl</Name><Value>https://mail.contoso.com/ews</Value>" \
      "</UserSetting></UserSettings>"


@pytest.mark.parametrize(
    "inner",
    [
        "<d:ErrorCode xmlns:d='urn:d'>RedirectUrl</d:ErrorCode><ErrorCode>NoError</ErrorCode>" + EWS,
        "<ErrorCode>NoError</ErrorCode><UserSettings/><UserSettings/>",
        "<ErrorCode>NoError</ErrorCode><Extra>https://evil.net/</Extra>" + EWS,
        "<ErrorCode>NoError</ErrorCode>" + EWS.replace("<Value>", "<Name>Other</Name><Value>"),
        "<ErrorCode>NoError</ErrorCode>" + EWS.replace("<UserSettings>", "<UserSettings><Setting/>"),
        "<ErrorCode>RedirectUrl</ErrorCode><RedirectTarget i:nil='1'>https://evil.net/</RedirectTarget>",
        "<ErrorCode>RedirectAddress</ErrorCode><RedirectTarget>https://evil.net/@contoso.com</RedirectTarget>",
    ],
    ids=["decoy-code-namespace", "two-settings", "unknown-element", "two-names", "unknown-setting-element",
         "nil-1-with-text", "address-code-url-target"],
)
def test_soap_elements_exchangelib_and_the_guard_would_read_differently_are_malformed(inner: str) -> None:
    body = _soap_response(inner)
    try:
        parsed = soap.parse(body)
    except MalformedDocument:
        return
    for suggestion in parsed.suggestions:  # or the one suggestion left names no host at all
        with pytest.raises(InvalidHost):
            target_of(suggestion, ALICE)


def test_soap_redirect_kind_follows_the_exact_error_code() -> None:
    parsed = soap.parse(_soap_response("<ErrorCode>RedirectUrl</ErrorCode>"
                                       "<RedirectTarget>https://autodiscover.contoso.com/a.svc</RedirectTarget>"))
    assert [(s.kind, s.role) for s in parsed.suggestions] == [(ValueKind.URL, Role.REDIRECT)]


@pytest.mark.parametrize("address", ["a@b@evil.net", "alice@evil.net@contoso.com", "@contoso.com", "alice@",
                                     "ali ce@contoso.com", '"a@b"@contoso.com', "alice@[127.0.0.1]"])
def test_a_redirect_address_that_is_not_exactly_one_mailbox_names_no_host(address: str) -> None:
    with pytest.raises(InvalidHost):
        target_of(Suggestion(address, ValueKind.EMAIL, Role.REDIRECT, "RedirectAddr"), ALICE)


@pytest.mark.parametrize(("address", "domain"), [("alice@contoso.com", "contoso.com"),
                                                 ('"alice smith"@contoso.com', "contoso.com"),
                                                 ("jörg.o'neil+x@contoso.com", "contoso.com")])
def test_ordinary_mailboxes_give_their_domain(address: str, domain: str) -> None:
    assert mailbox_domain(address) == domain


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("\x01https://ews.evil.net\\@mail.contoso.com/", "ews.evil.net"),
        (" https://mail.contoso.com/ews ", "mail.contoso.com"),
        ("https://ma\til.contoso.com/", "mail.contoso.com"),
        ("https:\\\\evil.net\\x", "evil.net"),
        ("https://０ｘ７ｆ.０.０.０ｘａ/", "127.0.0.10"),
    ],
)
def test_urls_are_judged_as_whatwg_parsers_read_them(url: str, host: str) -> None:
    assert target_of(Suggestion(url, ValueKind.URL, Role.EWS, "Url"), ALICE).host == host


@pytest.mark.parametrize("url", ["https:evil.net/x", "https:/evil.net/", "https:///evil.net/"])
def test_urls_whatwg_and_urlsplit_read_differently_are_malformed(url: str) -> None:
    with pytest.raises(InvalidHost, match="WHATWG"):
        target_of(Suggestion(url, ValueKind.URL, Role.EWS, "Url"), ALICE)


def test_whatwg_preparation_keeps_backslashes_of_other_schemes() -> None:
    assert whatwg_prepare("\x00imaps://a\\b\t ") == "imaps://a\\b"
    assert whatwg_prepare("HTTPS://a\\b") == "HTTPS://a/b"


def test_a_full_width_numeric_host_is_the_ip_literal_uts46_maps_it_to() -> None:
    assert normalise_host("０ｘ７ｆ.０.０.０ｘａ") == "127.0.0.10"
    assert normalise_host("１０.０.０.５") == "10.0.0.5"


# --- JSON --------------------------------------------------------------------------------------

_ADV2 = {"Protocol": "Ews", "Url": "https://mail.contoso.com/EWS/Exchange.asmx"}
_AUTODETECT_PROTOCOLS = [{"protocol": "imap", "hostname": "imap.evil.net", "port": 993, "encryption": "ssl"}]


def test_an_escaped_key_of_another_json_format_makes_the_body_ambiguous() -> None:
    protocols = json.dumps(_AUTODETECT_PROTOCOLS).encode()
    body = json.dumps(_ADV2)[:-1].encode() + b', "prot\\u006fcols": ' + protocols + b"}"
    assert sniff_body(body) == AMBIGUOUS.name


@pytest.mark.parametrize(
    ("reader", "document"),
    [
        (adv2, {**_ADV2, "protocols": _AUTODETECT_PROTOCOLS}),
        (autodetect, {"protocols": [], "Url": "https://evil.net/"}),
        (srv, {"Status": 0, "Answer": [], "services": []}),
        (adv2, {**_ADV2, "Answer": []}),
    ],
    ids=["adv2-protocols", "autodetect-url", "srv-services", "adv2-answer"],
)
def test_each_json_reader_refuses_the_other_formats_keys(reader: object, document: dict[str, object]) -> None:
    with pytest.raises(MalformedDocument, match="belongs to the"):
        reader.parse(json.dumps(document).encode())  # type: ignore[attr-defined]


def test_the_endpoint_url_decides_a_body_whose_keys_are_all_escaped(default_policy: Policy) -> None:
    body = b'{"\\u0055rl": "https://ews.collector-mail.net/EWS/Exchange.asmx", "Protocol": "Ews"}'
    decision = judge(body, ALICE, default_policy, url="https://autodiscover.contoso.com/autodiscover/autodiscover.json")
    assert decision.format == "adv2" and "foreign-host" in decision.rules


def test_debug_header_base64_with_whitespace_is_read_as_lenient_decoders_read_it() -> None:
    raw = base64.b64encode(json.dumps({"Hostname": "imap.evil.net", "Protocol": "imap"}).encode()).decode()
    wrapped = raw[:10] + "\r\n " + raw[10:20] + "\t" + raw[20:]
    assert [s.value for s in autodetect.header_suggestions({"x-debug-support": wrapped})] == ["imap.evil.net"]


# --- mobilesync, POX ----------------------------------------------------------------------------


def test_horde_bare_root_answer_reads_like_the_namespaced_one() -> None:
    horde = mobilesync.parse((FIXTURES / "mobilesync__benign_horde_bare_root.xml").read_bytes())
    plain = mobilesync.parse((FIXTURES / "mobilesync__benign_own_domain.xml").read_bytes())
    assert [(s.value, s.role) for s in horde.suggestions] == [(s.value, s.role) for s in plain.suggestions]


def test_a_bare_root_is_not_accepted_for_the_outlook_schema() -> None:
    body = (FIXTURES / "pox__benign_isp_imap_smtp.xml").read_bytes().replace(
        b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">',
        b"<Autodiscover>")
    with pytest.raises(MalformedDocument):
        pox.parse(body)


def test_mobilesync_name_is_read_when_type_follows_it() -> None:
    body = (FIXTURES / "mobilesync__benign_own_domain.xml").read_bytes().replace(
        b"<Type>MobileSync</Type>\n", b"").replace(b"</Name>", b"</Name><Type>MobileSync</Type>")
    assert [s.field.rsplit("/", 1)[1] for s in mobilesync.parse(body).suggestions] == ["Url", "Name"]


def test_pox_account_image_and_service_home_are_judged() -> None:
    parsed = pox.parse((FIXTURES / "pox__image_servicehome_link_local.xml").read_bytes())
    assert {s.field for s in parsed.suggestions if s.role is Role.WEB} == {"Account/Image", "Account/ServiceHome"}


def test_cert_principal_none_is_no_principal_and_a_real_one_is_judged() -> None:
    body = (FIXTURES / "pox__benign_certprincipal_none.xml").read_bytes()
    assert not any("CertPrincipalName" in s.field for s in pox.parse(body).suggestions)
    named = pox.parse(body.replace(b">None<", b">msstd:mail.evil.net<")).suggestions
    assert [target_of(s, ALICE).host for s in named if "CertPrincipalName" in s.field] == ["mail.evil.net"]


# --- mobileconfig --------------------------------------------------------------------------------


def test_a_streamed_ber_signed_profile_reads_like_its_content() -> None:
    signed = mobileconfig.parse((FIXTURES / "mobileconfig__signed_streamed_ber.mobileconfig").read_bytes())
    plain = mobileconfig.parse((FIXTURES / "mobileconfig__benign_own_domain.xml").read_bytes())
    assert [(s.value, s.role, s.port) for s in signed.suggestions] == [(s.value, s.role, s.port)
                                                                         for s in plain.suggestions]
    assert all(s.locator == () for s in signed.suggestions)


@pytest.mark.parametrize("body", [b"0\x80\x06\x09*\x86H\x86\xf7\r\x01\x07\x02", b"0\x03\x02\x01\x01",
                                  b"0\x82\x00\x05<plist><dict/></plist>"])
def test_a_body_that_is_no_cms_signed_data_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument, match="signed profile"):
        mobileconfig.parse(body)


@pytest.mark.parametrize("payload_type", ["com.apple.security.root", "com.apple.vpn.managed",
                                          "com.apple.subscribedcalendar.account", "com.apple.dnsSettings.managed"])
def test_a_payload_type_the_guard_does_not_read_is_malformed(payload_type: str) -> None:
    body = (f"<plist><dict><key>PayloadContent</key><array><dict><key>PayloadType</key><string>{payload_type}"
            "</string></dict></array></dict></plist>").encode()
    with pytest.raises(MalformedDocument, match="not an account payload"):
        mobileconfig.parse(body)


# --- rewrite coverage ------------------------------------------------------------------------------

_SPANS = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 20)).map(lambda t: (t[0], t[0] + t[1])),
                  max_size=12)


def _nested(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Keep spans that nest or are disjoint, as element spans do."""
    kept: list[tuple[int, int]] = []
    for a in spans:
        if all(a[1] <= b[0] or b[1] <= a[0] or (b[0] <= a[0] and a[1] <= b[1]) or (a[0] <= b[0] and b[1] <= a[1])
               for b in kept):
            kept.append(a)
    return kept


@settings(max_examples=examples(200))
@given(cuts=_SPANS, probes=_SPANS)
def test_cover_answers_as_the_pairwise_test_does(cuts: list[tuple[int, int]], probes: list[tuple[int, int]]) -> None:
    spans = _nested(cuts + probes)
    cuts_ = [s for s in spans if s in cuts]
    cover = _Cover(cuts_)
    for probe in spans:
        assert cover.holds(probe) == any(a <= probe[0] and probe[1] <= b for a, b in cuts_)


def test_rewrite_of_a_large_soap_answer_drops_exactly_the_foreign_connections() -> None:
    good = "<ProtocolConnection><Hostname>mail.contoso.com</Hostname><Port>993</Port></ProtocolConnection>"
    bad = "<ProtocolConnection><Hostname>imap.evil.net</Hostname><Port>993</Port></ProtocolConnection>"
    items = "".join(good if i % 3 else bad for i in range(600))
    body = _soap_response("<ErrorCode>NoError</ErrorCode><UserSettings><UserSetting><Name>ExternalImap4Connections"
                          f"</Name><ProtocolConnections>{items}</ProtocolConnections></UserSetting></UserSettings>")
    parsed = soap.parse(body)
    out = soap.rewrite(body, parsed, [s for s in parsed.suggestions if s.value == "imap.evil.net"])
    assert out is not None
    assert {s.value for s in soap.parse(out).suggestions} == {"mail.contoso.com"}
    assert len(soap.parse(out).suggestions) == 400


# --- policy defaults ------------------------------------------------------------------------------


def test_hybrid_redirect_to_the_tenant_routing_domain_passes_noted_as_weak_evidence(default_policy: Policy) -> None:
    for name in ("pox__benign_hybrid_redirect_onmicrosoft.xml", "soap__benign_hybrid_redirect_onmicrosoft.xml"):
        decision = judge((FIXTURES / name).read_bytes(), ALICE, default_policy)
        assert decision.action is Action.ALLOW
        assert any("contoso.mail.onmicrosoft.com: weak evidence" in note for note in decision.notes), decision.notes


def test_an_attackers_cloud_storage_oauth_url_is_foreign_for_google_users(default_policy: Policy) -> None:
    url = "https://storage.googleapis.com/attacker-bucket/authorize"
    body = json.dumps({"Protocol": "Rest", "Url": url}).encode()
    decision = judge(body, User.from_address("carol@gmail.com"), default_policy)
    assert "foreign-host" in decision.rules


def test_policy_validate_warns_with_file_and_line_about_a_public_suffix_host(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nallow:\n  - name: x\n    users: [contoso.com]\n    hosts: [googleapis.com]\n",
                      encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "validate", str(policy)],
                            capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert f"{policy}:5: PublicSuffixHostWarning: trusted host 'googleapis.com' is a public suffix" in result.stderr


def test_the_shipped_policies_trust_no_public_suffix() -> None:
    for name in ("default.yaml", "audit.yaml", "gateway.example.yaml"):
        result = subprocess.run([sys.executable, "-m", "guard.cli", "policy", "validate", f"policies/{name}"],
                                capture_output=True, text=True, check=False, cwd=ROOT)
        assert result.returncode == 0 and "PublicSuffixHostWarning" not in result.stderr, result.stderr
