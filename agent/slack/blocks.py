"""Block Kit messages: an incident's thread root, an approval request with buttons, and its verdict.

Everything that comes from data (titles, evidence, arguments) is escaped, so text inside the data can
neither mention people nor format links. Buttons carry ids only: the handler reads everything else from
the ops database, so a forged value can name a request but never change what it does.
"""

from __future__ import annotations

import json
from typing import Any

from pipelines.incidents import Incident
from policies.approvals import Approval

APPROVE = "dataops_approve"
DENY = "dataops_deny"
_ICON = {"open": "🔴", "acknowledged": "🟠", "remediating": "🛠️", "resolved": "✅", "escalated": "🚨"}
_LIMIT = 2800  # a section's text holds 3000 characters


def escape(text: str) -> str:
    """Slack mrkdwn escaping: data is shown, never interpreted (no <@U..> mentions, no <!channel>, no links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int = _LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text)}}


def incident_text(incident: Incident) -> str:
    return f"{_ICON.get(incident.status, '•')} [{incident.severity}] incident {incident.id} {incident.status}: {incident.title}"


def incident_blocks(incident: Incident) -> list[dict[str, Any]]:
    """The thread root: what, where, evidence, severity, status."""
    where = incident.table + (f" · {incident.partition}" if incident.partition else "")
    evidence = json.dumps(incident.evidence[-1] if incident.evidence else {}, default=str, indent=None)
    fields = [
        {"type": "mrkdwn", "text": f"*Status*\n{_ICON.get(incident.status, '')} {incident.status}"},
        {"type": "mrkdwn", "text": f"*Severity*\n{incident.severity}"},
        {"type": "mrkdwn", "text": f"*Where*\n`{escape(where)}`"},
        {"type": "mrkdwn", "text": f"*Seen*\n{incident.occurrences}× since {incident.detected_at:%Y-%m-%d %H:%M} UTC"},
    ]
    return [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"Incident {incident.id}: {incident.kind}", 150)}},
        _section(f"*What* {escape(incident.title)}"),
        {"type": "section", "fields": fields},
        _section(f"*Evidence*\n```{escape(_cut(evidence, 1500))}```"),
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"`dataops incident {incident.id}` · cause `{escape(incident.cause_key)}`"}],
        },
    ]


def _call(approval: Approval) -> str:
    args = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in approval.arguments.items())
    return f"`{escape(approval.tool)}({escape(args)})`"


def approval_blocks(approval: Approval) -> list[dict[str, Any]]:
    """A pending request with Approve / Deny buttons, or its verdict once decided or expired."""
    who = ", ".join(f"<@{a}>" if a[:1] in "UW" else (f"<!subteam^{a}>" if a[:1] == "S" else escape(a)) for a in approval.approvers)
    blocks = [
        _section(f"*Approval needed* for {_call(approval)}"),
        _section(f"*Why:* {escape(approval.reason)}\n*Policy rule:* `{approval.rule}`\n*Approvers:* {who}"),
    ]
    if approval.status == "pending":
        blocks.append(
            {
                "type": "actions",
                "block_id": f"approval:{approval.id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "style": "primary",
                        "value": approval.id,
                        "text": {"type": "plain_text", "text": "Approve"},
                    },
                    {
                        "type": "button",
                        "action_id": DENY,
                        "style": "danger",
                        "value": approval.id,
                        "text": {"type": "plain_text", "text": "Deny"},
                    },
                ],
            }
        )
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"`{approval.id}` · expires {approval.expires_at:%Y-%m-%d %H:%M} UTC"}],
            }
        )
    else:
        blocks.append(_section(verdict_text(approval)))
    return blocks


def verdict_text(approval: Approval) -> str:
    if approval.status == "expired":
        return f"⌛ *Expired* unanswered at {approval.expires_at:%Y-%m-%d %H:%M} UTC; the agent escalated instead."
    mark = "✅ *Approved*" if approval.status == "approved" else "⛔ *Denied*"
    by = approval.decided_by or "?"
    who = f"<@{by}>" if by[:1] in "UW" else escape(by)
    reason = f": {escape(approval.decision_reason)}" if approval.decision_reason else ""
    return f"{mark} by {who}{reason}"


def approval_text(approval: Approval) -> str:
    state = "approval needed" if approval.status == "pending" else approval.status
    return f"{state}: {approval.tool} ({approval.id})"
