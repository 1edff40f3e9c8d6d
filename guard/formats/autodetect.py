"""Outlook AutoDetect JSON — the format of the January 2026 example.com incident (formats.md §3).

`{"email": str, "services": [...], "protocols": [...]}`. Every `protocols[]` entry is one server
(`protocol`, `hostname`, `port`, `encryption`, `username`, `validated`); every `services[]` entry
names a cloud service host (`hostname`) and its OAuth authority (`aad`). Types are checked
strictly — the client deserialises into typed fields, so a `"993"` port or a `null` hostname
means the guard and the client would read different things. `onprem` is the one field left
unchecked: its type is unconfirmed (Microsoft's support script only tests it for truth) and it
carries no host. Raw UTF-8 host names (IDN) are kept as written.

The same reply repeats the hosts in response headers (`x-debug-support`, `x-feedback-token`);
`header_suggestions` reads them so the engine can judge them too, and `FORMAT.sensitive_headers`
makes the adapter drop them whenever the guard rewrites or blocks.

Block: HTTP 404 with an empty body — what Microsoft's own fix answered for example.com
(formats.md §3.2: "responded with a not found error"), so clients already meet it for domains
AutoDetect knows nothing about and go on to manual set-up. 202 ("no record yet") would invite
polling and 503 a retry.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import Any

from guard.errors import MalformedDocument, UntrustedInputError
from guard.formats._json import as_obj, drop_items, expect, find_key, join, load_json, optional, refuse_foreign_keys
from guard.formats.base import MAX_PORT, Format
from guard.model import Parsed, Reply, Role, Suggestion, Transport, ValueKind

NAME = "autodetect"

# protocols[].protocol: imap/smtp confirmed, pop3/eas/ews seen in client code (formats.md §3.2).
_ROLES = {
    "imap": Role.IMAP,
    "pop3": Role.POP3,
    "pop": Role.POP3,
    "smtp": Role.SMTP,
    "eas": Role.EAS,
    "activesync": Role.EAS,
    "ews": Role.EWS,
}
# protocols[].encryption: `ssl` confirmed; the rest follow Outlook's own vocabulary, where "TLS"
# means STARTTLS (POX `Encryption`, formats.md §1.4). Compared case-insensitively: the debug
# header spells it "Ssl".
_TRANSPORTS = {
    "ssl": Transport.TLS,
    "starttls": Transport.STARTTLS,
    "tls": Transport.STARTTLS,
    "none": Transport.PLAIN,
    "plain": Transport.PLAIN,
}
# x-feedback-token `P` entries are URLs such as `imaps://host:993` (formats.md §3.2).
_SCHEMES = {
    "imaps": (Role.IMAP, Transport.TLS),
    "imap": (Role.IMAP, Transport.UNKNOWN),
    "pop3s": (Role.POP3, Transport.TLS),
    "pop3": (Role.POP3, Transport.UNKNOWN),
    "smtps": (Role.SMTP, Transport.TLS),
    "smtp": (Role.SMTP, Transport.UNKNOWN),
    "https": (Role.WEB, Transport.TLS),
    "http": (Role.WEB, Transport.PLAIN),
}
# Response headers that repeat the hosts of the body. x-provider-id names the provider-database
# record the hosts came from and x-autodv2-error may quote a looked-up name (Node's
# "getaddrinfo ENOTFOUND <host>"); neither is used by clients, so they go with the other two.
SENSITIVE_HEADERS = ("x-debug-support", "x-feedback-token", "x-provider-id", "x-autodv2-error")



def _port(entry: dict[str, Any], path: str) -> int | None:
    port = optional(entry, "port", path, int)
    if port is not None and not 0 <= port <= MAX_PORT:
        raise MalformedDocument(f"{join(path, 'port')}: {port} is not a TCP port")
    return port


def _protocol(entry: dict[str, Any], path: str, index: int) -> Suggestion:
    protocol = expect(entry, "protocol", path, str)
    hostname = expect(entry, "hostname", path, str)
    port = _port(entry, path)
    encryption = optional(entry, "encryption", path, str)
    optional(entry, "username", path, str)  # type-checked only: a username is not a host
    optional(entry, "validated", path, bool)
    transport = _TRANSPORTS.get((encryption or "").lower(), Transport.UNKNOWN)
    role = _ROLES.get(protocol.lower(), Role.OTHER)
    return Suggestion(hostname, ValueKind.HOST, role, join(path, "hostname"), port, transport,
                      ("protocols", index))


def _service(entry: dict[str, Any], path: str, index: int) -> Iterator[Suggestion]:
    optional(entry, "service", path, str)
    protocol = optional(entry, "protocol", path, str)
    hostname = optional(entry, "hostname", path, str)
    aad = optional(entry, "aad", path, str)
    locator = ("services", index)  # the host and its OAuth authority go together
    if hostname is not None:
        role = Role.EWS if (protocol or "").lower() == "ews" else Role.WEB
        yield Suggestion(hostname, ValueKind.HOST, role, join(path, "hostname"), locator=locator)
    if aad is not None:
        yield Suggestion(aad, ValueKind.URL, Role.OAUTH, join(path, "aad"), locator=locator)


def parse(body: bytes) -> Parsed:
    """Read an AutoDetect answer; an answer with no entries at all is AutoDetect's "nothing known"."""
    root = as_obj(load_json(body), "")
    refuse_foreign_keys(root, NAME)
    optional(root, "email", "", str)
    if find_key(root, "protocols") is None and find_key(root, "services") is None:
        raise MalformedDocument("neither protocols nor services: not an AutoDetect answer")
    protocols = optional(root, "protocols", "", list) or []
    services = optional(root, "services", "", list) or []
    found: list[Suggestion] = []
    for i, item in enumerate(services):
        path = f"services[{i}]"
        found.extend(_service(as_obj(item, path), path, i))
    for i, item in enumerate(protocols):
        path = f"protocols[{i}]"
        found.append(_protocol(as_obj(item, path), path, i))
    return Parsed(NAME, tuple(found), error_answer=not protocols and not services)


# Drops the protocols[]/services[] entries of the dropped suggestions and re-serialises compactly,
# as the service sends it; None when no suggestion would remain.
rewrite = drop_items

_BLOCK = Reply(404, "text/plain; charset=utf-8", b"")


def block() -> Reply:
    """404, empty body: Microsoft's own answer for example.com after the fix (see module doc)."""
    return _BLOCK


# --- hosts repeated in response headers ---------------------------------------------------------


_URLSAFE = str.maketrans("-_", "+/")


def _b64_json(text: str) -> Any:
    """base64 or base64url (padding optional) → JSON; raises ValueError or UntrustedInputError.

    Whitespace anywhere is dropped first, as lenient decoders (browsers' `atob`, .NET's
    `Convert.FromBase64String`) drop it: otherwise a line-wrapped header decodes to nothing here
    and to hosts there."""
    text = "".join(text.split())
    raw = base64.b64decode(text.translate(_URLSAFE) + "=" * (-len(text) % 4), validate=True)
    return load_json(raw)


def _loose(obj: dict[str, Any], key: str, kind: type[Any]) -> Any:
    """`obj[key]` (any case) if it has type `kind`, else None: debug data is read, never refused."""
    found = find_key(obj, key)
    value = None if found is None else obj[found]
    return value if type(value) is kind else None


def _debug_hosts(value: Any, path: str) -> Iterator[Suggestion]:
    """Every provider record (an object with a string `Hostname`) anywhere in x-debug-support."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _debug_hosts(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        host = _loose(value, "Hostname", str)
        if host is not None:
            port = _loose(value, "Port", int)
            encryption = _loose(value, "Encryption", str) or ""
            protocol = _loose(value, "Protocol", str) or ""
            yield Suggestion(
                host,
                ValueKind.HOST,
                _ROLES.get(protocol.lower(), Role.OTHER),
                f"x-debug-support:{join(path, 'Hostname')}",
                port if port is not None and 0 <= port <= MAX_PORT else None,
                _TRANSPORTS.get(encryption.lower(), Transport.UNKNOWN),
            )
        for key, child in value.items():
            yield from _debug_hosts(child, join(path, key))


def _debug_support(header: str) -> Iterator[Suggestion]:
    yield from _debug_hosts(_b64_json(header), "")


def _feedback_token(token: str) -> Iterator[Suggestion]:
    """The `P` claim of the x-feedback-token JWT (signed or not: the guard verifies nothing)."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return
    claims = _b64_json(parts[1])
    urls = _loose(claims, "P", list) if isinstance(claims, dict) else None
    for i, url in enumerate(urls or ()):
        if isinstance(url, str):
            scheme = url.partition(":")[0].lower()
            role, transport = _SCHEMES.get(scheme, (Role.OTHER, Transport.UNKNOWN))
            yield Suggestion(url, ValueKind.URL, role, f"x-feedback-token:P[{i}]", transport=transport)


_HEADER_READERS = {"x-debug-support": _debug_support, "x-feedback-token": _feedback_token}


def header_suggestions(headers: Mapping[str, str]) -> tuple[Suggestion, ...]:
    """Hosts AutoDetect repeats in `x-debug-support` (base64 JSON) and `x-feedback-token` (JWT).

    Judged like the body's suggestions; they have no locator because the whole header goes
    (`SENSITIVE_HEADERS`) on every rewrite or block. A header that does not decode yields
    nothing more — it is stripped on enforcement all the same. Never raises.
    """
    found: list[Suggestion] = []
    for name, value in headers.items():
        read = _HEADER_READERS.get(name.lower())
        if read is None:
            continue
        try:
            found.extend(read(value))
        except (ValueError, UntrustedInputError):  # binascii.Error and non-ASCII base64 are ValueErrors
            continue
    return tuple(found)


FORMAT = Format(name=NAME, parse=parse, rewrite=rewrite, block=block, sensitive_headers=SENSITIVE_HEADERS,
                header_suggestions=header_suggestions)
