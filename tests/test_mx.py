"""guard.mx: MX evidence for foreign-host, against a real NSD on loopback where DNS is involved."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from guard.engine import judge
from guard.model import Action
from guard.mx import MxAnswer, MxLookups, MxSettings, mx_evidence, parse_resolver
from guard.names import User
from guard.ownership import Trust, TrustEntry
from guard.policy import load_policy
from tests.conftest import ROOT
from tests.e2e.support.nsd import Nsd, free_port

IONOS = TrustEntry("IONOS", "test", ("ionos.de",), ("ionos.de",), mx=("kundenserver.de",))
TRUST = Trust.build([IONOS])


def test_mx_sharing_the_hosts_registrable_domain_is_evidence() -> None:
    why = mx_evidence("baeckerei-klein.de", "imap.ionos.de", MxAnswer(("mx00.ionos.de",)), TRUST)
    assert why is not None
    assert "weaker MX evidence" in why
    assert "mx00.ionos.de" in why


def test_provider_map_mx_key_connects_an_mx_to_the_providers_hosts() -> None:
    why = mx_evidence("tischlerei-berg.de", "imap.ionos.de", MxAnswer(("mx00.kundenserver.de",)), TRUST)
    assert why is not None
    assert "IONOS" in why


@pytest.mark.parametrize(
    "answer",
    [
        MxAnswer(("mail.weingut-ost.de",)),  # MX points elsewhere
        MxAnswer(null=True),  # RFC 7505: no mail
        MxAnswer(error="Timeout"),
        MxAnswer(),
    ],
)
def test_no_evidence_from_other_null_failed_or_missing_mx(answer: MxAnswer) -> None:
    assert mx_evidence("weingut-ost.de", "imap.ionos.de", answer, TRUST) is None


def test_a_hosts_lack_of_registrable_domain_never_matches_an_mx_without_one() -> None:
    assert mx_evidence("shop.de", "mail.corp.internal", MxAnswer(("mx.other.internal",)), TRUST) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)), ("::1", ("::1", 53)),
     ("[::1]:5300", ("::1", 5300))],
)
def test_parse_resolver_accepts_ip_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


@pytest.mark.parametrize("text", ["dns.google", "127.0.0.1:x", "127.0.0.1:70000", "[::1]x", "127.1"])
def test_parse_resolver_rejects_names_and_bad_ports(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_resolver(text)


def test_reserved_user_domains_are_never_looked_up() -> None:
    lookups = MxLookups(MxSettings(resolver=("127.0.0.1", 9), timeout=5.0))
    answer = lookups.lookup("example.com")  # the resolver (discard port) would never answer: no query is sent
    assert "never looked up" in answer.error


def test_resolver_down_is_no_evidence_within_the_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        lookups = MxLookups(MxSettings(resolver=("127.0.0.1", silent.getsockname()[1]), timeout=0.5))
        answer = lookups.lookup("baeckerei-klein.de")  # returns at the timeout: the resolver never answers
        why = mx_evidence("baeckerei-klein.de", "imap.ionos.de", answer, TRUST)
    assert why is None
    assert answer.error
    assert "failed" in answer.describe("baeckerei-klein.de")


@pytest.mark.e2e
def test_real_mx_lookup_finds_hosts_in_preference_order(nsd: Nsd) -> None:
    lookups = MxLookups(MxSettings(resolver=("127.0.0.1", nsd.port), timeout=2.0))
    assert lookups.lookup("baeckerei-klein.de").hosts == ("mx00.ionos.de", "mx01.ionos.de")
    assert lookups.lookup("nomail-shop.de").null
    refused = lookups.lookup("no-such-zone.de")  # NSD refuses zones it does not serve
    assert refused.hosts == ()
    assert refused.error


@pytest.mark.e2e
def test_answers_are_cached_until_the_smaller_of_record_ttl_and_cache_ttl(nsd: Nsd) -> None:
    now = [1000.0]
    settings = MxSettings(resolver=("127.0.0.1", nsd.port), timeout=2.0, cache_ttl=60.0)
    lookups = MxLookups(settings, clock=lambda: now[0])

    async def ask() -> None:
        first = lookups.start("baeckerei-klein.de")
        await first
        assert lookups.start("baeckerei-klein.de") is first  # cached: no second lookup
        now[0] += 59.0
        assert lookups.start("baeckerei-klein.de") is first
        now[0] += 2.0  # past cache_ttl (60 s < the zone's 300 s TTL)
        second = lookups.start("baeckerei-klein.de")
        assert second is not first
        assert (await second).hosts == first.result().hosts

    asyncio.run(ask())


@pytest.mark.e2e
def test_cache_is_bounded_least_recently_used_first(nsd: Nsd) -> None:
    lookups = MxLookups(MxSettings(resolver=("127.0.0.1", nsd.port), timeout=2.0, cache_size=2))

    async def ask() -> None:
        kept = lookups.start("baeckerei-klein.de")
        lookups.start("weingut-ost.de")
        lookups.start("baeckerei-klein.de")  # touched: most recent
        lookups.start("nomail-shop.de")  # evicts weingut-ost.de
        assert len(lookups) == 2
        assert lookups.start("baeckerei-klein.de") is kept
        await lookups.answer("nomail-shop.de")
        await kept

    asyncio.run(ask())


def test_closed_port_is_a_failure_not_an_allow() -> None:
    lookups = MxLookups(MxSettings(resolver=("127.0.0.1", free_port()), timeout=0.5))
    answer = lookups.lookup("baeckerei-klein.de")
    why = mx_evidence("baeckerei-klein.de", "imap.ionos.de", answer, TRUST)
    assert why is None
    assert answer.error


CLIENT_CONFIG = b"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="ionos.de">
    <domain>ionos.de</domain>
    <incomingServer type="imap">
      <hostname>imap.ionos.de</hostname><port>993</port><socketType>SSL</socketType>
      <authentication>password-cleartext</authentication><username>%EMAILADDRESS%</username>
    </incomingServer>
  </emailProvider>
</clientConfig>
"""


@pytest.mark.e2e
def test_http_answers_are_excused_by_mx_evidence_too(nsd: Nsd, tmp_path: Path) -> None:
    """The engine weighs MX evidence for any format: an autoconfig answer for a custom domain at IONOS."""
    base = "version: 1\nproviders: [providers.yaml]\n"
    shutil.copy(ROOT / "policies" / "providers.yaml", tmp_path / "providers.yaml")
    (tmp_path / "off.yaml").write_text(base, encoding="utf-8")
    (tmp_path / "on.yaml").write_text(base + f"mx_evidence:\n  enabled: true\n  resolver: {nsd.address}\n",
                                      encoding="utf-8")
    user = User.from_address("anna@baeckerei-klein.de")
    without = judge(CLIENT_CONFIG, user, load_policy(tmp_path / "off.yaml"), url="https://autoconfig.baeckerei-klein.de/")
    assert without.rules == ("foreign-host",)
    assert not any("MX" in e for e in without.findings[0].evidence)  # MX never consulted when off
    on = load_policy(tmp_path / "on.yaml")
    assert on.mx is not None
    lookups = MxLookups(on.mx)
    with_mx = judge(CLIENT_CONFIG, user, on, url="https://autoconfig.baeckerei-klein.de/",
                    mx=lookups.lookup(user.domain))
    assert with_mx.action is Action.ALLOW
    assert with_mx.notes == ("weaker MX evidence: imap.ionos.de shares registrable domain ionos.de with MX "
                             "mx00.ionos.de of baeckerei-klein.de",)
    other = judge(CLIENT_CONFIG, User.from_address("jo@weingut-ost.de"), on,
                  url="https://autoconfig.weingut-ost.de/", mx=lookups.lookup("weingut-ost.de"))
    assert other.rules == ("foreign-host",)
    assert "MX of weingut-ost.de (mail.weingut-ost.de) shares no registrable domain" in other.findings[0].evidence[-1]


@pytest.mark.e2e
def test_the_http_addon_awaits_mx_evidence_in_its_response_hook(nsd: Nsd, tmp_path: Path) -> None:
    """With MX evidence on, `response` hands mitmproxy a coroutine that looks MX up on the event
    loop, and the answer is judged with that evidence: the IONOS customer's answer passes."""
    from mitmproxy import http
    from mitmproxy.test import taddons, tflow

    from guard.proxy.addon import AutodiscoverGuard

    shutil.copy(ROOT / "policies" / "providers.yaml", tmp_path / "providers.yaml")
    policy = tmp_path / "on.yaml"
    policy.write_text("version: 1\nproviders: [providers.yaml]\n"
                      f"mx_evidence:\n  enabled: true\n  resolver: {nsd.address}\n", encoding="utf-8")
    addon = AutodiscoverGuard()
    url = "https://autoconfig.baeckerei-klein.de/mail/config-v1.1.xml?emailaddress=anna%40baeckerei-klein.de"
    with taddons.context(addon) as tctx:
        tctx.options.update(guard_log=str(tmp_path / "decisions.jsonl"), guard_policy=str(policy))
        addon.configure(set(tctx.options.keys()))
        flow = tflow.tflow(req=http.Request.make("GET", url))

        async def through() -> None:
            addon.request(flow)
            flow.response = http.Response.make(200, CLIENT_CONFIG, {"content-type": "text/xml"})
            pending = addon.response(flow)
            assert pending is not None  # a coroutine when MX evidence is on
            await pending

        asyncio.run(through())
    assert flow.metadata["guard.would_action"] == "allow"
    assert flow.response is not None and flow.response.content == CLIENT_CONFIG


def test_the_shipped_default_policy_turns_mx_evidence_on() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    assert policy.mx is not None


@pytest.mark.parametrize(("fixture", "email"), [
    ("autoconfig__seed_example_com.xml", "email@example.com"),
    ("pox__redirect_addr_foreign.xml", "alice@contoso.com"),
    ("autoconfig__benign_own_domain.xml", "bob@northwind-traders.co.uk"),
])
def test_without_dns_the_default_policy_judges_as_with_mx_evidence_off(fixture: str, email: str) -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    body = (ROOT / "tests" / "fixtures" / fixture).read_bytes()
    user = User.from_address(email)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        lookups = MxLookups(MxSettings(resolver=("127.0.0.1", silent.getsockname()[1]), timeout=0.2))
        failed = lookups.lookup(user.domain)
    assert failed.error
    with_failed_lookup = judge(body, user, policy, mx=failed)
    without = judge(body, user, policy)
    assert (with_failed_lookup.action, with_failed_lookup.rules) == (without.action, without.rules)
