"""The benign corpus (tests/benign/README.md): answers real servers render and Microsoft documents, all
allowed by the default policy — the guard's refusals of ambiguous documents cost no honest answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard.engine import judge
from guard.model import Action
from guard.names import User
from guard.policy import Policy

BENIGN = Path(__file__).resolve().parent / "benign"
ANSWERS = sorted(p for p in BENIGN.iterdir() if p.suffix in (".xml", ".json"))
# adv2 bodies are recognised by their keys; the URL is what a client would have asked
URLS = {".json": "https://autodiscover.contoso.com/autodiscover/autodiscover.json"}


def test_the_corpus_covers_every_server_and_the_formats_they_speak() -> None:
    assert {p.name.split("__")[0] for p in ANSWERS} == {"automx2", "automua", "mailcow", "mailinabox", "zpush",
                                                        "horde", "microsoft"}
    assert len(ANSWERS) >= 19


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda p: p.name)
def test_a_third_party_answer_is_allowed_by_the_default_policy(answer: Path, default_policy: Policy) -> None:
    decision = judge(answer.read_bytes(), User.from_address("alice@contoso.com"), default_policy,
                     url=URLS.get(answer.suffix, ""))
    # allowed: nothing removed or blocked (a `plaintext` warning is logged, not acted on: automua's profile
    # sets OutgoingMailServerUseSSL false for SMTP on 587)
    assert decision.verdict == "allow" and decision.action in (Action.ALLOW, Action.WARN), decision.findings
    assert {f.rule for f in decision.findings} <= {"plaintext"}
