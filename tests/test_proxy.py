"""The mitmproxy addons (guard/proxy/), hook by hook, with mitmproxy's own test helpers (no proxy process)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import shutil
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import dns, exceptions, http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.flow import Error as FlowError
from mitmproxy.net.dns import response_codes as dns_codes
from mitmproxy.net.dns import types as dns_types
from mitmproxy.test import taddons, tflow, tutils

from guard.formats._xml import name, read_xml
from guard.policy import Policy, load_policy
from guard.proxy.addon import AutodiscoverGuard
from guard.proxy.console import JsonConsole
from guard.proxy.dns import DnsGuard
from guard.proxy.identity import ClientIdentity
from guard.proxy.prometheus import MetricsEndpoint
from guard.proxy.walk import PendingRedirects
from guard.rules import CREDENTIAL_LEAK, DISCOVERY_TLD, REDIRECT_LIMIT
from guard.rules.walk import Walk
from tests.conftest import ROOT, pox_request
from tests.flowkit import AUTOCONFIG_URL, AUTODETECT_URL, POX_URL, basic, fixture, make_flow


def answer(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None) -> http.Response:
    response = http.Response.make(status, b"", headers or {"content-type": "text/xml; charset=utf-8"})
    response.raw_content = body
    response.headers["content-length"] = str(len(body))
    return response


class Guard:
    """The addon in a taddons context, with a decision-log reader and a flow driver."""

    def __init__(self, addon: AutodiscoverGuard, dns: DnsGuard, tctx: taddons.context, log: Path) -> None:
        self.addon = addon
        self.dns = dns
        self.tctx = tctx
        self.log = log

    def configure(self, **options: object) -> None:
        self.tctx.configure(self.addon, **options)

    def through(self, flow: http.HTTPFlow, upstream: http.Response | None = None) -> http.HTTPFlow:
        """request → (upstream answer unless the guard answered) → responseheaders → response."""
        self.addon.request(flow)
        if flow.response is None:
            assert upstream is not None, "the guard let the request through but the test gave no answer"
            flow.response = upstream
        self.addon.responseheaders(flow)
        if flow.error is None:  # killed flows get no response hook
            self.addon.response(flow)
        return flow

    def lines(self, event: str = "decision") -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [row for row in rows if row["event"] == event]

    def last(self) -> dict[str, object]:
        return self.lines()[-1]


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[Guard]:
    addon = AutodiscoverGuard()
    dns_addon = DnsGuard(addon.runtime, addon.redirects)  # as the shim shares them
    with taddons.context(addon, dns_addon) as tctx:
        log = tmp_path / "decisions.jsonl"
        tctx.options.update(guard_log=str(log))
        addon.configure(set(tctx.options.keys()))  # what mitmdump does at start: every option
        yield Guard(addon, dns_addon, tctx, log)


def policy_copy(folder: Path, text: str | None = None) -> Path:
    """The default policy (and its provider map) in `folder`, optionally with replaced text."""
    shutil.copy(ROOT / "policies" / "providers.yaml", folder / "providers.yaml")
    path = folder / "policy.yaml"
    path.write_text(text if text is not None else (ROOT / "policies" / "default.yaml").read_text())
    return path


# --- options -------------------------------------------------------------------------------------


def test_a_mode_other_than_enforce_or_audit_is_refused(guard: Guard) -> None:
    with pytest.raises(exceptions.OptionsError, match="guard_mode"):
        guard.configure(guard_mode="bogus")


def test_a_negative_body_cap_is_refused(guard: Guard) -> None:
    with pytest.raises(exceptions.OptionsError, match="guard_max_body"):
        guard.configure(guard_max_body=-1)


def test_an_invalid_policy_is_refused_with_file_and_line(guard: Guard, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  foreign-host: rewrit\n")
    with pytest.raises(exceptions.OptionsError, match=r"bad\.yaml:3:"):
        guard.configure(guard_policy=str(bad))
    assert guard.addon.policy is not None and guard.addon.policy.path.endswith("default.yaml")


@pytest.mark.parametrize(("given", "kept"), [(None, "1048576"), ("5m", "5m")])
def test_mitmproxys_body_limit_defaults_to_the_policys_wire_cap(given: str | None, kept: str) -> None:
    """A bare `mitmdump -s` would otherwise buffer a never-ending chunked answer without limit."""
    addon = AutodiscoverGuard()
    with taddons.context(addon, Proxyserver()) as tctx:
        tctx.options.update(body_size_limit=given)
        addon.configure(set(tctx.options.keys()))
        assert tctx.options.body_size_limit == kept


def test_the_script_shim_exposes_the_http_dns_and_metrics_addons_sharing_one_runtime() -> None:
    with taddons.context() as tctx:
        module = tctx.script(str(ROOT / "addons" / "autodiscover_guard.py"))
        # client identity first (it marks flows before the guard reads them), the JSON console last
        assert [type(a) for a in module.addons] == [ClientIdentity, AutodiscoverGuard, DnsGuard, MetricsEndpoint,
                                                    JsonConsole]
        assert module.addons[1].runtime is module.addons[2].runtime is module.addons[3].runtime


def test_other_traffic_passes_untouched_and_unlogged(guard: Guard) -> None:
    upstream = answer(b"<html>hello</html>", headers={"content-type": "text/html"})
    flow = guard.through(make_flow("https://www.contoso.com/", headers={"authorization": basic("a", "pw")}),
                         upstream)
    assert flow.response is upstream and flow.response.raw_content == b"<html>hello</html>"
    assert "guard.action" not in flow.metadata
    assert guard.lines() == []


# --- answers -------------------------------------------------------------------------------------


def test_the_seed_incident_is_blocked_with_the_formats_own_answer(guard: Guard) -> None:
    upstream = answer(fixture("autodetect__seed_example_com.json"),
                      headers={"content-type": "application/json; charset=utf-8", "x-debug-support": "e30="})
    flow = guard.through(make_flow(AUTODETECT_URL, headers={"x-email": "email@example.com"}), upstream)
    assert flow.response is not None and flow.response.status_code == 404 and flow.response.content == b""
    assert "x-debug-support" not in flow.response.headers
    assert flow.metadata["guard.action"] == "block" and flow.metadata["guard.local"] is True
    line = guard.last()
    assert line["action"] == line["would_action"] == "block"
    assert line["user_domain"] == "example.com" and line["user_source"] == "x-email"
    assert "reserved-user-domain" in line["rules"]  # type: ignore[operator]


def test_audit_mode_passes_the_answer_but_logs_the_block(guard: Guard) -> None:
    guard.configure(guard_mode="audit")
    body = fixture("pox__seed_example_com.xml")
    upstream = answer(body)
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("email@example.com")), upstream)
    assert flow.response is upstream and flow.response.raw_content == body
    line = guard.last()
    assert (line["mode"], line["action"], line["would_action"]) == ("audit", "allow", "block")


def test_an_audit_policy_changes_nothing_either(guard: Guard) -> None:
    guard.configure(guard_policy=str(ROOT / "policies" / "audit.yaml"))
    body = fixture("autodetect__seed_example_com.json")
    flow = guard.through(make_flow(AUTODETECT_URL, headers={"x-email": "email@example.com"}), answer(body))
    assert flow.response is not None and flow.response.raw_content == body
    assert (guard.last()["mode"], guard.last()["would_action"]) == ("audit", "block")


def test_a_benign_answer_is_passed_byte_for_byte(guard: Guard) -> None:
    body = fixture("pox__benign_onprem_exchange.xml")
    upstream = answer(body)
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.response is upstream and flow.response.raw_content == body
    assert guard.last()["action"] == "allow"


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_a_rewrite_keeps_the_good_suggestions_in_an_identity_body(guard: Guard, encoding: str) -> None:
    body = fixture("autoconfig__oauth2_foreign_authurl.xml")
    wire = gzip.compress(body) if encoding else body
    headers = {"content-type": "application/xml"} | ({"content-encoding": encoding} if encoding else {})
    flow = guard.through(make_flow(AUTOCONFIG_URL), answer(wire, headers=headers))
    assert flow.response is not None and flow.metadata["guard.action"] == "rewrite"
    assert "content-encoding" not in flow.response.headers
    assert flow.response.headers["content-length"] == str(len(flow.response.raw_content or b""))
    received = flow.response.raw_content or b""
    assert b"contoso-sso.net" not in received
    hosts = {e.text for e in read_xml(received).iter() if name(e).local == "hostname"}
    assert hosts and all(h is not None and h.endswith("contoso.com") for h in hosts)


def test_hosts_repeated_in_autodetect_headers_are_judged_and_the_headers_dropped(guard: Guard) -> None:
    debug = base64.b64encode(json.dumps([{"Hostname": "imap.collector-mail.net", "Port": 993}]).encode()).decode()
    body = fixture("autodetect__benign_own_domain.json")
    upstream = answer(body, headers={"content-type": "application/json", "x-debug-support": debug})
    flow = guard.through(make_flow(AUTODETECT_URL, headers={"x-email": "bob@northwind-traders.co.uk"}), upstream)
    assert flow.metadata["guard.action"] == "rewrite" and guard.last()["rules"] == ["foreign-host"]
    assert flow.response is not None and flow.response.raw_content == body
    assert "x-debug-support" not in flow.response.headers


def test_a_doh_srv_answer_is_judged_for_the_domain_it_names(guard: Guard) -> None:
    url = "https://dns.google/resolve?name=_autodiscover._tcp.contoso.com&type=SRV"
    upstream = answer(fixture("srv__autodiscover_foreign_target.json"),
                      headers={"content-type": "application/dns-json"})
    flow = guard.through(make_flow(url, headers={"accept": "application/dns-json"}), upstream)
    assert flow.metadata["guard.action"] in ("rewrite", "block")
    assert (guard.last()["format"], guard.last()["user_domain"]) == ("srv", "contoso.com")


def test_a_gzip_encoded_bad_answer_is_blocked(guard: Guard) -> None:
    upstream = answer(gzip.compress(fixture("pox__seed_example_com.xml")),
                      headers={"content-type": "text/xml", "content-encoding": "gzip"})
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("email@example.com")), upstream)
    assert flow.metadata["guard.action"] == "block"
    assert flow.response is not None and b"ErrorCode" in (flow.response.content or b"")  # POX's own error answer


def test_a_decompression_bomb_fails_closed(guard: Guard) -> None:
    upstream = answer(gzip.compress(b" " * (8 * 1024 * 1024)),
                      headers={"content-type": "text/xml", "content-encoding": "gzip"})
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.metadata["guard.action"] == "block"
    assert guard.last()["rules"] == ["malformed"]


def test_guard_max_body_lowers_the_decoded_cap_too(guard: Guard) -> None:
    guard.configure(guard_max_body=1000)
    upstream = answer(gzip.compress(fixture("pox__benign_onprem_exchange.xml")),
                      headers={"content-type": "text/xml", "content-encoding": "gzip"})
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.metadata["guard.action"] == "block" and guard.last()["rules"] == ["malformed"]


def test_an_unknown_content_encoding_fails_closed(guard: Guard) -> None:
    upstream = answer(b"\x1f\x9d junk", headers={"content-type": "text/xml", "content-encoding": "compress"})
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.metadata["guard.action"] == "block"


def test_a_streamed_body_fails_closed(guard: Guard) -> None:
    flow = make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com"))
    upstream = answer(b"")
    upstream.raw_content = None
    guard.through(flow, upstream)
    assert flow.metadata["guard.action"] == "block"
    assert guard.last()["rules"] == ["malformed"]


def test_an_oversized_content_length_is_killed_before_the_body_arrives(guard: Guard) -> None:
    flow = make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com"))
    upstream = answer(b"")
    upstream.headers["content-length"] = str(50 * 1024 * 1024)
    guard.through(flow, upstream)
    assert flow.error is not None and flow.metadata["guard.action"] == "block"
    assert len(guard.lines()) == 1


def test_error_statuses_pass_unjudged_but_logged(guard: Guard) -> None:
    upstream = answer(b"<html>no</html>", status=500, headers={"content-type": "text/html"})
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.response is upstream
    assert guard.last()["action"] == "allow" and guard.last()["status"] == 500


def test_a_discovery_flow_without_an_answer_is_logged_as_an_error_never_as_allowed(guard: Guard) -> None:
    flow = make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com"))
    guard.addon.request(flow)
    flow.error = FlowError("Response body exceeds mitmproxy's body_size_limit.")
    guard.addon.error(flow)
    line = guard.last()
    assert line["notes"] == ["no answer: Response body exceeds mitmproxy's body_size_limit."]
    assert line["action"] == line["would_action"] == "error"
    assert line["error"] == "Response body exceeds mitmproxy's body_size_limit."
    assert flow.metadata["guard.action"] == "error"
    assert guard.addon.runtime.metrics.decisions[("enforce", "error")] == 1


# --- log.required -----------------------------------------------------------------------------------


def _failing_log(guard: Guard, tmp_path: Path, *, required: bool) -> None:
    text = (ROOT / "policies" / "default.yaml").read_text()
    path = policy_copy(tmp_path, text.replace("log:\n", "log:\n  required: true\n") if required else text)
    guard.configure(guard_policy=str(path), guard_log="/dev/full")  # opens; every write fails


def test_log_required_refuses_a_discovery_flow_the_log_cannot_record(guard: Guard, tmp_path: Path) -> None:
    _failing_log(guard, tmp_path, required=True)
    body = fixture("pox__benign_onprem_exchange.xml")
    flow = make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com"))
    guard.addon.request(flow)
    assert flow.response is not None and flow.response.status_code == 503  # before any upstream connection
    assert b"log.required" in (flow.response.content or b"")
    assert guard.addon.runtime.metrics.unlogged_refusals == 1
    guard.configure(guard_mode="audit")
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), answer(body))
    assert flow.response is not None and flow.response.status_code == 503  # in every mode


def test_without_log_required_an_unrecorded_flow_is_judged_and_counted(guard: Guard, tmp_path: Path) -> None:
    _failing_log(guard, tmp_path, required=False)
    body = fixture("pox__benign_onprem_exchange.xml")
    upstream = answer(body)
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.response is upstream and flow.metadata["guard.action"] == "allow"
    assert guard.addon.runtime.metrics.log_write_failures >= 1 and guard.addon.runtime.metrics.unlogged_refusals == 0


# --- audit mode and credentials ---------------------------------------------------------------------


def test_audit_mode_enforces_discovery_under_a_public_suffix_and_says_so(guard: Guard) -> None:
    guard.configure(guard_mode="audit")
    flow = make_flow("https://autodiscover.com.br/autodiscover/autodiscover.xml", method="POST",
                     body=pox_request("user@example.com.br"))
    guard.addon.request(flow)
    assert flow.response is not None and flow.response.status_code == 403
    line = guard.last()
    assert (line["mode"], line["action"], line["enforced_in_audit"]) == ("audit", "block", True)


def test_audit_mode_enforces_a_credential_leak_too(guard: Guard) -> None:
    guard.configure(guard_mode="audit")
    flow = make_flow("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml", method="POST",
                     headers={"authorization": basic("alice@contoso.com", "hunter2")},
                     body=pox_request("alice@contoso.com"))
    guard.addon.request(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert guard.last()["rules"] == [CREDENTIAL_LEAK] and guard.last()["enforced_in_audit"] is True


def test_a_policy_can_let_audit_mode_measure_credential_refusals_only(guard: Guard, tmp_path: Path) -> None:
    text = (ROOT / "policies" / "default.yaml").read_text() + "\naudit:\n  enforce_credential_rules: false\n"
    guard.configure(guard_policy=str(policy_copy(tmp_path, text)), guard_mode="audit")
    flow = make_flow("https://autodiscover.com.br/autodiscover/autodiscover.xml", method="POST",
                     body=pox_request("user@example.com.br"))
    guard.addon.request(flow)
    assert flow.response is None  # goes upstream: audit changes nothing
    line = guard.last()
    assert (line["action"], line["would_action"]) == ("allow", "block") and "enforced_in_audit" not in line


def test_an_empty_answer_carries_no_suggestion(guard: Guard) -> None:
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), answer(b""))
    assert flow.metadata["guard.action"] == "allow"


# --- request side: the credential firewall -------------------------------------------------------


@pytest.mark.parametrize("url", [
    "https://autodiscover.com.br/autodiscover/autodiscover.xml",
    "http://Autodiscover.co.uk/Autodiscover/Autodiscover.xml",
    "https://autoconfig.github.io/mail/config-v1.1.xml",
    "https://com.br/autodiscover/autodiscover.xml",
])
def test_discovery_under_a_public_suffix_is_answered_locally_even_without_credentials(
    guard: Guard, url: str,
) -> None:
    flow = make_flow(url, method="POST", body=pox_request("user@example.com.br"))
    guard.addon.request(flow)
    assert flow.response is not None and flow.response.status_code == 403  # set in `request`: no upstream
    assert DISCOVERY_TLD.encode() in (flow.response.content or b"")
    assert guard.last()["rules"] == [DISCOVERY_TLD] and guard.last()["status"] is None


def test_a_user_of_that_very_domain_may_use_its_discovery_host(guard: Guard) -> None:
    flow = make_flow("https://autodiscover.autodiscover.com.br/autodiscover/autodiscover.xml", method="POST",
                     body=pox_request("ana@autodiscover.com.br"))
    guard.addon.request(flow)
    assert flow.response is None


def test_credentials_never_reach_a_host_the_users_domain_does_not_own(guard: Guard) -> None:
    flow = make_flow("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml", method="POST",
                     headers={"authorization": basic("alice@contoso.com", "hunter2")},
                     body=pox_request("alice@contoso.com"))
    guard.addon.request(flow)
    assert flow.response is not None and flow.response.status_code == 403
    assert guard.last()["rules"] == [CREDENTIAL_LEAK]
    assert "hunter2" not in guard.log.read_text()
    assert base64.b64encode(b"alice@contoso.com:hunter2").decode() not in guard.log.read_text()


@pytest.mark.parametrize("authorization", [basic("alice@contoso.com", "pw"), "Bearer eyJ0eXAi", "NTLM TlRMTVNTUAAB"])
def test_credentials_to_the_users_own_discovery_host_pass(guard: Guard, authorization: str) -> None:
    flow = make_flow(POX_URL, method="POST", headers={"authorization": authorization},
                     body=pox_request("alice@contoso.com"))
    guard.addon.request(flow)
    assert flow.response is None


@pytest.mark.parametrize("authorization", ["NTLM TlRMTVNTUAAB", "Negotiate YIIB", "Bearer eyJ0eXAi"])
def test_every_auth_scheme_counts_as_a_credential(guard: Guard, authorization: str) -> None:
    flow = make_flow("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml", method="POST",
                     headers={"authorization": authorization}, body=pox_request("alice@contoso.com"))
    guard.addon.request(flow)
    assert flow.response is not None and guard.last()["rules"] == [CREDENTIAL_LEAK]


def test_a_password_form_field_counts_as_a_credential(guard: Guard) -> None:
    flow = make_flow("https://autoconfig.collector-mail.net/mail/config-v1.1.xml?emailaddress=alice%40contoso.com",
                     method="POST", headers={"content-type": "application/x-www-form-urlencoded"},
                     body=b"user=alice&password=hunter2")
    guard.addon.request(flow)
    assert flow.response is not None and guard.last()["rules"] == [CREDENTIAL_LEAK]
    assert "hunter2" not in guard.log.read_text()


def test_a_bare_basic_user_id_is_not_a_credential(guard: Guard) -> None:
    flow = make_flow(AUTODETECT_URL, headers={"authorization": basic("email@example.com")})
    guard.addon.request(flow)
    assert flow.response is None


def test_credentials_over_plain_http_are_refused_even_to_the_own_domain(guard: Guard) -> None:
    flow = make_flow(POX_URL.replace("https", "http"), method="POST",
                     headers={"authorization": basic("alice@contoso.com", "pw")}, body=pox_request("alice@contoso.com"))
    guard.addon.request(flow)
    assert flow.response is not None and guard.last()["rules"] == [CREDENTIAL_LEAK]


def test_plain_http_discovery_without_credentials_is_judged_normally(guard: Guard) -> None:
    flow = guard.through(make_flow(POX_URL.replace("https", "http"), method="POST",
                                   body=pox_request("alice@contoso.com")),
                         answer(fixture("pox__benign_onprem_exchange.xml")))
    assert flow.metadata["guard.action"] == "allow"


def test_a_basic_challenge_from_a_host_the_user_does_not_own_is_refused(guard: Guard) -> None:
    upstream = answer(b"", status=401, headers={"www-authenticate": 'Basic realm="mail"'})
    flow = guard.through(make_flow("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml",
                                   method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.response is not upstream and flow.response is not None and flow.response.status_code == 403
    assert "www-authenticate" not in flow.response.headers
    assert guard.last()["rules"] == [CREDENTIAL_LEAK]


def test_a_basic_challenge_from_the_users_own_host_passes(guard: Guard) -> None:
    upstream = answer(b"", status=401, headers={"www-authenticate": 'Negotiate, Basic realm="mail"'})
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.response is upstream


def test_a_basic_challenge_to_a_placeholder_probe_is_not_judged_for_ownership(guard: Guard) -> None:
    # exchangelib probes with DUMMY@example.com to learn the auth type; that address is not the user
    upstream = answer(b"", status=401, headers={"www-authenticate": 'Basic realm="mail"'})
    flow = guard.through(make_flow("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml",
                                   method="POST", body=pox_request("DUMMY@example.com")), upstream)
    assert flow.response is upstream


def test_credentials_following_a_probe_to_a_foreign_host_are_still_refused(guard: Guard) -> None:
    request = make_flow("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml", method="POST",
                        body=pox_request("alice@contoso.com"))
    request.request.headers["authorization"] = "Basic YWxpY2VAY29udG9zby5jb206c2VjcmV0"
    flow = guard.through(request, answer(b"<never/>"))
    assert flow.response is not None and flow.response.status_code == 403
    assert guard.last()["rules"] == [CREDENTIAL_LEAK]


def test_a_basic_challenge_over_plain_http_is_refused(guard: Guard) -> None:
    upstream = answer(b"", status=401, headers={"www-authenticate": 'Basic realm="mail"'})
    flow = guard.through(make_flow(POX_URL.replace("https", "http"), method="POST",
                                   body=pox_request("alice@contoso.com")), upstream)
    assert flow.response is not upstream and guard.last()["rules"] == [CREDENTIAL_LEAK]


# --- redirect walks ------------------------------------------------------------------------------


def redirect(location: str) -> http.Response:
    return answer(b"", status=302, headers={"location": location})


def test_a_302_to_a_foreign_autodiscover_host_is_stopped(guard: Guard) -> None:
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")),
                         redirect("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml"))
    assert flow.response is not None and flow.response.status_code == 403
    assert "location" not in flow.response.headers
    assert guard.last()["rules"] == ["foreign-host"] and guard.last()["format"] == "http-redirect"


def test_each_hop_is_judged_for_the_original_user(guard: Guard) -> None:
    guard.through(make_flow("http://autodiscover.contoso.com/autodiscover/autodiscover.xml"),
                  redirect(POX_URL))
    assert guard.last()["action"] == "allow"
    # the client re-posts there; the body names someone else, but the walk keeps alice's domain
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("mallory@collector-mail.net")),
                         answer(fixture("pox__benign_onprem_exchange.xml")))
    assert flow.metadata["guard.action"] == "allow"
    assert (guard.last()["user_domain"], guard.last()["user_source"]) == ("contoso.com", "redirect")


def test_a_redirect_address_hop_keeps_the_original_user(guard: Guard) -> None:
    redirect_addr = fixture("pox__redirect_addr_foreign.xml").replace(b"alice@collector-mail.net",
                                                                     b"alice@eu.contoso.com")
    guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), answer(redirect_addr))
    assert guard.last()["action"] == "allow"
    guard.through(make_flow("https://autodiscover.eu.contoso.com/autodiscover/autodiscover.xml", method="POST",
                            body=pox_request("alice@eu.contoso.com")),
                  answer(fixture("pox__benign_onprem_exchange.xml")))
    assert (guard.last()["user_domain"], guard.last()["user_source"]) == ("contoso.com", "redirect")


def test_redirects_past_the_hop_limit_are_stopped(guard: Guard, tmp_path: Path) -> None:
    text = (ROOT / "policies" / "default.yaml").read_text().replace("max_redirects: 10", "max_redirects: 1")
    guard.configure(guard_policy=str(policy_copy(tmp_path, text)))
    first = "https://autodiscover.contoso.com/a/autodiscover/autodiscover.xml"
    second = "https://autodiscover.contoso.com/b/autodiscover/autodiscover.xml"
    guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), redirect(first))
    assert guard.last()["action"] == "allow"
    flow = guard.through(make_flow(first, method="POST", body=pox_request("alice@contoso.com")), redirect(second))
    assert flow.metadata["guard.action"] == "block" and guard.last()["rules"] == [REDIRECT_LIMIT]


def test_a_redirect_loop_is_stopped(guard: Guard) -> None:
    other = "https://autodiscover.contoso.com/other/autodiscover/autodiscover.xml"
    guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), redirect(other))
    flow = guard.through(make_flow(other, method="POST", body=pox_request("alice@contoso.com")), redirect(POX_URL))
    assert flow.metadata["guard.action"] == "block" and guard.last()["rules"] == [REDIRECT_LIMIT]


def test_walks_of_different_clients_do_not_mix(guard: Guard) -> None:
    guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com"), client="10.0.0.1"),
                  redirect("https://autodiscover.contoso.com/x/autodiscover/autodiscover.xml"))
    flow = make_flow("https://autodiscover.contoso.com/x/autodiscover/autodiscover.xml", method="POST",
                     body=pox_request("bob@northwind-traders.co.uk"), client="10.0.0.2")
    guard.through(flow, answer(fixture("pox__error_500_not_found.xml")))
    assert guard.last()["user_domain"] == "northwind-traders.co.uk"


def test_pending_redirects_are_bounded_and_expire() -> None:
    pending = PendingRedirects(ttl=10.0, slots=3)
    walk = Walk(None, frozenset())
    for i in range(5):
        pending.offer("c", f"k{i}", walk, now=0.0)
    assert len(pending) == 3 and pending.claim("c", ["k0"], now=1.0) is None
    assert pending.claim("c", ["k4"], now=1.0) is walk
    assert pending.claim("c", ["k4"], now=11.0) is None


# --- failing closed ------------------------------------------------------------------------------


def _explode(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("bug")


def test_an_internal_error_blocks_instead_of_passing_the_answer(guard: Guard,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("guard.proxy.answers.judge", _explode)
    upstream = answer(fixture("pox__benign_onprem_exchange.xml"))
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.response is not upstream and flow.response is not None and flow.response.status_code == 403
    assert guard.last()["rules"] == ["internal-error"]


def test_an_internal_error_passes_when_the_policy_says_on_error_allow(guard: Guard,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    guard.configure(guard_policy=str(ROOT / "policies" / "audit.yaml"), guard_mode="enforce")
    monkeypatch.setattr("guard.proxy.answers.judge", _explode)
    upstream = answer(fixture("pox__benign_onprem_exchange.xml"))
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.response is upstream and guard.last()["rules"] == ["internal-error"]


def _srv_flow(target: bytes) -> dns.DNSFlow:
    """A DNS flow asking for `_imaps._tcp.contoso.com` SRV, answered with one record naming `target`."""
    request = tutils.tdnsreq(questions=[dns.Question("_imaps._tcp.contoso.com", dns_types.SRV, 1)])
    rdata = struct.pack("!HHH", 0, 1, 993) + b"".join(bytes([len(p)]) + p for p in target.split(b".")) + b"\0"
    record = dns.ResourceRecord("_imaps._tcp.contoso.com", dns_types.SRV, 1, 300, rdata)
    response = request.succeed([record])
    return tflow.tdnsflow(req=request, resp=response)


def test_an_internal_error_in_the_dns_hook_refuses_the_answer(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("guard.proxy.dns.judge_answer", _explode)
    flow = _srv_flow(b"imap.contoso.com")
    asyncio.run(guard.dns.dns_response(flow))
    assert flow.response is not None and flow.response.response_code == dns_codes.REFUSED
    assert not flow.response.answers
    line = guard.last()
    assert (line["action"], line["rules"]) == ("block", ["internal-error"])


def test_an_internal_error_in_the_dns_hook_passes_when_the_policy_says_on_error_allow(
        guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    guard.configure(guard_policy=str(ROOT / "policies" / "audit.yaml"), guard_mode="enforce")
    monkeypatch.setattr("guard.proxy.dns.judge_answer", _explode)
    flow = _srv_flow(b"imap.contoso.com")
    upstream = flow.response
    asyncio.run(guard.dns.dns_response(flow))
    assert flow.response is upstream and flow.response is not None and len(flow.response.answers) == 1
    assert guard.last()["rules"] == ["internal-error"]


def test_the_dns_hook_judges_the_same_answer_without_the_fault(guard: Guard) -> None:
    """The control for the two tests above: the flow they build is an ordinary, owned answer."""
    flow = _srv_flow(b"imap.contoso.com")
    asyncio.run(guard.dns.dns_response(flow))
    assert flow.response is not None and flow.response.response_code == dns_codes.NOERROR
    assert guard.last()["action"] == "allow"


def test_an_internal_error_before_the_body_kills_the_flow(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("guard.proxy.addon.hint", _explode)
    flow = make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com"))
    upstream = answer(b"")
    upstream.headers["content-length"] = str(50 * 1024 * 1024)
    guard.through(flow, upstream)
    assert flow.error is not None and len(guard.lines()) == 1


# --- logging, console, metrics -------------------------------------------------------------------


def test_each_discovery_flow_is_logged_exactly_once(guard: Guard) -> None:
    flows = [
        guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")),
                      answer(fixture("pox__benign_onprem_exchange.xml"))),
        guard.through(make_flow("https://autodiscover.com.br/autodiscover/autodiscover.xml")),
        guard.through(make_flow(AUTODETECT_URL, headers={"x-email": "email@example.com"}),
                      answer(fixture("autodetect__seed_example_com.json"))),
        guard.through(make_flow("https://www.contoso.com/"), answer(b"x")),
    ]
    assert [line["id"] for line in guard.lines()] == [f.id for f in flows[:3]]


def test_the_log_hides_local_parts_and_query_addresses(guard: Guard) -> None:
    guard.through(make_flow(AUTOCONFIG_URL), answer(fixture("autoconfig__benign_own_domain.xml")))
    text = guard.log.read_text()
    assert "alice" not in text
    assert guard.last()["user_local_hash"] and str(guard.last()["url"]).endswith("emailaddress=REDACTED")


def test_console_mode_prints_one_human_line(guard: Guard, caplog: pytest.LogCaptureFixture) -> None:
    guard.configure(guard_console=True)
    with caplog.at_level(logging.INFO, logger="guard.proxy.record"):
        guard.through(make_flow(AUTODETECT_URL, headers={"x-email": "email@example.com"}),
                      answer(fixture("autodetect__seed_example_com.json")))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("autodiscover-guard: BLOCK")]
    assert len(lines) == 1 and "example.com" in lines[0] and "email@" not in lines[0]


def test_metrics_count_decisions_by_rule_and_action(guard: Guard, tmp_path: Path) -> None:
    target = tmp_path / "guard.prom"
    guard.configure(guard_metrics=str(target))
    guard.through(make_flow(AUTODETECT_URL, headers={"x-email": "email@example.com"}),
                  answer(fixture("autodetect__seed_example_com.json")))
    guard.addon.tick()
    text, instance = target.read_text(), f'instance="{socket.gethostname()}:8080"'  # host:port by default
    assert f'autodiscover_guard_decisions_total{{{instance},mode="enforce",action="block"}} 1' in text
    assert f'autodiscover_guard_rule_decisions_total{{{instance},rule="reserved-user-domain",action="block"}} 1' in text
    assert f"autodiscover_guard_added_latency_seconds_count{{{instance}}} 1" in text


def test_the_metrics_instance_label_can_be_named(guard: Guard, tmp_path: Path) -> None:
    target = tmp_path / "guard.prom"
    guard.configure(guard_metrics=str(target), guard_instance="gw-a")
    guard.addon.tick()
    assert 'autodiscover_guard_policy_info{instance="gw-a",' in target.read_text()


def test_metrics_are_written_once_more_at_exit(guard: Guard, tmp_path: Path) -> None:
    target = tmp_path / "guard.prom"
    guard.configure(guard_metrics=str(target))
    guard.addon.done()
    assert "autodiscover_guard_policy_info" in target.read_text()


# --- hot reload ----------------------------------------------------------------------------------


def settle(guard: Guard) -> None:
    """Two ticks: a change is taken only once the file has stopped changing for one tick."""
    guard.addon.tick()
    guard.addon.tick()


def test_the_policy_in_force_at_start_is_logged(guard: Guard) -> None:
    assert guard.addon.policy is not None
    assert [e["revision"] for e in guard.lines("policy_loaded")] == [guard.addon.policy.revision]


def test_a_valid_policy_change_swaps_in(guard: Guard, tmp_path: Path) -> None:
    path = policy_copy(tmp_path)
    guard.configure(guard_policy=str(path))
    before = guard.addon.policy
    path.write_text(path.read_text().replace("foreign-host: rewrite", "foreign-host: warn") + "\n# edited\n")
    guard.addon.tick()
    assert guard.addon.policy is before  # not yet: the file might still be being written
    guard.addon.tick()
    assert guard.addon.policy is not before
    assert guard.lines("policy_reloaded")[-1]["revision"] == guard.addon.policy.revision  # type: ignore[union-attr]
    flow = guard.through(make_flow(AUTOCONFIG_URL), answer(fixture("autoconfig__oauth2_foreign_authurl.xml")))
    assert flow.metadata["guard.action"] == "warn"


def test_a_truncated_write_completed_before_it_was_stable_is_never_loaded_half(guard: Guard, tmp_path: Path) -> None:
    path = policy_copy(tmp_path, (ROOT / "policies" / "gateway.example.yaml").read_text())
    guard.configure(guard_policy=str(path))
    whole = path.read_text().replace("max_redirects: 5", "max_redirects: 4")
    path.write_text(whole[: whole.index("discovery_hosts:")])  # still a valid policy, minus its tail
    guard.addon.tick()
    path.write_text(whole)  # the writer finishes before the file was the same on two polls
    settle(guard)
    assert guard.addon.policy is not None and guard.addon.policy.limits.max_redirects == 4
    assert len(guard.lines("policy_reloaded")) == 1  # the truncated text never was in force


def test_a_file_that_changes_during_the_read_is_taken_only_once_stable(guard: Guard, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = policy_copy(tmp_path)
    guard.configure(guard_policy=str(path))
    before = guard.addon.policy
    path.write_text(path.read_text().replace("foreign-host: rewrite", "foreign-host: warn"))
    from guard.proxy import reload

    def load_while_written(where: Path) -> Policy:
        loaded = load_policy(where)
        path.write_text(path.read_text() + "# written during the read\n")
        return loaded

    monkeypatch.setattr(reload, "load_policy", load_while_written)
    settle(guard)
    assert guard.addon.policy is before  # what was read is not what the file says now
    monkeypatch.setattr(reload, "load_policy", load_policy)
    guard.addon.tick()
    assert guard.addon.policy is not None and guard.addon.policy is not before
    assert "written during the read" in Path(guard.addon.policy.path).read_text()


def test_editing_an_included_provider_map_alone_reloads_the_policy(guard: Guard, tmp_path: Path) -> None:
    path = policy_copy(tmp_path)
    guard.configure(guard_policy=str(path))
    before = guard.addon.policy
    providers = tmp_path / "providers.yaml"
    providers.write_text(providers.read_text() + "# edited\n")
    settle(guard)
    assert guard.addon.policy is not before and guard.addon.policy is not None
    assert str(providers) in guard.addon.policy.files
    assert guard.lines("policy_reloaded")[-1]["revision"] == guard.addon.policy.revision


def test_sighup_rereads_the_policy_at_once_and_reopens_the_log(guard: Guard, tmp_path: Path) -> None:
    path = policy_copy(tmp_path)
    guard.configure(guard_policy=str(path))
    path.write_text(path.read_text().replace("foreign-host: rewrite", "foreign-host: warn"))
    guard.log.rename(tmp_path / "decisions.jsonl.1")  # an external rotation without `create`
    guard.addon.runtime.hangup()
    assert [line["reason"] for line in guard.lines("log_reopened")] == ["reopen"]  # the new file, first line
    assert guard.lines("policy_reloaded")[-1]["revision"] == guard.addon.policy.revision  # type: ignore[union-attr]
    flow = guard.through(make_flow(AUTOCONFIG_URL), answer(fixture("autoconfig__oauth2_foreign_authurl.xml")))
    assert flow.metadata["guard.action"] == "warn"


ALIAS_BOMB = "".join(f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]\n" for i in range(1, 9))


@pytest.mark.parametrize(("breakage", "reason"), [
    ("invalid", "expected one of"),
    ("half-written", ""),
    ("deleted", "cannot read policy"),
    ("alias-bomb", "aliases"),
    ("duplicate-key", "duplicate key 'rules'"),
    ("unknown-key", "unknown key 'rulez'"),
])
def test_a_broken_policy_change_is_rejected_and_the_old_one_stays(guard: Guard, tmp_path: Path,
                                                                   breakage: str, reason: str) -> None:
    path = policy_copy(tmp_path)
    guard.configure(guard_policy=str(path))
    before = guard.addon.policy
    text = path.read_text()
    if breakage == "invalid":
        path.write_text(text.replace("foreign-host: rewrite", "foreign-host: rewrit"))
    elif breakage == "half-written":
        path.write_text(text[: text.index("rules:") + 30])
    elif breakage == "deleted":
        path.unlink()
    elif breakage == "alias-bomb":
        path.write_text(text + "x: &b0 [a, a, a, a, a, a, a, a, a]\n" + ALIAS_BOMB)
    elif breakage == "duplicate-key":
        path.write_text(text + "rules: {}\n")
    else:
        path.write_text(text + "rulez: {}\n")
    settle(guard)
    assert guard.addon.policy is before
    rejected = guard.lines("policy_rejected")
    assert len(rejected) == 1 and str(path) in str(rejected[0]["reason"]) and reason in str(rejected[0]["reason"])
    if breakage not in ("half-written", "deleted"):
        assert f"{path}:" in str(rejected[0]["reason"])  # file:line:column
    settle(guard)
    assert len(guard.lines("policy_rejected")) == 1  # reported once, not every second


# --- issue 14: know the user or fail closed, every 3xx, discovery documents on unknown URLs -------


def test_credentials_with_a_user_id_that_is_no_address_are_refused(guard: Guard) -> None:
    flow = make_flow("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml", method="POST",
                     headers={"authorization": basic("alice", "hunter2")})
    guard.addon.request(flow)
    assert flow.response is not None and guard.last()["rules"] == [CREDENTIAL_LEAK]


def test_a_form_body_naming_another_domains_user_keeps_its_password(guard: Guard) -> None:
    flow = make_flow("https://autodiscover.collector-mail.net/autodiscover/autodiscover.xml", method="POST",
                     headers={"content-type": "application/x-www-form-urlencoded"},
                     body=b"email=alice%40contoso.com&password=hunter2")
    guard.addon.request(flow)
    assert flow.response is not None and guard.last()["rules"] == [CREDENTIAL_LEAK]
    assert guard.last()["user_domain"] == "contoso.com"


def test_a_well_known_answer_without_an_address_is_judged_for_the_bare_domain(guard: Guard) -> None:
    flow = guard.through(make_flow("https://example.com/.well-known/autoconfig/mail/config-v1.1.xml"),
                         answer(fixture("autoconfig__seed_example_com.xml")))
    assert flow.metadata["guard.action"] == "block"
    assert (guard.last()["user_domain"], guard.last()["user_source"]) == ("example.com", "bare-host")


def test_an_answer_for_an_unknown_user_owns_nothing(guard: Guard) -> None:
    flow = guard.through(make_flow("https://outlook.office365.com/autodiscover/autodiscover.xml", method="POST"),
                         answer(fixture("pox__benign_onprem_exchange.xml")))
    assert flow.metadata["guard.action"] == "block"
    assert guard.last()["user_source"] == "unknown" and "foreign-host" in guard.last()["rules"]  # type: ignore[operator]


def test_unknown_user_skip_ownership_relaxes_it(guard: Guard, tmp_path: Path) -> None:
    text = (ROOT / "policies" / "default.yaml").read_text() + "\nunknown_user: skip-ownership\n"
    guard.configure(guard_policy=str(policy_copy(tmp_path, text)))
    flow = guard.through(make_flow("https://outlook.office365.com/autodiscover/autodiscover.xml", method="POST"),
                         answer(fixture("pox__benign_onprem_exchange.xml")))
    assert flow.metadata["guard.action"] == "allow"


@pytest.mark.parametrize("status", [300, 305])
def test_every_3xx_location_is_judged(guard: Guard, status: int) -> None:
    upstream = answer(b"", status=status, headers={"location": "https://autodiscover.collector-mail.net/x.xml"})
    flow = guard.through(make_flow(POX_URL, method="POST", body=pox_request("alice@contoso.com")), upstream)
    assert flow.metadata["guard.action"] == "block" and "foreign-host" in guard.last()["rules"]  # type: ignore[operator]


def test_a_discovery_document_on_an_unknown_url_is_judged(guard: Guard) -> None:
    flow = guard.through(make_flow("https://example.com/mailconf.xml"),
                         answer(fixture("autoconfig__seed_example_com.xml"), headers={"content-type": "text/xml"}))
    assert flow.metadata["guard.action"] == "block"
    assert guard.last()["user_source"] == "document-host"


def test_other_xml_on_an_unknown_url_passes_unlogged(guard: Guard) -> None:
    flow = guard.through(make_flow("https://example.com/feed.xml"), answer(b"<rss><channel/></rss>"))
    assert "guard.action" not in flow.metadata and guard.lines() == []


def _txt_flow(domain: str, text: bytes) -> dns.DNSFlow:
    request = tutils.tdnsreq(questions=[dns.Question(domain, dns_types.TXT, 1)])
    response = request.succeed([dns.ResourceRecord(domain, dns_types.TXT, 1, 300, bytes([len(text)]) + text)])
    return tflow.tdnsflow(req=request, resp=response)


def test_a_mailconf_record_naming_a_foreign_host_is_dropped_and_not_remembered(guard: Guard) -> None:
    flow = _txt_flow("fabrikam.com", b"mailconf=https://collector-mail.net/mailconf.xml")
    asyncio.run(guard.dns.dns_response(flow))
    assert flow.response is not None and flow.response.answers == []
    assert (guard.last()["action"], guard.last()["rules"]) == ("rewrite", ["foreign-host"])
    assert len(guard.addon.redirects) == 0


def test_the_url_an_allowed_mailconf_record_names_is_judged_for_the_queried_domain(guard: Guard) -> None:
    flow = _txt_flow("contoso.com", b"mailconf=https://contoso.com/mailconf.xml")
    asyncio.run(guard.dns.dns_response(flow))
    assert flow.response is not None and flow.response.response_code == dns_codes.NOERROR
    assert len(guard.addon.redirects) == 1, guard.lines()
    fetched = make_flow("https://contoso.com/mailconf.xml")
    fetched.client_conn.peername = flow.client_conn.peername
    guard.through(fetched, answer(fixture("autoconfig__benign_own_domain.xml"), headers={"content-type": "text/xml"}))
    line = guard.last()
    assert (line["user_domain"], line["user_source"]) == ("contoso.com", "redirect")


def test_other_txt_answers_pass_unlogged(guard: Guard) -> None:
    flow = _txt_flow("contoso.com", b"v=spf1 -all")
    asyncio.run(guard.dns.dns_response(flow))
    assert guard.lines() == []


def test_a_discovery_document_over_the_cap_on_an_unknown_url_fails_closed(guard: Guard) -> None:
    guard.configure(guard_max_body=2048)
    padding = b"<!--" + b"x" * 4096 + b"--></clientConfig>"
    body = fixture("autoconfig__seed_example_com.xml").replace(b"</clientConfig>", padding)
    flow = guard.through(make_flow("https://example.com/mailconf.xml"),
                         answer(body, headers={"content-type": "text/xml"}))
    assert flow.metadata["guard.action"] == "block" and guard.last()["rules"] == ["malformed"]
