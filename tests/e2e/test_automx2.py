"""The guard between real clients and a real automx2 server (the venv's `automx2`, a Flask app).

automx2 runs as its own process on a loopback port, configured through `AUTOMX2_CONF` with an
SQLite database seeded by automx2's own `populate_with_dict`: an honest provider for contoso.com and
one that answers for example.com the way the January 2026 incident did (imapgms/smtpgms.jnet.sei.co.jp,
993/465 SSL). Clients ask over plain HTTP, as Thunderbird does for `http://autoconfig.<domain>/…`;
the harness's routing script sends every port-80 upstream connection of these proxies to automx2.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import pox_request
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.automx2 import SEED_HOSTS, Automx2
from tests.e2e.support.proxy import GuardProxy

pytestmark = pytest.mark.e2e

AUTOCONFIG = "/mail/config-v1.1.xml"
POX = "/autodiscover/autodiscover.xml"
XML = {"content-type": "text/xml; charset=utf-8"}


@pytest.fixture(scope="module")
def automx2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Automx2]:
    server = Automx2(tmp_path_factory.mktemp("automx2"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def enforcing(make_guard_proxy: ProxyFactory, automx2: Automx2) -> Iterator[GuardProxy]:
    proxy = make_guard_proxy(options={"route_http_port": str(automx2.port)})
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def auditing(make_guard_proxy: ProxyFactory, automx2: Automx2) -> Iterator[GuardProxy]:
    proxy = make_guard_proxy(mode="audit", options={"route_http_port": str(automx2.port)})
    yield proxy
    proxy.stop()


def autoconfig(proxy: GuardProxy, domain: str, address: str) -> requests.Response:
    return proxy.session().get(f"http://autoconfig.{domain}{AUTOCONFIG}", params={"emailaddress": address},
                               timeout=20)


def pox(proxy: GuardProxy, domain: str, address: str) -> requests.Response:
    return proxy.session().post(f"http://autodiscover.{domain}{POX}", data=pox_request(address), headers=XML,
                                timeout=20)


def test_automx2_really_serves_the_incident_answer_for_example_com(automx2: Automx2) -> None:
    direct = automx2.get(AUTOCONFIG, params={"emailaddress": "email@example.com"})
    assert direct.status_code == 200 and all(host in direct.content for host in SEED_HOSTS)
    assert b"<port>993</port>" in direct.content and b"<port>465</port>" in direct.content
    assert direct.content.count(b"<socketType>SSL</socketType>") == 2


def test_an_honest_automx2_autoconfig_answer_passes_byte_for_byte(enforcing: GuardProxy, automx2: Automx2) -> None:
    direct = automx2.get(AUTOCONFIG, params={"emailaddress": "alice@contoso.com"})
    before = len(enforcing.decisions())
    response = autoconfig(enforcing, "contoso.com", "alice@contoso.com")
    assert response.status_code == 200 and response.content == direct.content
    assert b"imap.contoso.com" in response.content
    line = enforcing.last_decision(before)
    assert (line["action"], line["format"], line["user_domain"]) == ("allow", "autoconfig", "contoso.com")


def test_the_incident_autoconfig_answer_from_automx2_is_blocked(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = autoconfig(enforcing, "example.com", "email@example.com")
    assert response.status_code == 404
    assert not any(host in response.content for host in SEED_HOSTS)
    line = enforcing.last_decision(before)
    assert (line["action"], line["would_action"]) == ("block", "block")
    assert "reserved-user-domain" in line["rules"]


def test_an_honest_automx2_pox_answer_passes_byte_for_byte(enforcing: GuardProxy, automx2: Automx2) -> None:
    direct = automx2.post(POX, data=pox_request("alice@contoso.com"), headers=XML)
    before = len(enforcing.decisions())
    response = pox(enforcing, "contoso.com", "alice@contoso.com")
    assert response.status_code == 200 and response.content == direct.content
    assert b"<Server>imap.contoso.com</Server>" in response.content
    line = enforcing.last_decision(before)
    assert (line["action"], line["format"], line["user_source"]) == ("allow", "pox", "body")


def test_the_incident_pox_answer_from_automx2_is_blocked(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = pox(enforcing, "example.com", "email@example.com")
    assert not any(host in response.content for host in SEED_HOSTS)
    assert b"<ErrorCode>500</ErrorCode>" in response.content
    line = enforcing.last_decision(before)
    assert line["action"] == "block" and "reserved-user-domain" in line["rules"]


def test_audit_passes_automx2s_incident_answers_unchanged_and_logs_would_be_blocks(auditing: GuardProxy,
                                                                                  automx2: Automx2) -> None:
    direct_autoconfig = automx2.get(AUTOCONFIG, params={"emailaddress": "email@example.com"}).content
    direct_pox = automx2.post(POX, data=pox_request("email@example.com"), headers=XML).content
    before = len(auditing.decisions())
    assert autoconfig(auditing, "example.com", "email@example.com").content == direct_autoconfig
    assert pox(auditing, "example.com", "email@example.com").content == direct_pox
    lines = auditing.wait_for(lambda: auditing.decisions()[before:] if len(auditing.decisions()) >= before + 2
                              else None, what="two audit decisions")
    assert [(line["format"], line["mode"], line["action"], line["would_action"]) for line in lines] == [
        ("autoconfig", "audit", "allow", "block"), ("pox", "audit", "allow", "block")]
    assert all("reserved-user-domain" in line["rules"] for line in lines)
