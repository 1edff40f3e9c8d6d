"""Applying a decision to a flow (enforce mode only): a local answer, a rewritten body, a refused lookup."""

from __future__ import annotations

from mitmproxy import ctx, dns, http
from mitmproxy.net.dns import response_codes

from guard.dnsjudge import DnsVerdict
from guard.formats.base import GENERIC_BLOCK
from guard.model import Action, Decision
from guard.redact import redact_text

LOCAL = "guard.local"  # flow.metadata key: the guard answered this flow itself

# What mitmweb and mitmproxy's console show for a decision: the comment's verb (as applied, or
# "would …" in audit mode) and the marker (mitmproxy's emoji shortcodes, matched by `~marker`).
VERBS = {Action.ALLOW: "allowed", Action.WARN: "warned", Action.REWRITE: "rewritten", Action.BLOCK: "blocked"}
MARKERS = {Action.WARN: ":yellow_circle:", Action.REWRITE: ":orange_circle:", Action.BLOCK: ":red_circle:"}


def apply_http(flow: http.HTTPFlow, decision: Decision, *, kill: bool) -> None:
    """A fresh local answer for a block (never in responseheaders, where mitmproxy would still
    stream the upstream body), a new identity-encoded body and fewer headers for a rewrite."""
    if decision.action is Action.BLOCK:
        if kill:
            if flow.killable:
                flow.kill()  # type: ignore[no-untyped-call]
            return
        reply = decision.reply or GENERIC_BLOCK
        flow.response = http.Response.make(reply.status, reply.body, {"content-type": reply.content_type})
        flow.metadata[LOCAL] = True
        return
    response = flow.response
    assert response is not None
    for name in decision.drop_headers:
        response.headers.pop(name, None)
    if decision.body is not None:
        response.headers.pop("content-encoding", None)
        response.set_content(decision.body)  # fixes Content-Length


def apply_dns(flow: dns.DNSFlow, decision: Decision, verdict: DnsVerdict | None) -> None:
    """REFUSED for a block, the answer without the dropped records for a rewrite."""
    response = flow.response
    assert response is not None
    if decision.action is Action.BLOCK or verdict is None:
        flow.response = flow.request.fail(response_codes.REFUSED)
        return
    response.answers = [r for i, r in enumerate(response.answers) if i not in verdict.drop_answers]
    response.additionals = [r for i, r in enumerate(response.additionals) if i not in verdict.drop_additionals]


def annotate(flow: http.HTTPFlow | dns.DNSFlow, decision: Decision, *, applied: bool) -> None:
    """Show the decision where mitmweb users look: the flow's comment (action, rules, the first
    finding's message with addresses redacted as in the log) and a marker per action.

    `applied` is False in audit mode, where the comment says what enforce "would" have done.
    """
    action = decision.action
    verb = VERBS[action] if applied or action is Action.ALLOW else f"would be {VERBS[action]}"
    rules = f" ({', '.join(decision.rules)})" if decision.rules else ""
    message = f": {redact_text(decision.findings[0].message)}" if decision.findings else ""
    flow.comment = f"autodiscover-guard: {verb}{rules}{message}"
    flow.marked = MARKERS.get(action, "")


def hang_up_upstream(flow: http.HTTPFlow) -> None:
    """Close the HTTP/1 upstream connection of a flow abandoned mid-answer (over a cap, killed).

    mitmproxy 12 stops reading such a connection but leaves it open: its read task is then
    referenced only from a garbage cycle, so the socket lives until the next full collection and
    a hostile server could hold one per answer. mitmproxy 11 closes it itself; closing twice is
    harmless. This reaches into proxyserver internals, so whatever is missing means "do nothing".
    """
    server = flow.server_conn
    if not server.connected or flow.response is None or flow.response.http_version not in ("HTTP/1.0", "HTTP/1.1"):
        return  # an HTTP/2 connection carries other flows' streams
    try:
        proxyserver = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
    except AttributeError:
        return  # no running master (replay)
    handler = getattr(proxyserver, "connections", {}).get(flow.client_conn.id)
    transport = getattr(handler, "transports", {}).get(server)
    writer = getattr(transport, "writer", None)
    if writer is not None and not writer.is_closing():
        writer.close()
