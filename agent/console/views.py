"""What the console's pages show, read from the ops database and the inventory (never from the lake: fast, and
a page works while a table is being written).

Each function returns plain data (pydantic models or the models the CLI's `--json` prints), so a page and a
test read the same thing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from config.inventory import ScheduleSpec
from pipelines.context import PlatformContext
from pipelines.incidents import Incident
from pipelines.ledger import as_utc
from policies.approvals import Approval, ApprovalStore
from policies.audit import AuditEntry, AuditLog, DiagnosisEntry
from policies.deferrals import DeferralStore, DeferredCall

SEVERITIES = ("critical", "warning", "info")
STATUSES = ("open", "acknowledged", "remediating", "escalated", "resolved")


class PipelineRow(BaseModel):
    name: str
    schedule: str
    paused: bool
    paused_reason: str = ""
    last_run_id: str | None = None
    last_status: str | None = None
    last_finished_at: datetime | None = None
    last_window: str | None = None
    next_run_at: datetime | None = None
    watermark: datetime | None = None
    freshness: str = "not evaluated yet"


def describe_schedule(schedule: ScheduleSpec) -> str:
    if schedule.manual:
        return "manual"
    if schedule.cron:
        return f"cron {schedule.cron}"
    return f"every {schedule.interval_minutes} min"


def next_run(ctx: PlatformContext, schedule: ScheduleSpec, now: datetime) -> datetime | None:
    """The next firing at or after `now` on the platform clock; None for manual pipelines."""
    from pipelines.scheduling import declared_trigger

    start = ctx.settings.replay_start if ctx.settings.source_mode == "replay" else None
    trigger = declared_trigger(schedule, start=start)
    return None if trigger is None else trigger.get_next_fire_time(None, now)


def pipelines(ctx: PlatformContext, now: datetime) -> list[PipelineRow]:
    """Every pipeline of the inventory with its schedule, last run, next run, freshness and paused state."""
    from pipelines.monitors.state import monitor_status

    states = ctx.control.states()
    rows = []
    for name, spec in ctx.inventory.pipelines.items():
        state = states.get(name)
        runs = ctx.ledger.runs(pipeline=name, limit=1)
        last = runs[0] if runs else None
        freshness = [m for m in ctx.inventory.monitors.values() if m.kind == "freshness" and m.table == spec.silver]
        fresh = "no freshness monitor"
        if freshness:
            status = monitor_status(ctx, freshness[0].name)
            fresh = f"{status.status}" + (f": {status.detail}" if status.detail else "")
        rows.append(
            PipelineRow(
                name=name,
                schedule=describe_schedule(spec.schedule),
                paused=bool(state and state.paused),
                paused_reason=state.reason if state and state.paused else "",
                last_run_id=last.run_id if last else None,
                last_status=last.status if last else None,
                last_finished_at=as_utc(last.finished_at) if last else None,
                last_window=f"{as_utc(last.window_start):%Y-%m-%d}..{as_utc(last.window_end):%Y-%m-%d}" if last else None,
                next_run_at=None if state and state.paused else next_run(ctx, spec.schedule, now),
                watermark=as_utc(state.watermark) if state else None,
                freshness=fresh,
            )
        )
    return rows


class ScoreRow(BaseModel):
    """A table's data-quality score for each day of the last `days` (None: no run validated that day)."""

    table: str
    scores: list[float | None]


def scorecard(ctx: PlatformContext, now: datetime, days: int = 30) -> tuple[list[str], list[ScoreRow]]:
    """Quality score (rows passing / rows checked, pipelines/ledger.py) per table per data day, the last `days` days
    up to `now`; a day covered by several runs shows the latest run's score."""
    from sqlalchemy import select

    from pipelines.ledger import QualityRow, RunRow

    last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    day_list = [last - timedelta(days=n) for n in range(days - 1, -1, -1)]
    index = {d.date(): i for i, d in enumerate(day_list)}
    with ctx.ledger.session() as s:
        found = s.execute(
            select(QualityRow.table_name, QualityRow.score, RunRow.window_start, RunRow.window_end)
            .join(RunRow, RunRow.run_id == QualityRow.run_id)
            .where(RunRow.window_end > day_list[0], RunRow.window_start <= now)
            .order_by(QualityRow.created_at, QualityRow.id)
        ).all()
    grid: dict[str, list[float | None]] = {}
    for table, score, start, end in found:
        cells = grid.setdefault(table, [None] * days)
        day, stop = as_utc(start), as_utc(end)
        assert day is not None and stop is not None
        day = day.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < stop:
            if day.date() in index:
                cells[index[day.date()]] = score  # later runs overwrite earlier ones
            day += timedelta(days=1)
    return [f"{d:%Y-%m-%d}" for d in day_list], [ScoreRow(table=t, scores=grid[t]) for t in sorted(grid)]


def incidents(
    ctx: PlatformContext, *, status: str | None = None, severity: str | None = None, table: str | None = None, limit: int = 200
) -> list[Incident]:
    """Incidents newest first; `status` as `dataops incidents --status` (incl. unresolved), the others exact."""
    found = ctx.incidents.list(status=status or None, limit=limit)
    return [i for i in found if (not severity or i.severity == severity) and (not table or i.table == table)]


def approvals(ctx: PlatformContext, *, status: str | None = None) -> list[Approval]:
    """The agent's requests, newest first, after marking the overdue ones expired (as `dataops approvals`)."""
    store = ApprovalStore(ctx.ledger)
    store.expire_due()
    return store.list(status=status or None)


def deferred(ctx: PlatformContext, *, status: str | None = None) -> list[DeferredCall]:
    """The agent's calls deferred to the greenest window, newest first (as `dataops deferred list`)."""
    return DeferralStore(ctx.ledger).list(status=status or None)


class IncidentDetail(BaseModel):
    incident: Incident
    steps: list[AuditEntry]
    diagnoses: list[DiagnosisEntry]
    approvals: list[Approval]


def incident_detail(ctx: PlatformContext, incident: Incident) -> IncidentDetail:
    """One incident with what the agent did for it: its diagnosis, its tool calls (the audit) and its requests."""
    audit = AuditLog(ctx.ledger)
    requests = [a for a in ApprovalStore(ctx.ledger).list(limit=1000) if a.incident_id == incident.id]
    return IncidentDetail(
        incident=incident,
        steps=audit.entries(incident_id=incident.id),
        diagnoses=audit.diagnoses(incident_id=incident.id),
        approvals=requests,
    )


def tables_of(found: list[Incident]) -> list[str]:
    return sorted({i.table for i in found})


def call_text(tool: str, arguments: dict[str, Any]) -> str:
    return f"{tool}({', '.join(f'{k}={v}' for k, v in arguments.items())})"
