"""The answer to a question about an action ("should we rerun ...?", "how do I release ...?"): never the action.

`mood.py` decides that a message asks about an action rather than for it. The answer says what the
action would do and the exact words that ask for it; when the question names a table or pipeline and
days, one read (`queries.day_counts`) shows how complete those days are, which is what "is it ok?",
"how many rows?" and "does it need a backfill?" ask.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from agent.chat.intents import Intent
from agent.chat.names import Names

# What each action does, said before anything runs.
EFFECTS: dict[str, str] = {
    "quarantine": "moves the day's rows out of {target} into quarantine, so readers stop seeing them until they are released",
    "release": "puts the day's quarantined rows back into {target}",
    "delete": "removes the day's rows from {target} (older snapshots keep them until they expire)",
    "expire": "removes old snapshots of {target}: the current data stays, but you can no longer roll back to them",
    "compact": "rewrites the small files of {target} into fewer, larger ones; the rows do not change",
    "rollback": "makes an earlier snapshot of {target} its current state",
    "pause": "stops the schedule of {target} from starting runs until it is resumed; published data stays",
    "resume": "lets the schedule of {target} start runs again",
    "rerun": "runs {target} again over those days and republishes them",
    "backfill": "runs {target} over every day of the range to fill it (more than 31 days is refused)",
}
DAY_KINDS = ("quarantine", "release", "delete", "rerun", "backfill")  # actions on days, whose days a read can show
MAX_DAYS_SHOWN = 62


def command(intent: Intent) -> str:
    """The words that ask for the action, with the slots the question gave (placeholders for the rest)."""
    kind = intent.kind
    table = intent.table or "<table>"
    pipeline = intent.pipeline or "<pipeline>"
    if kind in ("rerun", "backfill", "pause", "resume"):
        if kind in ("pause", "resume"):
            return f"{kind} {pipeline}"
        if intent.start is None or intent.end is None:
            return f"{kind} {pipeline} from <first day> to <last day>"
        last = intent.end - timedelta(days=1)
        if last == intent.start:
            return f"{kind} {pipeline} {last.isoformat()}"
        return f"{kind} {pipeline} from {intent.start.isoformat()} to {last.isoformat()}"
    if kind == "expire":
        return f"expire snapshots of {table}"
    if kind == "compact":
        return f"compact {table}"
    if kind == "rollback":
        return f"roll back {table} to snapshot {intent.snapshot_id or '<id>'}"
    return f"{kind} {table} {intent.day.isoformat() if intent.day else '<day>'}"


def explain(intent: Intent) -> str:
    """What the action would do and how to ask for it; nothing ran."""
    on_table = intent.kind in ("quarantine", "release", "delete", "expire", "compact", "rollback")
    target = (intent.table if on_table else intent.pipeline) or ("the table" if on_table else "the pipeline")
    effect = EFFECTS[intent.kind].format(target=target)
    return f'Nothing ran: you asked about it, not for it. {intent.kind.capitalize()} {effect}. Say "{command(intent)}" to do it.'


def counted_table(intent: Intent, names: Names) -> tuple[str, str | None] | None:
    """The table whose days the question is about, and its quarantine table; None when no read applies."""
    if intent.kind not in DAY_KINDS or intent.start is None or intent.end is None:
        return None
    table = intent.table or names.silver.get(intent.pipeline or "")
    if table is None or (intent.end - intent.start).days > MAX_DAYS_SHOWN:
        return None
    return table, names.quarantine.get(names.owner.get(table, ""))


def day_counts(intent: Intent, table: str, expected: int | None, rows: list[dict[str, Any]]) -> str:
    """Each asked day of `table`: slots against the source's slots a day, rows, and rows held in quarantine."""
    assert intent.start is not None and intent.end is not None
    by_day = {str(r["day"])[:10]: r for r in rows}
    lines = []
    day: date = intent.start
    while day < intent.end:
        row = by_day.get(day.isoformat(), {"slots": 0, "n_rows": 0, "held": 0})
        slots, held = int(row["slots"] or 0), int(row["held"] or 0)
        verdict = "" if expected is None else (" complete" if slots >= expected else " INCOMPLETE") + ";"
        of = f" of {expected}" if expected else ""
        lines.append(f"{day.isoformat()}:{verdict} {slots}{of} slots, {int(row['n_rows'] or 0)} rows published, {held} held in quarantine")
        day += timedelta(days=1)
    total = sum(int(r["n_rows"] or 0) for r in rows)
    return f"{table}, {intent.when.describe()}: {total} rows published in all.\n" + "\n".join(lines)
