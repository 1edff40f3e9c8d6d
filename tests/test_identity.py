"""Which `X-Forwarded-For` element names the client, and which peers may assert one (guard/proxy/identity.py)."""

from __future__ import annotations

import pytest

from guard.proxy.identity import is_trusted, last_hop, parse_trusted


@pytest.mark.parametrize(("value", "expected"), [
    ("10.1.2.3", "10.1.2.3"),
    ("198.51.100.7, 10.1.2.3", "10.1.2.3"),  # the element the trusted peer appended, never the client's claim
    ("198.51.100.7,10.1.2.3", "10.1.2.3"),
    ("2001:db8::1", "2001:db8::1"),
    ("10.1.2.3, unknown", None),  # the trusted hop's own element unreadable: nothing believed
    ("10.1.2.3:5555", None),
    ("", None),
    (None, None),
])
def test_only_the_last_hop_of_x_forwarded_for_is_read_and_only_as_one_address(value: str | None,
                                                                               expected: str | None) -> None:
    assert last_hop(value) == expected


def test_trusted_proxies_accept_addresses_and_networks_and_empty_trusts_none() -> None:
    networks = parse_trusted(" 127.0.0.1, 10.0.0.0/24 ,")
    assert is_trusted("10.0.0.200", networks) and is_trusted("127.0.0.1", networks)
    assert not is_trusted("10.0.1.1", networks) and not is_trusted("127.0.0.2", networks)
    assert is_trusted("::ffff:127.0.0.1", networks)  # a dual-stack listener's view of an IPv4 peer
    assert parse_trusted("") == () and not is_trusted("127.0.0.1", parse_trusted(""))


def test_a_trusted_proxy_that_is_not_an_address_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'haproxy\.local' is not an IP address or CIDR"):
        parse_trusted("127.0.0.1,haproxy.local")
