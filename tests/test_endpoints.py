"""The discovery-endpoint table: classification, interception and the docs all come from it."""

from __future__ import annotations

import re

import pytest

from guard.proxy.endpoints import (
    DISCOVERY_HOST_GLOBS,
    DISCOVERY_HOST_PATTERNS,
    ENDPOINTS,
    Endpoint,
    HostMatch,
    domain_hint,
    is_discovery,
)
from tests.conftest import ROOT


def _row(endpoint: Endpoint) -> str:
    host = {HostMatch.PREFIX: f"`{endpoint.host}*`", HostMatch.SUFFIX: f"`*{endpoint.host}`",
            HostMatch.EXACT: f"`{endpoint.host}`", HostMatch.ANY: "any host"}[endpoint.match]
    path = f"`{endpoint.path.pattern}`" if endpoint.path is not None else "any"
    path = path.replace("|", "\\|")
    return (f"| {host} | {path} | {endpoint.domain_from or '-'} | {'yes' if endpoint.intercept else 'no'} "
            f"| {endpoint.doc} |")


def test_the_architecture_doc_lists_exactly_the_endpoint_table() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Discovery endpoints", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # the header row first
    assert rows == [_row(e) for e in ENDPOINTS]


def test_every_intercepted_host_matches_one_allow_hosts_pattern_and_one_pac_glob() -> None:
    samples = {HostMatch.PREFIX: "{}contoso.com", HostMatch.SUFFIX: "prod{}", HostMatch.EXACT: "{}"}
    for endpoint in ENDPOINTS:
        if not endpoint.intercept or endpoint.match is HostMatch.ANY:
            continue
        host = samples[endpoint.match].format(endpoint.host)
        assert any(re.search(p, f"{host}:443") for p in DISCOVERY_HOST_PATTERNS), host
        assert any(re.fullmatch(g.replace(".", r"\.").replace("*", ".*"), host) for g in DISCOVERY_HOST_GLOBS), host


def test_a_host_the_table_claims_is_discovery_only_on_its_own_paths() -> None:
    assert is_discovery("v1.ispdb.net", "/contoso.com")
    assert is_discovery("live.thunderbird.net", "/autoconfig/v1.1/contoso.com")
    assert not is_discovery("live.thunderbird.net", "/en-US/thunderbird/start")
    assert not is_discovery("prod-autodetect.outlookmobile.com", "/status")


# --- which flows are discovery -------------------------------------------------------------------


@pytest.mark.parametrize(("host", "path", "accept"), [
    ("autodiscover.contoso.com", "/autodiscover/autodiscover.xml", ""),
    ("autodiscover.contoso.com", "/anything", ""),
    ("autoconfig.contoso.com", "/mail/config-v1.1.xml?emailaddress=a%40contoso.com", ""),
    ("contoso.com", "/AutoDiscover/AutoDiscover.xml", ""),
    ("contoso.com", "/autodiscover/autodiscover.svc", ""),
    ("outlook.office365.com", "/autodiscover/autodiscover.json/v1.0/a@contoso.com?Protocol=Ews", ""),
    ("contoso.com", "/.well-known/autoconfig/mail/config-v1.1.xml", ""),
    ("prod.autodetect.outlook.cloud.microsoft", "/autodetect/detect?app=x", ""),
    ("prod-autodetect.outlookmobile.com", "/detect?services=office365", ""),
    ("live.thunderbird.net", "/autoconfig/v1.1/contoso.com", ""),
    ("v1.ispdb.net", "/contoso.com", ""),
    ("mail.contoso.com", "/mobileconfig?emailaddress=a%40contoso.com", ""),
    ("dns.google", "/resolve?name=_imaps._tcp.contoso.com&type=SRV", "application/dns-json"),
])
def test_discovery_is_recognised_by_host_and_path(host: str, path: str, accept: str) -> None:
    assert is_discovery(host, path, {"accept": accept})


@pytest.mark.parametrize(("host", "path", "accept"), [
    ("www.contoso.com", "/index.html", ""),
    ("live.thunderbird.net", "/thunderbird/start?locale=en-US", ""),
    ("prod.autodetect.outlook.cloud.microsoft", "/health", ""),
    ("dns.google", "/resolve?name=www.contoso.com&type=A", "application/dns-json"),
    ("dns.google", "/dns-query?name=_imaps._tcp.contoso.com", "application/dns-message"),
])
def test_other_traffic_is_not_discovery(host: str, path: str, accept: str) -> None:
    assert not is_discovery(host, path, {"accept": accept})


@pytest.mark.parametrize("path", ["/resolve?name=contoso.com&type=TXT", "/dns-query?name=contoso.com.&type=16"])
def test_a_doh_json_txt_lookup_of_a_domain_is_discovery_for_that_domain(path: str) -> None:
    assert is_discovery("dns.google", path, {"accept": "application/dns-json"})
    assert domain_hint("dns.google", path) == ("dns-name", "contoso.com")


@pytest.mark.parametrize(("path", "accept"), [
    ("/resolve?name=contoso.com&type=MX", "application/dns-json"),
    ("/resolve?name=contoso.com", "application/dns-json"),
    ("/dns-query?name=contoso.com&type=TXT", "application/dns-message"),
])
def test_other_doh_lookups_of_a_plain_domain_are_not_discovery(path: str, accept: str) -> None:
    assert not is_discovery("dns.google", path, {"accept": accept})
