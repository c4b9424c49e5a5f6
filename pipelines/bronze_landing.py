"""Bronze landing of a run's fetched records, and the silver plan read back from bronze.

    fetched records ──► bronze (append new revisions only) ──► bronze's rows of the affected days
        ──► conform (the run's `conform_rows`) ──► silver candidates, with the days-present check

Bronze keeps every revision as received; silver is always planned from bronze, never from the fetch, so a
re-run or a re-plan computes the same rows. The first plan reuses the rows the landing already holds in memory
(what bronze held plus what was appended) while bronze's main is still at the landing's snapshot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from config.inventory import PipelineSpec
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.plan import BRONZE_PLAN_COLUMNS, Plan
from pipelines.run_result import RunResult, TableOutcome
from pipelines.sources.base import FetchResult, Window
from pipelines.validation.suite import ExpectationOutcome


class LandingRun(Protocol):
    """What bronze landing and the silver plan need of the run they are part of (`pipelines.promotion`)."""

    ctx: PlatformContext
    p: PipelineSpec
    window: Window
    as_of: datetime
    run_id: str
    now: datetime
    result: RunResult
    snapshots: dict[str, int | None]

    def progress(self, message: str) -> None: ...
    def props(self, layer: str, plan: Plan | None = None) -> dict[str, str]: ...
    def timed(self, name: str, started: float) -> None: ...
    def hold(self, day: datetime, reason: str) -> None: ...
    def conform_rows(self, raw: pa.Table) -> pa.Table: ...


@dataclass(frozen=True, kw_only=True)
class _Landed:
    """Bronze's rows of `days` as of `snapshot`, the append this run made: existing rows plus the appended ones."""

    days: frozenset[datetime]
    snapshot: int | None
    rows: pa.Table


def _latest_hashes(rows: pa.Table) -> dict[str, set[str]]:
    """Per record key, the payload hashes of its latest fetch (several when that fetch sent the key twice)."""
    newest: dict[str, tuple[datetime, set[str]]] = {}
    columns = (rows.column(c).to_pylist() for c in ("record_key", "payload_hash", "fetched_at"))
    for key, digest, fetched_at in zip(*columns, strict=True):
        held = newest.get(key)
        if held is None or fetched_at > held[0]:
            newest[key] = (fetched_at, {digest})
        elif fetched_at == held[0]:
            held[1].add(digest)
    return {key: hashes for key, (_, hashes) in newest.items()}


class BronzeLanding:
    """Lands one fetch in bronze (`land()`), then plans silver from bronze (`plan_silver()`)."""

    def __init__(self, run: LandingRun) -> None:
        self.run = run
        self.landed: _Landed | None = None  # bronze's rows of the days this run landed, for the first silver plan

    def land(self, fetched: FetchResult) -> list[datetime]:
        """Append records that differ from the latest revision bronze holds of their key; returns the days they cover.

        Compared with the latest revision, not with every revision ever held: a source that goes back to an
        earlier value (A, then B, then A again) has revised the slot, and the latest revision is what silver
        publishes."""
        run = self.run
        started = time.perf_counter()
        table = load_table(run.ctx.catalog, run.p.bronze)
        days = sorted({r.ts.replace(hour=0, minute=0, second=0, microsecond=0) for r in fetched.records})
        existing = wap.read_days(table, days, columns=BRONZE_PLAN_COLUMNS)
        latest = _latest_hashes(existing)
        new = [r for r in fetched.records if r.payload_hash not in latest.get(r.record_key, ())]
        data = pa.table(
            {
                "ts": [r.ts for r in new],
                "record_key": [r.record_key for r in new],
                "payload": [r.payload_json for r in new],
                "payload_hash": [r.payload_hash for r in new],
                "source_uri": [r.source_uri for r in new],
                "run_id": [run.run_id] * len(new),
                "fetched_at": [run.now] * len(new),
            },
            schema=arrow_schema(run.ctx.inventory.table(run.p.bronze)),
        )
        run.snapshots[run.p.bronze] = wap.append(table, data, properties=run.props("bronze"))
        # Bronze's rows of these days are now what it held plus what was appended: the silver plan needs no re-read.
        plan_schema = pa.schema([data.schema.field(c) for c in BRONZE_PLAN_COLUMNS])
        self.landed = _Landed(
            days=frozenset(days),
            snapshot=run.snapshots[run.p.bronze],
            rows=pa.concat_tables([existing.select(BRONZE_PLAN_COLUMNS).cast(plan_schema), data.select(BRONZE_PLAN_COLUMNS)]),
        )
        run.result.bronze_new = len(new)
        run.result.tables.append(TableOutcome(table=run.p.bronze, rows_written=len(new), snapshot_id=run.snapshots[run.p.bronze]))
        run.timed("bronze", started)
        run.progress(f"bronze: {len(new)} new of {len(fetched.records)} fetched")
        return days

    def affected_days(self, record_days: list[datetime]) -> list[datetime]:
        if self.run.ctx.inventory.source(self.run.p.source).kind == "file_drop":
            return record_days
        return self.run.window.days()

    def check_days_present(self, days: list[datetime], candidate: pa.Table) -> ExpectationOutcome | None:
        """Days fully in the past with no record at all: partition failures that GE cannot see (no rows)."""
        if self.run.ctx.inventory.source(self.run.p.source).kind == "file_drop":
            return None
        present = {ts.date() for ts in candidate.column("ts").to_pylist()}
        empty = [d for d in days if d + timedelta(days=1) <= self.run.as_of and d.date() not in present]
        for d in empty:
            self.run.hold(d, "window_days_present")
        return ExpectationOutcome(
            name="window_days_present",
            expectation="row_count_per_day_above_zero",
            scope="partition",
            why="Every elapsed day of the window must have records; an empty day is an outage, not a quiet day.",
            success=not empty,
            element_count=len(days),
            unexpected_count=len(empty),
            observed={"empty_days": [d.date().isoformat() for d in empty]},
        )

    def plan_silver(self, days: list[datetime]) -> Plan:
        """Conform bronze's rows of `days` into silver candidates; unreadable rows go to quarantine."""
        run = self.run
        started = time.perf_counter()
        bronze = load_table(run.ctx.catalog, run.p.bronze)
        read = wap.branch_head(bronze, wap.MAIN)
        landed, self.landed = self.landed, None  # good for the first plan only: a re-plan reads what main holds then
        if landed is not None and landed.snapshot == read and set(days) <= landed.days:
            raw = (
                landed.rows
                if set(days) == landed.days
                else landed.rows.filter(pc.is_in(pc.floor_temporal(landed.rows["ts"], unit="day"), pa.array(days, landed.rows["ts"].type)))
            )
        else:
            raw = wap.read_days(bronze, days, columns=BRONZE_PLAN_COLUMNS)
        candidate = run.conform_rows(raw)
        del raw
        run.timed("conform", started)
        run.result.rows_in = candidate.num_rows
        presence = self.check_days_present(days, candidate)
        run.progress(f"silver: auditing {candidate.num_rows} rows over {len(days)} day(s)")
        return Plan(rows=candidate, inputs={run.p.bronze: read}, checks=[presence] if presence else [])
