"""guard.dnsjudge: SRV answers to mail service lookups judged with the HTTP side's rules."""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from guard.dnsjudge import ANY, SRV, TXT, Record, judge_answer, judge_mailconf, service_domain, srv_text
from guard.model import Action
from guard.policy import Policy

A = 1


def srv(owner: str, text: str) -> Record:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SRV, text)
    wire = rdata.to_wire()
    assert wire is not None
    return Record(owner, SRV, 300, wire)


def address(name: str) -> Record:
    return Record(name, A, 300, bytes([192, 0, 2, 1]))


@pytest.mark.parametrize(
    ("qname", "domain"),
    [
        ("_imaps._tcp.example.com", "example.com"),
        ("_IMAPS._TCP.Kestrel-Post.NET.", "Kestrel-Post.NET"),
        ("_submissions._tcp.mail.heron-mail.org", "mail.heron-mail.org"),
        ("_autodiscover._tcp.contoso.com", "contoso.com"),
        ("_pop3._tcp.a.b", "a.b"),
        ("_caldavs._tcp.kestrel-post.net", None),  # not a mail service: passes unjudged
        ("_imaps._udp.kestrel-post.net", None),
        ("_imaps._tcp", None),
        ("imap.kestrel-post.net", None),
    ],
)
def test_service_domain_is_the_name_after_a_mail_service_label(qname: str, domain: str | None) -> None:
    assert service_domain(qname) == domain


def test_srv_text_reads_wire_rdata_and_marks_garbage_malformed() -> None:
    assert srv_text(srv("x", "10 5 993 imap.kestrel-post.net.").rdata) == "10 5 993 imap.kestrel-post.net."
    assert srv_text(b"\x00\x01") == "\\# 2 0001"


def test_honest_answer_passes_without_findings(default_policy: Policy) -> None:
    verdict = judge_answer("_imaps._tcp.kestrel-post.net", SRV,
                           [srv("_imaps._tcp.kestrel-post.net", "0 1 993 imap.kestrel-post.net.")], [], default_policy)
    assert verdict is not None
    assert verdict.decision.action is Action.ALLOW
    assert verdict.decision.findings == ()
    assert verdict.user.domain == "kestrel-post.net"


def test_not_offered_target_is_no_suggestion(default_policy: Policy) -> None:
    verdict = judge_answer("_pop3s._tcp.kestrel-post.net", SRV, [srv("_pop3s._tcp.kestrel-post.net", "0 0 0 .")], [],
                           default_policy)
    assert verdict is not None
    assert verdict.decision.action is Action.ALLOW
    assert verdict.decision.suggestions == ()


def test_seed_incident_as_srv_is_refused_for_the_reserved_user_domain(default_policy: Policy) -> None:
    verdict = judge_answer("_imaps._tcp.example.com", SRV,
                           [srv("_imaps._tcp.example.com", "0 1 993 imapgms.jnet.sei.co.jp.")], [], default_policy)
    assert verdict is not None
    assert verdict.refuse
    assert verdict.decision.rules[0] == "reserved-user-domain"


def test_foreign_target_beside_an_honest_one_is_stripped_with_its_address(default_policy: Policy) -> None:
    owner = "_imaps._tcp.heron-mail.org"
    answers = [srv(owner, "0 1 993 imap.heron-mail.org."), srv(owner, "10 1 993 imap.mail-collector.biz.")]
    additionals = [address("imap.heron-mail.org"), address("IMAP.Mail-Collector.biz.")]
    verdict = judge_answer(owner, SRV, answers, additionals, default_policy)
    assert verdict is not None
    assert verdict.decision.action is Action.REWRITE
    assert verdict.decision.rules == ("foreign-host",)
    assert verdict.drop_answers == frozenset({1})
    assert verdict.drop_additionals == frozenset({1})


def test_reserved_target_that_is_the_only_record_is_refused(default_policy: Policy) -> None:
    owner = "_submission._tcp.heron-mail.org"
    verdict = judge_answer(owner, SRV, [srv(owner, "0 1 587 smtp.corp.internal.")], [], default_policy)
    assert verdict is not None
    assert verdict.refuse
    assert verdict.decision.rules == ("reserved-domain",)


def test_ip_literal_target_is_flagged(default_policy: Policy) -> None:
    owner = "_autodiscover._tcp.heron-mail.org"
    verdict = judge_answer(owner, SRV, [srv(owner, "0 0 443 10.0.0.5.")], [], default_policy)
    assert verdict is not None
    assert verdict.refuse
    assert verdict.decision.rules == ("ip-literal",)


def test_judged_against_the_question_not_a_cname_target(default_policy: Policy) -> None:
    """A CNAME to another domain's service name does not make that domain the owner."""
    cname = Record("_imaps._tcp.kestrel-post.net", 5, 300, b"")
    answers = [cname, srv("_imaps._tcp.mail-collector.biz", "0 1 993 imap.mail-collector.biz.")]
    verdict = judge_answer("_imaps._tcp.kestrel-post.net", SRV, answers, [], default_policy)
    assert verdict is not None
    assert verdict.refuse
    assert verdict.decision.rules == ("foreign-host",)


def test_unparseable_rdata_is_malformed_and_refused(default_policy: Policy) -> None:
    owner = "_imaps._tcp.kestrel-post.net"
    verdict = judge_answer(owner, SRV, [Record(owner, SRV, 300, b"\x00\x01\x02")], [], default_policy)
    assert verdict is not None
    assert verdict.refuse
    assert verdict.decision.rules == ("malformed",)


def test_any_query_is_judged_and_other_types_are_not(default_policy: Policy) -> None:
    owner = "_imaps._tcp.heron-mail.org"
    answers = [srv(owner, "0 1 993 imap.mail-collector.biz.")]
    assert judge_answer(owner, A, answers, [], default_policy) is None
    verdict = judge_answer(owner, ANY, answers, [], default_policy)
    assert verdict is not None
    assert verdict.refuse


def txt(owner: str, *strings: bytes) -> Record:
    return Record(owner, TXT, 300, b"".join(bytes([len(s)]) + s for s in strings))


def test_a_mailconf_url_on_a_host_the_domain_owns_is_allowed(default_policy: Policy) -> None:
    verdict = judge_mailconf("contoso.com.", TXT, [txt("contoso.com", b"v=spf1 -all"),
                                                  txt("contoso.com", b"mailconf=https://contoso.com/mailconf.xml")],
                             default_policy)
    assert verdict is not None and verdict.decision.action is Action.ALLOW and verdict.user.domain == "contoso.com"


def test_a_mailconf_url_on_a_foreign_host_is_dropped(default_policy: Policy) -> None:
    answers = [txt("fabrikam.com", b"v=spf1 -all"), txt("fabrikam.com", b"mailconf=https://", b"collector-mail.net/x")]
    verdict = judge_mailconf("fabrikam.com", TXT, answers, default_policy)
    assert verdict is not None and verdict.drop_answers == {1}
    assert [(f.rule, f.host) for f in verdict.decision.findings] == [("foreign-host", "collector-mail.net")]


def test_txt_without_mailconf_and_other_types_are_not_judged(default_policy: Policy) -> None:
    assert judge_mailconf("contoso.com", TXT, [txt("contoso.com", b"v=spf1 -all")], default_policy) is None
    assert judge_mailconf("contoso.com", SRV, [txt("contoso.com", b"mailconf=https://x.test/")], default_policy) is None
