"""DoH JSON TXT `mailconf=` answers through a real mitmdump: judged for the queried domain (docs/dns.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import FIXTURES
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

DOMAIN = "northwind-traders.co.uk"
OWN = f"https://{DOMAIN}/mailconf.xml"  # not a discovery path: only the TXT record makes it one
FOREIGN = "https://collector-mail.net/mail/config-v1.1.xml"
SPF = '"v=spf1 -all"'
TXT_ANSWER = json.dumps({
    "Status": 0, "TC": False, "RD": True, "RA": True, "AD": False, "CD": False,
    "Question": [{"name": f"{DOMAIN}.", "type": 16}],
    "Answer": [{"name": f"{DOMAIN}.", "type": 16, "TTL": 300, "data": data}
               for data in (SPF, f'"mailconf={FOREIGN}"', f'"mailconf={OWN}"')],
}).encode()
DOH_JSON = {"accept": "application/dns-json"}


@pytest.fixture(scope="module", autouse=True)
def routes(upstream: Upstream) -> None:
    upstream.add_route("doh.resolver.test", "/dns-query", body=TXT_ANSWER,
                       headers={"content-type": "application/dns-json"})
    upstream.add_route(DOMAIN, "/mailconf.xml", body=(FIXTURES / "autoconfig__benign_own_domain.xml").read_bytes(),
                       headers={"content-type": "application/xml"})


@pytest.fixture(scope="module")
def enforcing(make_guard_proxy: ProxyFactory) -> Iterator[GuardProxy]:
    # Decrypts every host, as `run --intercept all` does: DoH resolvers and the host a mailconf=
    # URL names are not in the endpoint table's interception list (docs/dns.md).
    proxy = make_guard_proxy(allow_hosts=())
    yield proxy
    proxy.stop()


def test_a_foreign_mailconf_record_is_dropped_and_logged_and_the_own_one_passes(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = enforcing.session().get("https://doh.resolver.test/dns-query",
                                       params={"name": DOMAIN, "type": "TXT"}, headers=DOH_JSON, timeout=20)
    assert response.status_code == 200
    assert [a["data"] for a in response.json()["Answer"]] == [SPF, f'"mailconf={OWN}"']
    line = enforcing.last_decision(before)
    assert (line["action"], line["format"], line["user_domain"], line["user_source"]) == (
        "rewrite", "srv", DOMAIN, "dns-name")
    assert [(f["rule"], f["host"]) for f in line["findings"]] == [("foreign-host", "collector-mail.net")]


def test_the_url_an_allowed_mailconf_record_names_is_judged_for_the_queried_domain(enforcing: GuardProxy) -> None:
    session = enforcing.session()
    session.get("https://doh.resolver.test/dns-query", params={"name": DOMAIN, "type": "TXT"}, headers=DOH_JSON,
                timeout=20)
    before = len(enforcing.decisions())
    assert session.get(OWN, timeout=20).status_code == 200
    line = enforcing.last_decision(before)
    assert (line["format"], line["user_domain"], line["user_source"]) == ("autoconfig", DOMAIN, "redirect")
