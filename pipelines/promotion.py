"""One run of a pipeline over a window: fetch, land bronze, promote silver and gold with write-audit-publish.

    fetch ──► bronze (append new revisions only) ──► conform ──► audit branch ──► suite
        ──► quarantine (failing rows, held days, unreadable records) ──► publish clean rows to silver
        ──► mark the days in each gold mart ──► each mart, under its lock: recompute every marked day (any
            input's), audit, quarantine, publish (pipelines/mart_refresh.py)

Every bronze slot of the run ends in silver or in quarantine. A killed run leaves each table's main either
untouched or at one complete commit of this run; re-running the window completes it with identical contents.

The run (`_Run`) orders the steps and holds what outlives one step: the quarantine rows, the held days, the
result. The steps have modules of their own: bronze landing and the silver plan (pipelines/bronze_landing.py),
each table's write-audit-publish (pipelines/table_promotion.py), large dropped files a part at a time
(pipelines/staged_promotion.py), the quarantine write (pipelines/quarantine_writer.py) and the retention of
audit branches kept for diagnosis (pipelines/audit_retention.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from config.errors import (
    DataOpsError,
    LakehouseError,
    PipelineError,
    PublishConflictError,
    SchemaDriftError,
    SourceError,
    TransientSourceError,
)
from config.inventory import PipelineSpec, TableSpec
from pipelines import mart_refresh, metrics, openlineage
from pipelines.audit_retention import clean_audit_branches
from pipelines.bronze_landing import BronzeLanding
from pipelines.context import PlatformContext
from pipelines.key_buckets import bound_allocators
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.plan import Plan
from pipelines.quarantine import quarantine_row
from pipelines.quarantine_writer import QuarantineWriter
from pipelines.run_result import DayRows, RunResult, new_run_id
from pipelines.sources.base import FetchResult, RecordProblem, SourceRecord, Window, canonical_json, dedupe_records, find_conflicts
from pipelines.sources.drop_manifest import DropManifest
from pipelines.sources.file_drop import FileDropSource
from pipelines.sources.registry import build_source
from pipelines.staged_promotion import StagedPromotion
from pipelines.table_promotion import TablePromotion
from pipelines.transforms.conform import conform, latest_revisions
from pipelines.transforms.marts import compute_mart
from pipelines.validation.slices import sliceable
from pipelines.validation.suite import SuiteOutcome

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
INPUTS_PROPERTY = "dataops.inputs"  # snapshot property: JSON {input table: main snapshot id the rows were computed from}
PARTIAL_PROPERTY = "dataops.partial_days"  # snapshot property: JSON {day: completeness checks it failed} of days published partial
CONFORM_ROWS = 50_000  # bronze records conformed at once (each is a Python dict while it is)


class _Run:
    """State of one run; `execute()` does the work."""

    def __init__(
        self, ctx: PlatformContext, pipeline: PipelineSpec, window: Window, *, as_of: datetime, run_id: str, progress: Progress | None
    ) -> None:
        self.ctx = ctx
        self.p = pipeline
        self.window = window
        self.as_of = as_of
        self.run_id = run_id
        self.progress = progress or (lambda _msg: None)
        self.result = RunResult(
            run_id=run_id, pipeline=pipeline.name, status="running", window_start=window.start, window_end=window.end, as_of=as_of
        )
        self.timings: dict[str, float] = {}
        self.snapshots: dict[str, int | None] = {}
        self.quarantine_rows: list[dict[str, Any]] = []
        self.quarantine = QuarantineWriter(self)  # writes `quarantine_rows` (`flush_quarantine`)
        self.held: dict[datetime, list[str]] = {}
        self.partial: dict[datetime, list[str]] = {}
        self.table_held = False
        self.now = datetime.now(UTC)
        self.published_by_day: dict[str, int] | None = None  # silver rows published, by day (`RunResult.rows_by_day`)

    # -- helpers ---------------------------------------------------------------------------------
    def props(self, layer: str, plan: Plan | None = None) -> dict[str, str]:
        props = {"run_id": self.run_id, "dataops.pipeline": self.p.name, "dataops.layer": layer}
        if plan is not None:
            # What the rows were computed from, so a monitor can recompute them later (pipelines/monitors/reconcile.py).
            props[INPUTS_PROPERTY] = json.dumps(plan.inputs, sort_keys=True)
        if layer == "silver" and self.partial:
            # The completeness flag of days published partial (`partial_days: publish_flagged`): checks they failed.
            props[PARTIAL_PROPERTY] = json.dumps({d.date().isoformat(): names for d, names in sorted(self.partial.items())})
        return props

    def timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.perf_counter() - started, 4)

    def hold(self, day: datetime, reason: str) -> None:
        self.held.setdefault(day, []).append(reason)

    # -- steps -----------------------------------------------------------------------------------
    def fetch(self) -> FetchResult:
        started = time.perf_counter()
        source = build_source(self.ctx.inventory.source(self.p.source), self.ctx.settings, faults=self.ctx.faults)
        self.progress(f"fetching {self.p.source} {self.window}")
        try:
            if isinstance(source, FileDropSource) and sliceable(self.ctx.inventory.suite(self.p.suite)):
                # Dropped files may be large: their records are staged on disk and land a part at a time, and
                # the process gives freed memory back between parts (`bound_allocators`).
                bound_allocators()
                folder = self.ctx.settings.home / "staging" / f"{self.run_id}-{os.getpid()}"
                fetched = source.stage(self.window, as_of=self.as_of, folder=folder)
            else:
                fetched = source.fetch(self.window, as_of=self.as_of)
        except SchemaDriftError as exc:
            self.table_held = True
            self.quarantine_rows.append(
                quarantine_row(
                    ts=self.window.start,
                    record_key=f"window:{self.window.start.isoformat()}",
                    target=self.p.silver,
                    expectation="schema_contract",
                    scope="table",
                    reason=str(exc),
                    original=canonical_json({"missing": exc.missing, "unexpected": exc.unexpected}),
                    run_id=self.run_id,
                    now=self.now,
                )
            )
            fetched = FetchResult()
        self.timed("fetch", started)
        fetched.records = dedupe_records(fetched.records)
        for problem in fetched.problems:
            self.quarantine_rows.append(self._problem_row(problem))
        self.quarantine_conflicts(fetched.records)
        self.result.records_fetched = len(fetched.records)  # staged records are counted as they land (`_land_staged`)
        return fetched

    def quarantine_conflicts(self, records: list[SourceRecord]) -> None:
        """Same key, different values: bronze keeps every copy as received, none is published (conform skips
        the key), and each copy is quarantined naming the fields that differ."""
        conflicts = find_conflicts(records)
        for conflict in conflicts:
            self.quarantine_rows.extend(self._problem_row(p) for p in conflict.problems())
        if conflicts:
            log.warning(
                "%s: %d key(s) arrived twice with different values; all copies quarantined, e.g. %s",
                self.p.name,
                len(conflicts),
                conflicts[0].reason(),
            )

    def _problem_row(self, problem: RecordProblem) -> dict[str, Any]:
        return quarantine_row(
            ts=problem.ts or self.window.start,
            record_key=problem.record_key,
            target=self.p.silver,
            expectation=problem.check,
            scope="row",
            reason=problem.reason,
            original=problem.original,
            run_id=self.run_id,
            now=self.now,
        )

    def route(
        self, target: TableSpec, audited: pa.Table, outcome: SuiteOutcome, held: set[datetime], *, table_failed: bool
    ) -> tuple[pa.Table, list[dict[str, Any]]]:
        """Split audited rows as a table promotion does (`TablePromotion.route`): the staged promotion's parts need it."""
        return TablePromotion(self).route(target, audited, outcome, held, table_failed=table_failed)

    def conform_rows(self, raw: pa.Table) -> pa.Table:
        """Silver candidates from bronze rows: the latest revision of each key, conformed; unreadable rows are
        quarantined. Every key's revisions must all be in `raw`."""
        latest = latest_revisions(raw)  # one row per key from here, so the slices below conform alike
        source_kind, silver = self.ctx.inventory.source(self.p.source).kind, self.ctx.inventory.table(self.p.silver)
        parts, problems = [], []
        for start in range(0, latest.num_rows, CONFORM_ROWS):
            rows, found = conform(source_kind, latest.slice(start, CONFORM_ROWS), silver)
            parts.append(rows)
            problems.extend(found)
        candidate = pa.concat_tables(parts) if parts else arrow_schema(silver).empty_table()
        for problem in problems:
            self.quarantine_rows.append(
                quarantine_row(
                    ts=problem.ts,
                    record_key=problem.record_key,
                    target=self.p.silver,
                    expectation="conform",
                    scope="row",
                    reason=problem.reason,
                    original=problem.original,
                    run_id=self.run_id,
                    now=self.now,
                )
            )
        return candidate

    def flush_quarantine(self) -> int:
        """Write the quarantine rows gathered so far; returns how many rows this run has newly quarantined in all."""
        return self.quarantine.flush()

    def execute(self) -> RunResult:
        fetched = self.fetch()
        if fetched.staged is not None:
            try:
                days = StagedPromotion(self, fetched.staged).execute()
            finally:
                fetched.staged.close()
        else:
            bronze = BronzeLanding(self)
            record_days = bronze.land(fetched)
            days = bronze.affected_days(record_days)
            TablePromotion(self).promote(self.p.silver, lambda: bronze.plan_silver(days), days, self.p.suite)
        silver_outcome = self.result.tables[-1]
        self.result.rows_out = silver_outcome.rows_written
        if not self.table_held:
            mart_refresh.mark(self.ctx, self.p.marts, days, run_id=self.run_id)
        if self.refresh_marts:
            self.refresh_pending_marts()
        started = time.perf_counter()
        self.result.rows_quarantined = self.flush_quarantine()
        self.result.rows_already_held = self.quarantine.already_held
        self.timed("quarantine", started)
        if fetched.files:  # dropped files are ingested once, and only once their rows are in bronze and quarantine
            DropManifest(self.ctx.ledger).record(fetched.files, run_id=self.run_id)
        self.result.held_days = sorted(d.date().isoformat() for d in self.held)
        self.result.status = "quarantined" if (self.held or self.table_held) else "succeeded"
        if self.published_by_day is not None and not self.table_held:  # staged files and whole-window holds: no split
            published, quarantined, held = self.published_by_day, self.quarantine.by_day, self.quarantine.already_held_by_day
            self.result.rows_by_day = {
                d: DayRows(rows_out=published.get(d, 0), rows_quarantined=quarantined.get(d, 0), rows_already_held=held.get(d, 0))
                for d in sorted({*published, *quarantined, *held})
            }
        return self.result

    # False: the run only marks its marts' days, and its caller refreshes them later, coalesced (the service's catch-up).
    refresh_marts: bool = True

    def refresh_pending_marts(self) -> None:
        """One coalesced refresh per mart of this pipeline: every day any of its inputs marked (pipelines/mart_refresh.py)."""
        for mart_name in self.p.marts:
            with mart_refresh.claim(self.ctx, self.ctx.inventory.mart(mart_name)) as days:
                if days:
                    self.refresh_mart(mart_name, days)

    def refresh_mart(self, mart_name: str, days: list[datetime]) -> None:
        mart = self.ctx.inventory.mart(mart_name)
        target = self.ctx.inventory.table(mart.table)
        if mart.suite is None:
            raise PipelineError(f"mart {mart.name} has no suite; every promotion is validated")

        def plan() -> Plan:
            started = time.perf_counter()
            tables = {name: load_table(self.ctx.catalog, name) for name in mart.inputs}
            read = {name: wap.branch_head(t, wap.MAIN) for name, t in tables.items()}
            rows = compute_mart(mart, target, {name: wap.read_days(t, days) for name, t in tables.items()}, days=days)
            self.timed(f"{mart.table}.compute", started)
            return Plan(rows=rows, inputs=read)

        TablePromotion(self).promote(mart.table, plan, days, mart.suite)


def run_pipeline(
    ctx: PlatformContext,
    pipeline: str,
    window: Window,
    *,
    as_of: datetime | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
    attempt: int = 1,
    refresh_marts: bool = True,
) -> RunResult:
    """Run `pipeline` over `window` as known at `as_of` (default now); the ledger records every outcome.

    The run marks the days it changed in its marts; with `refresh_marts` it then refreshes them, with any days
    their other inputs marked (pipelines/mart_refresh.py), so the marts are fresh when it returns.
    """
    spec = ctx.inventory.pipeline(pipeline)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    run_id = run_id or new_run_id(pipeline)
    ledger = ctx.ledger
    ledger.mark_abandoned(pipeline)
    for dropped in clean_audit_branches(ctx, spec):
        log.info("dropped audit branch %s (run recovered or retention passed)", dropped)
    covered = []
    for lost in ledger.unrecovered(pipeline):
        if window.start <= lost.window_start and lost.window_end <= window.end:
            covered.append(lost.run_id)
            log.warning("run %s of %s was abandoned by a dead process; this run re-runs its window", lost.run_id, pipeline)
        else:
            log.warning(
                "run %s of %s was abandoned by a dead process; its window [%s, %s) is still to re-run (`dataops run` does it first)",
                lost.run_id,
                pipeline,
                lost.window_start.isoformat(),
                lost.window_end.isoformat(),
            )
    ledger.start_run(run_id=run_id, pipeline=pipeline, window_start=window.start, window_end=window.end, as_of=as_of, attempts=attempt)
    run = _Run(ctx, spec, window, as_of=as_of, run_id=run_id, progress=progress)
    run.refresh_marts = refresh_marts
    openlineage.emit_run_event(ctx, spec, "START", run_id=run_id, window=window, as_of=as_of)
    started = time.perf_counter()
    tally = wap.ConflictTally()
    try:
        with wap.tally_conflicts() as tally:
            result = run.execute()
    except (DataOpsError, OSError) as exc:
        result = run.result
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        transient = isinstance(exc, TransientSourceError | PublishConflictError | LakehouseError | OSError)
        result.error_kind = "transient" if transient else "permanent"
        result.retry_after_s = exc.retry_after_s if isinstance(exc, TransientSourceError) else None
        if transient:
            # Its caller retries it (the service, a backfill) or shows it (`dataops run`): one line, the traceback at DEBUG.
            log.info("run %s failed transiently: %s", run_id, result.error, exc_info=log.isEnabledFor(logging.DEBUG))
        elif isinstance(exc, SourceError):
            log.error("run %s: source failed: %s", run_id, exc)
        else:
            log.error("run %s failed: %s", run_id, result.error, exc_info=log.isEnabledFor(logging.INFO))  # traceback under --verbose
    except Exception as exc:
        result = run.result
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        ledger.finish_run(run_id, status="failed", error=result.error, timings=run.timings)
        openlineage.emit_run_event(ctx, spec, "FAIL", run_id=run_id, window=window, as_of=as_of, result=result, error=exc)
        raise
    result.duration_s = round(time.perf_counter() - started, 3)
    result.commit_retries, result.replans = tally.commit_retries, tally.replans
    metrics.observe_run(result)
    if covered and result.status in ("succeeded", "quarantined"):
        ledger.mark_recovered(covered, by=run_id)
    ledger.finish_run(
        run_id,
        status=result.status,
        rows_in=result.rows_in,
        rows_out=result.rows_out,
        rows_quarantined=result.rows_quarantined,
        snapshots={k: v for k, v in run.snapshots.items()},
        timings=run.timings,
        held_days=result.held_days,
        error=result.error,
    )
    outcome: openlineage.EventType = "FAIL" if result.status == "failed" else "COMPLETE"
    openlineage.emit_run_event(ctx, spec, outcome, run_id=run_id, window=window, as_of=as_of, result=result)
    return result


def day_floor(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def split_windows(start: datetime, end: datetime, days: int) -> list[Window]:
    """Whole-day windows of at most `days` days covering [start, end)."""
    return list(Window(start=day_floor(start), end=end if end == day_floor(end) else day_floor(end) + timedelta(days=1)).chunks(days))
