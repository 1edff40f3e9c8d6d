"""Issue 17's answers through a real mitmdump with the guard and through `check`: every document two
readers could read differently is refused, the one-reading shapes (Horde's bare root, Exchange
hybrid, `CertPrincipalName None`) pass byte for byte, and no refused answer carries a hostile host
on to the client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import FIXTURES, ROOT, IndexedFixture, indexed_fixtures, pox_request
from tests.e2e.support.proxy import GuardProxy
from tests.e2e.support.upstream import Upstream

pytestmark = pytest.mark.e2e

ISSUE_17 = {
    "soap__decoy_name_other_namespace.xml", "soap__decoy_value_other_namespace.xml",
    "soap__unknown_element_in_user_settings.xml", "soap__nil_redirect_target_with_text.xml",
    "soap__duplicate_error_code.xml", "soap__redirect_address_two_at.xml",
    "soap__redirect_address_code_with_url.xml", "soap__comment_inside_ews_url.xml",
    "pox__redirect_addr_two_at.xml", "pox__pi_inside_server.xml", "autoconfig__comment_inside_hostname.xml",
    "adv2__url_leading_c0_backslash.json", "adv2__url_special_scheme_without_slashes.json",
    "autodetect__fullwidth_ip_literal.json", "mobilesync__benign_horde_bare_root.xml",
    "mobilesync__duplicate_url.xml", "mobilesync__name_before_second_type.xml",
    "pox__image_servicehome_link_local.xml", "pox__benign_certprincipal_none.xml",
    "mobileconfig__subscribed_calendar_payload.xml", "mobileconfig__dns_settings_payload.xml",
    "pox__benign_hybrid_redirect_onmicrosoft.xml", "soap__benign_hybrid_redirect_onmicrosoft.xml",
}
CASES = sorted((c for c in indexed_fixtures() if c.file in ISSUE_17), key=lambda c: c.file)
# where each format is asked for (the path also serves as the format hint)
PATHS = {
    "pox": "/autodiscover/autodiscover.xml", "mobilesync": "/autodiscover/autodiscover.xml",
    "soap": "/autodiscover/autodiscover.svc", "adv2": "/autodiscover/autodiscover.json",
    "autodetect": "/autodetect/detect", "autoconfig": "/mail/config-v1.1.xml", "mobileconfig": "/mobileconfig",
}
HOSTILE = (b"collector-mail.net", b"169.254.169.254", b"\xef\xbc\x90\xef\xbd\x98")  # last: full-width "0x"


def _host(case: IndexedFixture) -> str:
    label = case.file.removesuffix(".xml").removesuffix(".json").replace("_", "-")
    prefix = "autoconfig" if case.format == "autoconfig" else "autodiscover"
    return f"{prefix}.{label}.contoso.com"


@pytest.fixture(scope="module", autouse=True)
def routes(upstream: Upstream) -> None:
    for case in CASES:
        upstream.add_route(_host(case), "*", body=case.path.read_bytes(),
                           headers={"content-type": "application/json" if case.file.endswith(".json") else "text/xml"})


def test_the_list_names_only_indexed_fixtures() -> None:
    assert {c.file for c in CASES} == ISSUE_17


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_an_issue_17_answer_gets_its_verdict_through_the_proxy(case: IndexedFixture, enforcing: GuardProxy) -> None:
    before = len(enforcing.decisions())
    url = f"https://{_host(case)}{PATHS[case.format]}"
    headers = {"X-Email": case.user}
    session = enforcing.session()
    if case.format in ("pox", "mobilesync", "soap"):
        response = session.post(url, data=pox_request(case.user), headers=headers | {"content-type": "text/xml"},
                                timeout=20)
    else:
        response = session.get(url, headers=headers, timeout=20)
    line = enforcing.last_decision(before)
    if case.verdict == "allow":
        assert line["action"] == "allow", line
        assert response.content == case.path.read_bytes()
    else:
        assert line["action"] in ("block", "rewrite"), line
        assert set(case.rules) <= set(line["rules"]), line
        assert not any(host in response.content for host in HOSTILE), response.content[:400]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.file)
def test_check_gives_the_same_verdict(case: IndexedFixture) -> None:
    result = subprocess.run([sys.executable, "-m", "guard.cli", "check", "--json", "--email", case.user,
                             str(FIXTURES / case.file)], capture_output=True, text=True, check=False, cwd=ROOT)
    verdict = json.loads(result.stdout.splitlines()[0])
    assert (verdict["verdict"], result.returncode) == (case.verdict, 0 if case.verdict == "allow" else 1)
    assert set(case.rules) <= {f["rule"] for f in verdict["findings"]}
