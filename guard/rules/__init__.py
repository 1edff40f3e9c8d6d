"""The rules: the catalogue of ids and actions, and the functions that raise each finding.

`catalogue` is the one table of rule ids; `answer` judges suggestions in an answer, `request`
judges a discovery request and the challenges around it (proxy only), `walk` judges redirect walks.
"""

from guard.rules.answer import (
    Subject,
    foreign_host,
    idn_lookalike,
    ip_literal,
    plaintext,
    reserved_domain,
    reserved_user_domain,
)
from guard.rules.catalogue import (
    CONFIG_CHANGED,
    CREDENTIAL_LEAK,
    DEFAULT_ACTIONS,
    DISCOVERY_TLD,
    FOREIGN_HOST,
    IDN_LOOKALIKE,
    INTERNAL,
    INTERNAL_ERROR,
    IP_LITERAL,
    MALFORMED,
    PLAINTEXT,
    REDIRECT_LIMIT,
    RESERVED_DOMAIN,
    RESERVED_USER_DOMAIN,
    RULES,
    Rule,
    RuleAction,
    Side,
)

__all__ = [
    "CONFIG_CHANGED", "CREDENTIAL_LEAK", "DEFAULT_ACTIONS", "DISCOVERY_TLD", "FOREIGN_HOST", "IDN_LOOKALIKE",
    "INTERNAL", "INTERNAL_ERROR", "IP_LITERAL", "MALFORMED", "PLAINTEXT", "REDIRECT_LIMIT", "RESERVED_DOMAIN",
    "RESERVED_USER_DOMAIN", "RULES", "Rule", "RuleAction", "Side", "Subject", "foreign_host", "idn_lookalike",
    "ip_literal", "plaintext", "reserved_domain", "reserved_user_domain",
]
