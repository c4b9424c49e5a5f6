"""Value monitors: each new point scored once against its series' model, judged by a calibrated threshold.

A tick reads the series from ``history_days`` before the first unscored point's day up to the clock, scores
only the points after the monitor's watermark (`models.judge_day`, one UTC day at a time), and compares
each with the threshold `calibration.calibrate` derives from the monitor's false-alarm budget and the
daily maxima of its own past scores. Points people labelled real and points already flagged stay out of
the baselines; points labelled expected stay in. Until ``min_history_days`` of data precede a day the
monitor is *warming up*: it scores nothing and says so in its state (`dataops monitors`).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from config.inventory import MonitorSpec
from pipelines import duck, metrics
from pipelines.context import PlatformContext
from pipelines.forecast.schema import HORIZON_SLOTS, SLOT
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors import day_bias, feedback
from pipelines.monitors.calibration import CALIBRATION_DAYS, calibrate
from pipelines.monitors.models import GLITCH_MAX_SLOTS, RULE_SCORE, PointScore, judge_day
from pipelines.monitors.residuals import SeriesFrame
from pipelines.monitors.state import load_state, save_state

MAX_FLAGGED = 5000
MAX_FIRST_READ_DAYS = 400
_RULE_KEYS = {
    "glitch": "glitch",
    "stuck": "stuck",
    "repeated_day": "repeated_day",
    "impossible_step": "impossible_step",
    "unit_change": "unit_change",
    "bias": "bias",
}


def read_series(ctx: PlatformContext, spec: MonitorSpec, start: datetime, end: datetime) -> SeriesFrame:
    """The monitor's series (``expression``, and ``reference`` if any) over [start, end), in time order."""
    first = start.replace(hour=0, minute=0, second=0, microsecond=0)
    days = [first + timedelta(days=i) for i in range((end - first).days + 1)]
    data = wap.read_days(load_table(ctx.catalog, spec.table), days)
    with duck.cursor() as con:
        if spec.forecast is None:
            con.register("t", data)
        else:
            con.register("t_raw", data)
            _with_our_forecast(ctx, con, spec.forecast, start, end)
        where = f"AND ({spec.where})" if spec.where else ""
        ref = f"({spec.reference})" if spec.reference else "NULL"
        rows = con.execute(
            f"SELECT ts, ({spec.expression}) AS v, {ref} AS r FROM t "
            f"WHERE ts >= ? AND ts < ? {where} AND isfinite(({spec.expression})::DOUBLE) ORDER BY ts",
            [start, end],
        ).fetchall()
    ts = pd.DatetimeIndex([r[0] for r in rows], tz="UTC") if rows else pd.DatetimeIndex([], tz="UTC")
    values = np.array([float(r[1]) for r in rows], dtype=float)
    reference = np.array([np.nan if r[2] is None else float(r[2]) for r in rows], dtype=float) if spec.reference else None
    return SeriesFrame(ts=ts, x=values, ref=reference)


def _with_our_forecast(ctx: PlatformContext, con: duckdb.DuckDBPyConnection, name: str, start: datetime, end: datetime) -> None:
    """View `t`: the table's rows (`t_raw`) plus `our_forecast`, each slot's point from the latest issue made at or before the slot
    (what was known when it happened; an actual far from a good forecast is stronger evidence than a deviation from a
    seasonal baseline). Slots no issue covers get null."""
    spec = ctx.inventory.forecast(name)
    table = load_table(ctx.catalog, spec.table)
    lead = HORIZON_SLOTS * SLOT  # the oldest issue that can cover a slot of the window
    if table.current_snapshot() is None:
        issues = pa.table(
            {
                "issued_at": pa.array([], pa.timestamp("us", tz="UTC")),
                "ts": pa.array([], pa.timestamp("us", tz="UTC")),
                "point": pa.array([], pa.float64()),
            }
        )
    else:
        row_filter = f"issued_at >= '{(start - lead).isoformat()}' AND issued_at < '{end.isoformat()}'"
        issues = table.scan(row_filter=row_filter, selected_fields=("issued_at", "ts", "point")).to_arrow()
    con.register("issues", issues)
    con.execute(
        "CREATE TEMP VIEW t AS SELECT t_raw.*, f.point AS our_forecast FROM t_raw "
        "ASOF LEFT JOIN issues f ON t_raw.ts = f.ts AND t_raw.ts >= f.issued_at"
    )


def score_points(
    spec: MonitorSpec,
    frame: SeriesFrame,
    fresh: np.ndarray,
    state: dict[str, Any],
    *,
    labels: dict[str, list[str]] | None = None,
    sensitivity: float = 1.0,
) -> tuple[list[PointScore], list[PointScore]]:
    """Score the ``fresh`` indices of ``frame`` day by day; returns (scored, flagged) and updates ``state``.

    ``state`` carries what one tick leaves to the next: points flagged so far, the daily maxima of past
    scores, the threshold and the status. Scoring a series in one call or in any number of consecutive
    calls gives the same scores and flags.
    """
    labels = labels or {}
    expected, real = set(labels.get("expected", [])), set(labels.get("real", []))
    flagged_set = set(state.get("flagged", [])) - expected
    daily_max: dict[str, float] = dict(state.get("daily_max", {}))
    iso = np.array([t.isoformat() for t in frame.ts.to_pydatetime()])
    blocked = np.array([t in flagged_set or t in real for t in iso], dtype=bool)
    day_of = frame.ts.normalize()
    per_day = float(pd.Timedelta(days=1) / frame.cadence) if len(frame.ts) > 2 else 24.0
    scored: list[PointScore] = []
    flagged: list[PointScore] = []
    by_day: dict[pd.Timestamp, list[int]] = defaultdict(list)
    for i in fresh:
        by_day[day_of[i]].append(int(i))
    for day, points in sorted(by_day.items()):
        if spec.model == "forecast_error" and (bias := _bias_of_the_day_before(spec, frame, day, blocked, state, sensitivity)):
            scored.append(bias)
            flagged.append(bias)
        lo = day - pd.Timedelta(days=spec.history_days)
        history = np.flatnonzero((frame.ts >= lo) & (frame.ts < day) & ~blocked)
        history_days = len(set(day_of[history]))
        if history_days < spec.min_history_days:
            state["status"] = "warming_up"
            state["detail"] = f"warming up: {history_days} of {spec.min_history_days} days of history before {day.date()}"
            continue
        judgement = judge_day(spec.model, frame, history, np.array(points))
        key = day.strftime("%Y-%m-%d")
        past = {k: v for k, v in daily_max.items() if k < key}
        if len(past) < 14:  # too few out-of-sample days yet: the history's in-sample maxima stand in
            past = {**judgement.history_daily_max, **past}
        threshold = calibrate(spec.budget, per_day, [past[k] for k in sorted(past)], sensitivity=sensitivity)
        state["status"], state["threshold"], state["detail"] = "active", round(threshold.score, 3), threshold.explain()
        for entry in judgement.scores:
            scored.append(entry)
            # A flagged point counts at the threshold: a defect must not raise the bar for the next one.
            daily_max[key] = max(daily_max.get(key, 0.0), min(entry.score, threshold.score))
            if entry.score >= threshold.score:
                flagged.append(entry)
                flagged_set.add(entry.ts.isoformat())
                blocked[entry.index] = True
    state["flagged"] = sorted(flagged_set)[-MAX_FLAGGED:]
    state["daily_max"] = dict(sorted(daily_max.items())[-CALIBRATION_DAYS:])
    return scored, flagged


def _bias_of_the_day_before(
    spec: MonitorSpec, frame: SeriesFrame, day: pd.Timestamp, blocked: np.ndarray, state: dict[str, Any], sensitivity: float
) -> PointScore | None:
    """Judge the last day with data before ``day`` for a bias over the whole day (`day_bias.py`), once: a day is over
    when a later day's first point is scored, which happens at the same point whether the series comes in one call
    or many. A flag is dated from the day's start and stands at its last point."""
    before = np.flatnonzero(frame.ts < day)
    if not len(before):
        return None
    previous = frame.ts[before[-1]].normalize()
    key = previous.strftime("%Y-%m-%d")
    if key <= str(state.get("bias_judged", "")):
        return None
    state["bias_judged"] = key
    points = np.flatnonzero((frame.ts >= previous) & (frame.ts < previous + pd.Timedelta(days=1)) & np.isfinite(frame.x))
    lo = previous - pd.Timedelta(days=spec.history_days)
    history = np.flatnonzero((frame.ts >= lo) & (frame.ts < previous) & ~blocked)
    if len(set(frame.ts[history].normalize())) < spec.min_history_days:
        return None
    bias = day_bias.judge(frame, previous, points, history, state, spec.budget, sensitivity=sensitivity)
    if bias is None or not bias.biased:
        return None
    last = int(points[-1])
    return PointScore(
        index=last,
        ts=frame.ts[last].to_pydatetime(),
        value=bias.mean,
        score=RULE_SCORE,  # as the other rules: its own p-value and threshold are in the detail
        direction="high" if bias.deviation >= 0 else "low",
        rule="bias",
        detail=bias.detail(),
        since=previous.to_pydatetime(),
    )


def check_value(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    """Score the points that arrived since the last evaluation; findings for those beyond the threshold."""
    watermark, state = load_state(ctx, spec.name)
    start = (now - timedelta(days=MAX_FIRST_READ_DAYS)) if watermark is None else watermark
    # One day more than the history: its first points need their predecessors (steps, means, runs) as in one pass.
    start = start.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=spec.history_days + 1)
    frame = read_series(ctx, spec, start, now)
    if not len(frame.ts):
        return []
    # the glitch rule needs the slots after a stretch
    ready = len(frame.ts) - GLITCH_MAX_SLOTS if spec.model == "forecast_error" and spec.reference else len(frame.ts)
    fresh = np.array([i for i in range(ready) if watermark is None or frame.ts[i] > watermark], dtype=int)
    if not len(fresh):
        return []
    labels = feedback.labelled_points(ctx, spec.name)
    scored, flagged = score_points(spec, frame, fresh, state, labels=labels, sensitivity=ctx.settings.anomaly_sensitivity)
    if scored:
        metrics.ANOMALY_SCORE.labels(spec.name).set(max(p.score for p in scored))
        metrics.ANOMALY_THRESHOLD.labels(spec.name).set(float(state.get("threshold", 0.0)))
    save_state(ctx, spec.name, frame.ts[fresh[-1]].to_pydatetime(), state)
    return findings_of(spec, frame, flagged, threshold=float(state.get("threshold", 0.0)))


def findings_of(spec: MonitorSpec, frame: SeriesFrame, flagged: list[PointScore], *, threshold: float) -> list[Finding]:
    """One finding per kind of deviation (calibrated anomaly, glitch, stuck, repeated day, impossible step, unit change,
    a day's bias).

    A forecast glitch is the source's own forecast gone wrong for one slot: an `info` finding of its own
    kind, which the agent records and closes (config/runbooks.yaml `forecast_glitch`), not a page.
    """
    groups: dict[str, list[PointScore]] = defaultdict(list)
    for point in flagged:
        groups[_RULE_KEYS.get(point.rule, "anomaly")].append(point)
    stretches: list[tuple[str, list[PointScore]]] = []
    for group, points in groups.items():
        if group != "glitch":  # one finding per UTC day, so a tick over many days does not merge separate events
            by_day: dict[str, list[PointScore]] = defaultdict(list)
            for point in points:
                by_day[point.ts.date().isoformat()].append(point)
            stretches += [(group, day_points) for _, day_points in sorted(by_day.items())]
            continue
        for point in points:  # one finding per glitch: a stretch of consecutive slots
            if stretches and stretches[-1][0] == "glitch" and stretches[-1][1][-1].index == point.index - 1:
                stretches[-1][1].append(point)
            else:
                stretches.append(("glitch", [point]))
    findings = []
    for group, points in stretches:
        worst = max(points, key=lambda p: p.score)
        glitch = group == "glitch"
        findings.append(
            Finding(
                kind="forecast_glitch" if glitch else "value_anomaly",
                severity="info" if glitch else spec.severity,
                table=spec.table,
                cause_key=spec.name if group == "anomaly" else f"{spec.name}:{group}",
                title=_title(spec, frame, group, points, worst, threshold),
                occurred_at=points[0].since or points[0].ts,
                evidence={
                    "monitor": spec.name,
                    "model": spec.model,
                    "rule": group,
                    "direction": worst.direction,
                    "score": round(worst.score, 3),
                    "threshold": round(threshold, 3),
                    "start": (points[0].since or points[0].ts).isoformat(),
                    "end": points[-1].ts.isoformat(),
                    "points": [
                        {"ts": p.ts.isoformat(), "value": p.value, "score": round(p.score, 3), "rule": p.rule, "detail": p.detail}
                        for p in points[:20]
                    ],
                },
            )
        )
    return findings


def _title(spec: MonitorSpec, frame: SeriesFrame, group: str, points: list[PointScore], worst: PointScore, threshold: float) -> str:
    at = worst.ts.isoformat()
    if group == "glitch":
        assert frame.ref is not None
        first, last = points[0], points[-1]
        forecasts = ", ".join(f"{frame.ref[p.index]:.0f}" for p in points[:6])
        around = f"{frame.ref[first.index - 1]:.0f} before, {frame.ref[last.index + 1]:.0f} after"
        return (
            f"{spec.name}: forecast glitch, {len(points)} slot(s) from {first.ts.isoformat()} to {last.ts.isoformat()}: "
            f"the forecast ({forecasts}) leaves the forecasts around it ({around}) while the actual does not; "
            f"misses by up to {max(abs(p.value) for p in points):.0f}"
        )
    since, last = (points[0].since or points[0].ts).isoformat(), points[-1]  # a run rule's last point ends its longest run
    if group == "stuck":
        copied = "; the forecast equals the actual: a copied column?" if spec.reference and worst.value == 0 else ""
        return f"{spec.name}: stuck at {worst.value:g} from {since} to {last.ts.isoformat()} ({last.detail}){copied}"
    if group == "repeated_day":
        return (
            f"{spec.name}: from {since} to {last.ts.isoformat()} every value repeats the same slot one day earlier "
            f"({last.detail}): a stale copy of the day before?"
        )
    if group == "bias":
        return f"{spec.name}: biased all day from {since} to {last.ts.isoformat()}: {last.detail}"
    if group in ("impossible_step", "unit_change"):
        return f"{spec.name}: {group.replace('_', ' ')} at {at}: value {worst.value:g}, {worst.detail}"
    return (
        f"{spec.name}: {len(points)} point(s) beyond what its history makes plausible; worst {worst.value:.1f} at {at} "
        f"({worst.detail}; p = 1e-{worst.score:.1f}, threshold 1e-{threshold:.1f} from its false-alarm budget)"
    )
