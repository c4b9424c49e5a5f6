"""Remediation of silver and gold tables, one UTC day or one snapshot at a time.

    quarantine_day   day's rows ──append──► quarantine.<pipeline>, then ──WAP remove──► main
    release_day      held rows ──re-validate──► WAP publish into main, then ──delete──► quarantine  (pipelines/release.py)
    delete_day       WAP remove a day from main; the snapshot before stays for a rollback
    rollback         move main back to one of its ancestors

Crash safety: every operation commits the copy before it removes the original, so a crash between the two
commits leaves rows in both places, never in neither; running the operation again completes it without
duplicating anything (quarantine rows are deduplicated, released rows are matched on the table's key).
Each operation holds the table lock and reloads the table under it. Every snapshot it commits carries
`run_id` = `tool-<tool>-<call id>`; a rollback creates no snapshot, so it records itself in the table
property `dataops.last-rollback` in the same metadata commit.

Marts. A call that changes days of a silver table marks those days of every gold mart built from it
(`pipelines/mart_refresh.py`), so gold never keeps values built from rows that were taken out, or misses
rows that came back: the next run of any of the mart's input pipelines rebuilds them (`dataops serve`
within its schedule, `dataops run` at once). The marks are written under the table lock before the commit:
a crash in between leaves a mark for a day that did not change, whose rebuild publishes the same rows.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update.snapshot import ManageSnapshots

from config.errors import LakehouseError, PipelineError, PublishConflictError
from config.inventory import Inventory, TableSpec
from pipelines import lineage, mart_refresh
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.monitors import day_history
from pipelines.quarantine import original_json, quarantine_row, row_key
from pipelines.undone_runs import UndoneRun, runs_undone

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
    marts_to_rebuild: list[str] = Field(
        default_factory=list,
        description="Gold marts built from this table whose changed days are marked for a rebuild; the next run of their input "
        "pipelines rebuilds them (`dataops serve` within its schedule). Empty for gold tables and no-op calls.",
    )
    days_to_rebuild: list[str] = Field(default_factory=list, description="The UTC days of those marts marked for a rebuild")


class QuarantineResult(_Outcome):
    day: str
    quarantine_table: str
    rows_quarantined: int = Field(description="Rows taken out of the table")
    rows_already_held: int = Field(description="Of those, rows an interrupted earlier call had already copied to quarantine")
    downstream: list[str] = Field(
        description="Tables derived from this one (marts among them are rebuilt: marts_to_rebuild). A later pipeline run over this "
        "day republishes the day from bronze."
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
    downstream: list[str] = Field(description="Tables derived from this one (marts among them are rebuilt: marts_to_rebuild)")


class RollbackResult(_Outcome):
    rows_before: int | None
    rows_after: int | None
    undone: list[SnapshotInfo] = Field(description="Commits no longer visible on main, newest first")
    runs_undone: list[UndoneRun] = Field(
        default_factory=list,
        description="Pipeline runs among the undone commits, oldest first: their days are gone from main until they are re-run",
    )


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


def mark_marts(ctx: PlatformContext, name: str, days: list[datetime], *, run_id: str) -> dict[str, list[str]]:
    """Mark `days` of every mart built from `name` for a rebuild; the fields the call's result reports them in.

    Call it under the table's lock and before the commit that changes those days (see the module docstring).
    """
    marts = sorted((m for m in ctx.inventory.marts.values() if name in m.inputs), key=lambda m: m.name)
    if not marts or not days:
        return {}
    mart_refresh.mark(ctx, [m.name for m in marts], days, run_id=run_id)
    return {"marts_to_rebuild": [m.table for m in marts], "days_to_rebuild": sorted({d.date().isoformat() for d in days})}


def day_start(day: date) -> datetime:
    """The first instant of a UTC day: the partition a remediation acts on."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def commit_properties(run_id: str, spec: TableSpec, operation: Operation, *, day: date | None = None, reason: str = "") -> dict[str, str]:
    """The snapshot properties every remediation commit carries: its run, the layer, the operation, the day and why."""
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
def locked_table(ctx: PlatformContext, name: str, *also: str) -> Iterator[Table]:
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


def publish_day(table: Table, data: pa.Table | None, day: datetime, *, run_id: str, properties: dict[str, str]) -> int | None:
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
    start = day_start(day)
    with locked_table(ctx, name, quarantine) as table:
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
        rebuild = mark_marts(ctx, name, [start], run_id=run_id)
        # The copy first: a crash before the removal below leaves the rows in both places, and a re-run completes it.
        data = pa.Table.from_pylist(fresh, schema=arrow_schema(ctx.inventory.table(quarantine)))
        wap.append(
            qtable,
            data,
            properties=commit_properties(run_id, ctx.inventory.table(quarantine), Operation.QUARANTINE, day=day, reason=reason),
        )
        after = publish_day(
            table, None, start, run_id=run_id, properties=commit_properties(run_id, spec, Operation.QUARANTINE, day=day, reason=reason)
        )
        return result.model_copy(
            update={
                "changed": True, "snapshot_after": after, "rows_quarantined": len(rows), "rows_already_held": len(held) - len(fresh),
                **rebuild,
            }
        )  # fmt: skip


def _marker(q: dict[str, Any]) -> tuple[str, str, str, str]:
    return (q["target_table"], q["record_key"], q["expectation"], hashlib.sha256(q["original"].encode()).hexdigest())


def delete_day(ctx: PlatformContext, name: str, day: date, *, reason: str, run_id: str) -> DeleteResult:
    """Remove the rows of `day` from main of `name`; the snapshot before stays in the history for a rollback."""
    spec = remediable(ctx.inventory, name)
    start = day_start(day)
    with locked_table(ctx, name) as table:
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
        rebuild = mark_marts(ctx, name, [start], run_id=run_id)
        after = publish_day(
            table, None, start, run_id=run_id, properties=commit_properties(run_id, spec, Operation.DELETE, day=day, reason=reason)
        )
        return result.model_copy(update={"changed": True, "snapshot_after": after, "rows_deleted": count, **rebuild})


def _before_own_commit(table: Table, run_id: str, day: date) -> int | None:
    """The parent of the snapshot on main that `run_id` committed for `day`, if any."""
    wanted = {"run_id": run_id, "dataops.partition": day.isoformat()}
    return next((s.parent_snapshot_id for s in _ancestors(table) if wanted.items() <= _properties(s).items()), None)


def rollback(ctx: PlatformContext, name: str, snapshot_id: int, *, reason: str, run_id: str, now: datetime) -> RollbackResult:
    """Move main of `name` back to `snapshot_id`, which must be main's snapshot or one of its ancestors."""
    remediable(ctx.inventory, name)
    with locked_table(ctx, name) as table:
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
        rebuild = mark_marts(ctx, name, day_history.days_differing(table, before, snapshot_id), run_id=run_id)
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
        return result.model_copy(
            update={
                "changed": True, "snapshot_after": after, "rows_after": _rows_at(table, after), "undone": undone,
                "runs_undone": runs_undone(ctx, [u.run_id for u in undone if u.run_id and not u.run_id.startswith(RUN_PREFIX)]),
                **rebuild,
            }
        )  # fmt: skip
