"""Monitors: freshness, volume, schema, value, published-data audit and reconciliation, each producing findings.

Each monitor keeps a watermark in the ops database (`state.py`: the last day or point it judged), so
evaluating again does not report the same thing twice; the incident store groups what does repeat.
Freshness and volume are judged against what the pipelines have processed (their watermark), never
against a clock the pipelines have not reached yet. Findings that people labelled expected are dropped
by `feedback.filter_findings` before they reach the incident store.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pyiceberg.expressions import EqualTo

from config.inventory import MonitorSpec
from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.ledger import as_utc
from pipelines.monitors import feedback
from pipelines.monitors.state import MonitorStateRow, load_state, save_state

log = logging.getLogger(__name__)
__all__ = ["MonitorStateRow", "check_freshness", "check_schema", "check_volume", "evaluate", "processed_until", "source_covers"]


def _day(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def source_covers(ctx: PlatformContext, table: str, now: datetime) -> bool:
    """Under replay, whether the bundled data of the source feeding `table` covers `now`."""
    if ctx.settings.source_mode != "replay":
        return True
    for p in ctx.inventory.pipelines_feeding(table):
        coverage = ctx.inventory.source(p.source).replay_coverage
        if not coverage:
            return True
        for start, end in coverage:
            if datetime.fromisoformat(start + "T00:00:00+00:00") <= now < datetime.fromisoformat(end + "T00:00:00+00:00"):
                return True
    return False


def _held_after(ctx: PlatformContext, table: str, newest: datetime, until: datetime) -> set[datetime]:
    """Slots of `table` after its newest published one (up to `until`) that failed a row check and are held in its
    pipelines' quarantine. Days held back whole (an incomplete day, an outage) are not counted: there the source
    really did not deliver, and the freshness page stands."""
    days = [_day(newest) + timedelta(days=i) for i in range((_day(until) - _day(newest)).days + 1)]
    held: set[datetime] = set()
    for quarantine in sorted({p.quarantine for p in ctx.inventory.pipelines_feeding(table)}):
        rows = wap.read_days(load_table(ctx.catalog, quarantine), days, columns=("ts", "target_table", "scope")).to_pylist()
        held |= {
            r["ts"]
            for r in rows
            if r["target_table"] == table and r["scope"] == "row" and r["ts"] is not None and newest < r["ts"] <= until
        }
    return held


def _cadence(ctx: PlatformContext, table: str) -> timedelta:
    feeding = ctx.inventory.pipelines_feeding(table)
    minutes = min((ctx.inventory.source(p.source).cadence_minutes for p in feeding), default=60)
    return timedelta(minutes=minutes)


def _last_good_run(ctx: PlatformContext, table: str) -> tuple[datetime, datetime] | None:
    """(as_of, finished_at) of the latest successful run of a pipeline writing `table`."""
    best: tuple[datetime, datetime] | None = None
    for p in ctx.inventory.pipelines_feeding(table):
        for run in ctx.ledger.runs(pipeline=p.name, limit=20):
            if run.status in ("succeeded", "quarantined") and run.finished_at is not None:
                as_of, finished = as_utc(run.as_of), as_utc(run.finished_at)
                assert as_of is not None and finished is not None
                if best is None or as_of > best[0]:
                    best = (as_of, finished)
                break
    return best


def processed_until(ctx: PlatformContext, table: str, now: datetime) -> datetime | None:
    """Up to when the pipelines writing `table` have processed their source (the slowest of them).

    A pipeline's watermark under `serve`; otherwise the end of the data its latest successful run
    covered (a window ending after the run's clock counts up to the clock). None when nothing ran yet.
    """
    until: list[datetime] = []
    for p in ctx.inventory.pipelines_feeding(table):
        marks = [m for m in (ctx.control.watermark(p.name),) if m is not None]
        for run in ctx.ledger.runs(pipeline=p.name, limit=20):
            if run.status in ("succeeded", "quarantined"):
                end, as_of = as_utc(run.window_end), as_utc(run.as_of)
                assert end is not None and as_of is not None
                marks.append(min(end, as_of))
                break
        if not marks:
            return None
        until.append(max(marks))
    return min(min(until), now) if until else None


def check_freshness(ctx: PlatformContext, spec: MonitorSpec, now: datetime, *, stall_after_s: float | None = None) -> list[Finding]:
    """Two questions: had the source delivered when we last looked (stale), and are we keeping up (behind)?

    The lag of the newest slot is judged at the point up to which the pipelines have processed the source
    (`processed_until`), so a clock that runs ahead of the pipelines never looks like a source outage.
    How far the pipelines trail the clock is its own finding, "behind by N h", raised when they trail it by
    more than the limit and no run has succeeded for `stall_after_s` of real time (stalled). A pipeline
    that runs but trails a fast replay clock is a speed matter, not a data incident.
    """
    assert spec.max_lag_minutes is not None
    limit = spec.max_lag_minutes * 60
    stall_after_s = ctx.settings.misfire_grace_s if stall_after_s is None else stall_after_s
    last = _last_good_run(ctx, spec.table)
    looked_at = processed_until(ctx, spec.table, now)
    if last is None or looked_at is None:
        return []  # nothing ran yet: there is no lag to judge
    # The week before the pipeline last looked: a pipeline stalled for longer is still judged where it stopped.
    table = load_table(ctx.catalog, spec.table)
    recent = wap.read_days(table, [_day(looked_at) - timedelta(days=i) for i in range(7)], columns=("ts",))
    newest: datetime | None = max((t for t in recent.column("ts").to_pylist() if t is not None and t <= now), default=None)
    if newest is None:
        return []  # nothing landed in the week before the last look: the runs report that
    slot_end = newest + _cadence(ctx, spec.table)
    source_lag = (looked_at - slot_end).total_seconds()
    # The lag as judged here, not against `now`: under replay the clock runs hours ahead of the pipelines and past
    # the end of the bundled data, and the alert rule (config/prometheus/alerts.yml) must agree with this monitor.
    if not source_covers(ctx, spec.table, now):
        # Past the bundled data of a replay nothing is expected: no lag is judged, so none is exported to alert on.
        for gauge in (metrics.FRESHNESS_LAG, metrics.FRESHNESS_LIMIT, metrics.FRESHNESS_HELD):
            with contextlib.suppress(KeyError):  # never exported
                gauge.remove(spec.table)
        return []
    held: set[datetime] = set()
    if source_lag > limit:
        held = _held_after(ctx, spec.table, newest, looked_at)
        if held and (looked_at - (max(held) + _cadence(ctx, spec.table))).total_seconds() > limit:
            held = set()  # the source did stop delivering after the held slots: that is an outage, and it pages
    # All three together, once the slow part is done: a scrape in between must not see the lag without the held slots.
    metrics.FRESHNESS_LAG.labels(spec.table).set(max(0.0, source_lag))
    metrics.FRESHNESS_LIMIT.labels(spec.table).set(limit)
    metrics.FRESHNESS_HELD.labels(spec.table).set(len(held))
    findings = []
    if source_lag > limit:
        title = (
            f"{spec.table} is stale: when the pipeline last looked ({looked_at.isoformat()}) the newest slot had ended "
            f"{source_lag / 3600:.1f} h before (limit {limit / 3600:.1f} h)"
        )
        if held:
            # The source delivered; validation held what came after the newest published slot. Readers still see
            # stale data, but it is not an outage: the validation incident names the cause, so this one only warns.
            title += (
                f"; the source did deliver: {len(held)} later slot(s), up to {max(held).isoformat()}, failed validation and "
                "are held in quarantine (see the validation incident)"
            )
        findings.append(
            Finding(
                kind="freshness",
                severity="warning" if held else spec.severity,
                table=spec.table,
                cause_key=spec.name,
                title=title,
                occurred_at=slot_end,
                evidence={
                    "newest_slot": newest.isoformat(),
                    "looked_at": looked_at.isoformat(),
                    "lag_s": round(source_lag),
                    "limit_s": limit,
                    "held_slots": len(held),
                },
            )
        )
    behind = (now - looked_at).total_seconds()
    real_idle = (datetime.now(UTC) - last[1]).total_seconds()
    pipelines = ctx.inventory.pipelines_feeding(spec.table)
    paused = any(ctx.control.is_paused(p.name) for p in pipelines)
    if behind > limit and not paused and real_idle > stall_after_s:
        names = ", ".join(p.name for p in pipelines)
        how = f"no successful run for {real_idle:.0f} s of real time"
        findings.append(
            Finding(
                kind="freshness",
                severity="warning",
                table=spec.table,
                cause_key=f"{spec.name}:behind",
                title=f"pipeline {names} is behind by {behind / 3600:.1f} h: it has processed up to {looked_at.isoformat()} ({how})",
                occurred_at=looked_at,
                evidence={"processed_until": looked_at.isoformat(), "behind_s": round(behind), "real_idle_s": round(real_idle)},
            )
        )
    return findings


def check_volume(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    """Distinct records per complete UTC day against the median and MAD of the previous days.

    Only days the pipelines have finished processing are judged: a day they have not reached is not empty.
    """
    watermark, state = load_state(ctx, spec.name)
    processed = processed_until(ctx, spec.table, now)
    if processed is None:
        return []
    last_complete = _day(processed) - timedelta(days=1)
    first = last_complete if watermark is None else watermark + timedelta(days=1)
    if first > last_complete:
        return []
    days = [last_complete - timedelta(days=i) for i in range((last_complete - first).days + spec.history_days + 1)]
    data = wap.read_days(load_table(ctx.catalog, spec.table), days, columns=("ts", "record_key"))
    counts: Counter[datetime] = Counter()
    for ts, _key in set(zip(data.column("ts").to_pylist(), data.column("record_key").to_pylist(), strict=True)):
        counts[_day(ts)] += 1
    started = min(counts) if counts else None
    findings = []
    day = first
    while day <= last_complete:
        history = [
            counts.get(day - timedelta(days=i), 0)
            for i in range(1, spec.history_days + 1)
            if started and day - timedelta(days=i) >= started
        ]
        if len(history) >= 7 and source_covers(ctx, spec.table, day + timedelta(hours=12)):
            median = float(np.median(history))
            mad = float(np.median(np.abs(np.array(history) - median))) * 1.4826
            allowed = max(3 * mad, spec.tolerance * median, 1.0)
            observed = counts.get(day, 0)
            if abs(observed - median) > allowed:
                findings.append(
                    Finding(
                        kind="volume",
                        severity=spec.severity,
                        table=spec.table,
                        cause_key=spec.name,
                        partition=day.date().isoformat(),
                        title=f"{spec.table}: {observed} records on {day.date()} against a usual {median:.0f} (allowed ±{allowed:.0f})",
                        occurred_at=day,
                        evidence={"day": day.date().isoformat(), "observed": observed, "median": median, "allowed": allowed},
                    )
                )
        day += timedelta(days=1)
    save_state(ctx, spec.name, last_complete, state)
    return findings


def _shape(payload: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(payload, dict):
        for key, value in payload.items():
            path = f"{prefix}{key}"
            out[path] = type(value).__name__ if not isinstance(value, dict) else "object"
            out.update(_shape(value, path + "."))
    return out


def check_schema(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    """Fields added, missing or retyped in the payloads of the latest run against the contract and the last shape."""
    pipelines = ctx.inventory.pipelines_feeding(spec.table)
    if not pipelines:
        return []
    pipeline = pipelines[0]
    runs = ctx.ledger.runs(pipeline=pipeline.name, limit=1)
    watermark, state = load_state(ctx, spec.name)
    if not runs or state.get("run_id") == runs[0].run_id:
        return []
    run = runs[0]
    table = load_table(ctx.catalog, spec.table)
    if table.current_snapshot() is None:
        return []
    payloads = table.scan(row_filter=EqualTo("run_id", run.run_id), selected_fields=("payload",), limit=500).to_arrow()  # type: ignore[call-arg,arg-type]
    if payloads.num_rows == 0:
        save_state(ctx, spec.name, watermark, {**state, "run_id": run.run_id})
        return []
    shape: dict[str, set[str]] = {}
    for text in payloads.column("payload").to_pylist():
        for path, kind in _shape(json.loads(text)).items():
            shape.setdefault(path, set()).add(kind)
    current = {path: sorted(kinds - {"NoneType"}) or ["NoneType"] for path, kinds in shape.items()}
    contract = ctx.inventory.source(pipeline.source).contract
    missing = [f for f in contract if f not in current]
    previous: dict[str, list[str]] = state.get("shape", {})
    added = sorted(set(current) - set(previous)) if previous else []
    removed = sorted(set(previous) - set(current)) if previous else []
    retyped = sorted(
        p for p in set(current) & set(previous) if set(current[p]) - set(previous[p]) - {"NoneType"} and previous[p] != ["NoneType"]
    )
    save_state(ctx, spec.name, watermark, {"run_id": run.run_id, "shape": {**previous, **current} if not removed else current})
    if not (missing or added or removed or retyped):
        return []
    parts = [
        f"{label} {', '.join(items)}"
        for label, items in (("missing", missing), ("added", added), ("removed", removed), ("retyped", retyped))
        if items
    ]
    return [
        Finding(
            kind="schema_drift",
            severity=spec.severity,
            table=spec.table,
            cause_key=spec.name,
            title=f"{spec.table} payload changed shape: {'; '.join(parts)}",
            occurred_at=as_utc(run.window_start),
            evidence={
                "run_id": run.run_id,
                "missing": missing,
                "added": added,
                "removed": removed,
                "retyped": {p: {"was": previous.get(p), "now": current.get(p)} for p in retyped},
            },
            run_id=run.run_id,
        )
    ]


Check = Callable[[PlatformContext, MonitorSpec, datetime], list[Finding]]


def _checks() -> dict[str, Check]:
    from pipelines.monitors.distribution import check_distribution
    from pipelines.monitors.forecast_accuracy import check_forecast
    from pipelines.monitors.keyed_change import check_keyed_change
    from pipelines.monitors.publish_audit import audit_published
    from pipelines.monitors.reconcile import check_reconcile
    from pipelines.monitors.value import check_value

    return {
        "freshness": check_freshness,
        "volume": check_volume,
        "schema": check_schema,
        "value": check_value,
        "published": lambda ctx, spec, now: audit_published(ctx, spec.table, now, days=spec.history_days),
        "reconcile": check_reconcile,
        "distribution": check_distribution,
        "forecast": check_forecast,
        "keyed_change": check_keyed_change,
    }


def evaluate(ctx: PlatformContext, monitors: list[MonitorSpec], now: datetime) -> list[Finding]:
    """Every monitor's findings that no suppression covers; a monitor that breaks is logged and skipped."""
    checks = _checks()
    findings: list[Finding] = []
    for spec in monitors:
        try:
            findings += checks[spec.kind](ctx, spec, now)
        except Exception:  # one broken monitor must not blind the rest
            log.exception("monitor %s failed", spec.name)
    return feedback.filter_findings(ctx, findings, now)
