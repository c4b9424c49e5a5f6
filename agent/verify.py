"""Verification after the agent changed data: re-check what the incident was about, on `main`.

Runs (re-run, backfill) must not have failed and their days must not be held; then the incident's
partition is re-validated with its table's suite; a freshness incident re-evaluates its monitor; a gold
day that did not reconcile (or left its distribution) is recomputed from its inputs again, since a plausible
but wrong day passes its suite before any fix, and a silver day that left its distribution (no mart to
recompute it from) is judged against its history again. Only a passed verification lets the agent resolve anything.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from config.errors import DataOpsError
from pipelines.context import PlatformContext
from pipelines.monitors.checks import check_freshness
from pipelines.verification import check_partition
from tools.registry import REGISTRY

log = logging.getLogger(__name__)
# Tools that re-run a pipeline over a window: their result lists the runs, whose status and held days count first.
RUN_TOOLS = frozenset(name for name, spec in REGISTRY.items() if spec.runs_pipeline)


def _day(value: str) -> datetime:
    return datetime.fromisoformat(value[:10]).replace(tzinfo=UTC)


def verify(
    ctx: PlatformContext,
    *,
    turns: list[dict[str, Any]],
    incident: dict[str, Any] | None,
    vars: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """{passed, method, detail} for the latest write turns of this step."""
    writes = [t for t in turns if t["status"] == "ok" and t.get("effect") in ("write", "destructive")]
    if not writes:
        return {"passed": False, "method": "none", "detail": "nothing was changed"}
    last = writes[-1]
    result = last.get("result") or {}
    if last["call"]["name"] in RUN_TOOLS:
        failed = [r for r in result.get("runs", []) if r.get("status") == "failed"]
        if failed:
            return {"passed": False, "method": "run_status", "detail": f"run {failed[-1]['run_id']} failed: {failed[-1].get('error')}"}
        day = vars.get("day")
        held = sorted({d for r in result.get("runs", []) for d in r.get("held_days", [])})
        if (incident or {}).get("kind") == "completeness":
            return _extent_status(ctx, incident or {}, vars, now, result)
        if day in held:
            return {"passed": False, "method": "run_status", "detail": f"{day} is still held back (incomplete at the source)"}
    kind = (incident or {}).get("kind")
    try:
        if kind == "freshness":
            return _freshness(ctx, incident or {}, now)
        if kind == "bad_publish" and str((incident or {}).get("cause_key", "")).startswith(("reconcile:", "distribution:")):
            if not any(m.table == (incident or {}).get("table") for m in ctx.inventory.marts.values()):
                return _in_line(ctx, incident or {}, now, result)  # silver: no mart to recompute the day from
            return _reconciled(ctx, incident or {})
        if kind in ("source_failure", "pipeline_failure") and last["call"]["name"] in RUN_TOOLS:
            return {"passed": True, "method": "run_status", "detail": f"{len(result.get('runs', []))} run(s) completed without failure"}
        table = _table_to_check(ctx, last, incident, vars)
        # Working an incident, the check is on the incident's own partition, whatever day the write named.
        day = (
            vars.get("day")
            if incident
            else (last["call"].get("arguments") or {}).get("day") or (last["call"].get("arguments") or {}).get("start")
        )
        if table is None or day is None:
            return {"passed": False, "method": "none", "detail": f"{last['call']['name']} completed, but there is no partition to re-check"}
        check = check_partition(ctx, table, _day(str(day)), as_of=now)
        return {"passed": check.passed, "method": "revalidate_partition", "detail": check.detail, "check": check.model_dump(mode="json")}
    except DataOpsError as exc:
        log.warning("verification failed to run: %s", exc)
        return {"passed": False, "method": "error", "detail": f"verification could not run: {exc}"}


def _table_to_check(ctx: PlatformContext, turn: dict[str, Any], incident: dict[str, Any] | None, vars: dict[str, Any]) -> str | None:
    args = turn["call"].get("arguments") or {}
    table = (incident or {}).get("table") if incident else args.get("table") or vars.get("silver")
    if table is None and args.get("pipeline") in ctx.inventory.pipelines:
        table = ctx.inventory.pipeline(args["pipeline"]).silver
    if isinstance(table, str) and table in ctx.inventory.tables and ctx.inventory.tables[table].layer in ("silver", "gold"):
        return table
    silver = vars.get("silver")
    return silver if isinstance(silver, str) else None


def _freshness(ctx: PlatformContext, incident: dict[str, Any], now: datetime) -> dict[str, Any]:
    name = str(incident.get("cause_key", "")).split(":", 1)[0]
    monitor = ctx.inventory.monitors.get(name)
    if monitor is None:
        return {"passed": False, "method": "monitor", "detail": f"no monitor {name!r} to re-check"}
    findings = [f for f in check_freshness(ctx, monitor, now, stall_after_s=float("inf")) if f.cause_key == incident.get("cause_key")]
    if findings:
        return {"passed": False, "method": "monitor", "detail": findings[0].title}
    return {"passed": True, "method": "monitor", "detail": f"{monitor.name} is clear at {now.isoformat()}"}


def _in_line(ctx: PlatformContext, incident: dict[str, Any], now: datetime, result: dict[str, Any]) -> dict[str, Any]:
    """Every day of a distribution incident on a table no mart writes is back in line with the table's history."""
    from pipelines.monitors.distribution import days_in_line

    name = str(incident.get("cause_key", "")).split(":", 1)[1]
    monitor = ctx.inventory.monitors.get(name)
    days = _incident_days(incident)
    if monitor is None or not days:
        return {"passed": False, "method": "distribution", "detail": f"no monitor {name!r} or no day to re-judge"}
    wrong = {d: why for d, why in days_in_line(ctx, monitor, [_day(d) for d in days], now).items() if why}
    if wrong:
        return {"passed": False, "method": "distribution", "detail": "; ".join(f"{d}: {why}" for d, why in wrong.items())}
    feeds = sorted({str(m) for e in incident.get("evidence") or [] for m in e.get("feeds") or []})
    marked = result.get("marts_to_rebuild") or []
    # The fix marks the marts' changed days; the next run of their pipelines rebuilds them (pipelines/remediation.py).
    if marked:
        marked_days = ", ".join(result.get("days_to_rebuild") or [])
        rebuild = f"; the marts built from it ({', '.join(marked)}) are marked to be rebuilt for {marked_days} at the next pipeline run"
    else:
        rebuild = f"; the marts built from it ({', '.join(feeds)}) were not rebuilt: refresh them for those days" if feeds else ""
    return {
        "passed": True,
        "method": "distribution",
        "detail": f"{incident.get('table')} {', '.join(days)} back in line with their history{rebuild}",
    }


def _incident_days(incident: dict[str, Any]) -> list[str]:
    """Every day a bad-publish incident's occurrences named (YYYY-MM-DD)."""
    return sorted({str(d) for e in incident.get("evidence") or [] for d in (e.get("days") or [e.get("day") or e.get("partition")]) if d})


def _reconciled(ctx: PlatformContext, incident: dict[str, Any]) -> dict[str, Any]:
    """Every day of a bad-publish incident recomputes to what `main` now publishes."""
    from pipelines.monitors.reconcile import Reconciler, mart_writing

    table = str(incident.get("table"))
    days = _incident_days(incident)
    if not days:
        return {"passed": False, "method": "reconcile", "detail": "the incident names no day to recompute"}
    reconciler = Reconciler(ctx, mart_writing(ctx, table))
    current = reconciler.table.current_snapshot()
    if current is None:
        return {"passed": False, "method": "reconcile", "detail": f"{table} has no snapshot"}
    verdicts = {day: reconciler.judge(_day(day), current.snapshot_id).status for day in days}
    wrong = {day: status for day, status in verdicts.items() if status != "reconciled"}
    if wrong:
        return {"passed": False, "method": "reconcile", "detail": "; ".join(f"{d}: {s}" for d, s in wrong.items())}
    return {
        "passed": True,
        "method": "reconcile",
        "detail": f"recomputing {table} for {', '.join(days)} from its inputs gives what main publishes",
    }


def _extent_status(
    ctx: PlatformContext, incident: dict[str, Any], vars: dict[str, Any], now: datetime, result: dict[str, Any]
) -> dict[str, Any]:
    """Every day of a completeness incident's extent, re-validated: what is fixed, what the source still lacks."""
    from pipelines.extent import DayExtent, Extent

    table = vars.get("silver") or incident.get("table")
    days = list((vars.get("extent") or {}).get("days") or [vars.get("day")])
    if not isinstance(table, str) or not days:
        return {"passed": False, "method": "extent", "detail": "the incident names no table or day to re-check"}
    current = ctx.incidents.get(int(incident["id"])).extent if incident.get("id") is not None else None
    known = {d.day: d for d in (current.days if current else ())}
    known |= {d.day: d for run in result.get("runs", []) for d in (DayExtent.model_validate(e) for e in run.get("extents") or [])}
    fixed: list[str] = []
    open_days: list[str] = []
    for day in days:
        check = check_partition(ctx, table, _day(str(day)), as_of=now)
        (fixed if check.passed else open_days).append(day)
    parts = [f"fixed and re-validated: {', '.join(fixed)}"] if fixed else []
    if open_days:
        still = Extent(days=tuple(known[d] for d in open_days if d in known))
        lacking = still.describe() if still.days else f"{', '.join(open_days)} still incomplete"
        parts.append(f"still open: {lacking}; the source still lacks them")
    return {
        "passed": not open_days,
        "method": "extent",
        "detail": "; ".join(parts),
        "fixed_days": fixed,
        "open_days": open_days,
    }
