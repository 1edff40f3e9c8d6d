"""The legitimate-traffic corpus: the default policy must flag almost none of the ISPDB."""

from __future__ import annotations

import pytest

from guard.corpus import claimed_domains, judge_folder
from guard.policy import Policy
from tests.conftest import FIXTURES, SHARED

ISPDB = SHARED / "corpus" / "ispdb"


def test_claimed_domains_are_read_from_the_domain_list() -> None:
    body = (FIXTURES / "autoconfig__benign_own_domain.xml").read_bytes()
    assert claimed_domains(body) == ["northwind-traders.co.uk", "northwind.co.uk"]
    assert claimed_domains(b"<broken") == []


@pytest.mark.skipif(not ISPDB.is_dir(), reason="../shared/corpus/ispdb is not present")
def test_default_policy_flags_at_most_two_percent_of_ispdb_pairs(default_policy: Policy) -> None:
    *_, (_name, summary, _new) = judge_folder(ISPDB, default_policy)
    assert summary.pairs > 1000
    print(f"ISPDB: {summary.as_dict()}")
    assert summary.flagged_rate <= 0.02, sorted({(f.provider, f.host) for f in summary.flagged})[:40]
