"""What the agent gathers before planning and what the policy engine needs to know about the past.

`incident_vars` turns an incident into the template fields runbooks use ({pipeline}, {day}, ...), with the
pipelines that are paused and who paused them, so no planner proposes to re-run one;
`call_history` counts re-runs, related incidents, recurrences and tokens for the policy engine.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agent.diagnose import diagnose
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.extent import Extent
from pipelines.incidents import Incident
from policies.audit import AuditLog
from policies.model import CallHistory
from tools.base import Target
from tools.registry import REGISTRY
from tools.schedule import paused_notes

PIPELINE_RUNNERS: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.runs_pipeline)


def pipeline_for(ctx: PlatformContext, table: str) -> str | None:
    return lineage.owning_pipeline(ctx.inventory, table)


def _day(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date().isoformat()
    if isinstance(value, str) and len(value) >= 10:
        return value[:10]
    return None


def incident_vars(ctx: PlatformContext, incident: Incident, now: datetime) -> dict[str, Any]:
    """Template fields for runbooks; the evidence is the latest entry (data, never instructions)."""
    evidence: dict[str, Any] = dict(incident.evidence[-1]) if incident.evidence and isinstance(incident.evidence[-1], dict) else {}
    window = evidence.get("window") if isinstance(evidence.get("window"), list) else None
    day = incident.partition or _day(evidence.get("day")) or _day(evidence.get("first")) or _day(incident.occurred_at) or _day(now)
    assert day is not None
    next_day = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    table = incident.table
    pipeline = pipeline_for(ctx, table)
    silver = ctx.inventory.pipeline(pipeline).silver if pipeline else None
    pauses = paused_notes(ctx)
    return {
        "incident": incident.model_dump(mode="json"),
        "evidence": evidence,
        "pipeline": pipeline,
        "silver": silver,
        "day": day,
        "next_day": next_day,
        "window_start": _day(window[0]) if window else day,
        "window_end": _day(window[1]) if window else next_day,
        "today": _day(now),
        "paused": bool(pipeline and pipeline in pauses),
        "pause": pauses.get(pipeline) if pipeline else None,
        "pauses": pauses,
        "extent": extent_vars(incident.extent, day, next_day),
        "diagnosis": diagnose(ctx, incident, now).model_dump(mode="json"),
    }


def extent_vars(extent: Extent | None, day: str, next_day: str) -> dict[str, Any]:
    """{extent.days}, {extent.start}, {extent.end} (exclusive), {extent.summary}: the whole incident, not its first day."""
    if extent is None or not extent.days:
        return {"days": [day], "start": day, "end": next_day, "count": 1, "summary": f"day {day}", "missing": ""}
    return {
        "days": extent.day_names,
        "start": extent.first_day,
        "end": extent.end_day,
        "count": len(extent.days),
        "summary": extent.describe(),
        "missing": extent.describe_missing(),
    }


def related_open(ctx: PlatformContext, table: str | None, *, exclude: int | None = None) -> int:
    """Unresolved incidents on `table` or anything in its lineage."""
    if not table or table not in ctx.inventory.tables:
        return 0
    family = {table, *lineage.upstream(ctx.inventory, table), *lineage.downstream(ctx.inventory, table)}
    return sum(1 for i in ctx.incidents.list(status="unresolved", limit=10_000) if i.table in family and i.id != exclude)


def recurrences(ctx: PlatformContext, incident: Incident) -> int:
    """Incidents of the same cause on the same table detected within seven days of this one (itself included)."""
    week = timedelta(days=7)
    return sum(
        1
        for i in ctx.incidents.list(status=None, limit=10_000)
        if (i.kind, i.table, i.cause_key) == (incident.kind, incident.table, incident.cause_key)
        and abs(i.detected_at - incident.detected_at) <= week
    )


def in_scope(ctx: PlatformContext, incident: Incident | None, target: Target) -> bool | None:
    """Whether a call's table is the incident's or in its lineage; None outside an incident or for non-table targets."""
    if incident is None or not target.table or target.table not in ctx.inventory.tables or incident.table not in ctx.inventory.tables:
        return None
    family = {incident.table, *lineage.upstream(ctx.inventory, incident.table), *lineage.downstream(ctx.inventory, incident.table)}
    return target.table in family


def window_failed(ctx: PlatformContext, tool: str, target: Target) -> bool | None:
    """For re-runs: did any run of the pipeline over this window fail, hold days back or quarantine rows?"""
    if tool not in PIPELINE_RUNNERS or not target.pipeline or not target.partition or target.span_days is None:
        return None
    start = datetime.fromisoformat(target.partition).replace(tzinfo=UTC)
    end = start + timedelta(days=target.span_days)
    overlapping = [
        r for r in ctx.ledger.runs(pipeline=target.pipeline, limit=500) if _aware(r.window_start) < end and start < _aware(r.window_end)
    ]
    if not overlapping:
        return True  # never ran: nothing published to rewrite
    days = {(start + timedelta(days=i)).date().isoformat() for i in range(int(target.span_days))}
    return any(
        r.status in ("failed", "abandoned", "quarantined") or r.rows_quarantined or set(r.held_days or []) & days for r in overlapping
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def call_history(
    ctx: PlatformContext,
    audit: AuditLog,
    tool: str,
    target: Target,
    *,
    incident: Incident | None,
    tokens_used: int,
    verified: bool,
    wall_now: datetime,
) -> CallHistory:
    reruns = audit.executions_since(PIPELINE_RUNNERS, target.pipeline, wall_now - timedelta(hours=1)) if target.pipeline else 0
    table = target.table or (incident.table if incident else None)
    return CallHistory(
        reruns_last_hour=reruns,
        related_open_incidents=related_open(ctx, table, exclude=incident.id if incident else None),
        recurrences_last_week=recurrences(ctx, incident) if incident else 0,
        tokens_used=tokens_used,
        verified=verified,
        in_scope=in_scope(ctx, incident, target),
        window_failed=window_failed(ctx, tool, target),
        **(retry_history(audit, incident) if tool in PIPELINE_RUNNERS else {}),
    )


def retry_spent(audit: AuditLog, incident_id: int) -> tuple[int, float]:
    """Attempts this incident's finished re-runs made, and the platform seconds they waited between attempts."""
    results = [e.result for e in audit.entries(incident_id=incident_id, limit=10_000) if e.tool in PIPELINE_RUNNERS and e.status == "ok"]
    return sum(int(r.get("attempts") or 1) for r in results if r), sum(float(r.get("waited_s") or 0.0) for r in results if r)


def retry_history(audit: AuditLog, incident: Incident | None) -> dict[str, Any]:
    """The `CallHistory` fields of the policy's retry budget; outside an incident every call has the whole budget."""
    if incident is None:
        return {}
    attempts, waited = retry_spent(audit, incident.id)
    return {"retry_attempts": attempts, "retry_waited_s": waited}
