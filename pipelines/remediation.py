"""Remediation of silver and gold tables, one UTC day or one snapshot at a time.

    quarantine_day   day's rows ──append──► quarantine.<pipeline>, then ──WAP remove──► main
    release_day      held rows ──re-validate──► WAP publish into main, then ──delete──► quarantine
    delete_day       WAP remove a day from main; the snapshot before stays for a rollback
    rollback         move main back to one of its ancestors

Crash safety: every operation commits the copy before it removes the original, so a crash between the two
commits leaves rows in both places, never in neither; running the operation again completes it without
duplicating anything (quarantine rows are deduplicated, released rows are matched on the table's key).
Each operation holds the table lock and reloads the table under it. Every snapshot it commits carries
`run_id` = `tool-<tool>-<call id>`; a rollback creates no snapshot, so it records itself in the table
property `dataops.last-rollback` in the same metadata commit.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In, NotEqualTo, Or
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update.snapshot import ManageSnapshots

from config.errors import LakehouseError, PipelineError, PublishConflictError
from config.inventory import Inventory, SuiteSpec, TableSpec
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.quarantine import original_json, quarantine_row, row_key
from pipelines.validation.suite import SuiteOutcome, validate

MANUAL = "manual_quarantine"
RUN_PREFIX = "tool-"


class Operation(StrEnum):
    """The `dataops.operation` a remediation commit records in its snapshot; reconciliation reads it back.

    The labels are the names of the agent's tools that ask for these operations (a test keeps them equal);
    they are written into table history, so they never change.
    """

    QUARANTINE = "quarantine_partition"
    RELEASE = "release_partition"
    DELETE = "delete_partition"


REMEDIABLE = ("silver", "gold")
ROLLBACK_PROPERTY = "dataops.last-rollback"


class SnapshotInfo(BaseModel):
    snapshot_id: int
    committed_at: str
    run_id: str | None = Field(description="The run or tool call that committed it")
    operation: str
    rows: int | None = Field(description="Rows in the table at this snapshot")


class _Outcome(BaseModel):
    table: str
    changed: bool = Field(description="False when there was nothing to do (the call was a no-op)")
    run_id: str = Field(description="Carried by every commit of this call, for tracing")
    snapshot_before: int | None = Field(description="main before the call; rollback_table to it undoes a delete_partition")
    snapshot_after: int | None = Field(description="main after the call")


class QuarantineResult(_Outcome):
    day: str
    quarantine_table: str
    rows_quarantined: int = Field(description="Rows taken out of the table")
    rows_already_held: int = Field(description="Of those, rows an interrupted earlier call had already copied to quarantine")
    downstream: list[str] = Field(
        description="Tables derived from this one; they are not recomputed. A later pipeline run over this day republishes it from bronze."
    )


class FailedExpectation(BaseModel):
    name: str
    scope: str
    why: str
    rows: int = Field(description="Held rows of the day failing it")
    sample: list[str] = Field(description="Record keys of a few failing rows")


class ReleaseResult(_Outcome):
    day: str
    status: str = Field(description="released, nothing_to_release, or validation_failed (nothing changed)")
    rows_released: int = Field(description="Rows published back into the table")
    rows_cleared: int = Field(description="Held rows removed from quarantine because the table already has their key")
    rows_still_held: int = Field(description="Rows of this table and day left in quarantine")
    failing: list[FailedExpectation] = Field(default_factory=list, description="Expectations the held rows fail now")


class DeleteResult(_Outcome):
    day: str
    rows_deleted: int
    downstream: list[str] = Field(description="Tables derived from this one; they are not recomputed")


class RollbackResult(_Outcome):
    rows_before: int | None
    rows_after: int | None
    undone: list[SnapshotInfo] = Field(description="Commits no longer visible on main, newest first")


def tool_run_id(tool: str, call_id: str | None, now: datetime) -> str:
    """The run id of one tool call: the same call id gives the same id, so a replayed call is recognisable."""
    suffix = re.sub(r"[^A-Za-z0-9_.-]", "_", call_id)[:80] if call_id else f"{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(3)}"
    return f"{RUN_PREFIX}{tool}-{suffix}"


def remediable(inventory: Inventory, name: str) -> TableSpec:
    """The spec of a silver or gold table; anything else is refused with the names that would work."""
    valid = ", ".join(sorted(n for n, s in inventory.tables.items() if s.layer in REMEDIABLE))
    spec = inventory.tables.get(name)
    if spec is None:
        raise PipelineError(f"unknown table {name!r}; known silver and gold tables: {valid}")
    if spec.layer == "bronze":
        raise PipelineError(
            f"{name} is a bronze table: raw records as received, kept for replay and lineage, never edited. "
            f"Act on the silver or gold table it feeds instead: {valid}"
        )
    if spec.layer == "quarantine":
        raise PipelineError(
            f"{name} is a quarantine table; its rows are released with release_partition on the table they were meant for "
            f"(their target_table): {valid}"
        )
    return spec


def quarantine_tables(inventory: Inventory, name: str) -> list[str]:
    """Quarantine tables that may hold rows meant for `name`; manual quarantines go to the first."""
    found = list(dict.fromkeys(p.quarantine for p in inventory.pipelines_feeding(name)))
    if not found:
        raise PipelineError(f"no pipeline writes {name}, so it has no quarantine table")
    return found


def suite_of(inventory: Inventory, name: str) -> SuiteSpec:
    """The suite the promotion validates `name` with."""
    for p in inventory.pipelines.values():
        if p.silver == name:
            return inventory.suite(p.suite)
    for mart in inventory.marts.values():
        if mart.table == name and mart.suite is not None:
            return inventory.suite(mart.suite)
    raise PipelineError(f"{name} has no expectation suite, so held rows cannot be re-validated")


def _ancestors(table: Table) -> Iterator[Snapshot]:
    """main's snapshot and its parents, newest first, as far as they were not expired."""
    current = wap.branch_head(table, wap.MAIN)
    while current is not None and (snapshot := table.metadata.snapshot_by_id(current)) is not None:
        yield snapshot
        current = snapshot.parent_snapshot_id


def _properties(snapshot: Snapshot) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary is not None else {}


def main_history(table: Table) -> list[SnapshotInfo]:
    """main's snapshot and its ancestors, newest first: the snapshots a rollback may return to."""
    return [
        SnapshotInfo(
            snapshot_id=s.snapshot_id,
            committed_at=datetime.fromtimestamp(s.timestamp_ms / 1000, UTC).isoformat(),
            run_id=_properties(s).get("run_id"),
            operation=_properties(s).get("dataops.operation") or (s.summary.operation.value if s.summary is not None else "?"),
            rows=int(_properties(s)["total-records"]) if "total-records" in _properties(s) else None,
        )
        for s in _ancestors(table)
    ]


def history_of(ctx: PlatformContext, name: str) -> list[SnapshotInfo]:
    remediable(ctx.inventory, name)
    return main_history(load_table(ctx.catalog, name))


def not_in_history(name: str, snapshot_id: int, history: list[SnapshotInfo], *, shown: int = 10) -> str:
    """Words for a rollback target that is not an ancestor of main, naming the ones that are."""
    if not history:
        return f"snapshot {snapshot_id} is not in the history of {name}: the table has no snapshots yet, so there is nothing to roll back"
    listed = "; ".join(f"{h.snapshot_id} (run_id {h.run_id}, {h.committed_at}, {h.operation}, {h.rows} rows)" for h in history[:shown])
    return (
        f"snapshot {snapshot_id} is not in the history of main of {name} (an abandoned audit snapshot, another table's, "
        f"or undone by an earlier rollback); roll back to one of its {min(shown, len(history))} most recent: {listed}"
    )


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _props(run_id: str, spec: TableSpec, operation: Operation, *, day: date | None = None, reason: str = "") -> dict[str, str]:
    props = {"run_id": run_id, "dataops.layer": spec.layer, "dataops.operation": operation.value}
    if day is not None:
        props["dataops.partition"] = day.isoformat()
    if reason:
        props["dataops.reason"] = reason[:500]
    return props


def _rows_at(table: Table, snapshot_id: int | None) -> int:
    if snapshot_id is None:
        return 0
    snapshot = table.snapshot_by_id(snapshot_id)
    total = snapshot.summary.get("total-records") if snapshot is not None and snapshot.summary is not None else None
    return int(total) if total is not None else table.scan(snapshot_id=snapshot_id, selected_fields=("ts",)).to_arrow().num_rows


@contextmanager
def _locked(ctx: PlatformContext, name: str, *also: str) -> Iterator[Table]:
    """Hold the locks of `name` (then `also`) and yield `name` loaded afresh under them."""
    with ExitStack() as stack:
        for locked in (name, *sorted(also)):
            stack.enter_context(ctx.control.table_lock(locked))
        # Fresh metadata: another process may have committed since any copy we hold was loaded.
        table = load_table(ctx.catalog, name)
        for branch in wap.audit_branches(table):
            if branch.startswith(wap.AUDIT_PREFIX + RUN_PREFIX):
                wap.drop_branch(table, branch)  # left by a tool call that died mid-way; under the lock no call owns it
        yield table


def _publish_day(table: Table, data: pa.Table | None, day: datetime, *, run_id: str, properties: dict[str, str]) -> int | None:
    """Replace one day of main with `data` (None: empty it) through an audit branch; returns main afterwards."""
    branch = wap.audit_branch_name(run_id)
    wap.open_audit_branch(table, branch, run_id=run_id)
    main_id = wap.branch_head(table, wap.MAIN)
    day_rows = wap.read_days(table, [day], columns=("ts",)).num_rows
    if data is None or data.num_rows == 0:
        table.delete(wap.days_filter([day]), snapshot_properties=properties, branch=branch)
        table.refresh()
    else:
        wap.overwrite_days(table, data, [day], branch=branch, properties=properties)
    # Audit: the day holds exactly what was meant, and the rest of the table did not move.
    expected = data.num_rows if data is not None else 0
    held = wap.read_days(table, [day], branch=branch, columns=("ts",)).num_rows
    total_delta = _rows_at(table, wap.branch_head(table, branch)) - _rows_at(table, main_id)
    if held != expected or total_delta != expected - day_rows:
        raise PipelineError(
            f"{table.name()}: audit branch {branch} holds {held} rows for {day.date()} (expected {expected}) and changed the table "
            f"by {total_delta} rows (expected {expected - day_rows}); main is unchanged"
        )
    return wap.publish(table, branch)


def quarantine_day(ctx: PlatformContext, name: str, day: date, *, reason: str, run_id: str, actor: str, now: datetime) -> QuarantineResult:
    """Move every row of `day` from main of `name` into its pipeline's quarantine table."""
    spec = remediable(ctx.inventory, name)
    quarantine = quarantine_tables(ctx.inventory, name)[0]
    start = _midnight(day)
    with _locked(ctx, name, quarantine) as table:
        before = wap.branch_head(table, wap.MAIN)
        rows = wap.read_days(table, [start]).to_pylist()
        result = QuarantineResult(
            table=name, day=day.isoformat(), quarantine_table=quarantine, changed=False, run_id=run_id, snapshot_before=before,
            snapshot_after=before, rows_quarantined=0, rows_already_held=0, downstream=lineage.downstream(ctx.inventory, name),
        )  # fmt: skip
        if not rows:
            return result
        why = f"quarantined by {actor}: {reason}"
        held = [
            quarantine_row(ts=r["ts"], record_key=row_key(spec, r), target=name, expectation=MANUAL, scope="partition", reason=why,
                            original=original_json(r), run_id=run_id, now=now)
            for r in rows
        ]  # fmt: skip
        qtable = load_table(ctx.catalog, quarantine)
        existing = wap.read_days(qtable, [start], columns=("target_table", "record_key", "expectation", "original")).to_pylist()
        seen = {_marker(q) for q in existing}
        fresh = [q for q in held if _marker(q) not in seen]
        # The copy first: a crash before the removal below leaves the rows in both places, and a re-run completes it.
        data = pa.Table.from_pylist(fresh, schema=arrow_schema(ctx.inventory.table(quarantine)))
        wap.append(qtable, data, properties=_props(run_id, ctx.inventory.table(quarantine), Operation.QUARANTINE, day=day, reason=reason))
        after = _publish_day(
            table, None, start, run_id=run_id, properties=_props(run_id, spec, Operation.QUARANTINE, day=day, reason=reason)
        )
        return result.model_copy(
            update={"changed": True, "snapshot_after": after, "rows_quarantined": len(rows), "rows_already_held": len(held) - len(fresh)}
        )


def _marker(q: dict[str, Any]) -> tuple[str, str, str, str]:
    return (q["target_table"], q["record_key"], q["expectation"], hashlib.sha256(q["original"].encode()).hexdigest())


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
    start = _midnight(day)
    with _locked(ctx, name, *quarantines) as table:
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
        if released:
            new_day = pa.concat_tables([main_rows, pa.Table.from_pylist([h.row for h in released], schema=main_rows.schema)])
            after = _publish_day(table, new_day, start, run_id=run_id, properties=_props(run_id, spec, Operation.RELEASE, day=day))
        # Only after the table has them: a crash here leaves rows in both places, and a re-run clears them.
        removed = _clear(ctx, name, start, [*released, *cleared], run_id=run_id, day=day)
        return result.model_copy(
            update={
                "changed": bool(released or removed), "status": "released" if released or removed else "validation_failed",
                "snapshot_after": after, "rows_released": len(released), "rows_cleared": len(cleared),
                "rows_still_held": total_held - removed, "failing": failures,
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
            _delete(qtable, row_filter, _props(run_id, ctx.inventory.table(quarantine), Operation.RELEASE, day=day))
            removed += count
    return removed


def _delete(table: Table, row_filter: BooleanExpression, properties: dict[str, str]) -> None:
    wap.with_commit_retry(lambda: table.delete(row_filter, snapshot_properties=properties), table=table, what="delete")
    table.refresh()


def delete_day(ctx: PlatformContext, name: str, day: date, *, reason: str, run_id: str) -> DeleteResult:
    """Remove the rows of `day` from main of `name`; the snapshot before stays in the history for a rollback."""
    spec = remediable(ctx.inventory, name)
    start = _midnight(day)
    with _locked(ctx, name) as table:
        before = wap.branch_head(table, wap.MAIN)
        count = wap.read_days(table, [start], columns=("ts",)).num_rows
        result = DeleteResult(
            table=name, day=day.isoformat(), changed=False, run_id=run_id, snapshot_before=before, snapshot_after=before,
            rows_deleted=0, downstream=lineage.downstream(ctx.inventory, name),
        )  # fmt: skip
        if count == 0:
            # A replayed call reports the snapshot its first execution removed the day from.
            own = _before_own_commit(table, run_id, day)
            return result.model_copy(update={"snapshot_before": own}) if own is not None else result
        after = _publish_day(table, None, start, run_id=run_id, properties=_props(run_id, spec, Operation.DELETE, day=day, reason=reason))
        return result.model_copy(update={"changed": True, "snapshot_after": after, "rows_deleted": count})


def _before_own_commit(table: Table, run_id: str, day: date) -> int | None:
    """The parent of the snapshot on main that `run_id` committed for `day`, if any."""
    wanted = {"run_id": run_id, "dataops.partition": day.isoformat()}
    return next((s.parent_snapshot_id for s in _ancestors(table) if wanted.items() <= _properties(s).items()), None)


def rollback(ctx: PlatformContext, name: str, snapshot_id: int, *, reason: str, run_id: str, now: datetime) -> RollbackResult:
    """Move main of `name` back to `snapshot_id`, which must be main's snapshot or one of its ancestors."""
    remediable(ctx.inventory, name)
    with _locked(ctx, name) as table:
        history = main_history(table)
        before = wap.branch_head(table, wap.MAIN)
        rows_before = _rows_at(table, before)
        result = RollbackResult(
            table=name, changed=False, run_id=run_id, snapshot_before=before, snapshot_after=before,
            rows_before=rows_before, rows_after=rows_before, undone=[],
        )  # fmt: skip
        if snapshot_id == before:
            return result
        ids = [h.snapshot_id for h in history]
        if snapshot_id not in ids:
            raise LakehouseError(not_in_history(name, snapshot_id, history))
        record = {"run_id": run_id, "from": before, "to": snapshot_id, "reason": reason[:500], "at": now.isoformat()}
        try:
            # One metadata commit: main moves (asserting it did not move since the reload) and the act is recorded.
            with table.transaction() as tx:
                ManageSnapshots(tx).rollback_to_snapshot(snapshot_id).commit()
                tx.set_properties({ROLLBACK_PROPERTY: json.dumps(record)})
        except CommitFailedException as exc:
            raise PublishConflictError(
                f"{name}: main moved while rolling back to {snapshot_id}: {exc}; read its history and retry"
            ) from exc
        table.refresh()
        after = wap.branch_head(table, wap.MAIN)
        undone = history[: ids.index(snapshot_id)]
        return result.model_copy(update={"changed": True, "snapshot_after": after, "rows_after": _rows_at(table, after), "undone": undone})
