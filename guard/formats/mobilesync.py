"""Exchange POX Autodiscover, ActiveSync (mobilesync) response schema (formats.md §1c, MS-ASCMD §6.2).

The envelope is checked as for POX (`_exchange.responses`): `Autodiscover` in the base
namespace, each `Response` in the mobilesync namespace or, for a protocol error, the base one.

Suggestions: `Action/Settings/Server` `Url` and, for `Type` MobileSync, `Name` — both carry the
EAS URL (MS-ASCMD §2.2.3.120.1 Name, §2.2.3.188 Url); a CertEnroll server's `Url` names the
certificate enrolment host, role OTHER. `Action/Redirect` is an SMTP address the device re-runs
Autodiscover for: EMAIL, role REDIRECT. `Action/Error` and `Response/Error` make an
error answer.

Rewrite unit: the `Server`. A dropped redirect, or no MobileSync server left, gives None — a
certificate enrolment server alone configures nothing.

Block: HTTP 200 with `Response/Error` ErrorCode 600 "Invalid Request" in the mobilesync
namespace, the error shape of MS-ASCMD's §4.2 error example (with the namespace quoted, which the
spec's example forgets) and of §2.2.3.64 ErrorCode. It holds no `Action`, so nothing to
redirect to or sync with, and the device falls back to asking for the server by hand. 600 rather
than 601: 601 says the response schema is not served, which invites a retry with another schema.
The mobilesync namespace (not the base one) keeps the answer recognisably ActiveSync for devices
and for `formats.detect`.
"""

from __future__ import annotations

from collections.abc import Sequence

from guard.formats._exchange import MOBILESYNC_NS, Found, cut, error_reply, leaf, once, read_answer
from guard.formats._xml import Element, kid, named_children
from guard.formats.base import Format
from guard.model import Parsed, Reply, Role, Suggestion, ValueKind

NAME = "mobilesync"


# Elements a device reads one of (MS-ASCMD §2.2.3): a second copy is malformed.
_SERVER_ONCE = frozenset({"type", "url", "name", "serverdata"})
_ACTION_ONCE = frozenset({"redirect", "settings", "error"})


def _server(server: Element, path: str, out: Found) -> None:
    """One `Settings/Server`: `Url` always, `Name` when its one `Type` (before or after it) is
    MobileSync; a CertEnroll `Name` is free text ("Certificate Server"), not a place to go."""
    children = named_children(server, path + "/")
    once(children, _SERVER_ONCE)
    kind = kid(server, "type")
    mobile = kind is not None and leaf(kind, path + "/Type").strip().lower() == "mobilesync"
    role = Role.EAS if mobile else Role.OTHER
    for child, child_name, field in children:
        if child_name.key == "url" or (child_name.key == "name" and mobile):
            out.add(child, field, role, server, container=server)


def _action(action: Element, prefix: str, out: Found) -> bool:
    """Suggestions of one `Action`; True when it carries an `Error`."""
    error = False
    children = named_children(action, prefix)
    once(children, _ACTION_ONCE)
    for child, child_name, field in children:
        tag = child_name.key
        if tag == "redirect":
            out.add(child, field, Role.REDIRECT, child, kind=ValueKind.EMAIL)
        elif tag == "settings":
            for server, server_name, server_field in named_children(child, field + "/"):
                if server_name.key == "server":
                    _server(server, server_field, out)
        elif tag == "error":
            error = True
    return error


def _read(body: bytes) -> tuple[Found, bool]:
    return read_answer(body, MOBILESYNC_NS, "action", _action)


def parse(body: bytes) -> Parsed:
    """Read a mobilesync answer completely, or raise `UntrustedInputError`."""
    found, error = _read(body)
    return Parsed(NAME, tuple(found.suggestions), error_answer=error and not found.suggestions)


def _syncs(suggestion: Suggestion) -> bool:
    return suggestion.role is Role.EAS


def rewrite(body: bytes, parsed: Parsed, drop: Sequence[Suggestion]) -> bytes | None:
    """Remove the `Server`s holding `drop`; None for a redirect or when no MobileSync server remains."""
    return cut(body, parsed, drop, _syncs)


_BLOCK = error_reply(MOBILESYNC_NS, 600, "Invalid Request")


def block() -> Reply:
    """The mobilesync ErrorCode 600 answer (see module doc)."""
    return _BLOCK


FORMAT = Format(name=NAME, parse=parse, rewrite=rewrite, block=block)
