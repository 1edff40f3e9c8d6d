"""Configuration pinning through the real proxy: a changed answer is warned about, or blocked
for a pinned domain, and the store the proxy wrote is the one `pins` reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from guard.cli import main
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

PATH = "/mail/config-v1.1.xml"
XML = {"content-type": "application/xml"}


def autoconfig(domain: str, imap_host: str) -> bytes:
    return (
        f'<?xml version="1.0"?><clientConfig version="1.1"><emailProvider id="{domain}">'
        f"<domain>{domain}</domain>"
        f'<incomingServer type="imap"><hostname>{imap_host}</hostname><port>993</port>'
        "<socketType>SSL</socketType><username>%EMAILADDRESS%</username></incomingServer>"
        f'<outgoingServer type="smtp"><hostname>smtp.{domain}</hostname><port>465</port>'
        "<socketType>SSL</socketType><username>%EMAILADDRESS%</username></outgoingServer>"
        "</emailProvider></clientConfig>"
    ).encode()


def ask(proxy: GuardProxy, domain: str) -> requests.Response:
    return proxy.session().get(f"https://autoconfig.{domain}{PATH}", params={"emailaddress": f"alice@{domain}"},
                               timeout=20)


def test_a_changed_answer_warns_and_a_changed_pinned_answer_is_blocked(
        guard_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path) -> None:
    store = tmp_path / "pins.sqlite"
    proxy = guard_proxy(policy=f"version: 1\nproviders: [providers.yaml]\npinning:\n  enabled: true\n"
                               f"  store: {store}\n  pinned: [pinned-e2e.com]\n")
    for domain in ("warned-e2e.com", "pinned-e2e.com"):
        upstream.add_route(f"autoconfig.{domain}", PATH, body=autoconfig(domain, f"imap.{domain}"), headers=XML)
        before = len(proxy.decisions())
        assert ask(proxy, domain).status_code == 200  # first sight: trusted and recorded
        assert proxy.last_decision(before)["rules"] == []
        upstream.add_route(f"autoconfig.{domain}", PATH, body=autoconfig(domain, f"imap2.{domain}"), headers=XML)

    before = len(proxy.decisions())
    changed = ask(proxy, "warned-e2e.com")
    assert changed.status_code == 200 and b"imap2.warned-e2e.com" in changed.content
    line = proxy.last_decision(before)
    assert (line["action"], line["rules"]) == ("warn", ["config-changed"])
    assert line["notes"] == ["config-changed: added: imap2.warned-e2e.com:993 imap tls; "
                             "removed: imap.warned-e2e.com:993 imap tls"]

    before = len(proxy.decisions())
    blocked = ask(proxy, "pinned-e2e.com")
    assert blocked.status_code == 404 and b"imap2" not in blocked.content
    line = proxy.last_decision(before)
    assert (line["action"], line["rules"]) == ("block", ["config-changed"])

    assert main(["pins", "show", "pinned-e2e.com", "--store", str(store)]) == 0  # the old pin was kept
    assert main(["pins", "forget", "pinned-e2e.com", "--store", str(store)]) == 0
    before = len(proxy.decisions())
    assert ask(proxy, "pinned-e2e.com").status_code == 200  # forgotten: the new answer is trusted
    assert proxy.last_decision(before)["action"] == "allow"


def test_a_broken_store_leaves_the_proxy_judging_and_logs_why(
        guard_proxy: ProxyFactory, upstream: Upstream, tmp_path: Path) -> None:
    store = tmp_path / "pins.sqlite"
    store.write_bytes(b"not a database at all" * 200)
    proxy = guard_proxy(policy=f"version: 1\nproviders: [providers.yaml]\npinning:\n  enabled: true\n"
                               f"  store: {store}\n")
    upstream.add_route("autoconfig.broken-store-e2e.com", PATH,
                       body=autoconfig("broken-store-e2e.com", "imap.broken-store-e2e.com"), headers=XML)
    upstream.add_route("autoconfig.example.net", PATH, body=autoconfig("example.net", "imap.example.net"),
                       headers=XML)
    before = len(proxy.decisions())
    assert ask(proxy, "broken-store-e2e.com").status_code == 200
    line = proxy.last_decision(before)
    assert line["action"] == "allow" and "pinning unavailable, config-changed not evaluated" in line["notes"][0]
    before = len(proxy.decisions())
    assert ask(proxy, "example.net").status_code == 404  # the other rules still enforce
    assert "reserved-user-domain" in proxy.last_decision(before)["rules"]
