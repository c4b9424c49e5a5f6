"""Answers about what waits on people and what has been done: pending approvals and the audit log's writes.

"any approvals pending?" reads `list_approvals`; "what have you changed today?" reads `list_actions`. Both
answer in prose a person can act on: the call, why it waits, who may decide, and how to decide it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_STATUS = re.compile(r"\b(approved|denied|rejected|expired|pending|waiting|all|every|any status)\b")
SHOWN = 10  # lines an answer lists before it says how many more there are


def status_asked(text: str) -> str | None:
    """The approval status a question asks about; None for every status ("all approvals")."""
    m = _STATUS.search(text.lower())
    word = m[1] if m else "pending"
    return {"waiting": "pending", "rejected": "denied", "all": None, "every": None, "any status": None}.get(word, word)


def _call(tool: str, arguments: dict[str, Any]) -> str:
    return f"{tool}({', '.join(f'{k}={v}' for k, v in arguments.items())})"


def _when(raw: str) -> str:
    return f"{datetime.fromisoformat(raw):%Y-%m-%d %H:%M} UTC"


def approvals(result: dict[str, Any], status: str | None) -> str:
    """The approval requests, pending ones with what to do about them."""
    found = result.get("approvals") or []
    if not found:
        return "No approval is waiting." if status == "pending" else f"No approval request{f' is {status}' if status else ' is recorded'}."
    head = (
        f"{len(found)} approval{'s are' if len(found) != 1 else ' is'} waiting:"
        if status == "pending"
        else f"{len(found)} approval request{'s' if len(found) != 1 else ''}{f' {status}' if status else ''}:"
    )
    lines = [head]
    for a in found[:SHOWN]:
        about = f" for incident #{a['incident_id']}" if a.get("incident_id") is not None else ""
        if a["status"] == "pending":
            who = ", ".join(a.get("approvers") or []) or "an approver"
            lines.append(
                f"- {a['id']}: {_call(a['tool'], a['arguments'])}{about}, asked by {a['requested_by']} on {_when(a['requested_at'])}: "
                f"{a['reason']}. {who} may decide, until {_when(a['expires_at'])}."
            )
        else:
            decided = f" by {a['decided_by']}" if a.get("decided_by") else ""
            lines.append(f"- {a['id']}: {_call(a['tool'], a['arguments'])}{about}, {a['status']}{decided}.")
    if len(found) > SHOWN:
        lines.append(f"…and {len(found) - SHOWN} more (`dataops approvals`).")
    if status == "pending":
        lines.append("Decide with the buttons on the Slack request, or `dataops approve ID` / `dataops deny ID --reason TEXT`.")
    return "\n".join(lines)


def actions(result: dict[str, Any]) -> str:
    """The latest writes of the audit log, newest first, with their decision and outcome."""
    found = result.get("actions") or []
    if not found:
        return "Nothing has been changed: the audit log holds no write yet."
    lines = [f"The latest {len(found)} change{'s' if len(found) != 1 else ''} asked for, newest first:"]
    for e in found[:SHOWN]:
        approved = f", approved by {e['approver']}" if e.get("approver") else ""
        about = f" (incident #{e['incident_id']})" if e.get("incident_id") is not None else ""
        error = f": {e['error']}" if e.get("error") else ""
        lines.append(
            f"- {_when(e['at'])} {e['actor']}: {_call(e['tool'], e['arguments'])}{about}, {e['decision']}{approved} → {e['status']}{error}"
        )
    if len(found) > SHOWN:
        lines.append(f"…and {len(found) - SHOWN} more (`dataops audit`).")
    return "\n".join(lines)
