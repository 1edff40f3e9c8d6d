"""Reading a flow (guard/proxy/flows.py): host and URL as mitmproxy reads them, headers, whose discovery it is."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tutils

from guard.proxy.flows import authority, flow_url, header, identify, request_host
from tests.conftest import pox_request
from tests.flowkit import AUTOCONFIG_URL, AUTODETECT_URL, POX_URL, basic, make_flow


@pytest.mark.parametrize(("url", "host_header", "expected"), [
    ("https://Autodiscover.Contoso.com./autodiscover/autodiscover.xml", None, "autodiscover.contoso.com"),
    ("https://192.0.2.10/autodiscover/autodiscover.xml", "autodiscover.contoso.com", "autodiscover.contoso.com"),
    ("https://[2001:db8::1]/autodiscover/autodiscover.xml", "autodiscover.contoso.com", "autodiscover.contoso.com"),
])
def test_the_request_host_falls_back_to_the_host_header_for_addresses(url: str, host_header: str | None,
                                                                     expected: str) -> None:
    request = http.Request.make("GET", url)
    if host_header:  # transparent mode: the target is an address, the name is in the Host header
        request.headers["host"] = host_header
    assert request_host(request) == expected


@pytest.mark.parametrize(("method", "url", "host_header", "http_version"), [
    ("POST", POX_URL, None, "HTTP/1.1"),
    ("POST", POX_URL, "autodiscover.contoso.com", "HTTP/1.1"),
    ("POST", POX_URL, "Autodiscover.Contoso.COM:443", "HTTP/1.1"),
    ("POST", POX_URL, "autodiscover.contoso.com:8443", "HTTP/1.1"),
    ("GET", "http://192.0.2.10/autodiscover/autodiscover.xml", "autodiscover.contoso.com", "HTTP/1.1"),
    ("GET", "https://[2001:db8::1]:8443/x?email=a%40b.c", "[2001:db8::1]:8443", "HTTP/1.1"),
    ("GET", "https://192.0.2.10/x", "not a host!", "HTTP/1.1"),
    ("GET", "https://192.0.2.10/x", "", "HTTP/1.1"),
    ("GET", POX_URL, "other.contoso.com", "HTTP/2.0"),
    ("GET", POX_URL, "autodiscover.contoso.com:8443", "HTTP/2.0 :authority"),
    ("OPTIONS", "https://autodiscover.contoso.com/*", "autodiscover.contoso.com", "HTTP/1.1"),
])
def test_the_flow_url_and_host_read_the_host_header_as_mitmproxy_does(method: str, url: str, host_header: str | None,
                                                                      http_version: str) -> None:
    request = http.Request.make(method, url)
    request.http_version, _, pseudo = http_version.partition(" ")
    if url.endswith("/*"):
        request.path = "*"
    if host_header is not None and pseudo:
        request.authority = host_header
    elif host_header is not None:
        request.headers["host"] = host_header
    assert flow_url(request) == request.pretty_url
    address = request.host[-1:].isdigit() or ":" in request.host  # transparent mode: the Host header names it
    assert request_host(request) == (request.pretty_host if address else request.host).lower().rstrip(".")


def test_the_flow_url_of_a_connect_request_is_its_authority() -> None:
    request = tutils.treq(method=b"CONNECT", authority=b"autodiscover.contoso.com:443", path=b"")
    assert flow_url(request) == request.pretty_url == "autodiscover.contoso.com:443"


def test_host_header_parses_are_remembered_in_a_bounded_cache() -> None:
    maxsize = authority.cache_info().maxsize
    assert maxsize is not None
    for i in range(maxsize + 100):
        request = http.Request.make("GET", POX_URL)
        request.headers["host"] = f"h{i}.contoso.com:8443"
        assert flow_url(request) == request.pretty_url
    info = authority.cache_info()
    assert info.maxsize is not None and info.currsize == info.maxsize


@pytest.mark.parametrize("name", ["x-email", "Authorization", "www-authenticate", "content-type"])
def test_header_lookups_fold_repeats_like_mitmproxy(name: str) -> None:
    headers = http.Headers([(b"X-Email", b"a@contoso.com"), (b"WWW-Authenticate", b"Negotiate"),
                            (b"www-authenticate", b'Basic realm="x"'), (b"Authorization", b"Basic \xff")])
    assert header(headers, name.lower().encode()) == headers.get(name)


# --- whose discovery it is -----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "method", "headers", "body", "expected"), [
    (POX_URL, "POST", {}, pox_request("alice@contoso.com"), ("alice@contoso.com", "body")),
    ("https://contoso.com/autodiscover/autodiscover.svc", "POST", {},
     b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><a:Mailbox '
     b'xmlns:a="http://schemas.microsoft.com/exchange/2010/Autodiscover">bob@contoso.com</a:Mailbox>'
     b"</s:Body></s:Envelope>", ("bob@contoso.com", "body")),
    (AUTODETECT_URL, "GET", {"x-email": "email@example.com"}, b"", ("email@example.com", "x-email")),
    (AUTODETECT_URL, "GET", {"authorization": basic("email@example.com")}, b"", ("email@example.com", "basic")),
    (AUTODETECT_URL, "GET", {"authorization": basic("email@example.com", "pw")}, b"",
     ("email@example.com", "basic")),
    ("https://outlook.office365.com/autodiscover/autodiscover.json/v1.0/carol%40fabrikam.com?Protocol=Ews",
     "GET", {}, b"", ("carol@fabrikam.com", "url")),
    ("https://autodiscover.contoso.com/autodiscover/autodiscover.json?Email=alice%40contoso.com&Protocol=Ews",
     "GET", {}, b"", ("alice@contoso.com", "url")),
    (AUTOCONFIG_URL, "GET", {}, b"", ("alice@contoso.com", "url")),
    ("https://autoconfig.northwind-traders.co.uk/mail/config-v1.1.xml", "GET", {}, b"",
     ("@northwind-traders.co.uk", "host")),
    ("https://live.thunderbird.net/autoconfig/v1.1/fabrikam.com", "GET", {}, b"", ("@fabrikam.com", "ispdb")),
    ("https://dns.google/resolve?name=_imaps._tcp.contoso.com&type=SRV", "GET",
     {"accept": "application/dns-json"}, b"", ("@contoso.com", "dns-name")),
])
def test_the_user_is_read_from_where_each_format_carries_it(
    url: str, method: str, headers: dict[str, str], body: bytes, expected: tuple[str, str],
) -> None:
    flow = make_flow(url, method=method, headers=headers, body=body)
    user, source = identify(flow.request, request_host(flow.request), body)
    assert user is not None
    assert (f"{user.local}@{user.domain}" if user.local else f"@{user.domain}", source) == expected


def test_an_unidentifiable_request_has_no_user() -> None:
    flow = make_flow("https://outlook.office365.com/autodiscover/autodiscover.xml", method="POST", body=b"not xml")
    assert identify(flow.request, "outlook.office365.com", b"not xml") == (None, "unknown")


@pytest.mark.parametrize("url", ["https://contoso.com/autodiscover/autodiscover.xml",
                                 "https://contoso.com/autodiscover/autodiscover.svc",
                                 "http://contoso.com/.well-known/autoconfig/mail/config-v1.1.xml"])
def test_a_bare_domain_discovery_url_names_its_host_as_the_users_domain(url: str) -> None:
    flow = make_flow(url, method="POST", body=b"not xml")
    user, source = identify(flow.request, "contoso.com", b"not xml")
    assert (user.domain if user else None, source) == ("contoso.com", "bare-host")


@pytest.mark.parametrize("body", [b"email=erin%40fabrikam.com&password=x", b'{"emailAddress": "erin@fabrikam.com"}',
                                  b'--B\r\nContent-Disposition: form-data; name="email"\r\n\r\nerin@fabrikam.com'
                                  b"\r\n--B--\r\n"])
def test_form_json_and_multipart_bodies_name_the_user(body: bytes) -> None:
    flow = make_flow("https://autodiscover.contoso.com/autodiscover/autodiscover.xml", method="POST", body=body)
    user, source = identify(flow.request, "autodiscover.contoso.com", body)
    assert (user.address if user else None, source) == ("erin@fabrikam.com", "body")
