"""Apple .mobileconfig: strict plist reading, account payloads, signed profiles, rewrites, 403 block."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from hypothesis import given, settings

from guard.errors import BodyTooLarge, MalformedDocument, UntrustedInputError
from guard.formats import mobileconfig, sniff_body
from guard.formats._xml import MAX_XML_BYTES
from guard.model import Role, Suggestion, Transport, ValueKind
from tests.conftest import examples, unit_span
from tests.formats._json_fuzz import mutated
from tests.formats.test_contract import keeps_the_contract

FIXTURES = Path(__file__).parent.parent / "fixtures"

H, U = ValueKind.HOST, ValueKind.URL
TLS, PLAIN, UNKNOWN = Transport.TLS, Transport.PLAIN, Transport.UNKNOWN
P0 = "PayloadContent[0]"

Row = tuple[str, ValueKind, Role, str, int | None, Transport]
EXPECTED: dict[str, list[Row]] = {
    "mobileconfig__benign_own_domain.xml": [
        ("imap.contoso.com", H, Role.IMAP, f"{P0}.IncomingMailServerHostName", 993, TLS),
        ("smtp.contoso.com", H, Role.SMTP, f"{P0}.OutgoingMailServerHostName", 587, TLS),
    ],
    "mobileconfig__eas_reserved_local.xml": [
        ("exchange.contoso.local", H, Role.EAS, f"{P0}.Host", None, TLS),
    ],
    "mobileconfig__seed_example_com.xml": [
        ("imapgms.jnet.sei.co.jp", H, Role.IMAP, f"{P0}.IncomingMailServerHostName", 993, TLS),
        ("smtpgms.jnet.sei.co.jp", H, Role.SMTP, f"{P0}.OutgoingMailServerHostName", 465, TLS),
    ],
}
VIOLATING = {
    "mobileconfig__eas_reserved_local.xml": ".local",
    "mobileconfig__seed_example_com.xml": "sei.co.jp",
}

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" '
        '"http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n<plist version="1.0">\n')


def _read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _rows(suggestions: tuple[Suggestion, ...]) -> list[Row]:
    return [(s.value, s.kind, s.role, s.field, s.port, s.transport) for s in suggestions]


def _payload(kind: str, entries: str) -> str:
    return f"    <dict>\n      <key>PayloadType</key><string>{kind}</string>\n      {entries}\n    </dict>"


def _profile(*payloads: str) -> bytes:
    content = "\n".join(payloads)
    return (f"{HEAD}<dict>\n  <key>PayloadContent</key>\n  <array>\n{content}\n  </array>\n"
            "  <key>PayloadType</key><string>Configuration</string>\n</dict>\n</plist>\n").encode()


def _sign(data: bytes) -> bytes:
    """CMS SignedData (DER) with the content embedded, as `security cms -S` writes a signed profile."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Profile signer")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))


SIGNED = _sign(_read("mobileconfig__seed_example_com.xml"))

MAIL_POP = _payload("com.apple.mail.managed", """<key>EmailAccountType</key><string>EmailTypePOP</string>
      <key>IncomingMailServerHostName</key><string>pop.contoso.com</string>
      <key>IncomingMailServerPortNumber</key><integer>110</integer>
      <key>IncomingMailServerUseSSL</key><false/>
      <key>OutgoingMailServerHostName</key><string>smtp.collector-mail.net</string>""")
CALDAV = _payload("com.apple.caldav.account", """<key>CalDAVHostName</key><string>dav.contoso.com</string>
      <key>CalDAVPort</key><real>443</real>
      <key>CalDAVUseSSL</key><true/>
      <key>CalDAVPrincipalURL</key><string>/principals/alice/</string>""")
CARDDAV = _payload("com.apple.carddav.account", """<key>CardDAVHostName</key><string>dav.contoso.com</string>
      <key>CardDAVPort</key><string>8443</string>
      <key>CardDAVPrincipalURL</key><string>https://dav.contoso.com/principals/alice/</string>""")
EWS = _payload("com.apple.ews.account", """<key>Host</key><string>ews.corp.contoso.com</string>
      <key>Port</key><integer>443</integer><key>SSL</key><true/><key>Path</key><string>/EWS</string>
      <key>ExternalHost</key><string>mail.contoso.com</string><key>ExternalSSL</key><true/>
      <key>ExternalPort</key><string></string>
      <key>OAuthSignInURL</key><string>https://login.contoso.com/sign-in</string>""")
EAS = _payload("com.apple.eas.account", """<key>Host</key><string>eas.contoso.com</string>
      <key>OAuthTokenRequestURL</key><string>https://login.contoso.com/token</string>
      <key>PayloadCertificateUUID</key><string>UUID1</string>
      <key>PayloadContent</key><data>AAEC
        AwQ=</data>""")
LDAP = _payload("com.apple.ldap.account", """<key>LDAPAccountHostName</key><string>ldap.contoso.com</string>
      <key>LDAPAccountUseSSL</key><true/>
      <key>LDAPSearchSettings</key><array><dict><key>LDAPSearchSettingScope</key><string>x</string></dict></array>""")
CERT = _payload("com.apple.security.pkcs1", """<key>PayloadContent</key><data>AAEC</data>
      <key>PayloadExpirationDate</key><date>2027-01-01T00:00:00Z</date>
      <key>Weight</key><real>-1.5e3</real>""")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_yields_its_expected_suggestions(name: str) -> None:
    body = _read(name)
    parsed = mobileconfig.parse(body)
    assert parsed.format == "mobileconfig"
    assert not parsed.error_answer
    assert _rows(parsed.suggestions) == EXPECTED[name]
    for s in parsed.suggestions:  # the unit is the payload <dict> inside PayloadContent
        assert len(s.locator) == 1  # (ordinal,)
        start, end = unit_span(body, s, allow_doctype=True)
        assert body[start:end].startswith(b"<dict>") and body[start:end].endswith(b"</dict>")
        assert b"<key>PayloadType</key>" in body[start:end]


def test_every_account_payload_type_is_read() -> None:
    body = _profile(MAIL_POP, CALDAV, CARDDAV, EWS, EAS, LDAP, CERT)
    assert _rows(mobileconfig.parse(body).suggestions) == [
        ("pop.contoso.com", H, Role.POP3, f"{P0}.IncomingMailServerHostName", 110, PLAIN),
        ("smtp.collector-mail.net", H, Role.SMTP, f"{P0}.OutgoingMailServerHostName", None, UNKNOWN),
        ("dav.contoso.com", H, Role.DAV, "PayloadContent[1].CalDAVHostName", 443, TLS),
        ("dav.contoso.com", H, Role.DAV, "PayloadContent[2].CardDAVHostName", 8443, UNKNOWN),
        ("https://dav.contoso.com/principals/alice/", U, Role.DAV, "PayloadContent[2].CardDAVPrincipalURL",
         None, UNKNOWN),
        ("ews.corp.contoso.com", H, Role.EWS, "PayloadContent[3].Host", 443, TLS),
        ("mail.contoso.com", H, Role.EWS, "PayloadContent[3].ExternalHost", None, TLS),
        ("https://login.contoso.com/sign-in", U, Role.OAUTH, "PayloadContent[3].OAuthSignInURL", None,
         UNKNOWN),
        ("eas.contoso.com", H, Role.EAS, "PayloadContent[4].Host", None, UNKNOWN),
        ("https://login.contoso.com/token", U, Role.OAUTH, "PayloadContent[4].OAuthTokenRequestURL", None,
         UNKNOWN),
        ("ldap.contoso.com", H, Role.DIRECTORY, "PayloadContent[5].LDAPAccountHostName", None, TLS),
    ]


@pytest.mark.parametrize(
    ("principal", "judged"),
    [("/principals/alice/", False), ("principals/alice/", False), ("  ", False), ("dav.evil.net/p", False),
     ("dav.evil.net:8443/p", True), ("//evil.net/p/", True), ("\\\\evil.net\\p", True),
     ("/\\evil.net/p", True), ("https://evil.net/p", True)],
)
def test_a_principal_url_is_judged_only_when_it_can_name_a_host(principal: str, judged: bool) -> None:
    entry = f"<key>CalDAVPrincipalURL</key><string>{principal}</string>"
    body = _profile(_payload("com.apple.caldav.account", entry))
    assert [s.value for s in mobileconfig.parse(body).suggestions] == ([principal] if judged else [])


@pytest.mark.parametrize(
    ("account_type", "role"),
    [("EmailTypeIMAP", Role.IMAP), ("EmailTypePOP", Role.POP3), ("EmailTypeX", Role.OTHER)],
)
def test_email_account_type_decides_the_incoming_role(account_type: str, role: Role) -> None:
    entries = (f"<key>EmailAccountType</key><string>{account_type}</string>"
               "<key>IncomingMailServerHostName</key><string>in.contoso.com</string>")
    body = _profile(_payload("com.apple.mail.managed", entries))
    assert mobileconfig.parse(body).suggestions[0].role is role


def test_profiles_without_account_payloads_yield_nothing() -> None:
    assert mobileconfig.parse(_profile(CERT)).suggestions == ()
    assert mobileconfig.parse(f"{HEAD}<dict/></plist>".encode()).suggestions == ()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<plist><dict><key>a</key></dict></plist>",  # key without value
        b"<plist><dict><key>a</key><string>1</string><key>a</key><string>2</string></dict></plist>",
        b"<plist><dict><string>a</string><string>1</string></dict></plist>",  # value where a key belongs
        b"<plist><dict>text<key>a</key><string>1</string></dict></plist>",
        b"<plist><dict><key>a</key><integer>0x10</integer></dict></plist>",
        b"<plist><dict><key>a</key><integer>1</integer><key>b</key><real>1_0</real></dict></plist>",
        b"<plist><dict><key>a</key><data>!!!</data></dict></plist>",
        b"<plist><dict><key>a</key><date>yesterday</date></dict></plist>",
        b"<plist><dict><key>a</key><true>yes</true></dict></plist>",
        b"<plist><dict><key>a</key><string>x<b/></string></dict></plist>",
        b"<plist><dict><key>a</key><set/></dict></plist>",
        b'<plist><dict xmlns="urn:x"/></plist>',
        b"<plist><dict/><dict/></plist>",
        b"<plist><array/></plist>",
        b"<plist/>",
        b"<dict/>",
        b"<plist><dict><key>PayloadContent</key><dict/></dict></plist>",
        b"<plist><dict><key>PayloadContent</key><array><string>x</string></array></dict></plist>",
        b"<plist><dict><key>PayloadContent</key><array><dict><key>PayloadType</key><integer>1</integer>"
        b"</dict></array></dict></plist>",
        _profile(_payload("com.apple.eas.account", "<key>Host</key><integer>7</integer>")),
        _profile(_payload("com.apple.eas.account", "<key>Host</key><string>h</string>"
                                                   "<key>SSL</key><string>1</string>")),
        _profile(_payload("com.apple.caldav.account", "<key>CalDAVHostName</key><string>h</string>"
                                                      "<key>CalDAVPort</key><integer>70000</integer>")),
        _profile(_payload("com.apple.caldav.account", "<key>CalDAVHostName</key><string>h</string>"
                                                      "<key>CalDAVPort</key><real>443.5</real>")),
        _profile(_payload("com.apple.caldav.account", "<key>CalDAVHostName</key><string>h</string>"
                                                      "<key>CalDAVPort</key><true/>")),
        b'<!DOCTYPE plist [<!ENTITY h "evil.net">]>'
        b"<plist><dict><key>Host</key><string>&h;</string></dict></plist>",
        b'<!DOCTYPE plist SYSTEM "file:///etc/passwd" [<!ELEMENT plist ANY>]><plist/>',
    ],
)
def test_documents_that_are_not_strict_plists_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        mobileconfig.parse(body)


@pytest.mark.parametrize(
    "body",
    [
        b"<plist><dict><key>a</key>text<string>1</string></dict></plist>",  # between key and value
        b"<plist><dict><key>a</key><string>1</string>text</dict></plist>",  # after the last value
        b"<plist><dict><key>a</key><array><string>1</string>text<string>2</string></array></dict></plist>",
        b"<plist><dict/>text</plist>",
        b"<plist><dict><key>a</key><true/>t<!-- comment -->ext</dict></plist>",
    ],
)
def test_stray_text_after_a_child_is_malformed(body: bytes) -> None:
    """The C tree keeps text after a child in that child's tail: it must be checked like leading text."""
    with pytest.raises(MalformedDocument, match="unexpected text"):
        mobileconfig.parse(body)


def test_whitespace_between_children_is_not_stray_text() -> None:
    body = b"<plist>\n<dict>\n\t<key>a</key>\r\n <array> <string>1</string>\n</array>\n</dict>\n</plist>"
    assert mobileconfig.parse(body).suggestions == ()


def test_a_signed_profile_is_judged_from_its_embedded_plist_without_locators() -> None:
    assert SIGNED[:1] == b"\x30"
    assert sniff_body(SIGNED) == "mobileconfig"
    parsed = mobileconfig.parse(SIGNED)
    assert _rows(parsed.suggestions) == EXPECTED["mobileconfig__seed_example_com.xml"]
    assert all(s.locator == () for s in parsed.suggestions)


def test_a_signed_profile_cannot_be_rewritten() -> None:
    parsed = mobileconfig.parse(SIGNED)
    assert mobileconfig.rewrite(SIGNED, parsed, parsed.suggestions[1:]) is None
    assert mobileconfig.rewrite(SIGNED, parsed, []) is SIGNED


@pytest.mark.parametrize(
    "body",
    [
        _sign(b"not a plist at all"),
        _sign(b"<?xml version='1.0'?><plist><dict/></plist>") + b"<plist><dict/></plist>",  # with a decoy
        b"0\x82\x01\x00<plist version='1.0'><dict/>",  # no end
        b"0" + b"\x06\x09" + _read("mobileconfig__benign_own_domain.xml")[:100] + b"</plist>",
    ],
)
def test_a_signed_body_without_exactly_one_clean_plist_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedDocument):
        mobileconfig.parse(body)


@pytest.mark.parametrize("name", sorted(VIOLATING))
def test_rewrite_of_a_violating_single_payload_fixture_leaves_nothing_safe(name: str) -> None:
    body = _read(name)
    parsed = mobileconfig.parse(body)
    drop = [s for s in parsed.suggestions if VIOLATING[name] in s.value]
    assert drop
    assert mobileconfig.rewrite(body, parsed, drop) is None


def test_rewrite_removes_exactly_the_payload_dict_and_keeps_the_others() -> None:
    body = _profile(MAIL_POP, CALDAV, CERT)
    parsed = mobileconfig.parse(body)
    drop = [s for s in parsed.suggestions if "collector-mail.net" in s.value]
    out = mobileconfig.rewrite(body, parsed, drop)
    start, end = unit_span(body, drop[0], allow_doctype=True)
    assert out == body.replace(b"\n    " + body[start:end], b"")
    assert out.startswith(HEAD.encode())
    assert b"collector-mail.net" not in out and b"pop.contoso.com" not in out  # the whole payload goes
    assert _rows(mobileconfig.parse(out).suggestions) == [
        ("dav.contoso.com", H, Role.DAV, f"{P0}.CalDAVHostName", 443, TLS)]


def test_rewrite_refuses_when_only_payloads_without_servers_would_remain() -> None:
    body = _profile(MAIL_POP, CERT)
    parsed = mobileconfig.parse(body)
    assert mobileconfig.rewrite(body, parsed, parsed.suggestions[1:]) is None


def test_rewrite_refuses_a_suggestion_it_cannot_locate() -> None:
    body = _read("mobileconfig__benign_own_domain.xml")
    parsed = mobileconfig.parse(body)
    for locator in ((0,), (1,), (10_000,)):  # <plist> and the top <dict> hold no suggestion; no such element
        assert mobileconfig.rewrite(body, parsed, [Suggestion("x", H, Role.IMAP, "x", locator=locator)]) is None


def test_block_is_a_403_with_a_text_body_that_is_no_profile() -> None:
    reply = mobileconfig.block()
    assert reply.status == 403
    assert reply.content_type.startswith("text/plain")
    assert 0 < len(reply.body) < 100
    with pytest.raises(MalformedDocument):
        mobileconfig.parse(reply.body)


def test_a_nesting_bomb_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        mobileconfig.parse(b"<plist>" + b"<array>" * 100_000 + b"</array>" * 100_000 + b"</plist>")
    with pytest.raises(UntrustedInputError):  # unclosed: refused too, as malformed or as too deep
        mobileconfig.parse(b"<plist>" + b"<array>" * 100_000)


def test_an_oversized_body_is_refused() -> None:
    with pytest.raises(BodyTooLarge):
        mobileconfig.parse(_profile(_payload("x", f"<key>Big</key><string>{'a' * MAX_XML_BYTES}</string>")))


BODIES = [p.read_bytes() for p in sorted(FIXTURES.glob("mobileconfig__*.xml"))] + [
    SIGNED, _profile(MAIL_POP, CALDAV, CARDDAV, EWS, EAS, LDAP, CERT)]


@settings(max_examples=examples(200), deadline=None)
@given(mutated(BODIES))
def test_mutated_signed_and_synthetic_profiles_keep_the_format_contract(body: bytes) -> None:
    keeps_the_contract(mobileconfig.FORMAT, body)
