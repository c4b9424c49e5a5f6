"""A summary of a period for someone who was not watching: the grid, the incidents, the pipelines, what waits.

"summarise the week for my manager", "weekly recap", "how did last week go?" read three things (the incidents
detected in the period, the runs whose window overlaps it, the carbon intensity over it) and answer in four
bullets a person can forward.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from agent.chat.answers import figure, period_phrase, rows_of
from agent.chat.incidents import concerns
from agent.planner import Turn

_WAITING = ("open", "acknowledged", "escalated", "remediating")


def summary(start: date, end: date, incidents: Turn, runs: Turn, intensity: Turn, *, slots_per_day: int) -> str:
    """[start, end) in four bullets: carbon intensity, incidents, pipelines, what needs a person. An incident counts
    when it was detected in the period or is about one of its days."""
    expected = (end - start).days * slots_per_day
    lines = [f"Summary {period_phrase(start, end)}:", _grid((rows_of(intensity) or [{}])[0], expected)]
    found = [i for i in (incidents.result or {}).get("incidents") or [] if concerns(i, start, end)]
    lines.append(_incidents(found))
    overlapping = [r for r in (runs.result or {}).get("runs") or [] if _day(r["window_start"]) < end and start < _day(r["window_end"])]
    lines.append(_pipelines(overlapping, start, end))
    waiting = sorted(i["id"] for i in found if i["status"] in _WAITING)
    lines.append(f"- Needs a person: incident {', '.join(f'#{n}' for n in waiting)}." if waiting else "- Needs a person: nothing.")
    return "\n".join(lines)


def _grid(row: dict[str, Any], expected: int) -> str:
    if not row.get("n"):
        return "- Grid: no carbon intensity is published for the period."
    short = f" of the {expected} expected" if row["n"] < expected else ""
    return (
        f"- Grid: carbon intensity averaged {figure(row['mean'])} gCO2/kWh over {row['n']}{short} readings, lowest {figure(row['low'])} "
        f"({_at(row['low_at'])}), highest {figure(row['high'])} ({_at(row['high_at'])})."
    )


def _incidents(found: list[dict[str, Any]]) -> str:
    if not found:
        return "- Incidents: none."
    by_status: dict[str, int] = {}
    for i in found:
        by_status[i["status"]] = by_status.get(i["status"], 0) + 1
    counted = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
    named = "; ".join(f"#{i['id']} {i['title']}" for i in sorted(found, key=lambda i: i["id"])[:3])
    more = f"; and {len(found) - 3} more" if len(found) > 3 else ""
    return f"- Incidents: {len(found)} ({counted}): {named}{more}."


def _pipelines(runs: list[dict[str, Any]], start: date, end: date) -> str:
    if not runs:
        return "- Pipelines: no run covered the period."
    troubled = [r for r in runs if r["status"] != "succeeded" or r.get("held_days")]
    held = sorted({d for r in runs for d in r.get("held_days") or [] if start <= date.fromisoformat(d) < end})
    days = f"; days held back: {', '.join(held)}" if held else ""
    return f"- Pipelines: {len(runs)} run(s) over the period, {len(troubled)} holding data back or failing{days}."


def _day(value: Any) -> date:
    return (value if isinstance(value, datetime) else datetime.fromisoformat(str(value))).date()


def _at(value: Any) -> str:
    if not value:
        return "?"
    return f"{value if isinstance(value, datetime) else datetime.fromisoformat(str(value)):%a %d %b %H:%M} UTC"
