"""Questions about incidents in chat: one incident by its number, or the incidents of one status, or all of them.

"tell me about incident #6", "what did you do about incident 3?", "why did incident 7 get escalated?" ask
about one incident (`get_incident`: its status, cause, evidence and the notes of what was done); "list the
resolved incidents" asks for a status; "how many incidents did we have in total?" for all of them. Only
"what is open?" and its like mean the unresolved ones.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Literal

IncidentStatus = Literal["unresolved", "open", "acknowledged", "remediating", "resolved", "escalated", "all"]

_NUMBER = re.compile(r"\b(?:incident|inc)\s*(?:#\s*|no\.?\s*|number\s*|id\s*)?(\d{1,6})\b")
_STATUSES: tuple[tuple[IncidentStatus, re.Pattern[str]], ...] = (
    ("resolved", re.compile(r"\b(?:resolved|closed|fixed|solved)\b")),
    ("escalated", re.compile(r"\bescalated\b")),
    ("acknowledged", re.compile(r"\backnowledged\b")),
    ("remediating", re.compile(r"\bremediating\b")),
    ("all", re.compile(r"\b(?:in total|total|all|every|ever|altogether|so far|overall|history)\b")),
)
_LIMIT = 200  # the list tool's cap: enough to count every incident of a platform like this one


def incident_number(text: str) -> int | None:
    """The incident a message names by number ("incident #6", "incident 3"), or None. A bare "#7" is not enough:
    snapshots are numbered too."""
    m = _NUMBER.search(text.lower())
    return int(m[1]) if m else None


def incident_status(text: str) -> IncidentStatus:
    """Which incidents a list question asks for; 'unresolved' unless it names a status or asks for all of them."""
    lowered = text.lower()
    return next((status for status, pattern in _STATUSES if pattern.search(lowered)), "unresolved")


def list_arguments(status: IncidentStatus) -> dict[str, Any]:
    return {"status": status, "limit": 10 if status == "unresolved" else _LIMIT}


def listed(result: dict[str, Any], status: IncidentStatus) -> str:
    """The incidents of `status`, counted, with a line each (the ten newest when there are more)."""
    items = result.get("incidents") or []
    label = "" if status == "all" else f"{status} "
    if not items:
        return "Nothing is open." if status == "unresolved" else f"No {label}incident is recorded."
    lines = [
        f"#{i['id']} [{i['severity']}] {i['status']}: {i['title']} ({i['kind']} on {i['table']}{', ' + i['partition'] if i.get('partition') else ''})"
        for i in items[:10]
    ]
    more = f"\n... and {len(items) - 10} more (`dataops incidents --status {status}` lists them)" if len(items) > 10 else ""
    total = f"{len(items)}{'+' if len(items) >= _LIMIT else ''}"
    if status == "all":
        by_status: dict[str, int] = {}
        for i in items:
            by_status[i["status"]] = by_status.get(i["status"], 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        return f"{total} incident(s) in total ({counts}):\n" + "\n".join(lines) + more
    return f"{total} {label}incident(s):\n" + "\n".join(lines) + more


def one(result: dict[str, Any]) -> str:
    """One incident: where it stands, its cause, what was seen, and what was done (its notes, oldest first)."""
    i = result["incident"]
    where = f"{i['table']}{', ' + i['partition'] if i.get('partition') else ''}"
    parts = [
        f"Incident #{i['id']} [{i['severity']}] is {i['status']}: {i['title']} ({i['kind']} on {where}), "
        f"detected {str(i['detected_at'])[:16].replace('T', ' ')} UTC, seen {i['occurrences']} time(s).",
        f"Cause: {result.get('cause_key')}." + (f" Run: {result['run_id']}." if result.get("run_id") else ""),
    ]
    evidence = result.get("evidence") or []
    if evidence:
        last = evidence[-1]
        facts = ", ".join(f"{k} {v}" for k, v in last.items() if k != "at" and isinstance(v, str | int | float) and not isinstance(v, bool))
        parts.append(f"Latest evidence: {facts}.")
    notes = result.get("notes") or []
    if notes:
        parts.append(
            "What was done: "
            + "; ".join(
                f"{str(n.get('at', ''))[:16].replace('T', ' ')} {n.get('actor', '?')} ({n.get('status', '?')}): {str(n.get('note', '')).rstrip().rstrip('.')}"
                for n in notes
            )
            + "."
        )
    else:
        parts.append("Nothing was done about it yet (no notes).")
    return "\n".join(parts)


def about_table(table: str, listed_result: dict[str, Any], newest: dict[str, Any] | None) -> str:
    """What became of a table's incidents: the newest told in full, the others listed."""
    items = listed_result.get("incidents") or []
    if not items or newest is None:
        return f"No incident is recorded on {table}."
    others = [f"#{i['id']} {i['status']}: {i['title']}" for i in items[1:]]
    rest = f"\nEarlier on {table}: " + "; ".join(others) + "." if others else ""
    return one(newest) + rest


def detected_in(result: dict[str, Any], start: date, end: date, period: str) -> str:
    """The incidents about [start, end) or detected in it, whatever their status now, oldest first: "what happened on
    Tuesday?" means the incidents about Tuesday's data as much as those raised that day."""
    items = [i for i in result.get("incidents") or [] if concerns(i, start, end)]
    single = end.toordinal() - start.toordinal() == 1
    if not items:
        return f"No incident is about or was detected {'on' if single else 'from'} {period}."
    items.sort(key=lambda i: (i["detected_at"] or "", i["id"]))
    lines = [
        f"#{i['id']} [{i['severity']}] {i['status']}, detected {datetime.fromisoformat(i['detected_at']):%Y-%m-%d %H:%M} UTC: {i['title']} "
        f"({i['kind']} on {i['table']}{', ' + i['partition'] if i.get('partition') else ''})"
        for i in items[:10]
    ]
    more = f"\n... and {len(items) - 10} more (`dataops incidents --status all`)" if len(items) > 10 else ""
    head = f"{len(items)} incident{'s' if len(items) != 1 else ''} about or detected {'on' if single else 'from'} {period}:"
    return head + "\n" + "\n".join(lines) + more


def concerns(incident: dict[str, Any], start: date, end: date) -> bool:
    """Whether an incident is about a day of [start, end) (its partition) or was detected in it."""
    about, detected = incident.get("partition"), incident.get("detected_at")
    return bool(about and start <= date.fromisoformat(str(about)[:10]) < end) or bool(
        detected and start <= datetime.fromisoformat(str(detected)).date() < end
    )
