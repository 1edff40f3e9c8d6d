"""Names and addresses no mail server suggestion may ever point to, each with its source.

The IANA registries are the authority and they change (2023 `alt`, 2024–25 `resolver.arpa`,
`service.arpa`, `eap.arpa`), so the whole of `.arpa` is treated as reserved to cover new entries.
Lists as of 2026-11; see docs/rules.md for the prose version.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# name → source. A host matches when it equals the name or ends with "." + name.
RESERVED_NAMES: dict[str, str] = {
    "example": "RFC 2606 §2, RFC 6761 §6.5 (documentation)",
    "example.com": "RFC 2606 §3, RFC 6761 §6.5 (documentation)",
    "example.net": "RFC 2606 §3, RFC 6761 §6.5 (documentation)",
    "example.org": "RFC 2606 §3, RFC 6761 §6.5 (documentation)",
    "test": "RFC 2606 §2, RFC 6761 §6.2 (testing)",
    "invalid": "RFC 2606 §2, RFC 6761 §6.4 (guaranteed invalid)",
    "localhost": "RFC 2606 §2, RFC 6761 §6.3 (loopback)",
    "local": "RFC 6762 §3 (multicast DNS)",
    "onion": "RFC 7686 (Tor onion services)",
    "alt": "RFC 9476 (non-DNS namespaces)",
    "home.arpa": "RFC 8375 (home networks)",
    "arpa": "RFC 3172; IANA Special-Use Domain Names registry (infrastructure, never a mail service)",
    "internal": "ICANN Board resolution 2024.07.29.06 (private use, never delegated)",
    "corp": "ICANN Board, February 2018: not delegated (name-collision risk)",
    "home": "ICANN Board, February 2018: not delegated (name-collision risk)",
    "mail": "ICANN Board, February 2018: not delegated (name-collision risk)",
    "intranet": "RFC 6762 Appendix G (commonly used private name)",
    "private": "RFC 6762 Appendix G (commonly used private name)",
    "lan": "RFC 6762 Appendix G (commonly used private name)",
}

# IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and updates), plus ranges that
# are never a mail server on the public Internet. Embedded-IPv4 forms are unwrapped separately.
_NON_GLOBAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "RFC 791 (this network)"),
    ("10.0.0.0/8", "RFC 1918 (private)"),
    ("100.64.0.0/10", "RFC 6598 (shared address space / CGNAT)"),
    ("127.0.0.0/8", "RFC 1122 (loopback)"),
    ("169.254.0.0/16", "RFC 3927 (link-local, incl. cloud metadata 169.254.169.254)"),
    ("172.16.0.0/12", "RFC 1918 (private)"),
    ("192.0.0.0/24", "RFC 6890 (IETF protocol assignments)"),
    ("192.0.2.0/24", "RFC 5737 (documentation TEST-NET-1)"),
    ("192.88.99.0/24", "RFC 7526 (deprecated 6to4 relay anycast)"),
    ("192.168.0.0/16", "RFC 1918 (private)"),
    ("198.18.0.0/15", "RFC 2544 (benchmarking)"),
    ("198.51.100.0/24", "RFC 5737 (documentation TEST-NET-2)"),
    ("203.0.113.0/24", "RFC 5737 (documentation TEST-NET-3)"),
    ("224.0.0.0/4", "RFC 5771 (multicast)"),
    ("240.0.0.0/4", "RFC 1112 (reserved)"),
    ("255.255.255.255/32", "RFC 919 (limited broadcast)"),
    ("::/128", "RFC 4291 (unspecified)"),
    ("::1/128", "RFC 4291 (loopback)"),
    ("100::/64", "RFC 6666 (discard-only)"),
    ("2001::/23", "RFC 2928 (IETF protocol assignments, incl. Teredo and benchmarking 2001:2::/48)"),
    ("2001:db8::/32", "RFC 3849 (documentation)"),
    ("3fff::/20", "RFC 9637 (documentation)"),
    ("fc00::/7", "RFC 4193 (unique local)"),
    ("fe80::/10", "RFC 4291 (link-local)"),
    ("fec0::/10", "RFC 3879 (deprecated site-local)"),
    ("ff00::/8", "RFC 4291 (multicast)"),
)
NON_GLOBAL_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(net), source) for net, source in _NON_GLOBAL
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


@lru_cache(maxsize=16384)
def reserved_name(host: str) -> tuple[str, str] | None:
    """`(matched name, source)` when `host` (normalised A-labels) is under a reserved name.

    Memoised: every suggestion asks, and answers name the same few hosts over and over.
    """
    labels = host.split(".")
    for i in range(len(labels)):
        suffix = ".".join(labels[i:])
        source = RESERVED_NAMES.get(suffix)
        if source is not None:
            return suffix, source
    return None


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 literal carries (mapped, NAT64, 6to4), if any.

    Python's own answers here changed between 3.11 and 3.13 (`::ffff:127.0.0.1` is not
    `is_loopback` before 3.13), so the guard unwraps them itself.
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:  # RFC 4291 §2.5.5.2 ::ffff:0:0/96
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # RFC 3056 2002::/16
        return ip.sixtofour
    if any(ip in net for net in _NAT64):  # RFC 6052 / RFC 8215
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


@lru_cache(maxsize=1024)
def non_global_range(ip: IPAddress) -> tuple[str, str] | None:
    """`(network, source)` of the special-purpose range `ip` (or the IPv4 it embeds) is in."""
    inner = embedded_ipv4(ip)
    for candidate in (ip, inner) if inner is not None else (ip,):
        for net, source in NON_GLOBAL_NETWORKS:
            if candidate.version == net.version and candidate in net:
                return str(net), source
    return None
