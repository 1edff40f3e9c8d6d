"""Reading a flow: its host and URL as the client named them, its headers, and whose discovery it is.

Every flow passes `request_host` and the endpoint table, so the readers here avoid mitmproxy's
convenience properties where those cost IDNA round trips or several header passes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, unquote

from mitmproxy import http
from mitmproxy.net.http.url import default_port, hostport, parse_authority

from guard.decode import decode_body
from guard.errors import BodyTooLarge, MalformedDocument, UntrustedInputError
from guard.formats._xml import name as xml_name
from guard.formats._xml import read_xml, text
from guard.names import InvalidHost, User
from guard.proxy.endpoints import domain_hint

_V2_PATH_ADDRESS = re.compile(r"/autodiscover\.json/v1\.0/([^/]+)", re.IGNORECASE)
_ADDRESS_KEYS = frozenset({"email", "emailaddress"})
_ADDRESS_ELEMENTS = frozenset({"emailaddress", "mailbox"})  # POX/mobilesync, SOAP requests (docs/formats.md)
_PASSWORD_FIELD = re.compile(
    rb'(?:^|&)(?:password|passwd|pwd|pass|client_secret)=|name="(?:password|passwd|pwd|pass|client_secret)"'
    rb'|"(?:password|passwd|pwd|pass|client_secret)"\s*:',
    re.IGNORECASE,
)


def header(headers: http.Headers, name: bytes) -> str | None:
    """`headers.get(name)` (values folded with ", "), `name` in lower case: one pass over the raw
    fields, where mitmproxy's lookup converts every name and value through three layers (4× slower)."""
    found, size = None, len(name)
    for key, value in headers.fields:
        if len(key) == size and key.lower() == name:  # the length first: lower() makes a new bytes
            found = value if found is None else found + b", " + value
    return None if found is None else found.decode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=1024)
def authority(host_header: str) -> tuple[str, int | None]:
    """(host, port) of a Host header as `pretty_host` and `pretty_url` read it: mitmproxy checks the
    name with IDNA round trips on every call (~30 µs), and clients send the same few hosts all day."""
    return parse_authority(host_header, check=False)


def _host_header(request: http.Request) -> str | None:
    """`request.host_header` (HTTP/2 and 3: `:authority`), with the cheap header lookup."""
    return (request.authority if request.is_http2 or request.is_http3 else "") or header(request.headers, b"host")


def flow_url(request: http.Request) -> str:
    """`request.pretty_url`: the URL as the client named it."""
    if request.first_line_format == "authority":
        return request.authority
    host_header = _host_header(request)
    if not host_header:
        return request.url
    scheme, path = request.scheme, request.path
    host, port = authority(host_header)
    return f"{scheme}://{hostport(scheme, host, port or default_port(scheme) or 443)}{'' if path == '*' else path}"


def request_host(request: http.Request) -> str:
    """The host a request is for. `host` is the proxy target; the Host header (as `pretty_host` reads
    it) only when the target is an address, as in transparent mode."""
    host = request.host
    if host[-1:].isdigit() or ":" in host:
        host_header = _host_header(request)
        if host_header:
            host = authority(host_header)[0]
    return host.lower().rstrip(".")


def read_body(message: http.Message, wire: int, decoded: int) -> bytes:
    """The decoded body under both caps, never through `.content` (unbounded decompression).

    Raises:
        UntrustedInputError: over a cap, streamed past the guard, or an unknown encoding.
    """
    raw = message.raw_content
    if raw is None:
        raise MalformedDocument("the body was streamed past the guard and cannot be inspected")
    if len(raw) > wire:
        raise BodyTooLarge(f"the body of {len(raw)} bytes exceeds the {wire}-byte cap")
    return decode_body(raw, header(message.headers, b"content-encoding") or "", decoded)


def request_body(request: http.Request, wire: int, decoded: int) -> bytes:
    """The request body when it can be read under the caps; empty otherwise (it only helps name the user)."""
    if not request.raw_content:
        return b""
    try:
        return read_body(request, wire, decoded)
    except UntrustedInputError:
        return b""


# --- who the discovery is for --------------------------------------------------------------------


def _basic_credentials(authorization: str) -> tuple[str, bool] | None:
    """(user-id, has a password) of a Basic header; None if not Basic. The password is dropped here."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user_id, _, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return ("", True)  # undecodable: cannot tell, so it counts as a credential
    return (user_id, bool(password))


_FORM_ADDRESS = re.compile(rb"(?:^|&)(?:email|emailaddress)=([^&]*)", re.IGNORECASE)
_MULTIPART_ADDRESS = re.compile(rb'name="(?:email|emailaddress)"\r?\n(?:[^\r\n]+\r?\n)*\r?\n([^\r\n]+)', re.IGNORECASE)


def _json_address(body: bytes) -> str | None:
    """`email` / `emailAddress` at the top level of a JSON object body."""
    try:
        found = json.loads(body)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    for key, value in found.items():
        if isinstance(key, str) and key.lower() in _ADDRESS_KEYS and isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _body_address(body: bytes) -> str | None:
    """The address a request body names: `EMailAddress` (POX, mobilesync) or `Mailbox` (SOAP) in
    XML; an `email` field in a JSON object, a form (`application/x-www-form-urlencoded`) or a
    multipart form. Read whatever the Content-Type claims: a client that sends a password in
    a form must not get past the ownership check by mislabelling it."""
    first = body.lstrip()[:1]
    if first == b"{":
        return _json_address(body)
    if first != b"<":
        match = _MULTIPART_ADDRESS.search(body) or _FORM_ADDRESS.search(body)
        return unquote(match.group(1).decode("utf-8", "replace").replace("+", " ")).strip() or None if match else None
    try:
        root = read_xml(body)
    except UntrustedInputError:
        return None
    for element in root.iter():
        if xml_name(element).key in _ADDRESS_ELEMENTS and text(element).strip():
            return text(element).strip()
    return None


def _addresses(request: http.Request, body: bytes) -> Iterator[tuple[str, str]]:
    """(source, address) candidates, most trustworthy first (docs/formats.md: where the address travels)."""
    if body:
        found = _body_address(body)
        if found:
            yield "body", found
    plain, _, query = request.path.partition("?")
    v2 = _V2_PATH_ADDRESS.search(unquote(plain))
    if v2:
        yield "url", v2.group(1)
    for key, value in parse_qsl(query):
        if key.lower() in _ADDRESS_KEYS:
            yield "url", value
    x_email = header(request.headers, b"x-email")
    if x_email is not None:
        yield "x-email", x_email
    basic = _basic_credentials(header(request.headers, b"authorization") or "")
    if basic is not None and "@" in basic[0]:
        yield "basic", basic[0]


def identify(request: http.Request, host: str, body: bytes) -> tuple[User | None, str]:
    """Whose discovery this is, and where that was read; (None, "unknown") when nothing says."""
    for source, address in _addresses(request, body):
        try:
            return User.from_address(address), source
        except InvalidHost:
            continue
    found = domain_hint(host, request.path)
    if found is not None:
        try:
            return User.for_domain(found[1]), found[0]
        except InvalidHost:
            pass
    return None, "unknown"


def credential(request: http.Request, body: bytes) -> str | None:
    """What kind of credential the request carries (never its value), or None."""
    authorization = header(request.headers, b"authorization") or ""
    if authorization.strip():
        basic = _basic_credentials(authorization)
        if basic is None:
            return authorization.strip().partition(" ")[0][:20] or "authorization"
        if basic[1]:  # a bare user-id (AutoDetect sends one) carries no secret
            return "basic"
    if body and _PASSWORD_FIELD.search(body):
        return "password field"
    return None
