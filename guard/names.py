"""Turning what a document says into the host a client would really contact.

Every trick here has fooled a real parser: placeholders judged raw, `mail.contoso.com@evil.net`
read as a contoso host, `0x7f.0.0.1` not recognised as loopback, `IMAP.Contoso.COM.` not matching
`contoso.com`, and Unicode look-alikes compared as text. See docs/rules.md, "Normalisation".
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import urlsplit

import idna

from guard.model import Suggestion, Transport, ValueKind
from guard.reserved import IPAddress

_LDH_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_GUID_AT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}@", re.IGNORECASE)
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_HOST_PORT = re.compile(r"^(.*[^:]):(\d{1,5})$")
_URL_JUNK = str.maketrans({"\t": None, "\n": None, "\r": None})
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# WHATWG URL "special" schemes: a backslash is a slash, any run of slashes starts the authority.
_SPECIAL = frozenset({"http", "https", "ws", "wss", "ftp", "file"})
_AUTHORITY_END = re.compile(r"[/?#]")
# RFC 5321 §4.1.2 Local-part (RFC 6531 lets it carry UTF-8): a Dot-string of atext, or a
# Quoted-string. Neither may hold an `@` here: exchangelib takes the domain after the first `@`,
# the guard after the last, so an address with two is no mailbox but an ambiguity.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
_QUOTED = r'"(?:[\x20\x21\x23-\x3f\x41-\x5b\x5d-\x7e]|\\[\x20-\x3f\x41-\x7e])*"'
_LOCAL_PART = re.compile(rf"(?:{_ATEXT}(?:\.{_ATEXT})*|{_QUOTED})")


class InvalidHost(ValueError):
    """A value that does not name a host a resolver would accept."""


class User(NamedTuple):
    """The mail user the answer is for: their address as given and their domain, normalised.

    A NamedTuple, not a frozen dataclass: it keys the resolution cache for every suggestion, and
    a tuple hashes in C where a dataclass runs a generated Python `__hash__`.
    """

    address: str
    local: str
    domain: str  # A-labels, lower case, no trailing dot
    display: str  # Unicode form, for humans

    @classmethod
    def from_address(cls, address: str) -> User:
        """Parse `local@domain`; raises InvalidHost when the domain is not a host name."""
        local, sep, domain = address.strip().rpartition("@")
        if not sep or not local or not domain:
            raise InvalidHost(f"not an e-mail address: {address!r}")
        ascii_domain = normalise_host(domain)
        if parse_ip(ascii_domain) is not None:
            raise InvalidHost(f"address literal domains are not supported: {address!r}")
        return cls(address.strip(), local, ascii_domain, to_unicode(ascii_domain))

    @classmethod
    def for_domain(cls, domain: str, *, strict: bool = True) -> User:
        """A user known only by domain (autoconfig host, ISPDB path, SRV name): no local part.

        Raises InvalidHost when the domain is not a host name or is an address literal; with
        `strict=False` such a name is kept as given, lower-cased (the rules still judge it).
        """
        try:
            ascii_domain = normalise_host(domain)
            if parse_ip(ascii_domain) is not None:
                raise InvalidHost(f"address literal domains are not supported: {domain!r}")
        except InvalidHost:
            if strict:
                raise
            return cls("", "", domain.lower(), domain.lower())
        return cls("", "", ascii_domain, to_unicode(ascii_domain))


@dataclass(frozen=True, slots=True)
class Target:
    """The host a suggestion makes the client contact, and how."""

    host: str  # A-labels, or the canonical text of an IP literal
    display: str  # Unicode form
    ip: IPAddress | None
    transport: Transport
    userinfo: bool = False  # URL carried `user@` before the host: a classic confusion trick


def expand_placeholders(value: str, user: User) -> str:
    """Replace the placeholders clients expand (Mozilla `%EMAIL…%`, providers.xml `$…`, AutoDetect `{email}`)."""
    if "%" not in value and "$" not in value and "{" not in value:
        return value
    domain = user.domain
    pairs = (
        ("%EMAILADDRESS%", user.address),
        ("%EMAILLOCALPART%", user.local),
        ("%EMAILDOMAIN%", domain),
        ("%EMAILADDRESS", user.address),  # the ISPDB's office365.com file lacks the final %
        ("$email", user.address),
        ("$user", user.local),
        ("$domain", domain),
        ("{email}", user.address),
    )
    for placeholder, replacement in pairs:
        value = value.replace(placeholder, replacement)
    return value


@lru_cache(maxsize=8192)
def normalise_host(raw: str) -> str:
    """Strip, drop one trailing dot, lower-case and IDNA-encode (UTS 46) to A-labels.

    IP literals come back in canonical text form. Raises InvalidHost for anything a resolver
    would not accept as a name.
    """
    host = raw.strip().removesuffix(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise InvalidHost("empty host")
    ip = parse_ip(host)
    if ip is not None:
        return str(ip)
    if host.isascii():
        host = host.lower()
        labels = host.split(".")
        if all(_LDH_LABEL.match(label) for label in labels) and len(host) <= 253:
            if any(label.startswith("xn--") for label in labels):
                _check_a_labels(host)
            return host
        raise InvalidHost(f"not a valid host name: {raw.strip()!r}")
    try:
        encoded: bytes = idna.encode(host, uts46=True, transitional=False)
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidHost(f"not a valid internationalised host name: {raw.strip()!r} ({exc})") from None
    mapped = encoded.decode("ascii")
    # UTS 46 maps full-width digits and letters to ASCII: `０ｘ７ｆ.０.０.０ｘａ` is 0x7f.0.0.0xa, which
    # WHATWG's host parser (and getaddrinfo) then read as the IPv4 address 127.0.0.10.
    ip = parse_ip(mapped)
    return mapped if ip is None else str(ip)


def _check_a_labels(host: str) -> None:
    try:
        idna.decode(host)
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidHost(f"invalid punycode label in {host!r} ({exc})") from None


@lru_cache(maxsize=8192)
def to_unicode(host: str) -> str:
    """Display form of a normalised host (U-labels); the input when it has no punycode."""
    if "xn--" not in host:
        return host
    try:
        decoded: str = idna.decode(host)
    except (idna.IDNAError, UnicodeError):
        return host
    return decoded


def parse_ip(host: str) -> IPAddress | None:
    """An IP literal in any form a resolver accepts, or None for a host name.

    Besides dotted quads and IPv6 this takes the inet_aton forms glibc's getaddrinfo resolves:
    `127.1`, `2130706433`, `0x7f.0.0.1`, `0177.0.0.1`. A name whose last label is numeric is an
    address attempt (WHATWG URL §host parsing) and raises InvalidHost when it is not a valid one.
    """
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise InvalidHost(f"not a valid IPv6 literal: {host!r}") from None
    labels = host.lower().split(".")
    if not _NUMERIC_LABEL.match(labels[-1]):
        return None
    if len(labels) > 4 or not all(_NUMERIC_LABEL.match(label) for label in labels):
        raise InvalidHost(f"numeric host that is not a valid IPv4 address: {host!r}")
    parts = [_inet_aton_part(label, host) for label in labels]
    *head, last = parts
    if any(p > 255 for p in head) or last >= 256 ** (5 - len(parts)):
        raise InvalidHost(f"IPv4 literal out of range: {host!r}")
    value = last
    for i, part in enumerate(head):
        value += part << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _inet_aton_part(label: str, host: str) -> int:
    try:
        if label.startswith("0x"):
            return int(label[2:] or "0", 16)
        if len(label) > 1 and label.startswith("0"):
            return int(label, 8)
        return int(label)
    except ValueError:
        raise InvalidHost(f"numeric host that is not a valid IPv4 address: {host!r}") from None


def target_of(suggestion: Suggestion, user: User) -> Target:
    """Where the client goes for this suggestion; raises InvalidHost when it cannot be told."""
    value = suggestion.value
    if len(value) > _CACHEABLE:  # hostile giants are resolved, never kept
        return _resolve_uncached(value, suggestion.kind, suggestion.transport, user)
    found = _resolve(value, suggestion.kind, suggestion.transport, user)
    if isinstance(found, InvalidHost):
        raise InvalidHost(*found.args)
    return found


_CACHEABLE = 512
# Answers repeat the same URLs many times (a POX answer names mail.contoso.com a dozen times),
# and a gateway sees the same few answers all day: resolve each (value, user) once.
@lru_cache(maxsize=16384)
def _resolve(value: str, kind: ValueKind, transport: Transport, user: User) -> Target | InvalidHost:
    try:
        return _resolve_uncached(value, kind, transport, user)
    except InvalidHost as exc:
        return exc


def _resolve_uncached(value: str, kind: ValueKind, transport: Transport, user: User) -> Target:
    raw = expand_placeholders(value, user).strip()
    if kind is ValueKind.EMAIL:
        return _target(mailbox_domain(raw), transport)
    if kind is ValueKind.URL or "://" in raw:
        return _url_target(raw, transport)
    if raw.lower().startswith("msstd:"):  # CertPrincipalName, MS-OXDSCLI §2.2.4.1.1.2.9
        raw = raw[6:]
    if _GUID_AT.match(raw):  # Exchange 2013+ EXCH/EXHTTP Server: <mailbox GUID>@<SMTP domain>
        raw = raw.split("@", 1)[1]
    port = _HOST_PORT.match(raw)
    if port and ":" not in port.group(1):
        raw = port.group(1)
    return _target(raw, transport)


def mailbox_domain(address: str) -> str:
    """The domain of exactly one RFC 5321 mailbox (`local@domain`); InvalidHost for anything else.

    Redirect addresses are followed by clients that split them differently (exchangelib at the
    first `@`, others at the last), so only an address every reader splits alike is judged.
    """
    if address.count("@") != 1:
        raise InvalidHost(f"redirect address is not exactly one mailbox (needs one @): {address[:80]!r}")
    local, _, domain = address.partition("@")
    if not _LOCAL_PART.fullmatch(local) or not domain or domain != domain.strip() or "[" in domain:
        raise InvalidHost(f"redirect address is not an RFC 5321 mailbox: {address[:80]!r}")
    return domain


def _target(raw: str, transport: Transport, userinfo: bool = False) -> Target:
    host = normalise_host(raw)
    ip = parse_ip(host) if (":" in host or host[-1:].isdigit()) else None
    return Target(host, host if ip else to_unicode(host), ip, transport, userinfo)


def whatwg_prepare(raw: str) -> str:
    """A URL as the WHATWG parser (browsers, node, WebView-based Outlook) sees it before parsing:
    leading/trailing C0 controls and spaces stripped, tabs and newlines removed, and for special
    schemes every backslash a slash. `\x01https://evil.net\\@contoso.com/` is evil.net."""
    text = raw.strip(_C0_OR_SPACE).translate(_URL_JUNK)
    scheme = _URL_SCHEME.match(text)
    if scheme is not None and scheme.group()[:-1].lower() in _SPECIAL:
        text = text.replace("\\", "/")
    return text


def _whatwg_host(text: str) -> str | None:
    """The host WHATWG's authority states find in a prepared special-scheme URL, lower-cased and
    without brackets; None for other schemes (their authority is read as `urlsplit` reads it)."""
    scheme = _URL_SCHEME.match(text)
    if scheme is None or scheme.group()[:-1].lower() not in _SPECIAL:
        return None
    rest = text[scheme.end():].lstrip("/")
    end = _AUTHORITY_END.search(rest)
    host = (rest if end is None else rest[:end.start()]).rpartition("@")[2]
    if host.startswith("["):
        return host[1:host.find("]")].lower() if "]" in host else host.lower()
    return host.partition(":")[0].lower()


def _url_target(raw: str, transport: Transport) -> Target:
    # Judged as the WHATWG parser reads it (see `whatwg_prepare`); where WHATWG and Python's
    # `urlsplit` (requests, exchangelib) would still connect to different hosts, the URL has two
    # readings and is refused.
    text = whatwg_prepare(raw)
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidHost(f"unparseable URL {raw!r} ({exc})") from None
    whatwg = _whatwg_host(text)
    if whatwg is not None and whatwg != (hostname or ""):
        raise InvalidHost(f"URL read as host {whatwg!r} by WHATWG parsers and {hostname!r} by urlsplit: {raw!r}")
    if not hostname:
        raise InvalidHost(f"URL without a host: {raw!r}")
    if parts.scheme == "http":
        transport = Transport.PLAIN
    elif parts.scheme == "https" and transport is Transport.UNKNOWN:
        transport = Transport.TLS
    return _target(hostname, transport, userinfo="@" in parts.netloc)


# Latin look-alikes from Unicode's confusables.txt (UTS #39) for the scripts phishing uses most:
# Cyrillic, Greek and a few Latin extensions. Fullwidth and compatibility forms fold by NFKC first.
_CONFUSABLES = str.maketrans({
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j",
    "к": "k", "ӏ": "l", "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "ц": "u",
    "ѵ": "v", "ԝ": "w", "х": "x", "у": "y", "ү": "y", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i",
    "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w", "ı": "i",
    "ɡ": "g", "ɑ": "a", "ⅼ": "l", "ǀ": "l", "ℓ": "l",
})


@lru_cache(maxsize=4096)
def skeleton(text: str) -> str:
    """A crude UTS #39 skeleton: NFKC, case-fold, strip marks, map confusables to Latin."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    bare = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return bare.translate(_CONFUSABLES)
