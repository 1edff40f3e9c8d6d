"""Judging DNS answers to mail service lookups (RFC 6186, RFC 8314, MS-OXDISCO SRV), over plain data.

A mail client that looks up `_imaps._tcp.<domain>` connects to whatever target the SRV records
name, with the user's password. The DNS listener of the proxy hands the answer here as plain
records; the judgement is the HTTP side's: the records become the DoH JSON document
`guard.formats.srv` already reads, and `guard.engine.judge` applies the same rules for the user
domain the question names (reserved names, IP literals, foreign hosts, MX evidence when the
policy enables it). A target of `.` means "not offered" (RFC 2782) and is fine.

TXT `mailconf=<URL>` records (myl-discovery, pimalaya's email-lib) name the URL of a domain's
autoconfig document: `judge_mailconf` judges each URL as a suggestion for the queried domain
(the URL's host must be owned by it, same rules as any URL), and the walk keys of the URLs it
allows let the HTTP side judge the fetch for that same user.

What enforce does follows the rule actions: `rewrite` strips the offending SRV records (and the
address records the resolver added for their targets); `block`, or a rewrite that would leave no
usable record, answers REFUSED (see `guard.formats.srv` for why REFUSED rather than NXDOMAIN).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from guard.engine import judge
from guard.formats import srv
from guard.formats.base import extras_only
from guard.model import Action, Decision
from guard.mx import MxAnswer
from guard.names import User
from guard.policy import Policy
from guard.rules import RuleAction

# The mail and autodiscover services judged (srv.py knows more: DAV, JMAP, Sieve pass through).
MAIL_SERVICES = frozenset({
    "_imap", "_imaps", "_pop3", "_pop3s", "_submission", "_submissions", "_autodiscover",
})
SRV = 33
TXT = 16
ANY = 255

# TXT answers carry their suggestions outside any body: judged as extras, dropped record by record.
TXT_MAILCONF = extras_only("txt-mailconf", body_survives=True)


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record as it came off the wire (names already decompressed)."""

    name: str
    rtype: int
    ttl: int
    rdata: bytes


@dataclass(frozen=True, slots=True)
class DnsVerdict:
    """What the guard thinks of one answer, and what enforce changes."""

    decision: Decision
    user: User
    drop_answers: frozenset[int] = frozenset()  # REWRITE: indices into the answer section
    drop_additionals: frozenset[int] = frozenset()  # REWRITE: address records of dropped targets

    @property
    def refuse(self) -> bool:
        """Enforce answers REFUSED instead of the upstream answer."""
        return self.decision.action is Action.BLOCK


def service_domain(qname: str) -> str | None:
    """The user domain of a mail service name (`_imaps._tcp.Example.COM.` → `example.com`), else None."""
    labels = qname.rstrip(".").split(".")
    if len(labels) < 3 or labels[0].lower() not in MAIL_SERVICES or labels[1].lower() != "_tcp":
        return None
    return ".".join(labels[2:])


def service_user(qname: str) -> User | None:
    """Whose lookup a mail service name is (a user known by domain only), else None."""
    domain = service_domain(qname)
    return None if domain is None else User.for_domain(domain, strict=False)


def srv_text(rdata: bytes) -> str:
    """SRV RDATA in presentation form ("priority weight port target."), or the RFC 3597 generic
    form when it does not parse, which `guard.formats.srv` then reports as malformed."""
    try:
        parsed = dns.rdata.from_wire(dns.rdataclass.IN, dns.rdatatype.SRV, rdata, 0, len(rdata))
    except (dns.exception.DNSException, ValueError):
        return f"\\# {len(rdata)} {rdata.hex()}"
    return parsed.to_text()


def judge_answer(qname: str, qtype: int, answers: Sequence[Record], additionals: Sequence[Record],
                 policy: Policy, mx: MxAnswer | None = None) -> DnsVerdict | None:
    """Judge the answer to one question; None when it is not a mail service SRV lookup.

    Never raises for bad input (the engine turns it into `malformed`); a name that is not a
    domain gives a user-less verdict that still judges reserved names and IP literals.
    """
    user = service_user(qname)
    if user is None or qtype not in (SRV, ANY):
        return None
    document = {
        "Status": 0,
        "Answer": [
            {"name": r.name, "type": r.rtype, "TTL": r.ttl, "data": srv_text(r.rdata) if r.rtype == SRV else ""}
            for r in answers
        ],
    }
    decision = judge(json.dumps(document).encode(), user, policy, fmt=srv.FORMAT, mx=mx)
    if decision.action is not Action.REWRITE:
        return DnsVerdict(decision, user)
    dropped = {f.suggestion for f in decision.findings
               if f.suggestion is not None and policy.action_for(f.rule) is RuleAction.REWRITE}
    drop = frozenset(int(s.locator[1]) for s in dropped)
    kept_targets = {_name(s.value) for s in decision.suggestions if s not in dropped}
    gone = {_name(s.value) for s in dropped} - kept_targets
    extra = frozenset(i for i, r in enumerate(additionals) if _name(r.name) in gone)
    return DnsVerdict(decision, user, drop, extra)


def _name(text: str) -> str:
    return text.rstrip(".").lower()


def txt_text(rdata: bytes) -> bytes:
    """TXT RDATA's character-strings joined (RFC 1035 §3.3.14; RFC 7208 §3.3 joins them too)."""
    parts, at = [], 0
    while at < len(rdata):
        size = rdata[at]
        parts.append(rdata[at + 1:at + 1 + size])
        at += 1 + size
    return b"".join(parts)


def judge_mailconf(qname: str, qtype: int, answers: Sequence[Record], policy: Policy,
                   mx: MxAnswer | None = None) -> DnsVerdict | None:
    """Judge the `mailconf=` URLs of a TXT answer for the queried domain; None when it has none.

    Never raises for bad input: an undecodable URL is `malformed` through the engine.
    """
    if qtype not in (TXT, ANY):
        return None
    found = (srv.mailconf_suggestion(txt_text(r.rdata).decode("utf-8", "replace"), "TXT mailconf", ("Answer", i))
             for i, r in enumerate(answers) if r.rtype == TXT)
    urls = [url for url in found if url is not None]
    if not urls:
        return None
    user = User.for_domain(qname.rstrip("."), strict=False)
    decision = judge(b"", user, policy, fmt=TXT_MAILCONF, extra=urls, mx=mx)
    if decision.action is not Action.REWRITE:
        return DnsVerdict(decision, user)
    dropped = {f.suggestion for f in decision.findings
               if f.suggestion is not None and policy.action_for(f.rule) is RuleAction.REWRITE}
    return DnsVerdict(decision, user, frozenset(int(s.locator[1]) for s in dropped))
