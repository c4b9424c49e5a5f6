"""Distribution monitor: each new or changed complete day of a silver or gold table against the table's own history.

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

On silver the same judgement catches what nothing else would: a day rewritten out of band (straight to
main, not through the pipeline) is not rescored by the value monitors, which score new slots past their
watermark, nor by reconciliation, which recomputes gold from the silver snapshot gold was built from.
There is no mart to recompute a silver day from, so nothing is left to reconciliation; the finding is the
same `bad_publish` (rolled back to the last snapshot where the day was in line) and names the marts that
read the table, which may have been built from the bad day. Over 2023 no clean day of
silver.carbon_intensity's half-hourly `actual` or `forecast` lies outside its previous four weeks' range by
more than a factor 1.77 (18 September; 12 March by 1.31 and 1.39), while x10 lands beyond 2.5 on 94% of
days and x0.1 on 97 to 99% (computed from the bundled NESO 2023 CSV with the same statistic: daily median,
previous 28 days, at least 14 of them).

One column rescaled alone by 2 or 1/2 stays inside that column's own range on most days, but not inside the
range of its ratio to a column measuring the same quantity: `ratios: [[actual, forecast]]` judges each day's
median actual/forecast the same way, with a floor of 1.5 (`day_profile.PAIR_FLOOR_RATIO`, where the 2023
figures are), and names the pair ("actual/forecast on 2023-05-10 is 0.5x its usual median").

A day is judged when it is complete and its rows changed since it was last judged (a digest per day in
`monitor_state`); a day found out of line is left out of later references while it stays as it is, so
a unit change that persists is reported day after day rather than becoming the new normal.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pyiceberg.table import Table

from config.errors import DataOpsError
from config.inventory import MonitorSpec
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.day_history import MAX_ANCESTORS, day_files, day_floor, find_writer, properties, signature
from pipelines.monitors.day_profile import (
    FLOOR_RATIO,
    PAIR_FLOOR_RATIO,
    DayProfile,
    Judgement,
    Scorer,
    log_statistic,
    pair_name,
    profile,
    profiles,
    scale_statistic,
)
from pipelines.monitors.state import load_state, save_state

MIN_SHARE_OF_ROWS = 0.5  # a day with fewer rows than this share of the usual count is not judged (incomplete)
MAX_VERSIONS = 10  # older versions of a day looked at while searching the good snapshot


def check_distribution(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    """Judge each complete day of the last `history_days` that is new or changed since it was last judged."""
    table = load_table(ctx.catalog, spec.table)
    _, state = load_state(ctx, spec.name)
    head = wap.branch_head(table, wap.MAIN)
    today = day_floor(now)
    if head is None or (state.get("head"), state.get("today")) == (head, today.date().isoformat()):
        return []  # no day changed and none completed since the last look
    judged_from, start, found, complete, statistics = _window(table, spec, today)
    keep = judged_from.date().isoformat()
    judged: dict[str, str] = {k: v for k, v in (state.get("judged") or {}).items() if k >= keep}
    flagged: dict[str, str] = {k: v for k, v in (state.get("flagged") or {}).items() if k >= start.date().isoformat()}
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
    out_of_line = {day: bad for day, bad in out_of_line.items() if not _recompute_decides(ctx, spec.table, day, head, today)}
    findings = []
    if out_of_line:
        usable = {d for d in complete if flagged.get(d.date().isoformat()) != found[d].digest}
        good = _good_snapshot(table, found, out_of_line, statistics, spec, usable)
        findings.append(_finding(table, spec, found, out_of_line, good, _downstream(ctx, spec.table)))
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


def _window(
    table: Table, spec: MonitorSpec, today: datetime
) -> tuple[datetime, datetime, dict[datetime, DayProfile], set[datetime], dict[str, str | None]]:
    """(first day judged, first day read, each day's profile, the complete days, each column's statistic) before `today`."""
    judged_from = today - timedelta(days=spec.history_days)
    start = judged_from - timedelta(days=2 * spec.history_days)
    rows = wap.read_days(table, [start + timedelta(days=i) for i in range((today - start).days)], columns=("ts", *spec.columns))
    found = profiles(rows, spec.columns, spec.ratios)
    usual_rows = float(np.median([p.rows for p in found.values()])) if found else 0.0
    complete = {d for d, p in found.items() if p.rows >= MIN_SHARE_OF_ROWS * usual_rows}
    statistics = {c: scale_statistic({d: found[d] for d in complete}, c) for c in (*spec.columns, *map(pair_name, spec.ratios))}
    return judged_from, start, found, complete, statistics


def _downstream(ctx: PlatformContext, table_name: str) -> list[str]:
    """The marts' tables built from `table_name` (none for gold: marts read silver only)."""
    return sorted(m.table for m in ctx.inventory.marts.values() if table_name in m.inputs)


def days_in_line(ctx: PlatformContext, spec: MonitorSpec, days: list[datetime], now: datetime) -> dict[str, str]:
    """Each of `days` on main now against the table's history, without touching the monitor's state: "" when in
    line, else why not. The agent's check after a rollback of a table no mart writes, where no recompute can judge."""
    table = load_table(ctx.catalog, spec.table)
    _, state = load_state(ctx, spec.name)
    _, _, found, complete, statistics = _window(table, spec, day_floor(now))
    flagged: dict[str, str] = state.get("flagged") or {}
    asked = {day_floor(d) for d in days}
    usable = {d for d in complete - asked if flagged.get(d.date().isoformat()) != found[d].digest}
    verdicts = {}
    for day in sorted(asked):
        key = day.date().isoformat()
        if day not in complete:
            verdicts[key] = "not a complete day of the last weeks on main"
            continue
        judgements, history = _judge(found, day, usable, statistics, spec)
        bad = [j for j in judgements if j.out_of_line]
        if history < spec.min_history_days:
            verdicts[key] = f"only {history} of {spec.min_history_days} days of history to judge it by"
        elif not judgements:
            verdicts[key] = f"no value of {', '.join(spec.columns)} to judge"
        else:
            verdicts[key] = _describe(bad) if bad else ""
    return verdicts


def _recompute_decides(ctx: PlatformContext, table_name: str, day: datetime, head: int, today: datetime) -> bool:
    """Whether the day can be recomputed from its inputs, so the reconcile monitor judges it instead.

    A day that equals its recompute is what silver says, so an unusual distribution there is not a bad publish.
    A day that differs is the reconcile monitor's to report (one incident, not two), but only inside the days
    that monitor looks at: an older day is reported here, or by nobody.
    """
    from pipelines.monitors.reconcile import Reconciler, mart_writing

    reach = [m.history_days for m in ctx.inventory.monitors.values() if m.kind == "reconcile" and m.table == table_name]
    if not reach:
        return False
    try:
        status = Reconciler(ctx, mart_writing(ctx, table_name)).judge(day, head).status
    except DataOpsError:
        return False
    return status == "reconciled" or (status == "differs" and day >= today - timedelta(days=max(reach)))


def _explain(key: str, judgements: list[Judgement]) -> str:
    return f"last judged {key}: " + _describe(judgements)


def _describe(judgements: list[Judgement]) -> str:
    parts = [
        f"{j.column} {j.observed:.4g} ({math.exp(j.score):.2f}x outside [{j.low:.4g}, {j.high:.4g}], alarm beyond "
        f"{math.exp(j.threshold):.2f}x calibrated on {j.calibrated_on} days)"
        for j in judgements
    ]
    return "; ".join(parts)


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
        logs = {d: v for d in usable if d != day and (v := log_statistic(found[d], column, statistic)) is not None}
        scorer = Scorer(logs, spec.history_days)
        references = scorer.references(day)
        history = max(history, len(references))
        value = log_statistic(subject, column, statistic)
        if value is None or len(references) < spec.min_history_days:
            continue
        score, usual, low, high = scorer.score(value, references)
        floor = PAIR_FLOOR_RATIO if column in set(map(pair_name, spec.ratios)) else FLOOR_RATIO
        threshold, calibrated_on = scorer.threshold(references, spec.budget.per_day, floor=floor)
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
    judgements, _ = _judge(found, day, usable, statistics, spec, candidate=profile(rows, spec.columns, spec.ratios))
    return bool(judgements) and not any(j.out_of_line for j in judgements)


def _finding(
    table: Table,
    spec: MonitorSpec,
    found: dict[datetime, DayProfile],
    out_of_line: dict[datetime, list[Judgement]],
    good: int | None,
    downstream: list[str],
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
    # Only a silver table feeds marts: they may hold the bad day too (a rollback of silver marks them for a rebuild).
    feeds: dict[str, Any] = {"feeds": downstream} if downstream else {}
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
            **feeds,
        },
    )
