"""Normalisation: what a document says → the host a client really contacts."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.model import Role, Suggestion, Transport, ValueKind
from guard.names import InvalidHost, User, expand_placeholders, normalise_host, parse_ip, skeleton, target_of

ALICE = User.from_address("alice@contoso.com")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("IMAP.Contoso.COM.", "imap.contoso.com"),
        ("  smtp.northwind-traders.co.uk. ", "smtp.northwind-traders.co.uk"),
        ("imap.cοntoso.com", "imap.xn--cntoso-i0e.com"),  # Greek omicron → A-label
        ("IMAP.XN--CNTOSO-I0E.COM", "imap.xn--cntoso-i0e.com"),
        ("[::1]", "::1"),
    ],
)
def test_normalise_host_strips_case_folds_and_encodes_idna(raw: str, expected: str) -> None:
    assert normalise_host(raw) == expected


@pytest.mark.parametrize(
    "raw", ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "017700000001", "127.0.0.1", "0x7f000001"]
)
def test_every_inet_aton_form_of_loopback_is_recognised(raw: str) -> None:
    assert parse_ip(raw) == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize("raw", ["999.1.1.1", "1.2.3.4.5", "1.2.3.0x100", "08.1.1.1"])
def test_numeric_hosts_that_are_not_addresses_are_invalid_not_names(raw: str) -> None:
    with pytest.raises(InvalidHost):
        parse_ip(raw)


def test_names_with_a_non_numeric_last_label_are_not_ip_literals() -> None:
    assert parse_ip("123.example.com") is None
    assert parse_ip("1.2.3.com") is None


@pytest.mark.parametrize("raw", ["", " ", "-bad.example", "a..b", "exa mple.com", "x" * 64 + ".com", "mail.%FOO%"])
def test_invalid_host_names_raise_invalid_host(raw: str) -> None:
    with pytest.raises(InvalidHost):
        normalise_host(raw)


def _s(value: str, kind: ValueKind = ValueKind.HOST, transport: Transport = Transport.UNKNOWN) -> Suggestion:
    return Suggestion(value, kind, Role.IMAP, "f", transport=transport)


def test_url_userinfo_does_not_hide_the_real_host() -> None:
    target = target_of(_s("https://mail.contoso.com@collector-mail.net/x", ValueKind.URL), ALICE)
    assert target.host == "collector-mail.net"
    assert target.userinfo


def test_backslash_in_an_https_url_is_a_path_separator_as_in_browsers() -> None:
    target = target_of(_s("https://evil.net\\@mail.contoso.com/", ValueKind.URL), ALICE)
    assert target.host == "evil.net"


def test_http_urls_are_plaintext_and_https_urls_tls() -> None:
    assert target_of(_s("http://mail.contoso.com/", ValueKind.URL), ALICE).transport is Transport.PLAIN
    assert target_of(_s("https://mail.contoso.com/", ValueKind.URL), ALICE).transport is Transport.TLS


def test_bracketed_ipv6_url_host_is_an_ip_literal() -> None:
    target = target_of(_s("https://[::ffff:127.0.0.1]/EWS/Exchange.asmx", ValueKind.URL), ALICE)
    assert target.ip == ipaddress.ip_address("::ffff:127.0.0.1")


def test_guid_at_domain_exchange_servers_judge_the_domain() -> None:
    target = target_of(_s("7d3e9a41-2c5b-4f86-9e10-4b6a8c2d1f37@Fabrikam.com"), ALICE)
    assert target.host == "fabrikam.com"


def test_msstd_certificate_principal_names_judge_the_host() -> None:
    assert target_of(_s("msstd:outlook.com"), ALICE).host == "outlook.com"


def test_redirect_addresses_judge_their_domain() -> None:
    assert target_of(_s("alice@Collector-Mail.net", ValueKind.EMAIL), ALICE).host == "collector-mail.net"


def test_placeholders_are_expanded_before_judging() -> None:
    assert expand_placeholders("mail.%EMAILDOMAIN%", ALICE) == "mail.contoso.com"
    assert expand_placeholders("%EMAILLOCALPART%@%EMAILDOMAIN%", ALICE) == "alice@contoso.com"
    assert target_of(_s("imap.$domain"), ALICE).host == "imap.contoso.com"


def test_host_with_port_in_a_host_field_judges_the_host() -> None:
    assert target_of(_s("mail.contoso.com:993"), ALICE).host == "mail.contoso.com"


def test_user_domains_are_normalised_like_hosts() -> None:
    user = User.from_address("Bob@Northwind-Traders.CO.UK.")
    assert user.domain == "northwind-traders.co.uk"


@pytest.mark.parametrize("address", ["nobody", "@contoso.com", "alice@", "alice@127.0.0.1"])
def test_addresses_without_a_host_domain_are_rejected(address: str) -> None:
    with pytest.raises(InvalidHost):
        User.from_address(address)


def test_skeleton_maps_cyrillic_and_greek_look_alikes_to_latin() -> None:
    assert skeleton("nоrthwind-traders.co.uk") == "northwind-traders.co.uk"  # Cyrillic о
    assert skeleton("imap.cοntoso.com") == "imap.contoso.com"  # Greek ο
    assert skeleton("ｃｏｎｔｏｓｏ.com") == "contoso.com"  # fullwidth


@given(st.text(max_size=80))
def test_normalise_host_raises_only_invalid_host(raw: str) -> None:
    with contextlib.suppress(InvalidHost):
        normalise_host(raw)


@given(st.text(max_size=80), st.sampled_from(list(ValueKind)))
def test_target_of_raises_only_invalid_host(raw: str, kind: ValueKind) -> None:
    with contextlib.suppress(InvalidHost):
        target_of(_s(raw, kind), ALICE)
