"""Keyed change monitor: each series of a keyed table (a country's annual grid intensity) against its own earlier value.

A national grid's annual mean intensity moves by tens of percent a year (a coal plant closing, a dry year for
hydro). A value several times the same country's previous year, or a revision several times what was published
for the same year, is a unit or keying error in the delivery (kg read as g, a misplaced decimal, two countries'
rows swapped), even when each value is physically possible alone and the delivery as a whole is in grams, so
neither the row checks nor the delivery's table check (`delivered_in_grams`) can see it.

Each evaluation reads the table's main (keyed tables of this kind hold one row per key and year: hundreds to
thousands of rows) and judges the rows that are new or changed since the last look (their values are kept in the
monitor's state). A changed row is compared with what was published for the same key and time before (a
revision); a new row with the key's latest earlier time (the year before). It is flagged when the ratio is
`max_ratio` or more either way and the two differ by `min_difference` or more, so a grid near zero moving from 2 to
9 g is no alarm. All flagged rows of one evaluation are one `value_anomaly` finding, worst first; a person judges
it (the agent escalates with the evidence). On its first evaluation there is nothing published before, so only
year-on-year changes can be judged.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from config.inventory import MonitorSpec
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.state import load_state, save_state

SHOWN = 10  # changes named in a finding's title and evidence


def check_keyed_change(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    table = load_table(ctx.catalog, spec.table)
    if table.current_snapshot() is None:
        return []
    column = spec.columns[0]
    rows = table.scan(selected_fields=("ts", column, *spec.series_key)).to_arrow().to_pylist()
    _, state = load_state(ctx, spec.name)
    seen: dict[str, float | None] = state.get("seen") or {}
    series: dict[str, list[tuple[datetime, float | None]]] = {}
    for row in rows:
        series.setdefault(_key(row, spec), []).append((row["ts"], row[column]))
    changes = []
    current: dict[str, float | None] = {}
    for key, points in series.items():
        points.sort(key=lambda p: p[0])
        for index, (ts, value) in enumerate(points):
            slot = f"{key}|{ts.isoformat()}"
            current[slot] = value
            if slot in seen and seen[slot] == value:
                continue
            if slot in seen:
                before, against = seen[slot], "published before"
            else:
                earlier = [(t, v) for t, v in points[:index] if v is not None]
                before, against = (earlier[-1][1], f"its value for {earlier[-1][0].date().isoformat()}") if earlier else (None, "")
            change = _change(spec, key, ts, value, before, against)
            if change is not None:
                changes.append(change)
    save_state(ctx, spec.name, now, {"status": "active", "seen": current, "rows": len(rows)})
    if not changes:
        return []
    return [_finding(spec, column, sorted(changes, key=lambda c: -abs(math.log(c["ratio"]))))]


def _key(row: dict[str, Any], spec: MonitorSpec) -> str:
    return " / ".join(str(row[k]) for k in spec.series_key)


def _change(spec: MonitorSpec, key: str, ts: datetime, value: float | None, before: float | None, against: str) -> dict[str, Any] | None:
    if value is None or before is None or value <= 0 or before <= 0:
        return None
    ratio = value / before
    if max(ratio, 1 / ratio) < spec.max_ratio or abs(value - before) < spec.min_difference:
        return None
    return {"key": key, "ts": ts.isoformat(), "value": value, "previous": before, "compared_with": against, "ratio": round(ratio, 4)}


def _finding(spec: MonitorSpec, column: str, changes: list[dict[str, Any]]) -> Finding:
    worst = changes[0]
    named = "; ".join(
        f"{c['key']} {c['ts'][:10]}: {c['value']:,.4g} against {c['previous']:,.4g} ({_factor(c['ratio'])} {c['compared_with']})"
        for c in changes[:SHOWN]
    )
    more = f" and {len(changes) - SHOWN} more" if len(changes) > SHOWN else ""
    first = min(datetime.fromisoformat(c["ts"]) for c in changes)
    return Finding(
        kind="value_anomaly",
        severity=spec.severity,
        table=spec.table,
        cause_key=f"keyed:{spec.name}",
        partition=first.date().isoformat(),
        occurred_at=first,
        title=f"{spec.table}: {len(changes)} value(s) of {column} changed {spec.max_ratio:g}x or more against the same series: {named}{more}",
        evidence={
            "rule": "keyed_change",
            "column": column,
            "value": worst["value"],
            "expected": worst["previous"],
            "changes": changes[:SHOWN],
            "flagged": len(changes),
            "max_ratio": spec.max_ratio,
            "min_difference": spec.min_difference,
        },
    )


def _factor(ratio: float) -> str:
    return f"{ratio:,.3g}x" if ratio >= 1 else f"1/{1 / ratio:,.3g}"
