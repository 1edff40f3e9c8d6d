"""The guard in a real mitmdump, between real clients and local discovery servers."""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from guard.formats._xml import name, read_xml
from tests.conftest import FIXTURES, ROOT, pox_request
from tests.e2e.conftest import ProxyFactory
from tests.e2e.support.pki import TestPKI
from tests.e2e.support.proxy import GuardProxy, run_mitmdump_to_exit
from tests.e2e.support.secrets import PASSWORD, basic
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

AUTODETECT = "https://prod.autodetect.outlook.cloud.microsoft/autodetect/detect"
POX_PATH = "/autodiscover/autodiscover.xml"
XML = {"content-type": "text/xml; charset=utf-8"}
JSON = {"content-type": "application/json; charset=utf-8"}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module", autouse=True)
def routes(upstream: Upstream) -> None:
    upstream.add_route("prod.autodetect.outlook.cloud.microsoft", "/autodetect/detect",
                       body=fixture("autodetect__seed_example_com.json"), headers=JSON)
    seed = fixture("pox__seed_example_com.xml")
    upstream.add_route("autodiscover.example.com", POX_PATH, body=seed, headers=XML)
    upstream.add_route("autodiscover.gzip.example.com", POX_PATH, body=gzip.compress(seed),
                       headers=XML | {"content-encoding": "gzip"})
    upstream.add_route("autodiscover.contoso.com", POX_PATH, body=fixture("pox__benign_onprem_exchange.xml"),
                       headers=XML)
    upstream.add_route("autodiscover.bomb.contoso.com", POX_PATH, body=gzip.compress(b" " * (64 * 1024 * 1024)),
                       headers=XML | {"content-encoding": "gzip"})
    upstream.add_route("autoconfig.contoso.com", "/mail/config-v1.1.xml",
                       body=fixture("autoconfig__oauth2_foreign_authurl.xml"),
                       headers={"content-type": "application/xml"})
    upstream.add_route("autodiscover.com.br", "*", body=b"<collected/>", headers=XML)
    upstream.add_route("autodiscover.northwind-traders.co.uk", POX_PATH, status=302,
                       headers={"location": "https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml"})
    upstream.add_route("autodiscover.collector-mail.net", "*", body=fixture("pox__benign_isp_imap_smtp.xml"),
                       headers=XML)
    upstream.add_route("www.contoso.com", "/", body=b"<html>not discovery</html>",
                       headers={"content-type": "text/html"})


@pytest.fixture(scope="module")
def auditing(make_guard_proxy: ProxyFactory) -> Iterator[GuardProxy]:
    proxy = make_guard_proxy(mode="audit")
    yield proxy
    proxy.stop()


def seed_autodetect(proxy: GuardProxy) -> requests.Response:
    return proxy.session().get(AUTODETECT, params={"app": "outlookdesktopBasic"},
                               headers={"X-Email": "email@example.com"}, timeout=20)


def seed_pox(proxy: GuardProxy, host: str = "autodiscover.example.com") -> requests.Response:
    return proxy.session().post(f"https://{host}{POX_PATH}", data=pox_request("email@example.com"),
                                headers=XML, timeout=20)


# --- the January 2026 incident ----------------------------------------------------------------


def test_the_seed_autodetect_answer_is_blocked(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = seed_autodetect(enforcing)
    assert (response.status_code, response.content) == (404, b"")
    line = enforcing.last_decision(before)
    assert (line["action"], line["would_action"], line["format"]) == ("block", "block", "autodetect")
    assert {"reserved-user-domain", "foreign-host"} <= set(line["rules"])
    assert line["user_domain"] == "example.com" and "email" not in line.get("user_local_hash", "")


def test_the_seed_pox_answer_for_a_posted_address_is_blocked(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = seed_pox(enforcing)
    assert b"jnet.sei.co.jp" not in response.content and b"<ErrorCode>500</ErrorCode>" in response.content
    line = enforcing.last_decision(before)
    assert (line["action"], line["user_source"]) == ("block", "body")


def test_audit_passes_the_seed_answers_unchanged_and_logs_the_block(auditing: GuardProxy) -> None:
    before = len(auditing.decisions())
    assert seed_autodetect(auditing).content == fixture("autodetect__seed_example_com.json")
    assert seed_pox(auditing).content == fixture("pox__seed_example_com.xml")
    lines = auditing.wait_for(lambda: auditing.decisions()[before:] if len(auditing.decisions()) >= before + 2
                              else None, what="two audit decisions")
    assert [(line["mode"], line["action"], line["would_action"]) for line in lines] == [("audit", "allow", "block")] * 2


# --- answers ----------------------------------------------------------------------------------


def test_a_benign_answer_arrives_byte_for_byte(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = enforcing.session().post(f"https://autodiscover.contoso.com{POX_PATH}",
                                        data=pox_request("alice@contoso.com"), headers=XML, timeout=20)
    assert response.status_code == 200 and response.content == fixture("pox__benign_onprem_exchange.xml")
    assert enforcing.last_decision(before)["action"] == "allow"


def test_a_rewrite_leaves_the_good_suggestions(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = enforcing.session().get("https://autoconfig.contoso.com/mail/config-v1.1.xml",
                                       params={"emailaddress": "alice@contoso.com"}, timeout=20)
    hosts = {e.text for e in read_xml(response.content).iter() if name(e).local == "hostname"}
    assert hosts == {"imap.contoso.com", "smtp.contoso.com"}
    assert b"contoso-sso.net" not in response.content
    line = enforcing.last_decision(before)
    assert line["action"] == "rewrite" and "emailaddress=REDACTED" in line["url"]


def test_a_gzip_encoded_bad_answer_is_blocked(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = seed_pox(enforcing, host="autodiscover.gzip.example.com")
    assert b"jnet.sei.co.jp" not in response.content
    assert enforcing.last_decision(before)["action"] == "block"


def test_a_gzip_bomb_is_refused(enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    response = enforcing.session().post(f"https://autodiscover.bomb.contoso.com{POX_PATH}",
                                        data=pox_request("alice@contoso.com"), headers=XML, timeout=20)
    assert b"<ErrorCode>500</ErrorCode>" in response.content
    line = enforcing.last_decision(before)
    assert (line["action"], line["rules"]) == ("block", ["malformed"])


# --- requests ---------------------------------------------------------------------------------


def test_credentials_for_autodiscover_under_a_public_suffix_never_leave(enforcing: GuardProxy,
                                                                        upstream: Upstream) -> None:
    before = len(enforcing.decisions())
    result = enforcing.curl("https://autodiscover.com.br/autodiscover/autodiscover.xml",
                            "-u", f"user@example.com.br:{PASSWORD}", "-H", "Content-Type: text/xml",
                            "--data-binary", pox_request("user@example.com.br").decode(), "-w", "\n%{http_code}")
    assert result.stdout.rstrip().endswith("403") and "discovery-tld" in result.stdout
    line = enforcing.last_decision(before)
    assert (line["rules"], line["status"]) == (["discovery-tld"], None)
    assert upstream.requests_for("autodiscover.com.br") == []
    assert upstream.connections_for("autodiscover.com.br") == 0  # lazy connect: not even a TLS handshake
    token = basic("user@example.com.br").split()[1]  # what curl -u sent
    written = enforcing.log_path.read_text() + "\n".join(enforcing.output)
    assert PASSWORD not in written and token not in written and "Basic " not in written


def test_a_302_to_a_foreign_autodiscover_host_is_stopped(enforcing: GuardProxy, upstream: Upstream) -> None:
    before = len(enforcing.decisions())
    response = enforcing.session().post(f"https://autodiscover.northwind-traders.co.uk{POX_PATH}",
                                        data=pox_request("bob@northwind-traders.co.uk"), headers=XML, timeout=20)
    assert response.status_code == 403 and not response.history  # nothing left to follow
    line = enforcing.last_decision(before)
    assert (line["format"], line["rules"]) == ("http-redirect", ["foreign-host"])
    assert upstream.requests_for("autodiscover.collector-mail.net") == []


def test_other_https_hosts_are_relayed_without_interception(enforcing: GuardProxy, origin_ca_bundle: Path) -> None:
    before = len(enforcing.lines())
    response = enforcing.session(verify=origin_ca_bundle).get("https://www.contoso.com/", timeout=20)
    assert response.content == b"<html>not discovery</html>"  # the origin certificate came through
    with pytest.raises(requests.exceptions.SSLError):
        enforcing.session().get("https://www.contoso.com/", timeout=20)
    assert len(enforcing.lines()) == before


def test_each_judged_flow_is_logged_exactly_once(enforcing: GuardProxy, origin_ca_bundle: Path) -> None:
    before = enforcing.decisions()
    seed_autodetect(enforcing)
    seed_pox(enforcing)
    enforcing.curl("https://autodiscover.com.br/autodiscover/autodiscover.xml")
    enforcing.session().post(f"https://autodiscover.contoso.com{POX_PATH}", data=pox_request("alice@contoso.com"),
                             headers=XML, timeout=20)
    enforcing.session(verify=origin_ca_bundle).get("https://www.contoso.com/", timeout=20)
    lines = enforcing.wait_for(lambda: enforcing.decisions() if len(enforcing.decisions()) >= len(before) + 4
                               else None, what="four new decisions")
    time.sleep(0.3)  # nothing more may arrive
    new = enforcing.decisions()[len(before):]
    assert len(new) == 4 and len({line["id"] for line in lines}) == len(lines)


def test_metrics_are_written_for_scrapers(enforcing: GuardProxy) -> None:
    seed_autodetect(enforcing)
    text = enforcing.wait_for(
        lambda: enforcing.metrics_path.exists() and 'action="block"' in enforcing.metrics_path.read_text()
        and enforcing.metrics_path.read_text(), timeout=5, what="the metrics file")
    instance = f'instance="{socket.gethostname()}"'
    assert f'autodiscover_guard_rule_decisions_total{{{instance},rule="reserved-user-domain",action="block"}}' in text
    assert "autodiscover_guard_added_latency_seconds_count" in text


# --- policy lifecycle -------------------------------------------------------------------------


def test_an_invalid_policy_at_start_exits_non_zero_naming_file_and_line(pki: TestPKI, upstream: Upstream,
                                                                        tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  foreign-host: rewrit\n")
    result = run_mitmdump_to_exit(pki, upstream, tmp_path, policy=bad)
    assert result.returncode != 0
    assert f"{bad}:3:" in result.stdout + result.stderr


def test_policy_changes_are_picked_up_and_broken_ones_rejected(guard_proxy: ProxyFactory) -> None:
    default = (ROOT / "policies" / "default.yaml").read_text()
    proxy = guard_proxy(policy=default)

    def fetch() -> tuple[bytes, dict[str, object]]:
        before = len(proxy.decisions())
        response = proxy.session().get("https://autoconfig.contoso.com/mail/config-v1.1.xml", timeout=20)
        return response.content, proxy.last_decision(before)

    body, line = fetch()
    assert line["action"] == "rewrite"
    revision = line["policy_revision"]

    proxy.policy_path.write_text(default.replace("foreign-host: rewrite", "foreign-host: warn"))
    loaded = proxy.wait_for(lambda: [e for e in proxy.events("policy_reloaded") if e["revision"] != revision],
                            what="the new policy")
    body, line = fetch()
    assert line["action"] == "warn" and body == fixture("autoconfig__oauth2_foreign_authurl.xml")

    proxy.policy_path.write_text(default.replace("foreign-host: rewrite", "foreign-host: rewrit"))
    rejected = proxy.wait_for(lambda: proxy.events("policy_rejected"), what="the rejection")
    assert f"{proxy.policy_path}:" in rejected[0]["reason"] and "expected one of" in rejected[0]["reason"]
    body, line = fetch()
    assert line["action"] == "warn" and line["policy_revision"] == loaded[0]["revision"]


def test_an_unwritable_decision_log_does_not_stop_enforcement(guard_proxy: ProxyFactory) -> None:
    proxy = guard_proxy(log=Path("/dev/full"))  # opens, but every write fails (ENOSPC)
    response = seed_autodetect(proxy)
    assert response.status_code == 404
    proxy.wait_for(lambda: any("cannot write the decision log" in line for line in proxy.output),
                   what="the warning")
    assert seed_autodetect(proxy).status_code == 404
    assert sum("cannot write the decision log" in line for line in proxy.output) == 1
    assert proxy.process.poll() is None
