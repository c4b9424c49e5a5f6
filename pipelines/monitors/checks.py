"""Monitors: freshness, volume, schema and value anomalies, each producing findings for the incident store.

Each monitor keeps a watermark in the ops database (the last day or point it judged), so evaluating again
does not report the same thing twice; the incident store groups what does repeat.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
from pyiceberg.expressions import EqualTo
from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from config.inventory import MonitorSpec
from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.ledger import Base, _aware

log = logging.getLogger(__name__)


class MonitorStateRow(Base):
    __tablename__ = "monitor_state"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def _state(ctx: PlatformContext, name: str) -> tuple[datetime | None, dict[str, Any]]:
    with ctx.ledger.session() as s:
        row = s.get(MonitorStateRow, name)
        return (_aware(row.watermark), dict(row.state or {})) if row else (None, {})


def _save_state(ctx: PlatformContext, name: str, watermark: datetime | None, state: dict[str, Any]) -> None:
    with ctx.ledger.session() as s, s.begin():
        row = s.get(MonitorStateRow, name)
        if row is None:
            row = MonitorStateRow(name=name)
            s.add(row)
        row.watermark, row.state = watermark, state


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
                as_of, finished = _aware(run.as_of), _aware(run.finished_at)
                assert as_of is not None and finished is not None
                if best is None or as_of > best[0]:
                    best = (as_of, finished)
                break
    return best


def check_freshness(ctx: PlatformContext, spec: MonitorSpec, now: datetime, *, stall_after_s: float | None = None) -> list[Finding]:
    """Two questions: did the source deliver by our last look (source stale), and are we still looking (stalled)?

    The lag of the newest slot is judged at the clock of the last successful run, so a replay clock that
    runs ahead of the pipelines does not look like a source outage; a pipeline that has not succeeded for
    longer than the limit on the clock and `stall_after_s` of real time is reported as stalled.
    """
    assert spec.max_lag_minutes is not None
    limit = spec.max_lag_minutes * 60
    stall_after_s = ctx.settings.misfire_grace_s if stall_after_s is None else stall_after_s
    table = load_table(ctx.catalog, spec.table)
    recent = wap.read_days(table, [_day(now) - timedelta(days=i) for i in range(7)], columns=("ts",))
    newest: datetime | None = max((t for t in recent.column("ts").to_pylist() if t is not None and t <= now), default=None)
    last = _last_good_run(ctx, spec.table)
    if newest is None or last is None:
        return []  # nothing landed in a week: the runs report that; a freshness lag needs a last slot
    slot_end = newest + _cadence(ctx, spec.table)
    metrics.FRESHNESS_LAG.labels(spec.table).set(max(0.0, (now - slot_end).total_seconds()))
    if not source_covers(ctx, spec.table, now):
        return []
    findings = []
    looked_at, finished = last
    source_lag = (looked_at - slot_end).total_seconds()
    if source_lag > limit:
        findings.append(
            Finding(
                kind="freshness",
                severity=spec.severity,
                table=spec.table,
                cause_key=spec.name,
                title=f"{spec.table} is stale: at the last run the newest slot had ended {source_lag / 3600:.1f} h before (limit {limit / 3600:.1f} h)",
                occurred_at=slot_end,
                evidence={
                    "newest_slot": newest.isoformat(),
                    "looked_at": looked_at.isoformat(),
                    "lag_s": round(source_lag),
                    "limit_s": limit,
                },
            )
        )
    real_idle = (datetime.now(UTC) - finished).total_seconds()
    paused = any(ctx.control.is_paused(p.name) for p in ctx.inventory.pipelines_feeding(spec.table))
    if (now - looked_at).total_seconds() > limit and real_idle > stall_after_s and not paused:
        findings.append(
            Finding(
                kind="freshness",
                severity="warning",
                table=spec.table,
                cause_key=f"{spec.name}:stalled",
                title=f"no successful run has written {spec.table} since the clock read {looked_at.isoformat()} ({real_idle:.0f} s ago)",
                occurred_at=looked_at,
                evidence={"last_good_run_as_of": looked_at.isoformat(), "real_idle_s": round(real_idle)},
            )
        )
    return findings


def check_volume(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    """Distinct records per complete UTC day against the median and MAD of the previous days."""
    watermark, state = _state(ctx, spec.name)
    last_complete = _day(now) - timedelta(days=1)
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
    _save_state(ctx, spec.name, last_complete, state)
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
    watermark, state = _state(ctx, spec.name)
    if not runs or state.get("run_id") == runs[0].run_id:
        return []
    run = runs[0]
    table = load_table(ctx.catalog, spec.table)
    if table.current_snapshot() is None:
        return []
    payloads = table.scan(row_filter=EqualTo("run_id", run.run_id), selected_fields=("payload",), limit=500).to_arrow()  # type: ignore[call-arg,arg-type]
    if payloads.num_rows == 0:
        _save_state(ctx, spec.name, watermark, {**state, "run_id": run.run_id})
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
    _save_state(ctx, spec.name, watermark, {"run_id": run.run_id, "shape": {**previous, **current} if not removed else current})
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
            occurred_at=_aware(run.window_start),
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


def series(ctx: PlatformContext, spec: MonitorSpec, start: datetime, end: datetime) -> tuple[list[datetime], np.ndarray]:
    days = [_day(start) + timedelta(days=i) for i in range((_day(end) - _day(start)).days + 1)]
    data = wap.read_days(load_table(ctx.catalog, spec.table), days)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("t", data)
        where = f"AND ({spec.where})" if spec.where else ""
        rows = con.execute(
            f"SELECT ts, ({spec.expression}) AS v FROM t WHERE ts >= ? AND ts < ? {where} AND ({spec.expression}) IS NOT NULL ORDER BY ts",
            [start, end],
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows], np.array([float(r[1]) for r in rows], dtype=float)


Scorer = Callable[[list[datetime], np.ndarray, int, np.ndarray], np.ndarray]


def check_value(ctx: PlatformContext, spec: MonitorSpec, now: datetime, *, scorer: Scorer, threshold: float) -> list[Finding]:
    """Score the points that arrived since the last evaluation against the history before each of them."""
    watermark, state = _state(ctx, spec.name)
    ts, values = series(ctx, spec, now - timedelta(days=spec.history_days), now)
    if not ts:
        return []
    fresh = [i for i, t in enumerate(ts) if watermark is None or t > watermark]
    if not fresh:
        return []
    inside = set(state.get("inside_incidents", []))
    exclude = np.array([t.isoformat() in inside for t in ts], dtype=bool)
    scores = scorer(ts, values, len(fresh), exclude)
    metrics.ANOMALY_SCORE.labels(spec.name).set(float(np.max(scores)) if len(scores) else 0.0)
    flagged = [(ts[i], float(values[i]), float(s)) for i, s in zip(fresh, scores, strict=True) if s >= threshold]
    state["inside_incidents"] = sorted(inside | {t.isoformat() for t, _, _ in flagged})[-2000:]
    _save_state(ctx, spec.name, ts[-1], state)
    if not flagged:
        return []
    worst = max(flagged, key=lambda f: f[2])
    return [
        Finding(
            kind="value_anomaly",
            severity=spec.severity,
            table=spec.table,
            cause_key=spec.name,
            title=f"{spec.name}: {len(flagged)} anomalous point(s), worst {worst[1]:.1f} at {worst[0].isoformat()} (score {worst[2]:.2f})",
            occurred_at=flagged[0][0],
            evidence={
                "points": [{"ts": t.isoformat(), "value": v, "score": round(s, 3)} for t, v, s in flagged[:10]],
                "threshold": threshold,
            },
        )
    ]


def evaluate(ctx: PlatformContext, monitors: list[MonitorSpec], now: datetime, *, scorer: Scorer, threshold: float) -> list[Finding]:
    """Every monitor's findings; a monitor that breaks is logged and skipped, never silences the others."""
    findings: list[Finding] = []
    for spec in monitors:
        try:
            if spec.kind == "freshness":
                findings += check_freshness(ctx, spec, now)
            elif spec.kind == "volume":
                findings += check_volume(ctx, spec, now)
            elif spec.kind == "schema":
                findings += check_schema(ctx, spec, now)
            elif spec.kind == "published":
                from pipelines.monitors.publish_audit import audit_published

                findings += audit_published(ctx, spec.table, now, days=spec.history_days)
            else:
                findings += check_value(ctx, spec, now, scorer=scorer, threshold=threshold)
        except Exception:  # one broken monitor must not blind the rest
            log.exception("monitor %s failed", spec.name)
    return findings
