"""Block Kit messages: an incident's thread root (with Acknowledge / Resolve / Expected buttons), an approval
request with buttons, and its verdict.

Everything that comes from data (titles, evidence, arguments) is escaped, so text inside the data can
neither mention people nor format links. Buttons carry ids only: the handler reads everything else from
the ops database, so a forged value can name a request but never change what it does.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipelines.incidents import Incident
from policies.approvals import Approval

APPROVE = "dataops_approve"
DENY = "dataops_deny"
ACKNOWLEDGE = "dataops_incident_ack"
RESOLVE = "dataops_incident_resolve"
EXPECTED = "dataops_incident_expected"
# The incident buttons and the judgement each one records (pipelines/monitors/feedback.py ACTIONS).
INCIDENT_ACTIONS = {ACKNOWLEDGE: "ack", RESOLVE: "resolve", EXPECTED: "expected"}
_ICON = {"open": "🔴", "acknowledged": "🟠", "remediating": "🛠️", "resolved": "✅", "escalated": "🚨"}
_SLACK_USER = re.compile(r"[UW][A-Z0-9_]+")
_SLACK_GROUP = re.compile(r"S[A-Z0-9_]+")
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
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"Incident {incident.id}: {incident.kind}", 150)}},
        _section(f"*What* {escape(incident.title)}"),
        {"type": "section", "fields": fields},
        _section(f"*Evidence*\n```{escape(_cut(evidence, 1500))}```"),
    ]
    judged = judgement_text(incident)
    if judged:
        blocks.append(_section(judged))
    if incident.status != "resolved":
        blocks.append(_incident_buttons(incident))
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"`dataops incident {incident.id}` · cause `{escape(incident.cause_key)}`"}],
        }
    )
    return blocks


def _incident_buttons(incident: Incident) -> dict[str, Any]:
    """Acknowledge (until acknowledged), Resolve and Expected; the value is the incident id, nothing else."""
    buttons: list[tuple[str, str, str | None]] = [(ACKNOWLEDGE, "Acknowledge", None)] if incident.status != "acknowledged" else []
    buttons += [(RESOLVE, "Resolve", "primary"), (EXPECTED, "Expected (false alarm)", None)]
    elements = []
    for action_id, label, style in buttons:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "value": str(incident.id),
            "text": {"type": "plain_text", "text": label},
        }
        if style:
            button["style"] = style
        elements.append(button)
    return {"type": "actions", "block_id": f"incident:{incident.id}", "elements": elements}


def judgement_text(incident: Incident) -> str:
    """The latest action a person took on the incident (notes with a channel), for the root message."""
    note = next((n for n in reversed(incident.notes) if isinstance(n, dict) and n.get("channel")), None)
    if note is None:
        return ""
    channel = {"slack": "in Slack", "cli": "in the CLI"}.get(str(note["channel"]), f"via {escape(str(note['channel']))}")
    return f"{_ICON.get(str(note.get('status')), '•')} *{escape(str(note.get('status')))}* by {mention(str(note.get('actor') or '?'))} {channel}: {escape(str(note.get('note') or ''))}"


def mention(user: str) -> str:
    """A Slack user id (or `slack:<id>`, a group member who is not a person) as a mention; a person's name as escaped text."""
    bare = user.removeprefix("slack:")
    return f"<@{bare}>" if _SLACK_USER.fullmatch(bare) else escape(user)


def _call(approval: Approval) -> str:
    args = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in approval.arguments.items())
    return f"`{escape(approval.tool)}({escape(args)})`"


def approval_blocks(approval: Approval) -> list[dict[str, Any]]:
    """A pending request with Approve / Deny buttons, or its verdict once decided or expired."""
    who = ", ".join(f"<!subteam^{a}>" if _SLACK_GROUP.fullmatch(a) else mention(a) for a in approval.approvers)
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
    who = mention(by)
    reason = f": {escape(approval.decision_reason)}" if approval.decision_reason else ""
    return f"{mark} by {who}{reason}"


def approval_text(approval: Approval) -> str:
    state = "approval needed" if approval.status == "pending" else approval.status
    return f"{state}: {approval.tool} ({approval.id})"
