"""The rule catalogue: every rule id, its default action, whether `rewrite` may apply, which side it judges.

Rule ids are a contract shared by the CLI, the decision log and policies; they are never renamed.
Policy loading, the CLI, pins and the proxy read this table; docs/rules.md describes each rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class RuleAction(StrEnum):
    """What the policy does when a rule fires."""

    BLOCK = "block"
    REWRITE = "rewrite"
    WARN = "warn"
    OFF = "off"


class Side(StrEnum):
    """What a rule looks at."""

    ANSWER = "answer"  # one suggestion or the whole answer (check, proxy, canary)
    REQUEST = "request"  # the request or the walk around answers (proxy only)
    GUARD = "guard"  # the guard itself (internal-error: the policy's on_error decides)


@dataclass(frozen=True, slots=True)
class Rule:
    """One catalogue entry. `no_rewrite` says why `rewrite` is refused for it (empty: it may rewrite)."""

    id: str
    default: RuleAction
    side: Side
    doc: str
    no_rewrite: str = ""

    @property
    def may_rewrite(self) -> bool:
        """Removing the offending suggestions is a meaningful fix for this rule."""
        return not self.no_rewrite


RESERVED_USER_DOMAIN = "reserved-user-domain"
RESERVED_DOMAIN = "reserved-domain"
IP_LITERAL = "ip-literal"
FOREIGN_HOST = "foreign-host"
IDN_LOOKALIKE = "idn-lookalike"
PLAINTEXT = "plaintext"
MALFORMED = "malformed"
INTERNAL_ERROR = "internal-error"
DISCOVERY_TLD = "discovery-tld"
CREDENTIAL_LEAK = "credential-leak"
REDIRECT_LIMIT = "redirect-limit"
CONFIG_CHANGED = "config-changed"

_B, _R, _W = RuleAction.BLOCK, RuleAction.REWRITE, RuleAction.WARN

RULES: Mapping[str, Rule] = MappingProxyType({rule.id: rule for rule in (
    Rule(RESERVED_USER_DOMAIN, _B, Side.ANSWER, "the user's own mail domain is reserved or special-use",
         "no suggestion for a reserved domain is legitimate"),
    Rule(RESERVED_DOMAIN, _R, Side.ANSWER, "a suggested host is under a reserved or special-use name"),
    Rule(IP_LITERAL, _R, Side.ANSWER, "a suggested host is an IP literal, in any form a resolver accepts"),
    Rule(FOREIGN_HOST, _R, Side.ANSWER, "nothing says the host belongs to the user's domain"),
    Rule(IDN_LOOKALIKE, _R, Side.ANSWER, "the host's Unicode form imitates the user's domain"),
    Rule(PLAINTEXT, _W, Side.ANSWER, "the suggestion uses no transport security"),
    Rule(MALFORMED, _B, Side.ANSWER, "the answer is not fully parseable or names an invalid host"),
    Rule(DISCOVERY_TLD, _B, Side.REQUEST, "a discovery request to a name directly under a public suffix"),
    Rule(CREDENTIAL_LEAK, _B, Side.REQUEST,
         "credentials or a Basic challenge between the client and a host the user's domain does not own"),
    Rule(REDIRECT_LIMIT, _B, Side.REQUEST, "a redirect chain loops or runs past limits.max_redirects"),
    Rule(CONFIG_CHANGED, _W, Side.ANSWER, "an accepted answer differs from the domain's pin",
         "a change is about the whole answer"),
)})

# Not configurable under `rules:`: the policy's `on_error` decides.
INTERNAL = Rule(INTERNAL_ERROR, _B, Side.GUARD, "the guard itself failed", "nothing is left to rewrite")

DEFAULT_ACTIONS: Mapping[str, RuleAction] = MappingProxyType({rule.id: rule.default for rule in RULES.values()})
