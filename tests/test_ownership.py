"""Ownership: registrable domains, provider maps and allowlists."""

from __future__ import annotations

import subprocess
import sys
import time

from guard.ownership import EVIDENCE_SLOTS, Trust, TrustEntry, owner_evidence, public_suffix, registrable


def test_registrable_domain_uses_the_bundled_public_suffix_list() -> None:
    assert registrable("imap.northwind-traders.co.uk") == "northwind-traders.co.uk"
    assert registrable("imapgms.jnet.sei.co.jp") == "sei.co.jp"
    assert public_suffix("autodiscover.com.br") == "com.br"


def test_names_without_a_public_suffix_have_no_registrable_domain() -> None:
    assert registrable("mail.corp.internal") == ""
    assert registrable("10.0.0.1") == ""
    assert registrable("co.uk") == ""


def test_empty_registrable_domains_never_match_each_other() -> None:
    assert owner_evidence("corp.internal", "mail.corp.internal", Trust()) is None


def test_same_registrable_domain_is_owned() -> None:
    assert owner_evidence("contoso.com", "mail.internal.contoso.com", Trust()) is not None


def test_private_psl_section_separates_tenants() -> None:
    assert owner_evidence("alice.github.io", "mallory.github.io", Trust()) is None


def _trust() -> Trust:
    return Trust.build([
        TrustEntry("Outlook.com", "test", ("hotmail.*", "msn.com"), ("office365.com",)),
        TrustEntry("Hoster", "test", ("*.corp.example",), ("mailhost.example-hoster.net",)),
        TrustEntry("M365", "test", ("*",), ("outlook.com",), weak=True),
    ])


def test_provider_map_vouches_only_when_one_entry_lists_both() -> None:
    trust = _trust()
    assert owner_evidence("hotmail.co.uk", "outlook.office365.com", trust) is not None
    assert owner_evidence("msn.com", "outlook.office365.com", trust) is not None
    assert owner_evidence("contoso.com", "outlook.office365.com", trust) is None
    assert owner_evidence("hotmail.co.uk", "mailhost.example-hoster.net", trust) is None


def test_brand_patterns_match_the_brand_under_any_public_suffix_only() -> None:
    trust = _trust()
    assert owner_evidence("hotmail.com.br", "outlook.office365.com", trust) is not None
    assert owner_evidence("nothotmail.com", "outlook.office365.com", trust) is None
    assert owner_evidence("hotmail.evil.com", "outlook.office365.com", trust) is None


def test_subdomain_patterns_and_host_suffixes() -> None:
    trust = _trust()
    assert owner_evidence("sub.corp.example", "mailhost.example-hoster.net", trust) is not None
    assert owner_evidence("sub.corp.example", "x.mailhost.example-hoster.net", trust) is not None
    assert owner_evidence("sub.corp.example", "example-hoster.net", trust) is None


def test_any_user_entries_are_reported_as_weak_evidence() -> None:
    evidence = owner_evidence("fabrikam.com", "outlook.outlook.com", _trust())
    assert evidence is not None
    assert "weak evidence" in evidence


def test_lookup_cost_does_not_grow_with_the_number_of_entries() -> None:
    small = Trust.build([TrustEntry(f"p{i}", "t", (f"d{i}.com",), (f"h{i}.net",)) for i in range(10)])
    large = Trust.build([TrustEntry(f"p{i}", "t", (f"d{i}.com",), (f"h{i}.net",)) for i in range(10_000)])

    def cost(trust: Trust) -> float:
        start = time.perf_counter()
        for _ in range(2000):
            trust.vouch("d5.com", "imap.h5.net")
            trust.vouch("nobody.com", "imap.h5.net")
        return time.perf_counter() - start

    cost(small)
    # generous bound: a scan over 10,000 entries would be ~1000x slower, a hash lookup ~1x
    assert cost(large) < cost(small) * 5 + 0.05


def test_remembered_evidence_is_forgotten_when_an_entry_is_added() -> None:
    trust = _trust()
    assert owner_evidence("fabrikam.com", "imap.newhost.example", trust) is None  # now remembered
    trust.add(TrustEntry("New", "test", ("fabrikam.com",), ("newhost.example",)))
    assert owner_evidence("fabrikam.com", "imap.newhost.example", trust) == "New (test)"


def test_remembered_evidence_stays_bounded() -> None:
    trust = _trust()
    for i in range(EVIDENCE_SLOTS + 10):
        assert owner_evidence(f"u{i}.example", "imap.office365.com", trust) is None
    assert owner_evidence("hotmail.de", "imap.office365.com", trust) == "Outlook.com (test)"
    assert len(trust._evidence) <= EVIDENCE_SLOTS


def test_loading_the_suffix_list_builds_it_up_front() -> None:
    """`running` calls it so the first discovery flow does not pay for tldextract's lazy build."""
    probe = ("import guard.ownership as o; built = lambda: o._EXTRACT._extractor is not None; "
             "before = built(); o.load_suffix_list(); print(before, built())")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
