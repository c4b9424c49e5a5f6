"""Reconciliation of derived tables: recompute recent days of a gold mart from the silver snapshots they were
built from, and compare with what gold publishes.

A plausible but wrong publish (one day multiplied by 10 by a manual job) passes every row check; only a
recompute shows it. A mart publish records what it read (`dataops.inputs`: input table -> main snapshot,
pipelines/promotion.py) in the gold commit's snapshot properties. For each day of the last `history_days`
whose files on main changed since the monitor last looked:

    the day's files on main ──► the commit that added them (past compactions, which keep the rows)
    ──► its inputs: recorded, or for a commit that recorded none (a manual job) each input's main at the
        time of the commit ──► the mart's SQL over those snapshots' rows of the day, routed through the
        mart's suite as the promotion routes them ──► compare with gold: keys exactly, values within a
        relative and absolute 1e-9 ──► a difference is a `bad_publish` finding naming the newest snapshot
        at which the day reconciled: what a rollback returns to

Per-day state (files seen, status, file versions that reconciled) lives in `monitor_state`, so a tick
recomputes only changed days and a version found different is reported once. An input snapshot that
upkeep expired cannot be recomputed: the state says so, no incident opens, and the distribution monitor
(pipelines/monitors/distribution.py) still watches the day. A day a remediation changed on purpose
(quarantine, release or delete of a partition) is not a mart publish and is not reconciled.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from config.errors import DefinitionError
from config.inventory import MartSpec, MonitorSpec, TableSpec
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.day_history import MAX_ANCESTORS, InputExpired, day_files, day_floor, find_writer, main_at, properties, signature
from pipelines.monitors.state import load_state, save_state
from pipelines.promotion import INPUTS_PROPERTY
from pipelines.remediation import Operation
from pipelines.transforms.marts import compute_mart
from pipelines.validation.suite import validate

REL_TOL = 1e-9
ABS_TOL = 1e-9
MAX_RECOMPUTES = 5  # older versions of a day recomputed while looking for the good snapshot
SHOWN_ROWS = 10
KEEP_VERSIONS = 5  # file versions per day remembered as reconciled
LINEAGE_COLUMNS = frozenset({"run_id", "fetched_at", "payload_hash"})
REMEDIATIONS = frozenset(Operation)  # commits that changed a day on purpose: not a mart bug
EXPIRED = "cannot recompute: input snapshot expired"


def mart_writing(ctx: PlatformContext, table_name: str) -> MartSpec:
    for mart in ctx.inventory.marts.values():
        if mart.table == table_name:
            return mart
    raise DefinitionError(f"no mart writes {table_name!r}; marts write: {', '.join(sorted(m.table for m in ctx.inventory.marts.values()))}")


@dataclass(kw_only=True)
class Comparison:
    """Rows of one day that differ between gold and the recompute."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    changed: int = 0
    missing: int = 0
    extra: int = 0

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing or self.extra)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return bool(a == b)


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime | date) else value


def compare(spec: TableSpec, published: pa.Table, recomputed: pa.Table) -> Comparison:
    """Keys exactly, values within the tolerance; lineage columns (run_id) are not data."""
    values = [c.name for c in spec.columns if c.name not in spec.key and c.name not in LINEAGE_COLUMNS]

    def keyed(rows: pa.Table) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
        out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in rows.select([*spec.key, *values]).to_pylist():
            out.setdefault(tuple(row[k] for k in spec.key), []).append({v: row[v] for v in values})
        return out

    pub, rec = keyed(published), keyed(recomputed)
    result = Comparison()
    for key in sorted(set(pub) | set(rec), key=lambda k: tuple(str(p) for p in k)):
        ours, theirs = pub.get(key, []), rec.get(key, [])
        pairs = list(zip(ours, theirs, strict=False))
        differing = [(p, r) for p, r in pairs if not all(_same(p[v], r[v]) for v in values)]
        surplus = [(p, None) for p in ours[len(theirs) :]]
        lacking = [(None, r) for r in theirs[len(ours) :]]
        result.changed += len(differing)
        result.extra += len(surplus)
        result.missing += len(lacking)
        for p, r in [*differing, *surplus, *lacking]:
            if len(result.rows) < SHOWN_ROWS:
                result.rows.append(
                    {
                        "key": {k: _json(v) for k, v in zip(spec.key, key, strict=True)},
                        "published": {k: _json(v) for k, v in p.items()} if p is not None else None,
                        "recomputed": {k: _json(v) for k, v in r.items()} if r is not None else None,
                    }
                )
    return result


@dataclass(kw_only=True)
class Verdict:
    """How one version of a day compares with its recompute."""

    status: str  # reconciled | differs | cannot recompute: ... | not reconciled: ...
    writer: Snapshot | None = None
    inputs: dict[str, int | None] = field(default_factory=dict)
    basis: str = ""
    comparison: Comparison | None = None


class Reconciler:
    """Recomputes versions of a gold table's days from the inputs their commits read."""

    def __init__(self, ctx: PlatformContext, mart: MartSpec) -> None:
        self.ctx = ctx
        self.mart = mart
        self.target = ctx.inventory.table(mart.table)
        self.table = load_table(ctx.catalog, mart.table)
        self._tables: dict[str, Table] = {}

    def _input(self, name: str) -> Table:
        if name not in self._tables:
            self._tables[name] = load_table(self.ctx.catalog, name)
        return self._tables[name]

    def inputs_of(self, writer: Snapshot) -> tuple[dict[str, int | None], str]:
        """What the commit computed its rows from: recorded, or each input's main when it was made."""
        try:
            recorded = json.loads(properties(writer).get(INPUTS_PROPERTY) or "{}")
        except ValueError:
            recorded = {}
        inputs: dict[str, int | None] = {}
        basis = "recorded by the publish"
        for name in self.mart.inputs:
            if name in recorded:
                inputs[name] = recorded[name]
            else:
                inputs[name] = main_at(self._input(name), writer.timestamp_ms)
                basis = "not recorded by the commit: each input's main at the time of the commit"
        return inputs, basis

    def recompute(self, day: datetime, inputs: dict[str, int | None]) -> pa.Table:
        rows: dict[str, pa.Table] = {}
        for name, snapshot_id in inputs.items():
            table = self._input(name)
            if snapshot_id is None:
                rows[name] = table.schema().as_arrow().empty_table()
            elif table.metadata.snapshot_by_id(snapshot_id) is None:
                raise InputExpired(f"{name}@{snapshot_id}")
            else:
                rows[name] = table.scan(row_filter=wap.days_filter([day]), snapshot_id=snapshot_id).to_arrow()
        return compute_mart(self.mart, self.target, rows, days=[day])

    def routed(self, rows: pa.Table, *, as_of: datetime) -> pa.Table:
        """The rows a promotion would have published: those failing the mart's suite go to quarantine."""
        if self.mart.suite is None or not rows.num_rows:
            return rows
        outcome = validate(self.ctx.inventory.suite(self.mart.suite), rows, as_of=as_of)
        held = set(outcome.held_days)
        days = [day_floor(ts) for ts in rows.column("ts").to_pylist()]
        keep = [i not in outcome.failing_rows and days[i] not in held for i in range(rows.num_rows)]
        return rows.filter(pa.array(keep, type=pa.bool_()))

    def judge(self, day: datetime, snapshot_id: int, files: dict[str, int] | None = None) -> Verdict:
        """Recompute the version of `day` that snapshot `snapshot_id` holds and compare."""
        writer = find_writer(self.table, day, snapshot_id, files)
        if isinstance(writer, str):
            return Verdict(status=writer)
        operation = properties(writer).get("dataops.operation")
        if operation in REMEDIATIONS:
            return Verdict(status=f"not reconciled: changed on purpose by {operation}", writer=writer)
        as_of = datetime.fromtimestamp(writer.timestamp_ms / 1000, UTC)
        try:
            inputs, basis = self.inputs_of(writer)
            recomputed = self.recompute(day, inputs)
        except InputExpired as exc:
            return Verdict(status=f"{EXPIRED} ({exc})", writer=writer)
        published = self.table.scan(row_filter=wap.days_filter([day]), snapshot_id=snapshot_id).to_arrow()
        comparison = compare(self.target, published, recomputed)
        if not comparison.clean:  # rows the suite quarantined were never meant to be published
            comparison = compare(self.target, published, self.routed(recomputed, as_of=as_of))
        status = "reconciled" if comparison.clean else "differs"
        return Verdict(status=status, writer=writer, inputs=inputs, basis=basis, comparison=comparison)

    def good_snapshot(self, bad: dict[datetime, Verdict], reconciled: dict[datetime, list[str]]) -> int | None:
        """The newest snapshot before the bad commits at which every bad day holds a version that reconciles.

        Versions remembered as reconciled are taken as such; others are recomputed (a few at most). An
        ancestor without the day's rows (the delete half of an overwrite) is skipped: rolling back to it
        would empty the day.
        """
        writers = [v.writer for v in bad.values() if v.writer is not None]
        if not writers:
            return None
        cursor = min(writers, key=lambda s: s.sequence_number or 0).parent_snapshot_id
        verdicts: dict[tuple[datetime, str], bool] = {}
        recomputes = 0
        for _ in range(MAX_ANCESTORS):
            snapshot = self.table.metadata.snapshot_by_id(cursor) if cursor is not None else None
            if snapshot is None:
                return None
            files = day_files(self.table, snapshot.snapshot_id, bad)
            good = True
            for day in sorted(bad):
                version = signature(files.get(day, {}))
                if not version:
                    good = False
                elif version not in reconciled.get(day, []) and not verdicts.get((day, version), False):
                    if (day, version) in verdicts or recomputes >= MAX_RECOMPUTES:
                        good = False
                    else:
                        recomputes += 1
                        verdicts[(day, version)] = self.judge(day, snapshot.snapshot_id, files.get(day)).status == "reconciled"
                        good = verdicts[(day, version)]
                if not good:
                    break
            if good:
                return snapshot.snapshot_id
            cursor = snapshot.parent_snapshot_id
        return None


def check_reconcile(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    """Recompute the days of the last `history_days` whose gold files changed since the last look, and compare."""
    mart = mart_writing(ctx, spec.table)
    reconciler = Reconciler(ctx, mart)
    head = wap.branch_head(reconciler.table, wap.MAIN)
    _, state = load_state(ctx, spec.name)
    if head is None or state.get("head") == head:
        return []
    today = day_floor(now)
    window = [today - timedelta(days=i) for i in range(spec.history_days, -1, -1)]
    first = window[0].date().isoformat()
    days_state: dict[str, dict[str, Any]] = {k: v for k, v in (state.get("days") or {}).items() if k >= first}
    current = day_files(reconciler.table, head, window)
    bad: dict[datetime, Verdict] = {}
    for day in window:
        key = day.date().isoformat()
        files = current.get(day, {})
        version = signature(files)
        before = days_state.get(key) or {}
        if (not before and not files) or before.get("files") == version:
            continue
        known: list[str] = list(before.get("reconciled") or [])
        # back at a version that reconciled before (a rollback): nothing to recompute
        verdict = Verdict(status="reconciled") if version and version in known else reconciler.judge(day, head, files)
        entry: dict[str, Any] = {
            "files": version,
            "status": verdict.status,
            "writer": verdict.writer.snapshot_id if verdict.writer is not None else before.get("writer"),
            "checked_at": now.isoformat(),
            "reconciled": known,
            "reconciled_at": before.get("reconciled_at"),
        }
        if verdict.status == "reconciled":
            entry["reconciled"] = [*(v for v in known if v != version), version][-KEEP_VERSIONS:]
            entry["reconciled_at"] = head
        elif verdict.status == "differs":
            bad[day] = verdict
        days_state[key] = entry
    findings: list[Finding] = []
    if bad:
        good = reconciler.good_snapshot(bad, {day: days_state[day.date().isoformat()]["reconciled"] for day in bad})
        for day in bad:
            days_state[day.date().isoformat()]["good_snapshot_id"] = good
        findings.append(_finding(spec, mart, bad, good))
    counts = Counter(str(entry["status"]).split(" (", 1)[0] for entry in days_state.values())
    detail = f"last {spec.history_days} days: " + (
        ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing published"
    )
    save_state(ctx, spec.name, now, {"status": "active", "detail": detail, "head": head, "days": days_state})
    return findings


def _finding(spec: MonitorSpec, mart: MartSpec, bad: dict[datetime, Verdict], good: int | None) -> Finding:
    days = sorted(bad)
    newest = max((v.writer for v in bad.values() if v.writer is not None), key=lambda s: s.sequence_number or 0)
    per_day: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    totals = {"changed": 0, "missing": 0, "extra": 0}
    for day in days:
        verdict = bad[day]
        comparison = verdict.comparison or Comparison()
        writer = verdict.writer
        per_day[day.date().isoformat()] = {
            "changed": comparison.changed,
            "missing": comparison.missing,
            "extra": comparison.extra,
            "bad_snapshot_id": writer.snapshot_id if writer is not None else None,
            "bad_run_id": properties(writer).get("run_id") if writer is not None else None,
            "inputs": verdict.inputs,
            "inputs_basis": verdict.basis,
        }
        for name in totals:
            totals[name] += getattr(comparison, name)
        rows += [{"day": day.date().isoformat(), **row} for row in comparison.rows][: SHOWN_ROWS - len(rows)]
    named = ", ".join(d.date().isoformat() for d in days)
    counts = ", ".join(f"{n} {name}" for name, n in totals.items() if n)
    first = per_day[days[0].date().isoformat()]
    return Finding(
        kind="bad_publish",
        severity=spec.severity,
        table=spec.table,
        cause_key=f"reconcile:{mart.name}",
        partition=days[0].date().isoformat(),
        occurred_at=days[0],
        title=f"{spec.table} on {named} differs from mart {mart.name} recomputed from the silver it was built from: {counts} row(s)"
        + (f"; last reconciled at snapshot {good}" if good is not None else "; no earlier snapshot reconciles"),
        evidence={
            "day": days[0].date().isoformat(),
            "days": [d.date().isoformat() for d in days],
            "mart": mart.name,
            "bad_snapshot_id": newest.snapshot_id,
            "bad_run_id": properties(newest).get("run_id"),
            "good_snapshot_id": good,
            "inputs": first["inputs"],
            "inputs_basis": first["inputs_basis"],
            **totals,
            "rows": rows,
            "per_day": per_day,
            "tolerance": {"relative": REL_TOL, "absolute": ABS_TOL},
        },
    )
