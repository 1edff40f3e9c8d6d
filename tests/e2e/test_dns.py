"""The DNS listener end to end: real NSD serving tests/fixtures/dns, real mitmdump in reverse DNS mode
with the guard, real clients (`dig`, dnspython). Nothing leaves loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from guard.interception import allow_host_patterns
from guard.launch import dns_mode
from guard.policy import load_policy
from tests.conftest import ROOT
from tests.e2e.support.nsd import Nsd, free_port
from tests.e2e.support.process import stop
from tests.e2e.support.proxy import GuardProxy

pytestmark = pytest.mark.e2e

SEED = "_imaps._tcp.example.com"


def dns_guard(factory: Callable[..., GuardProxy], nsd: Nsd, policy: Path | str | None = None,
              mode: str = "") -> tuple[GuardProxy, int]:
    """A guard proxy whose DNS listener forwards to `nsd` (the `run --dns-upstream` mode)."""
    port = free_port()
    listener, upstream = dns_mode(port, nsd.address)
    assert upstream is not None
    patterns = allow_host_patterns(load_policy(ROOT / "policies" / "default.yaml"))  # the HTTP side's, as `run`
    proxy = factory(policy=policy, mode=mode, allow_hosts=[*patterns, upstream],
                    extra_args=("--mode", "regular", "--mode", listener))
    assert any(f"listening at 127.0.0.1:{port}" in line for line in proxy.output), proxy.output
    return proxy, port


def ask(port: int, name: str, rdtype: str = "SRV") -> dns.message.Message:
    """One UDP query with dnspython."""
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=5)


def dig(port: int, name: str, rdtype: str = "SRV") -> str:
    """`dig` output (header comments and answer section) for one query."""
    binary = shutil.which("dig")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dig is not installed (.ci/run installs bind9-dnsutils)")
        pytest.skip("dig is not installed (apt-get install bind9-dnsutils)")
    done = subprocess.run([binary, "+tries=1", "+time=5", "-p", str(port), "@127.0.0.1", name, rdtype],
                          capture_output=True, text=True, timeout=20, check=False)
    return done.stdout


def srv_targets(reply: dns.message.Message) -> list[str]:
    return sorted(rd.target.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.SRV
                  for rd in rrset)


def decision_for(proxy: GuardProxy, qname: str, count_before: int = 0) -> dict[str, Any]:
    """The newest decision line about `qname` logged after `count_before` lines."""
    found = proxy.wait_for(lambda: [d for d in proxy.decisions()[count_before:] if d["url"] == f"dns:{qname}"],
                           what=f"a decision about {qname}")
    return dict(found[-1])


@pytest.fixture(scope="module")
def enforcing(make_guard_proxy: Callable[..., GuardProxy], nsd: Nsd) -> tuple[GuardProxy, int]:
    return dns_guard(make_guard_proxy, nsd)


def test_seed_incident_srv_is_refused_end_to_end(enforcing: tuple[GuardProxy, int], nsd: Nsd) -> None:
    proxy, port = enforcing
    assert "imapgms.jnet.sei.co.jp" in dig(nsd.port, SEED)  # the server really says it
    before = len(proxy.decisions())
    out = dig(port, SEED)
    assert "status: REFUSED" in out
    assert "jnet.sei.co.jp" not in out
    line = decision_for(proxy, SEED, before)
    assert line["rules"][0] == "reserved-user-domain"
    assert (line["action"], line["would_action"], line["format"], line["method"]) == ("block", "block", "srv", "SRV")
    assert line["status"] == 0  # what upstream answered


def test_foreign_target_is_stripped_and_the_honest_one_kept(enforcing: tuple[GuardProxy, int], nsd: Nsd) -> None:
    proxy, port = enforcing
    name = "_imaps._tcp.heron-mail.org"
    assert srv_targets(ask(nsd.port, name)) == ["imap.heron-mail.org.", "imap.mail-collector.biz."]
    reply = ask(port, name)
    assert reply.rcode() == dns.rcode.NOERROR
    assert srv_targets(reply) == ["imap.heron-mail.org."]
    line = decision_for(proxy, name)
    assert line["action"] == "rewrite"
    assert line["findings"] == [{"rule": "foreign-host", "host": "imap.mail-collector.biz", "field": "Answer[1].data"}]


@pytest.mark.parametrize(
    ("name", "rule"),
    [("_submission._tcp.heron-mail.org", "reserved-domain"), ("_autodiscover._tcp.heron-mail.org", "foreign-host")],
)
def test_attack_that_leaves_no_honest_record_is_refused(enforcing: tuple[GuardProxy, int], name: str,
                                                        rule: str) -> None:
    proxy, port = enforcing
    assert ask(port, name).rcode() == dns.rcode.REFUSED
    assert decision_for(proxy, name)["rules"] == [rule]


@pytest.mark.parametrize("name", ["_imaps._tcp.kestrel-post.net", "_submissions._tcp.kestrel-post.net",
                                  "_pop3s._tcp.kestrel-post.net", "_autodiscover._tcp.kestrel-post.net"])
def test_honest_srv_passes_unchanged(enforcing: tuple[GuardProxy, int], nsd: Nsd, name: str) -> None:
    proxy, port = enforcing
    direct, guarded = ask(nsd.port, name), ask(port, name)
    assert guarded.rcode() == dns.rcode.NOERROR
    assert guarded.answer == direct.answer
    assert guarded.additional == direct.additional  # the targets' addresses too
    line = decision_for(proxy, name)
    assert (line["action"], line["rules"]) == ("allow", [])


def test_other_lookups_pass_untouched_and_unlogged(enforcing: tuple[GuardProxy, int], nsd: Nsd) -> None:
    proxy, port = enforcing
    before = len(proxy.decisions())
    for name, rdtype in [("kestrel-post.net", "MX"), ("imap.kestrel-post.net", "A"),
                         ("_imaps._tcp.heron-mail.org", "TXT")]:
        assert ask(port, name, rdtype).answer == ask(nsd.port, name, rdtype).answer
    ask(port, "_imaps._tcp.kestrel-post.net")  # a judged one after them, as a marker
    decision_for(proxy, "_imaps._tcp.kestrel-post.net", before)
    assert [d["url"] for d in proxy.decisions()[before:]] == ["dns:_imaps._tcp.kestrel-post.net"]


def test_audit_changes_nothing_and_logs_what_enforce_would_do(guard_proxy: Callable[..., GuardProxy],
                                                              nsd: Nsd) -> None:
    proxy, port = dns_guard(guard_proxy, nsd, mode="audit")
    for name in (SEED, "_imaps._tcp.heron-mail.org"):
        assert ask(port, name).answer == ask(nsd.port, name).answer
    assert "imapgms.jnet.sei.co.jp" in dig(port, SEED)
    seed = decision_for(proxy, SEED)
    assert (seed["mode"], seed["action"], seed["would_action"]) == ("audit", "allow", "block")
    heron = decision_for(proxy, "_imaps._tcp.heron-mail.org")
    assert (heron["action"], heron["would_action"]) == ("allow", "rewrite")


def mx_policy(resolver: str, timeout: float = 2.0) -> str:
    return (
        "version: 1\nmode: enforce\nproviders: [providers.yaml]\n"
        f"mx_evidence:\n  enabled: true\n  resolver: {resolver}\n  timeout: {timeout}\n"
    )


def test_without_mx_evidence_a_custom_domain_at_a_provider_is_foreign(enforcing: tuple[GuardProxy, int]) -> None:
    proxy, port = enforcing
    name = "_imaps._tcp.baeckerei-klein.de"
    assert ask(port, name).rcode() == dns.rcode.REFUSED
    assert decision_for(proxy, name)["rules"] == ["foreign-host"]


def test_mx_evidence_allows_the_providers_hosts_and_keeps_other_domains_flagged(
        guard_proxy: Callable[..., GuardProxy], nsd: Nsd) -> None:
    proxy, port = dns_guard(guard_proxy, nsd, policy=mx_policy(nsd.address))
    for name, why in [("_imaps._tcp.baeckerei-klein.de", "shares registrable domain ionos.de with MX mx00.ionos.de"),
                      ("_submission._tcp.baeckerei-klein.de", "MX mx00.ionos.de"),
                      ("_imaps._tcp.tischlerei-berg.de", "MX mx00.kundenserver.de of tischlerei-berg.de")]:
        reply = ask(port, name)
        assert reply.rcode() == dns.rcode.NOERROR, name
        assert reply.answer == ask(nsd.port, name).answer
        line = decision_for(proxy, name)
        assert (line["action"], line["rules"]) == ("allow", []), line
        assert any("weaker MX evidence" in note and why in note for note in line["notes"]), line["notes"]
    for name in ("_imaps._tcp.weingut-ost.de", "_imaps._tcp.nomail-shop.de"):  # MX elsewhere; null MX
        assert ask(port, name).rcode() == dns.rcode.REFUSED, name
        assert decision_for(proxy, name)["rules"] == ["foreign-host"]
    assert ask(port, SEED).rcode() == dns.rcode.REFUSED  # reserved user domains: MX never consulted


def test_resolver_down_means_no_mx_evidence(guard_proxy: Callable[..., GuardProxy], nsd: Nsd) -> None:
    proxy, port = dns_guard(guard_proxy, nsd, policy=mx_policy(f"127.0.0.1:{free_port()}", timeout=0.5))
    name = "_imaps._tcp.baeckerei-klein.de"
    assert ask(port, name).rcode() == dns.rcode.REFUSED
    line = decision_for(proxy, name)
    assert line["rules"] == ["foreign-host"]
    assert not any("MX" in note for note in line.get("notes", []))


def test_run_dns_starts_the_listener_in_front_of_the_given_upstream(tmp_path: Path, nsd: Nsd) -> None:
    """`autodiscover-guard run --dns PORT --dns-upstream IP:PORT`, as an operator types it."""
    dns_port, http_port = free_port(), free_port()
    log = tmp_path / "decisions.jsonl"
    command = [str(Path(sys.executable).parent / "autodiscover-guard"), "run", "--listen", f"127.0.0.1:{http_port}",
               "--confdir", str(tmp_path / "conf"), "--log", str(log), "--dns", str(dns_port),
               "--dns-upstream", nsd.address]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    running = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        for text in process.stdout:
            output.append(text)
            if "autodiscover-guard: policy " in text:
                running.set()
        running.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        assert running.wait(30) and process.poll() is None, "".join(output)
        assert any(f"reverse proxy to dns://{nsd.address} listening at 127.0.0.1:{dns_port}" in t for t in output)
        assert "status: REFUSED" in dig(dns_port, SEED)
        assert srv_targets(ask(dns_port, "_imaps._tcp.kestrel-post.net")) == ["imap.kestrel-post.net."]
    finally:
        stop(process)
    assert '"url": "dns:_imaps._tcp.example.com"' in log.read_text(encoding="utf-8")
