"""Release of a quarantined day: held rows go back into their table once they pass its suite again.

    release_day      held rows ──re-validate──► WAP publish into main, then ──delete──► quarantine

A sibling of `pipelines.remediation` (quarantine, delete, rollback), whose table lock, audit-branch publish
and snapshot properties it shares. Crash safety is the same: the table gets the rows before quarantine loses
them, so a crash between the two commits leaves rows in both places, and a re-run clears them without
writing any row twice (released rows are matched on the table's key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, NotEqualTo, Or
from pyiceberg.table import Table

from config.errors import PipelineError
from config.inventory import Inventory, SuiteSpec, TableSpec
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.quarantine import row_key
from pipelines.remediation import (
    MANUAL,
    FailedExpectation,
    Operation,
    ReleaseResult,
    commit_properties,
    day_start,
    locked_table,
    mark_marts,
    publish_day,
    quarantine_tables,
    remediable,
)
from pipelines.validation.suite import SuiteOutcome, validate


def suite_of(inventory: Inventory, name: str) -> SuiteSpec:
    """The suite the promotion validates `name` with."""
    for p in inventory.pipelines.values():
        if p.silver == name:
            return inventory.suite(p.suite)
    for mart in inventory.marts.values():
        if mart.table == name and mart.suite is not None:
            return inventory.suite(mart.suite)
    raise PipelineError(f"{name} has no expectation suite, so held rows cannot be re-validated")


@dataclass(frozen=True, kw_only=True)
class _Held:
    """A quarantine row whose original values are a row of the target table."""

    quarantine: str
    key: str
    manual: bool
    at: datetime
    row: dict[str, Any]


def _as_row(spec: TableSpec, schema: pa.Schema, original: str) -> dict[str, Any] | None:
    """The table row a quarantine row's original JSON holds, or None when it holds something else (a raw payload, a file)."""
    try:
        values = json.loads(original)
        if not isinstance(values, dict) or set(values) != {c.name for c in spec.columns}:
            return None
        for column in spec.columns:
            parse = {"timestamptz": datetime.fromisoformat, "date": date.fromisoformat}.get(column.type)
            if parse is not None and values[column.name] is not None:
                values[column.name] = parse(values[column.name])
        if any(values[c.name] is None for c in spec.columns if c.required):
            return None
        pa.Table.from_pylist([values], schema=schema)  # the column types, as the write will check them
    except (ValueError, TypeError, pa.ArrowException):
        return None
    return values


def _held_rows(ctx: PlatformContext, spec: TableSpec, quarantines: list[str], start: datetime) -> tuple[list[_Held], int]:
    """Releasable quarantine rows meant for `spec` on one day, the newest per key and kind; and how many rows are held in all."""
    newest: dict[tuple[bool, str], _Held] = {}
    total = 0
    schema = arrow_schema(spec)
    for quarantine in quarantines:
        data = wap.read_days(load_table(ctx.catalog, quarantine), [start])
        for q in data.to_pylist():
            if q["target_table"] != spec.name:
                continue
            total += 1
            row = _as_row(spec, schema, q["original"])
            if row is None:
                continue
            held = _Held(quarantine=quarantine, key=row_key(spec, row), manual=q["expectation"] == MANUAL, at=q["quarantined_at"], row=row)
            kept = newest.get((held.manual, held.key))
            if kept is None or held.at >= kept.at:
                newest[(held.manual, held.key)] = held
    return list(newest.values()), total


def _failing_rows(outcome: SuiteOutcome, n: int) -> dict[int, list[str]]:
    """Row number -> failed expectations; partition and table failures fail every row of the (single-day) batch."""
    failing = {i: list(names) for i, names in outcome.failing_rows.items()}
    whole = [name for names in outcome.held_days.values() for name in names] + outcome.table_failures
    if whole:
        for i in range(n):
            failing.setdefault(i, []).extend(whole)
    return failing


def _failures(outcome: SuiteOutcome, failing: dict[int, list[str]], candidates: dict[int, _Held]) -> list[FailedExpectation]:
    by_name: dict[str, list[str]] = {}
    for i, held in sorted(candidates.items()):
        for name in failing.get(i, []):
            by_name.setdefault(name, []).append(held.key)
    spec = {o.name: o for o in outcome.outcomes}
    return [
        FailedExpectation(name=name, scope=spec[name].scope, why=spec[name].why, rows=len(keys), sample=keys[:5])
        for name, keys in sorted(by_name.items())
    ]


def release_day(
    ctx: PlatformContext, name: str, day: date, *, run_id: str, as_of: datetime, include_pipeline_holds: bool = False
) -> ReleaseResult:
    """Publish the held rows of `day` back into `name` if they pass its suite now, then take them out of quarantine.

    Released are the rows `quarantine_day` held and, with `include_pipeline_holds`, rows the promotion held whose
    original values now pass. The suite sees the day as the promotion saw it: main's rows plus every held row,
    so day-level checks count the slots the promotion counted. Any manually held row failing refuses the
    whole release; failing pipeline-held rows simply stay. Held rows whose key main already has (a later run
    republished them, or an interrupted release published them) are not written again; manual ones are cleared.
    """
    spec = remediable(ctx.inventory, name)
    quarantines = quarantine_tables(ctx.inventory, name)
    start = day_start(day)
    with locked_table(ctx, name, *quarantines) as table:
        before = wap.branch_head(table, wap.MAIN)
        main_rows = wap.read_days(table, [start]).cast(table.schema().as_arrow())
        main_keys = {row_key(spec, r) for r in main_rows.to_pylist()}
        held, total_held = _held_rows(ctx, spec, quarantines, start)
        manual_keys = {h.key for h in held if h.manual}
        cleared = [h for h in held if h.manual and h.key in main_keys]
        manual = [h for h in held if h.manual and h.key not in main_keys]
        piped = [h for h in held if not h.manual and h.key not in main_keys and h.key not in manual_keys]
        result = ReleaseResult(
            table=name, day=day.isoformat(), changed=False, run_id=run_id, snapshot_before=before, snapshot_after=before,
            status="nothing_to_release", rows_released=0, rows_cleared=0, rows_still_held=total_held,
        )  # fmt: skip
        if not manual and not cleared and not (include_pipeline_holds and piped):
            return result
        released: list[_Held] = []
        failures: list[FailedExpectation] = []
        if manual or (include_pipeline_holds and piped):
            batch = pa.concat_tables([main_rows, pa.Table.from_pylist([h.row for h in manual + piped], schema=main_rows.schema)])
            outcome = validate(suite_of(ctx.inventory, name), batch, as_of=as_of)
            failing = _failing_rows(outcome, batch.num_rows)
            offset = main_rows.num_rows
            candidates = dict(enumerate(manual, start=offset))
            if include_pipeline_holds:
                candidates |= dict(enumerate(piped, start=offset + len(manual)))
            failures = _failures(outcome, failing, candidates)
            if any(i in failing for i in range(offset, offset + len(manual))):
                return result.model_copy(update={"status": "validation_failed", "failing": failures})
            released = [h for i, h in candidates.items() if i not in failing]
        after = before
        rebuild: dict[str, list[str]] = {}
        if released:
            rebuild = mark_marts(ctx, name, [start], run_id=run_id)
            new_day = pa.concat_tables([main_rows, pa.Table.from_pylist([h.row for h in released], schema=main_rows.schema)])
            after = publish_day(
                table, new_day, start, run_id=run_id, properties=commit_properties(run_id, spec, Operation.RELEASE, day=day)
            )
        # Only after the table has them: a crash here leaves rows in both places, and a re-run clears them.
        removed = _clear(ctx, name, start, [*released, *cleared], run_id=run_id, day=day)
        return result.model_copy(
            update={
                "changed": bool(released or removed), "status": "released" if released or removed else "validation_failed",
                "snapshot_after": after, "rows_released": len(released), "rows_cleared": len(cleared),
                "rows_still_held": total_held - removed, "failing": failures, **rebuild,
            }
        )  # fmt: skip


def _clear(ctx: PlatformContext, name: str, start: datetime, done: list[_Held], *, run_id: str, day: date) -> int:
    """Delete the quarantine rows of `done` (every held version of their keys); returns the rows removed."""
    removed = 0
    for quarantine in sorted({h.quarantine for h in done}):
        manual = sorted({h.key for h in done if h.manual and h.quarantine == quarantine})
        piped = sorted({h.key for h in done if not h.manual and h.quarantine == quarantine})
        # pyiceberg predicates take positional (term, literal); their pydantic signatures hide that from mypy.
        clauses: list[BooleanExpression] = []
        if manual:
            clauses.append(And(EqualTo("expectation", MANUAL), In("record_key", manual)))  # type: ignore[call-arg,arg-type]
        if piped:
            clauses.append(And(NotEqualTo("expectation", MANUAL), In("record_key", piped)))  # type: ignore[call-arg,arg-type]
        which = clauses[0] if len(clauses) == 1 else Or(*clauses)
        row_filter = And(wap.days_filter([start]), EqualTo("target_table", name), which)  # type: ignore[call-arg,arg-type]
        qtable = load_table(ctx.catalog, quarantine)
        count = qtable.scan(row_filter=row_filter, selected_fields=("record_key",)).to_arrow().num_rows
        if count:
            _delete(qtable, row_filter, commit_properties(run_id, ctx.inventory.table(quarantine), Operation.RELEASE, day=day))
            removed += count
    return removed


def _delete(table: Table, row_filter: BooleanExpression, properties: dict[str, str]) -> None:
    wap.with_commit_retry(lambda: table.delete(row_filter, snapshot_properties=properties), table=table, what="delete")
    table.refresh()
