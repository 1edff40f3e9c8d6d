"""Reserved names and non-global address ranges."""

from __future__ import annotations

import ipaddress

import pytest

from guard.reserved import RESERVED_NAMES, embedded_ipv4, non_global_range, reserved_name


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("example.com", "example.com"),
        ("imap.example.net", "example.net"),
        ("mail.contoso.local", "local"),
        ("mail.corp.internal", "internal"),
        ("smtp.gateway.home.arpa", "home.arpa"),
        ("imap.contoso.alt", "alt"),
        ("x.onion", "onion"),
        ("10.in-addr.arpa", "arpa"),
        ("a.test", "test"),
    ],
)
def test_hosts_under_reserved_names_are_found(host: str, name: str) -> None:
    hit = reserved_name(host)
    assert hit is not None
    assert hit[0] == name


@pytest.mark.parametrize("host", ["pf01.internal.contoso.com", "mail.contoso.com", "example.co.uk", "local.example.de"])
def test_reserved_labels_only_count_at_the_end_of_a_name(host: str) -> None:
    assert reserved_name(host) is None


def test_every_reserved_name_carries_a_source() -> None:
    assert all(source.strip() for source in RESERVED_NAMES.values())


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("10.0.0.5", "10.0.0.0/8"),
        ("100.64.0.10", "100.64.0.0/10"),
        ("169.254.169.254", "169.254.0.0/16"),
        ("127.0.0.1", "127.0.0.0/8"),
        ("198.18.0.1", "198.18.0.0/15"),
        ("::1", "::1/128"),
        ("fd00::25", "fc00::/7"),
        ("3fff::1", "3fff::/20"),
        ("::ffff:127.0.0.1", "127.0.0.0/8"),
        ("64:ff9b::a00:5", "10.0.0.0/8"),
        ("2002:7f00:1::", "127.0.0.0/8"),
    ],
)
def test_non_global_ranges_are_found_including_embedded_ipv4(ip: str, network: str) -> None:
    hit = non_global_range(ipaddress.ip_address(ip))
    assert hit is not None
    assert hit[0] == network


@pytest.mark.parametrize("ip", ["8.8.8.8", "2606:4700::1111", "52.96.0.1"])
def test_global_addresses_are_not_in_any_special_range(ip: str) -> None:
    assert non_global_range(ipaddress.ip_address(ip)) is None


def test_plain_ipv4_embeds_nothing() -> None:
    assert embedded_ipv4(ipaddress.ip_address("10.0.0.1")) is None
