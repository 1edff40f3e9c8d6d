"""exchangelib's real SOAP autodiscovery through the guard, against answers two readers read differently.

Each domain's `autodiscover.<domain>` serves one hostile answer from tests/fixtures (written for
contoso.com, re-addressed to the domain) whose second reading sends exchangelib to
collector-mail.net: a decoy `Name` in another namespace, a setting element exchangelib iterates
and the guard once skipped, `xsi:nil` with a URL as text, a redirect address with two `@`, a
comment splitting the EWS URL. The collector hosts resolve and are served by the same recording
upstream, asking for Basic credentials. The guard must refuse every answer (malformed), so
exchangelib ends its discovery and no request, credentialed or not, reaches a collector host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES
from tests.e2e.support import exchangelib
from tests.e2e.support.dnsserver import DnsServer
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

SVC, XML = exchangelib.SVC, exchangelib.XML
PASSWORD = "Corr3ct-Horse-ambiguity-secret"
COLLECTORS = ("collector-mail.net", "autodiscover.collector-mail.net", "ews.collector-mail.net")
# domain → the hostile fixture its autodiscover host serves
HOSTILE = {
    "adatum.com": "soap__decoy_name_other_namespace.xml",
    "fourthcoffee.com": "soap__unknown_element_in_user_settings.xml",
    "litwareinc.com": "soap__nil_redirect_target_with_text.xml",
    "wingtiptoys.com": "soap__redirect_address_two_at.xml",
    "woodgrovebank.com": "soap__comment_inside_ews_url.xml",
    "proseware.com": "soap__decoy_value_other_namespace.xml",
}


@pytest.fixture(scope="module", autouse=True)
def zones(upstream: Upstream, dns_server: DnsServer) -> None:
    for domain, fixture in HOSTILE.items():
        for name in (domain, f"autodiscover.{domain}"):
            dns_server.add_a(name)
        body = (FIXTURES / fixture).read_bytes().replace(b"contoso.com", domain.encode())
        upstream.add_route(f"autodiscover.{domain}", SVC, headers=XML, challenge=f'Basic realm="autodiscover.{domain}"',
                           body=body)
    for host in COLLECTORS:
        dns_server.add_a(host)
        upstream.add_route(host, "*", headers=XML, challenge=f'Basic realm="{host}"', body=b"<collected/>")


def discover(proxy: GuardProxy, dns_server: DnsServer, email: str, tmp_path: Path) -> dict[str, Any]:
    return exchangelib.discover(proxy, dns_server.port, email, PASSWORD, tmp_path)


@pytest.mark.parametrize("domain", sorted(HOSTILE), ids=lambda d: HOSTILE[d].removesuffix(".xml"))
def test_exchangelib_sends_nothing_to_a_host_only_its_own_reading_finds(
        domain: str, enforcing: GuardProxy, dns_server: DnsServer, upstream: Upstream, tmp_path: Path) -> None:
    before = len(enforcing.decisions())
    outcome = discover(enforcing, dns_server, f"alice@{domain}", tmp_path)
    # the guard answers InvalidUser, which exchangelib raises as a missing mailbox and stops
    assert outcome.get("error") == "ErrorNonExistentMailbox", outcome
    assert "collector-mail.net" not in json.dumps(outcome)
    judged = enforcing.wait_for(
        lambda: [d for d in enforcing.decisions()[before:]
                 if f"://autodiscover.{domain}/" in d["url"] and d["action"] == "block"],
        what="the refusal")
    assert "malformed" in judged[0]["rules"]
    for host in COLLECTORS:
        assert upstream.requests_for(host) == [] and upstream.connections_for(host) == 0, host
    log = enforcing.log_path.read_text(encoding="utf-8") + "\n".join(enforcing.output)
    assert PASSWORD not in log
