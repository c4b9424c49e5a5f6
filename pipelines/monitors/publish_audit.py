"""Audit of what is already published: re-validate recent days of a table's main with its suite.

Write-audit-publish stops bad data at the door; this catches what came in another way (a manual job, a
suite that was weaker when the data landed). A failing day opens a `bad_publish` finding that names the
newest ancestor snapshot of main on which those days pass: the snapshot a rollback should return to.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from config.inventory import SuiteSpec
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.validation.suite import validate
from pipelines.verification import suite_of

MAX_ANCESTORS = 20


def audit_published(ctx: PlatformContext, table_name: str, now: datetime, *, days: int = 7) -> list[Finding]:
    suite = suite_of(ctx, table_name)
    table = load_table(ctx.catalog, table_name)
    current = table.current_snapshot()
    if suite is None or current is None:
        return []
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window = [today - timedelta(days=i) for i in range(days, -1, -1)]
    rows = wap.read_days(table, window)
    if not rows.num_rows:
        return []
    outcome = validate(suite, rows, as_of=now)
    failing = [o for o in outcome.outcomes if not o.success and o.name not in _completeness(suite)]
    if not failing:
        return []
    bad_days = sorted({d for d in window if _fails_on(ctx, table_name, d, current.snapshot_id, now)})
    good = _last_good(ctx, table_name, bad_days, current.snapshot_id, now)
    # The run that made the day bad: the commit right after the last good snapshot, not whichever ran last.
    culprit = _child_of(table, current.snapshot_id, good) if good is not None else current
    props = culprit.summary.additional_properties if culprit is not None and culprit.summary is not None else {}
    return [
        Finding(
            kind="bad_publish",
            severity="critical",
            table=table_name,
            cause_key=f"published:{','.join(o.name for o in failing)}",
            title=f"{table_name}: published data fails {', '.join(o.name for o in failing)} on {', '.join(d.date().isoformat() for d in bad_days)}",
            partition=bad_days[0].date().isoformat() if bad_days else None,
            occurred_at=bad_days[0] if bad_days else None,
            evidence={
                "bad_snapshot_id": current.snapshot_id,
                "bad_run_id": props.get("run_id"),
                "good_snapshot_id": good,
                "failing": [f"{o.name} ({o.unexpected_count} unexpected)" for o in failing],
                "days": [d.date().isoformat() for d in bad_days],
            },
        )
    ]


def _state_on(ctx: PlatformContext, table_name: str, day: datetime, snapshot_id: int, now: datetime) -> str:
    """'missing', 'fails' or 'passes': the day's rows at that snapshot against the suite."""
    table = load_table(ctx.catalog, table_name)
    rows = table.scan(row_filter=wap.days_filter([day]), snapshot_id=snapshot_id).to_arrow()
    suite = suite_of(ctx, table_name)
    if not rows.num_rows:
        return "missing"
    if suite is None:
        return "passes"
    outcome = validate(suite, rows, as_of=now)
    return "fails" if any(not o.success and o.name not in _completeness(suite) for o in outcome.outcomes) else "passes"


def _completeness(suite: SuiteSpec) -> set[str]:
    """Checks of how complete a day is: a partial day published with its flag (`partial_days: publish_flagged`) is
    no bad publish, and a day's completeness is the completeness monitors' to judge."""
    return {e.name for e in suite.expectations if e.completeness}


def _fails_on(ctx: PlatformContext, table_name: str, day: datetime, snapshot_id: int, now: datetime) -> bool:
    return _state_on(ctx, table_name, day, snapshot_id, now) == "fails"


def _child_of(table: Any, head: int, ancestor: int) -> Any:
    """The snapshot on main's line from `head` whose parent is `ancestor` (None when `ancestor` is not on it)."""
    snapshot = table.metadata.snapshot_by_id(head)
    for _ in range(MAX_ANCESTORS):
        if snapshot is None or snapshot.parent_snapshot_id is None:
            return None
        if snapshot.parent_snapshot_id == ancestor:
            return snapshot
        snapshot = table.metadata.snapshot_by_id(snapshot.parent_snapshot_id)
    return None


def _last_good(ctx: PlatformContext, table_name: str, days: list[datetime], head: int, now: datetime) -> int | None:
    """The newest ancestor of `head` on which every one of `days` has rows that pass.

    An overwrite commits a delete snapshot before its append, so an ancestor without the day's rows is
    skipped, not taken for good: rolling back to it would empty the day.
    """
    table = load_table(ctx.catalog, table_name)
    snapshot = table.metadata.snapshot_by_id(head)
    for _ in range(MAX_ANCESTORS):
        if snapshot is None or snapshot.parent_snapshot_id is None:
            return None
        snapshot = table.metadata.snapshot_by_id(snapshot.parent_snapshot_id)
        if snapshot is not None and all(_state_on(ctx, table_name, d, snapshot.snapshot_id, now) == "passes" for d in days):
            return snapshot.snapshot_id
    return None
