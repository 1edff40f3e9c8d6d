"""Autodiscover v2 (`autodiscover.json`): one `Url` per answer (formats.md §2).

No Microsoft specification exists; the shapes are the observed ones:
success `{"Protocol": "<P>", "Url": "<absolute URL>"}` and error
`{"ErrorCode": "<code>", "ErrorMessage": "<text>"}` (HTTP 400 for `InvalidProtocol`). Unknown extra
keys are ignored, wrong types are malformed. `Protocol: AutodiscoverV1` hands the client the URL of
a POX endpoint (§1) to POST its request and credentials to — a v1 redirect in disguise — so it is
judged with role AUTODISCOVER.

Block: HTTP 404 with a v2 error body. 404 is what every domain without a v2 endpoint answers,
the most common answer there is, so Outlook and the AutoDetect service treat it as "no v2 here" and
carry on with the next discovery method (each judged again by the guard) or manual set-up. A 400
`InvalidProtocol` would instead invite a retry with another `Protocol` value at the same endpoint,
and a 5xx a retry of the same request.
"""

from __future__ import annotations

from collections.abc import Sequence

from guard.errors import MalformedDocument
from guard.formats._json import as_obj, dump_json, load_json, optional, refuse_foreign_keys
from guard.formats.base import Format
from guard.model import Parsed, Reply, Role, Suggestion, ValueKind

NAME = "adv2"

# Protocol values seen in the wild (formats.md §2), compared case-insensitively like the servers do.
_ROLES = {
    "autodiscoverv1": Role.AUTODISCOVER,
    "activesync": Role.EAS,
    "ews": Role.EWS,
    "rest": Role.WEB,
    "substrate": Role.WEB,
    "substratenotificationservice": Role.WEB,
    "substratesearchservice": Role.WEB,
    "outlookmeetingscheduler": Role.WEB,
}


def parse(body: bytes) -> Parsed:
    """Read a v2 answer: a `Url` suggestion, or an error answer without one."""
    root = as_obj(load_json(body), "")
    refuse_foreign_keys(root, NAME)
    protocol = optional(root, "Protocol", "", str)
    url = optional(root, "Url", "", str)
    error = optional(root, "ErrorCode", "", str)
    optional(root, "ErrorMessage", "", str)  # type-checked only
    if url is None:
        if error is None:
            raise MalformedDocument("neither Url nor ErrorCode: not an Autodiscover v2 answer")
        return Parsed(NAME, (), error_answer=True)
    # a Url is followed even next to an ErrorCode, so it is judged whatever else the body says
    role = _ROLES.get((protocol or "").lower(), Role.OTHER)
    return Parsed(NAME, (Suggestion(url, ValueKind.URL, role, "Url", locator=("Url",)),))


def rewrite(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """The only suggestion is `Url`: without it nothing usable remains, so never a partial answer."""
    return None if any(s in parsed.suggestions for s in drop) else body


_BLOCK = Reply(
    404,
    "application/json; charset=utf-8",
    dump_json({"ErrorCode": "NotFound", "ErrorMessage": "No Autodiscover v2 settings (autodiscover-guard)."}),
)


def block() -> Reply:
    """404 with a v2 error body: the client moves on to its next discovery method (see module doc)."""
    return _BLOCK


FORMAT = Format(name=NAME, parse=parse, rewrite=rewrite, block=block)
