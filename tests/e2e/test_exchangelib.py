"""exchangelib's real SOAP autodiscovery (5.x: `autodiscover.svc`) through the guard.

exchangelib tries, in order: `https://<domain>/autodiscover/autodiscover.svc`, then
`https://autodiscover.<domain>/…`, then an unauthenticated `GET http://autodiscover.<domain>/…`
(only a 301/302 counts), then the SRV record `_autodiscover._tcp.<domain>` (port 443 only).
Before each of them it requires an A record for the host (dnspython), and on each endpoint it
first POSTs an unauthenticated probe for `DUMMY@example.com` to learn the auth type from the
`WWW-Authenticate` header. It runs in its own process (`support/scripts/exchangelib_discover.py`)
with `HTTPS_PROXY`/`HTTP_PROXY` set to the guard and `REQUESTS_CA_BUNDLE` to the guard's CA, and
its resolver pointed at the test DNS server (`support/dnsserver.py`).

The bare-domain step is never intercepted (the guard only decrypts discovery host names), so
the client sees the origin certificate it does not trust there and moves on, as a client with
a real but unrelated web site on the bare domain would.

The honest server challenges with Basic. exchangelib's probe names `DUMMY@example.com`, which owns
no host; the guard does not judge a challenge's ownership against such a placeholder (the
credentialed request that follows names the real user and is checked on the request side), so
the probe's Basic challenge passes and the password goes only to the host the user's domain owns.
"""

from __future__ import annotations

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
PASSWORD = "Corr3ct-Horse-exchangelib-secret"
DIGEST = 'Digest realm="{host}", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", algorithm=MD5'


# The honest answer moved to adatum.com, with its IMAP setting pointing at a stranger: the guard
# cuts that UserSetting (Exchange rewrite from the parsed locators) and leaves the rest as it was.
_IMAP = b"<Hostname>%s</Hostname>\n                    <Port>993"
PARTLY_FOREIGN = (FIXTURES / "soap__benign_own_domain.xml").read_bytes().replace(
    b"contoso.com", b"adatum.com").replace(_IMAP % b"mail.adatum.com", _IMAP % b"imap.collector-mail.net")


def digest(host: str) -> str:
    return DIGEST.format(host=host)


@pytest.fixture(scope="module", autouse=True)
def zones(upstream: Upstream, dns_server: DnsServer) -> None:
    """contoso.com: honest; adatum.com: honest but for a foreign IMAP setting; example.com: the seed
    incident; tailspin-toys.com: SRV to autodiscover.com."""
    for name in ("contoso.com", "autodiscover.contoso.com", "adatum.com", "autodiscover.adatum.com",
                 "example.com", "autodiscover.example.com", "tailspin-toys.com", "autodiscover.com"):
        dns_server.add_a(name)
    upstream.add_route("autodiscover.contoso.com", SVC, headers=XML, challenge='Basic realm="autodiscover.contoso.com"',
                       body=(FIXTURES / "soap__benign_own_domain.xml").read_bytes())
    upstream.add_route("autodiscover.adatum.com", SVC, headers=XML, challenge='Basic realm="autodiscover.adatum.com"',
                       body=PARTLY_FOREIGN)
    upstream.add_route("autodiscover.example.com", SVC, headers=XML, challenge=digest("autodiscover.example.com"),
                       body=(FIXTURES / "soap__seed_example_com.xml").read_bytes())
    # The 2021 leak: no autodiscover.tailspin-toys.com, an SRV record naming a stranger's host that asks
    # for Basic credentials and would collect them.
    dns_server.add_srv("_autodiscover._tcp.tailspin-toys.com", "autodiscover.com", 443)
    upstream.add_route("autodiscover.com", "*", headers=XML, challenge='Basic realm="autodiscover.com"',
                       body=b"<collected/>")


def discover(proxy: GuardProxy, dns_server: DnsServer, email: str, tmp_path: Path) -> dict[str, Any]:
    return exchangelib.discover(proxy, dns_server.port, email, PASSWORD, tmp_path)


def written(proxy: GuardProxy) -> str:
    """Everything the guard wrote: decision log and mitmdump's console."""
    return proxy.log_path.read_text(encoding="utf-8") + "\n".join(proxy.output)


def decisions_for(proxy: GuardProxy, host: str, before: int) -> list[dict[str, Any]]:
    return [line for line in proxy.decisions()[before:] if f"://{host}/" in line["url"]]


def test_exchangelib_discovers_the_honest_ews_url(enforcing: GuardProxy, dns_server: DnsServer,
                                                  upstream: Upstream, tmp_path: Path) -> None:
    before = len(enforcing.decisions())
    outcome = discover(enforcing, dns_server, "alice@contoso.com", tmp_path)
    assert outcome == {"ews_url": "https://mail.contoso.com/EWS/Exchange.asmx", "api_version": "Exchange2016",
                       "smtp_address": "alice@contoso.com"}
    answered = enforcing.wait_for(lambda: [d for d in decisions_for(enforcing, "autodiscover.contoso.com", before)
                                           if d["status"] == 200], what="the judged answer")
    assert [(d["action"], d["format"], d["user_domain"]) for d in answered] == [("allow", "soap", "contoso.com")]
    assert all(d["action"] == "allow" for d in decisions_for(enforcing, "autodiscover.contoso.com", before))
    sent = [seen.headers["Authorization"] for seen in upstream.requests_for("autodiscover.contoso.com")
            if "Authorization" in seen.headers]
    assert sent and all(value.startswith("Basic ") for value in sent)
    log = written(enforcing)
    assert PASSWORD not in log and not any(value in log for value in sent)


def test_exchangelib_reads_the_answer_with_its_foreign_setting_cut_out(enforcing: GuardProxy, dns_server: DnsServer,
                                                                      tmp_path: Path) -> None:
    assert PARTLY_FOREIGN.count(b"imap.collector-mail.net") == 1
    before = len(enforcing.decisions())
    outcome = discover(enforcing, dns_server, "gail@adatum.com", tmp_path)
    assert outcome == {"ews_url": "https://mail.adatum.com/EWS/Exchange.asmx", "api_version": "Exchange2016",
                       "smtp_address": "alice@adatum.com"}
    rewritten = enforcing.wait_for(lambda: [d for d in decisions_for(enforcing, "autodiscover.adatum.com", before)
                                            if d["action"] == "rewrite"], what="the rewrite")
    assert [(d["format"], d["rules"]) for d in rewritten] == [("soap", ["foreign-host"])]
    assert [f["host"] for f in rewritten[0]["findings"]] == ["imap.collector-mail.net"]


def test_exchangelib_is_refused_the_seed_incident_answer(enforcing: GuardProxy, dns_server: DnsServer,
                                                         upstream: Upstream, tmp_path: Path) -> None:
    before = len(enforcing.decisions())
    outcome = discover(enforcing, dns_server, "email@example.com", tmp_path)
    # the guard's SOAP block answer is InvalidUser, which exchangelib raises as a missing mailbox
    assert outcome["error"] == "ErrorNonExistentMailbox"
    assert "jnet.sei.co.jp" not in outcome["message"]
    blocked = enforcing.wait_for(lambda: [d for d in decisions_for(enforcing, "autodiscover.example.com", before)
                                          if d["action"] == "block"], what="the block")
    assert len(blocked) == 1 and blocked[0]["status"] == 200
    assert {"reserved-user-domain", "foreign-host"} <= set(blocked[0]["rules"])
    assert upstream.connections_for("imapgms.jnet.sei.co.jp") == 0
    assert PASSWORD not in written(enforcing)


def test_exchangelib_never_reaches_an_autodiscover_tld_host_named_by_srv(enforcing: GuardProxy,
                                                                          dns_server: DnsServer,
                                                                          upstream: Upstream, tmp_path: Path) -> None:
    before = len(enforcing.decisions())
    outcome = discover(enforcing, dns_server, "bob@tailspin-toys.com", tmp_path)
    assert outcome["error"] == "AutoDiscoverFailed"
    assert ("_autodiscover._tcp.tailspin-toys.com", "SRV") in dns_server.queries  # it really got to step 4
    refused = enforcing.wait_for(lambda: decisions_for(enforcing, "autodiscover.com", before),
                                 what="the refusals")
    assert {(d["method"], d["action"], tuple(d["rules"])) for d in refused} >= {
        ("HEAD", "block", ("discovery-tld",)), ("POST", "block", ("discovery-tld",))}
    assert upstream.requests_for("autodiscover.com") == [] and upstream.connections_for("autodiscover.com") == 0
    assert PASSWORD not in written(enforcing)
