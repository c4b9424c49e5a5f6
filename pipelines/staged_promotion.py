"""Records of large dropped files, staged on disk, landed in bronze and promoted to silver a bounded part at a time.

    staged days ──► units (a group of small days, or one day) ──► parts (the unit whole, or the day split by
    key hash when it holds more than a group's worth) ──► bronze: new rows of each part written as files,
    one append per unit ──► silver: each part conformed, validated, failing rows quarantined, clean rows
    written as files, one commit per unit on the audit branch ──► main moves once, after every unit passed

Memory follows one part, never the file: a 1 GB file of one key per row is 30 million records. Parts are whole
keys (everything that compares records does so within a key: exact repeats, conflicting duplicates, the latest
revision), so working a day a part at a time gives what working it whole gives.

Silver sees nothing of a file until all of it passed. A run that dies part-way leaves bronze holding some units
and main untouched; the file is not in the drop manifest, so the next run reads it again, lands only what bronze
lacks, quarantines nothing twice (`QuarantineWriter.write` skips rows already held) and recomputes silver from bronze.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from config.errors import PipelineError, PublishConflictError
from config.inventory import PipelineSpec, TableSpec
from pipelines.context import PlatformContext
from pipelines.key_buckets import bucket_count, release_unused_memory, spill
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.plan import BRONZE_PLAN_COLUMNS, PUBLISH_ATTEMPTS, Plan, StalePlan, changed_input, span
from pipelines.run_result import RunResult, TableOutcome
from pipelines.sources.base import SourceRecord
from pipelines.sources.drop_staging import StagedRecords
from pipelines.validation.slices import combine, judge, tally_in_slices
from pipelines.validation.suite import SuiteOutcome

log = logging.getLogger(__name__)


class StagedRun(Protocol):
    """What a staged promotion needs of the run it is part of (`pipelines.promotion`)."""

    ctx: PlatformContext
    p: PipelineSpec
    run_id: str
    now: datetime
    as_of: datetime
    result: RunResult
    snapshots: dict[str, int | None]
    quarantine_rows: list[dict[str, Any]]
    table_held: bool

    def progress(self, message: str) -> None: ...
    def props(self, layer: str, plan: Plan | None = None) -> dict[str, str]: ...
    def timed(self, name: str, started: float) -> None: ...
    def flush_quarantine(self) -> int: ...
    def quarantine_conflicts(self, records: list[SourceRecord]) -> None: ...
    def conform_rows(self, raw: pa.Table) -> pa.Table: ...
    def route(
        self, target: TableSpec, audited: pa.Table, outcome: SuiteOutcome, held: set[datetime], *, table_failed: bool
    ) -> tuple[pa.Table, list[dict[str, Any]]]: ...


class StagedPromotion:
    """Bronze, then silver, for the records of one staged fetch; `execute()` returns the days they cover."""

    def __init__(self, run: StagedRun, staged: StagedRecords, *, max_rows: int | None = None) -> None:
        from pipelines.sources import drop_staging

        self.run = run
        self.staged = staged
        self.max_rows = max_rows or drop_staging.GROUP_ROWS  # records a part may hold (read at call time: tests shrink it)
        self.spills = 0

    def execute(self) -> list[datetime]:
        run = self.run
        groups = self.staged.groups(self.max_rows)
        started = time.perf_counter()
        run.flush_quarantine()  # unreadable and refused files first: they never depend on the groups
        for days in groups:
            self.land(days)
            run.flush_quarantine()
        run.result.tables.append(
            TableOutcome(table=run.p.bronze, rows_written=run.result.bronze_new, snapshot_id=run.snapshots.get(run.p.bronze))
        )
        run.timed("bronze", started)
        run.progress(f"bronze: {run.result.bronze_new} new of {run.result.records_fetched} fetched in {len(groups)} group(s)")
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                self.promote(groups)
                break
            except StalePlan as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    raise
                wap.count_replan()
                log.info("%s; re-planning (attempt %d)", exc, attempt + 1)
        return self.staged.days()

    # -- bronze ------------------------------------------------------------------------------------------------
    def _staged_parts(self, days: list[datetime]) -> Iterator[pa.Table]:
        count = sum(self.staged.counts.get(day, 0) for day in days)
        if count <= self.max_rows:
            yield self.staged.read(days)
            return
        # A group bigger than a part is one day (`StagedRecords.groups`): split it by key.
        yield from spill(self.staged.parts(days), key="record_key", buckets=bucket_count(count, self.max_rows), folder=self._spill_folder())

    def land(self, days: list[datetime]) -> None:
        """Append the staged records of `days` that bronze lacks, a part at a time in one commit; quarantine
        conflicting duplicates among them."""
        run = self.run
        table = load_table(run.ctx.catalog, run.p.bronze)
        existing = wap.read_days(table, days, columns=("record_key", "payload_hash"))
        files: list[DataFile] = []
        for rows in self._staged_parts(days):
            new, fetched = self._new_rows(rows, existing)
            files += wap.write_files(table, new)
            run.result.records_fetched += fetched
            run.result.bronze_new += new.num_rows
            del rows, new
            release_unused_memory()
        if files:
            run.snapshots[run.p.bronze] = wap.commit_files(table, files, branch=wap.MAIN, properties=run.props("bronze"))

    def _new_rows(self, rows: pa.Table, existing: pa.Table) -> tuple[pa.Table, int]:
        """Bronze rows to append from staged `rows` (whole keys), and how many distinct records they held."""
        run = self.run
        rows = rows.append_column("_order", pa.array(range(rows.num_rows), type=pa.int64()))
        # Exact repeats (same key and payload) land once: the first read wins, as `dedupe_records` keeps it.
        firsts = rows.group_by(["record_key", "payload_hash"], use_threads=False).aggregate([("_order", "min")])
        keep = firsts.column("_order_min").combine_chunks()
        unique = rows.take(pc.take(keep, pc.array_sort_indices(keep)))
        del rows, firsts, keep
        counts = unique.group_by(["ts", "record_key"], use_threads=False).aggregate([("payload_hash", "count")])
        clashing = counts.filter(pc.greater(counts.column("payload_hash_count"), 1)).select(["ts", "record_key"])
        if clashing.num_rows:
            copies = unique.join(clashing, keys=["ts", "record_key"], join_type="left semi").sort_by("_order").to_pylist()
            run.quarantine_conflicts(
                [
                    SourceRecord(ts=c["ts"], record_key=c["record_key"], payload=json.loads(c["payload"]), source_uri=c["source_uri"])
                    for c in copies
                ]
            )
        if existing.num_rows:
            existing = existing.cast(pa.schema([unique.schema.field("record_key"), unique.schema.field("payload_hash")]))
            new = unique.join(existing, keys=["record_key", "payload_hash"], join_type="left anti")
        else:
            new = unique
        new = new.sort_by("_order")
        data = pa.table(
            {
                "ts": new.column("ts"),
                "record_key": new.column("record_key"),
                "payload": new.column("payload"),
                "payload_hash": new.column("payload_hash"),
                "source_uri": new.column("source_uri"),
                "run_id": pa.array([run.run_id] * new.num_rows, type=pa.string()),
                "fetched_at": pa.array([run.now] * new.num_rows, type=pa.timestamp("us", tz="UTC")),
            },
            schema=arrow_schema(run.ctx.inventory.table(run.p.bronze)),
        )
        return data, unique.num_rows

    # -- silver ------------------------------------------------------------------------------------------------
    def _units(self, bronze: Table, groups: list[list[datetime]]) -> list[tuple[list[datetime], int]]:
        """Days to promote together, with bronze's row count for them: a group, or each of its days alone when
        bronze holds more than a part's worth for the group (earlier files count too)."""
        units = []
        for days in groups:
            count = wap.count_days(bronze, days)
            if count <= self.max_rows or len(days) == 1:
                units.append((days, count))
            else:
                units += [([day], wap.count_days(bronze, [day])) for day in days]
        return units

    def _bronze_parts(self, bronze: Table, days: list[datetime], count: int, snapshot: int | None) -> Iterator[pa.Table]:
        if count <= self.max_rows:
            yield wap.read_days(bronze, days, columns=BRONZE_PLAN_COLUMNS)
            return
        parts = wap.read_days_in_parts(bronze, days, snapshot_id=snapshot, columns=BRONZE_PLAN_COLUMNS)
        yield from spill(parts, key="record_key", buckets=bucket_count(count, self.max_rows), folder=self._spill_folder())

    def promote(self, groups: list[list[datetime]]) -> None:
        """Write-audit-publish silver for `groups` of days on one audit branch; main moves once, at the end.

        Each part of a unit is conformed from bronze, validated as the table types it (the suite is `sliceable`),
        its failing rows are quarantined and its clean rows written as files; the unit's days are then replaced on
        the branch by those files in one commit, and the branch must hold exactly the rows that passed. Table-scope
        checks are judged once every part is in, on the summed counts (`judge`): when one fails, the whole batch is
        held (`hold_whole`) and main stays. If main moved meanwhile, or bronze changed under the plans, the whole
        promotion is planned again (`StalePlan`).
        """
        run = self.run
        target = run.ctx.inventory.table(run.p.silver)
        suite = run.ctx.inventory.suite(run.p.suite)
        schema = arrow_schema(target)
        table = load_table(run.ctx.catalog, run.p.silver)
        bronze = load_table(run.ctx.catalog, run.p.bronze)
        read = wap.branch_head(bronze, wap.MAIN)
        branch = wap.audit_branch_name(run.run_id)
        base = wap.open_audit_branch(table, branch, run_id=run.run_id)
        props = run.props("silver", Plan(rows=schema.empty_table(), inputs={run.p.bronze: read}))
        total: SuiteOutcome | None = None
        written: list[datetime] = []
        rows_in = passed = quarantined = 0
        for days, count in self._units(bronze, groups):
            started = time.perf_counter()
            files: list[DataFile] = []
            write_days: set[datetime] = set()
            unit_passed = 0
            for raw in self._bronze_parts(bronze, days, count, read):
                candidate = self.plan_part(raw)
                del raw
                rows_in += candidate.num_rows
                if not candidate.num_rows:
                    continue
                write_days.update(pc.unique(pc.floor_temporal(candidate.column("ts"), unit="day")).to_pylist())
                audited = candidate.select(schema.names).cast(schema)
                del candidate
                outcome = tally_in_slices(suite, audited, as_of=run.as_of)
                total = outcome if total is None else combine(total, outcome)
                clean, held_rows = run.route(target, audited, outcome, set(), table_failed=False)
                run.quarantine_rows.extend(held_rows)
                files += wap.write_files(table, clean)
                unit_passed += clean.num_rows
                quarantined += len(held_rows)
                del audited, clean
                run.flush_quarantine()
                release_unused_memory()
            if write_days:
                replace = sorted(write_days)
                wap.commit_files(table, files, branch=branch, properties=props, replace_days=replace)
                held = wap.count_days(table, replace, branch=branch)
                if held != unit_passed:
                    raise PipelineError(
                        f"{wap.table_name(table)}: audit branch {branch} holds {held} rows for {span(replace)}; expected {unit_passed}"
                    )
                written += replace
                passed += unit_passed
            run.timed(f"{run.p.silver}.unit", started)
        run.result.rows_in = rows_in
        total = judge(suite, total) if total is not None else None
        if total is not None:
            run.ctx.ledger.record_validation(run.run_id, run.p.silver, suite.name, total.outcomes)
        if total is not None and total.table_failures:
            held = self.hold_whole(table, branch, total, sorted(written))
            quarantined += held
            passed = 0
        outcome_table = TableOutcome(table=run.p.silver, rows_written=passed, rows_quarantined=quarantined)
        outcome_table.quality_score = run.ctx.ledger.record_quality(run.run_id, run.p.silver, checked=passed + quarantined, passed=passed)
        if total is not None and total.table_failures:
            outcome_table.held_days = sorted({d.date().isoformat() for d in written})
            run.snapshots[run.p.silver] = None
            run.result.tables.append(outcome_table)
            run.progress(f"{run.p.silver}: held back whole by {', '.join(total.table_failures)}: quarantined {quarantined}, published 0")
            return  # main stays; the branch is kept for diagnosis (as `TablePromotion` keeps a table-held one)
        snapshot = None
        if written:
            with run.ctx.control.table_lock(run.p.silver):
                table.refresh()
                main = wap.branch_head(table, wap.MAIN)
                changed = changed_input(run.ctx, {run.p.bronze: read}, sorted(written))
                if main != base or changed:
                    raise StalePlan(f"{run.p.silver}: {changed or 'main'} changed while this run staged {span(sorted(written))}")
                try:
                    snapshot = wap.publish(table, branch)
                except PublishConflictError as exc:
                    raise StalePlan(str(exc)) from exc
        else:
            wap.drop_branch(table, branch)
        outcome_table.snapshot_id = snapshot
        run.snapshots[run.p.silver] = snapshot
        run.result.tables.append(outcome_table)
        run.progress(f"{run.p.silver}: published {passed} rows, quarantined {quarantined}")

    def hold_whole(self, table: Table, branch: str, total: SuiteOutcome, days: list[datetime]) -> int:
        """Quarantine every row the parts wrote to the audit branch for `days` (they passed the row checks, so their
        parts did not hold them), one data file at a time; returns how many. The run is then held (`table_held`):
        nothing of the batch is published and no mart is marked.

        The rows are held as a whole-batch validation holds them (`TablePromotion.route` with `table_failed`):
        scope table, naming the failed table-scope checks; rows that failed a row check were quarantined with
        their part, for that check."""
        run = self.run
        target = run.ctx.inventory.table(run.p.silver)
        schema = arrow_schema(target)
        run.table_held = True
        held = 0
        for part in wap.read_days_in_parts(table, days, snapshot_id=wap.branch_head(table, branch)):
            audited = part.select(schema.names).cast(schema)
            whole = SuiteOutcome(
                suite=total.suite, row_count=audited.num_rows, outcomes=total.outcomes, table_failures=total.table_failures
            )
            _, rows = run.route(target, audited, whole, set(), table_failed=True)
            run.quarantine_rows.extend(rows)
            held += len(rows)
            del part, audited
            run.flush_quarantine()
            release_unused_memory()
        log.warning(
            "%s: %d row(s) of run %s held back whole: %s failed on the batch's totals; the audit branch %s is kept",
            run.p.silver,
            held,
            run.run_id,
            ", ".join(total.table_failures),
            branch,
        )
        return held

    def plan_part(self, raw: pa.Table) -> pa.Table:
        """Silver candidates of one part of bronze (whole keys)."""
        return self.run.conform_rows(raw)

    def _spill_folder(self) -> Path:
        self.spills += 1
        return self.staged.folder / "spill" / str(self.spills)
