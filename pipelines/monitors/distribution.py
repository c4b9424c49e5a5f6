"""Distribution monitor: each new or changed complete day of a gold table against the table's own history.

Reconciliation (pipelines/monitors/reconcile.py) proves a publish wrong by recomputing it, which needs
the input snapshots; once upkeep expired them, or when silver itself carried the error, only the data's
own history is left. A unit or scale error (x10, x1000, /1000) moves a whole day by a constant factor;
weather moves days too (a windy week halves GB carbon intensity, a stormy Sunday divides it by three),
but within what the previous weeks have already seen.

For each column the day is summarised by its median (by its interquartile range for a column that is not
strictly positive, where a ratio of medians means nothing). The score is how far, as a log-ratio, that
summary lies outside the range of the same summary over the previous `history_days` days as published:
0 inside the range. Over 2023 no clean day of the hourly mart lies outside its previous four weeks' range
by more than a factor 1.8 (18 September; the stormy 12 March by 1.36), while a day scaled by 10 or 1/10
lands more than 2.5 times outside it on 94 to 99% of days, and by 1000 on all of them. The
alarm threshold is calibrated on the table's own history: the smallest score that the history's days (each
scored against its own previous days) exceed no more often than the false-alarm budget allows, and never
below a physical floor of a factor 2.5. Until `min_history_days` days exist the monitor says it is
warming up.

A day is judged when it is complete and its rows changed since it was last judged (a digest per day in
`monitor_state`); a day found out of line is left out of later references while it stays as it is, so
a unit change that persists is reported day after day rather than becoming the new normal.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from pyiceberg.table import Table

from config.errors import DataOpsError
from config.inventory import MonitorSpec
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.day_history import MAX_ANCESTORS, day_files, day_floor, find_writer, properties, signature
from pipelines.monitors.state import load_state, save_state

FLOOR_RATIO = 2.5  # no day within this factor of its references' range is called a scale error, whatever the history
MIN_REFERENCES = 7  # a history day is scored for calibration only against at least this many days of its own
MIN_SHARE_OF_ROWS = 0.5  # a day with fewer rows than this share of the usual count is not judged (incomplete)
MAX_VERSIONS = 10  # older versions of a day looked at while searching the good snapshot


@dataclass(frozen=True, kw_only=True)
class DayProfile:
    rows: int
    digest: str
    median: dict[str, float | None]
    iqr: dict[str, float | None]


@dataclass(frozen=True, kw_only=True)
class Judgement:
    column: str
    statistic: str
    score: float
    threshold: float
    log_ratio: float
    observed: float
    usual: float
    low: float
    high: float
    calibrated_on: int

    @property
    def out_of_line(self) -> bool:
        return self.score > self.threshold


def profile(rows: pa.Table, columns: tuple[str, ...]) -> DayProfile:
    """Median and interquartile range of each column over one day's rows, and a digest of the rows."""
    order = sorted(range(rows.num_rows), key=lambda i: rows.column("ts")[i].as_py())
    data = {c: [rows.column(c)[i].as_py() for i in order] for c in ("ts", *columns)}
    digest = hashlib.sha256(repr(sorted(zip(*data.values(), strict=True))).encode()).hexdigest()[:16]
    median: dict[str, float | None] = {}
    iqr: dict[str, float | None] = {}
    for column in columns:
        values = np.array([float(v) for v in data[column] if v is not None and not math.isnan(float(v))], dtype=float)
        if values.size:
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            median[column], iqr[column] = float(q50), float(q75 - q25)
        else:
            median[column] = iqr[column] = None
    return DayProfile(rows=rows.num_rows, digest=digest, median=median, iqr=iqr)


def profiles(rows: pa.Table, columns: tuple[str, ...]) -> dict[datetime, DayProfile]:
    days = [day_floor(ts) for ts in rows.column("ts").to_pylist()]
    out = {}
    for day in sorted(set(days)):
        mask = pa.array([d == day for d in days], type=pa.bool_())
        out[day] = profile(rows.filter(mask), columns)
    return out


def _statistic(found: dict[datetime, DayProfile], column: str) -> str | None:
    """median for a strictly positive column, else the interquartile range; None when neither is a scale."""
    medians = [m for p in found.values() if (m := p.median[column]) is not None]
    if medians and min(medians) > 0:
        return "median"
    spreads = [s for p in found.values() if (s := p.iqr[column]) is not None]
    return "iqr" if spreads and min(spreads) > 0 else None


def _log(found: DayProfile, column: str, statistic: str) -> float | None:
    value = (found.median if statistic == "median" else found.iqr)[column]
    return math.log(value) if value is not None and value > 0 else None


class Scorer:
    """Scores days of one column against the days before them."""

    def __init__(self, logs: dict[datetime, float], history_days: int) -> None:
        self.logs = logs
        self.days = sorted(logs)
        self.history_days = history_days

    def references(self, day: datetime) -> list[datetime]:
        start = day - timedelta(days=self.history_days)
        return [d for d in self.days if start <= d < day]

    def score(self, value: float, references: list[datetime]) -> tuple[float, float, float, float]:
        """(score, usual, low, high) of a day's log statistic: how far it lies outside the references' range."""
        logs = [self.logs[d] for d in references]
        low, high = min(logs), max(logs)
        return max(0.0, value - high, low - value), float(np.median(logs)), low, high

    def threshold(self, references: list[datetime], per_day: float) -> tuple[float, int]:
        """(log threshold, days calibrated on): the smallest log-ratio the references exceed within the budget."""
        scores = []
        for day in references:
            own = self.references(day)
            if len(own) >= MIN_REFERENCES:
                scores.append(self.score(self.logs[day], own)[0])
        allowed = int(per_day * len(scores))
        ranked = sorted(scores, reverse=True)
        calibrated = ranked[allowed] if allowed < len(ranked) else 0.0
        return max(math.log(FLOOR_RATIO), calibrated), len(scores)


def check_distribution(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    """Judge each complete day of the last `history_days` that is new or changed since it was last judged."""
    table = load_table(ctx.catalog, spec.table)
    _, state = load_state(ctx, spec.name)
    head = wap.branch_head(table, wap.MAIN)
    today = day_floor(now)
    if head is None or (state.get("head"), state.get("today")) == (head, today.date().isoformat()):
        return []  # no day changed and none completed since the last look
    judged_from = today - timedelta(days=spec.history_days)
    start = judged_from - timedelta(days=2 * spec.history_days)
    rows = wap.read_days(table, [start + timedelta(days=i) for i in range((today - start).days)], columns=("ts", *spec.columns))
    found = profiles(rows, spec.columns)
    keep = judged_from.date().isoformat()
    judged: dict[str, str] = {k: v for k, v in (state.get("judged") or {}).items() if k >= keep}
    flagged: dict[str, str] = {k: v for k, v in (state.get("flagged") or {}).items() if k >= start.date().isoformat()}
    usual_rows = float(np.median([p.rows for p in found.values()])) if found else 0.0
    complete = {d for d, p in found.items() if p.rows >= MIN_SHARE_OF_ROWS * usual_rows}
    statistics = {c: _statistic({d: found[d] for d in complete}, c) for c in spec.columns}
    status, detail = state.get("status", "active"), state.get("detail", "")
    out_of_line: dict[datetime, list[Judgement]] = {}
    for day in sorted(d for d in complete if d >= judged_from):
        key = day.date().isoformat()
        if judged.get(key) == found[day].digest:
            continue
        usable = {d for d in complete if flagged.get(d.date().isoformat()) != found[d].digest}
        judgements, history = _judge(found, day, usable, statistics, spec)
        judged[key] = found[day].digest
        if history < spec.min_history_days:
            status, detail = "warming_up", f"warming up: {history} of {spec.min_history_days} days of history before {key}"
            continue
        status, detail = "active", _explain(key, judgements)
        bad = [j for j in judgements if j.out_of_line]
        if bad:
            flagged[key] = found[day].digest
            out_of_line[day] = bad
        else:
            flagged.pop(key, None)
    out_of_line = {day: bad for day, bad in out_of_line.items() if not _recompute_decides(ctx, spec.table, day, head)}
    findings = []
    if out_of_line:
        usable = {d for d in complete if flagged.get(d.date().isoformat()) != found[d].digest}
        good = _good_snapshot(table, found, out_of_line, statistics, spec, usable)
        findings.append(_finding(table, spec, found, out_of_line, good))
    save_state(
        ctx,
        spec.name,
        now,
        {
            "status": status,
            "detail": detail,
            "head": head,
            "today": today.date().isoformat(),
            "judged": judged,
            "flagged": flagged,
            "statistics": statistics,
        },
    )
    return findings


def _recompute_decides(ctx: PlatformContext, table_name: str, day: datetime, head: int) -> bool:
    """Whether the day can be recomputed from its inputs, so the reconcile monitor judges it instead.

    A day that differs from its recompute is the reconcile monitor's to report (one incident, not two); a
    day that equals it is what silver says, so an unusual distribution there is not a bad publish.
    """
    from pipelines.monitors.reconcile import Reconciler, mart_writing

    if not any(m.kind == "reconcile" and m.table == table_name for m in ctx.inventory.monitors.values()):
        return False
    try:
        status = Reconciler(ctx, mart_writing(ctx, table_name)).judge(day, head).status
    except DataOpsError:
        return False
    return status in ("reconciled", "differs")


def _explain(key: str, judgements: list[Judgement]) -> str:
    parts = [
        f"{j.column} {j.observed:.4g} ({math.exp(j.score):.2f}x outside [{j.low:.4g}, {j.high:.4g}], alarm beyond "
        f"{math.exp(j.threshold):.2f}x calibrated on {j.calibrated_on} days)"
        for j in judgements
    ]
    return f"last judged {key}: " + "; ".join(parts)


def _judge(
    found: dict[datetime, DayProfile],
    day: datetime,
    usable: set[datetime],
    statistics: dict[str, str | None],
    spec: MonitorSpec,
    candidate: DayProfile | None = None,
) -> tuple[list[Judgement], int]:
    """Each column of `day` (or of `candidate`, another version of it) against the usable days before it,
    and how many days of history the best-covered column had."""
    judgements = []
    history = 0
    subject = candidate or found[day]
    for column, statistic in statistics.items():
        if statistic is None:
            continue
        logs = {d: v for d in usable if d != day and (v := _log(found[d], column, statistic)) is not None}
        scorer = Scorer(logs, spec.history_days)
        references = scorer.references(day)
        history = max(history, len(references))
        value = _log(subject, column, statistic)
        if value is None or len(references) < spec.min_history_days:
            continue
        score, usual, low, high = scorer.score(value, references)
        threshold, calibrated_on = scorer.threshold(references, spec.budget.per_day)
        judgement = Judgement(
            column=column,
            statistic=statistic,
            score=score,
            threshold=threshold,
            log_ratio=value - usual,
            observed=math.exp(value),
            usual=math.exp(usual),
            low=math.exp(low),
            high=math.exp(high),
            calibrated_on=calibrated_on,
        )
        judgements.append(judgement)
    return judgements, history


def _good_snapshot(
    table: Table,
    found: dict[datetime, DayProfile],
    out_of_line: dict[datetime, list[Judgement]],
    statistics: dict[str, str | None],
    spec: MonitorSpec,
    usable: set[datetime],
) -> int | None:
    """The newest snapshot before the days' current versions at which every one of them is within bounds."""
    head = wap.branch_head(table, wap.MAIN)
    if head is None:
        return None
    current = day_files(table, head, out_of_line)
    writers = [w for day in out_of_line if not isinstance(w := find_writer(table, day, head, current.get(day)), str)]
    if not writers:
        return None
    cursor = min(writers, key=lambda s: s.sequence_number or 0).parent_snapshot_id
    verdicts: dict[tuple[datetime, str], bool] = {}
    for _ in range(MAX_ANCESTORS):
        snapshot = table.metadata.snapshot_by_id(cursor) if cursor is not None else None
        if snapshot is None or len(verdicts) > MAX_VERSIONS:
            return None
        files = day_files(table, snapshot.snapshot_id, out_of_line)
        good = True
        for day in sorted(out_of_line):
            version = signature(files.get(day, {}))
            if (day, version) not in verdicts:
                verdicts[(day, version)] = bool(version) and _within_bounds(
                    table, snapshot.snapshot_id, day, found, statistics, spec, usable
                )
            if not verdicts[(day, version)]:
                good = False
                break
        if good:
            return snapshot.snapshot_id
        cursor = snapshot.parent_snapshot_id
    return None


def _within_bounds(
    table: Table,
    snapshot_id: int,
    day: datetime,
    found: dict[datetime, DayProfile],
    statistics: dict[str, str | None],
    spec: MonitorSpec,
    usable: set[datetime],
) -> bool:
    rows = table.scan(row_filter=wap.days_filter([day]), snapshot_id=snapshot_id, selected_fields=("ts", *spec.columns)).to_arrow()
    if not rows.num_rows:
        return False
    judgements, _ = _judge(found, day, usable, statistics, spec, candidate=profile(rows, spec.columns))
    return bool(judgements) and not any(j.out_of_line for j in judgements)


def _finding(
    table: Table, spec: MonitorSpec, found: dict[datetime, DayProfile], out_of_line: dict[datetime, list[Judgement]], good: int | None
) -> Finding:
    days = sorted(out_of_line)
    worst = max(out_of_line[days[0]], key=lambda j: j.score)
    head = wap.branch_head(table, wap.MAIN)
    writer = find_writer(table, days[0], head) if head is not None else "no head"
    bad = writer if not isinstance(writer, str) else table.current_snapshot()
    details: list[dict[str, Any]] = [
        {
            "day": day.date().isoformat(),
            "column": j.column,
            "statistic": j.statistic,
            "observed": round(j.observed, 6),
            "usual": round(j.usual, 6),
            "usual_range": [round(j.low, 6), round(j.high, 6)],
            "beyond_range": round(math.exp(j.score), 4),
            "ratio": round(math.exp(j.log_ratio), 4),
            "threshold_ratio": round(math.exp(j.threshold), 4),
            "calibrated_on_days": j.calibrated_on,
        }
        for day in days
        for j in out_of_line[day]
    ]
    named = ", ".join(d.date().isoformat() for d in days)
    return Finding(
        kind="bad_publish",
        severity=spec.severity,
        table=spec.table,
        cause_key=f"distribution:{spec.name}",
        partition=days[0].date().isoformat(),
        occurred_at=days[0],
        title=f"{spec.table}: {worst.column} on {named} is {math.exp(worst.log_ratio):.3g}x its usual {worst.statistic} "
        f"({worst.observed:.4g} against {worst.usual:.4g}), {math.exp(worst.score):.2f}x outside the range of the previous "
        f"{spec.history_days} days [{worst.low:.4g}, {worst.high:.4g}] (alarm beyond {math.exp(worst.threshold):.2f}x, "
        f"calibrated on {worst.calibrated_on} days)",
        evidence={
            "day": days[0].date().isoformat(),
            "days": [d.date().isoformat() for d in days],
            "column": worst.column,
            "statistic": worst.statistic,
            "observed": round(worst.observed, 6),
            "usual": round(worst.usual, 6),
            "usual_range": [round(worst.low, 6), round(worst.high, 6)],
            "ratio": round(math.exp(worst.log_ratio), 4),
            "beyond_range": round(math.exp(worst.score), 4),
            "threshold_ratio": round(math.exp(worst.threshold), 4),
            "budget": f"{spec.budget.incidents} per {spec.budget.per_days} days",
            "columns": details[:20],
            "bad_snapshot_id": bad.snapshot_id if bad is not None else None,
            "bad_run_id": properties(bad).get("run_id") if bad is not None else None,
            "good_snapshot_id": good,
        },
    )
