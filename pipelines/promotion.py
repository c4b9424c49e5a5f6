"""One run of a pipeline over a window: fetch, land bronze, promote silver and gold with write-audit-publish.

    fetch ──► bronze (append new revisions only) ──► conform ──► audit branch ──► suite
        ──► quarantine (failing rows, held days, unreadable records) ──► publish clean rows to silver
        ──► mark the days in each gold mart ──► each mart, under its lock: recompute every marked day (any
            input's), audit, quarantine, publish (pipelines/mart_refresh.py)

Every bronze slot of the run ends in silver or in quarantine. A killed run leaves each table's main either
untouched or at one complete commit of this run; re-running the window completes it with identical contents.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

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
from pipelines.context import PlatformContext
from pipelines.extent import DayExtent, day_extent
from pipelines.key_buckets import bound_allocators
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.plan import BRONZE_PLAN_COLUMNS, PUBLISH_ATTEMPTS, Plan, StalePlan, changed_input, span
from pipelines.quarantine import original_json, quarantine_row, row_key
from pipelines.run_result import DayRows, QuarantineGroup, RunResult, TableOutcome, new_run_id
from pipelines.sources.base import FetchResult, RecordProblem, SourceRecord, Window, canonical_json, dedupe_records, find_conflicts
from pipelines.sources.drop_manifest import DropManifest
from pipelines.sources.file_drop import FileDropSource
from pipelines.sources.registry import build_source
from pipelines.staged_promotion import StagedPromotion
from pipelines.transforms.conform import conform, latest_revisions
from pipelines.transforms.marts import compute_mart
from pipelines.validation.slices import sliceable
from pipelines.validation.suite import ExpectationOutcome, SuiteOutcome, validate

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
COMMIT_ATTEMPTS = 8  # publishes of one plan (commit conflicts re-apply the audited rows on the new main)
INPUTS_PROPERTY = "dataops.inputs"  # snapshot property: JSON {input table: main snapshot id the rows were computed from}
PARTIAL_PROPERTY = "dataops.partial_days"  # snapshot property: JSON {day: completeness checks it failed} of days published partial
CONFORM_ROWS = 50_000  # bronze records conformed at once (each is a Python dict while it is)


@dataclass(frozen=True, kw_only=True)
class _Landed:
    """Bronze's rows of `days` as of `snapshot`, the append this run made: existing rows plus the appended ones."""

    days: frozenset[datetime]
    snapshot: int | None
    rows: pa.Table


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
        self.quarantined_so_far = 0  # rows written to quarantine by this run (`flush_quarantine`)
        self.landed: _Landed | None = None  # bronze's rows of the days this run landed, for the first silver plan
        self.held: dict[datetime, list[str]] = {}
        self.partial: dict[datetime, list[str]] = {}
        self.table_held = False
        self.now = datetime.now(UTC)
        self.published_by_day: dict[str, int] | None = None  # silver rows published, by day (`RunResult.rows_by_day`)
        self.quarantined_by_day: dict[str, int] = {}  # rows newly quarantined, by day

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

    def _hold(self, day: datetime, reason: str) -> None:
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

    def land_bronze(self, fetched: FetchResult) -> list[datetime]:
        """Append records whose (key, payload hash) bronze does not hold yet; returns the days they cover."""
        started = time.perf_counter()
        table = load_table(self.ctx.catalog, self.p.bronze)
        days = sorted({r.ts.replace(hour=0, minute=0, second=0, microsecond=0) for r in fetched.records})
        existing = wap.read_days(table, days, columns=BRONZE_PLAN_COLUMNS)
        seen = set(zip(existing.column("record_key").to_pylist(), existing.column("payload_hash").to_pylist(), strict=True))
        new = [r for r in fetched.records if (r.record_key, r.payload_hash) not in seen]
        data = pa.table(
            {
                "ts": [r.ts for r in new],
                "record_key": [r.record_key for r in new],
                "payload": [r.payload_json for r in new],
                "payload_hash": [r.payload_hash for r in new],
                "source_uri": [r.source_uri for r in new],
                "run_id": [self.run_id] * len(new),
                "fetched_at": [self.now] * len(new),
            },
            schema=arrow_schema(self.ctx.inventory.table(self.p.bronze)),
        )
        self.snapshots[self.p.bronze] = wap.append(table, data, properties=self.props("bronze"))
        # Bronze's rows of these days are now what it held plus what was appended: the silver plan needs no re-read.
        plan_schema = pa.schema([data.schema.field(c) for c in BRONZE_PLAN_COLUMNS])
        self.landed = _Landed(
            days=frozenset(days),
            snapshot=self.snapshots[self.p.bronze],
            rows=pa.concat_tables([existing.select(BRONZE_PLAN_COLUMNS).cast(plan_schema), data.select(BRONZE_PLAN_COLUMNS)]),
        )
        self.result.bronze_new = len(new)
        self.result.tables.append(TableOutcome(table=self.p.bronze, rows_written=len(new), snapshot_id=self.snapshots[self.p.bronze]))
        self.timed("bronze", started)
        self.progress(f"bronze: {len(new)} new of {len(fetched.records)} fetched")
        return days

    def affected_days(self, record_days: list[datetime]) -> list[datetime]:
        if self.ctx.inventory.source(self.p.source).kind == "file_drop":
            return record_days
        return self.window.days()

    def check_days_present(self, days: list[datetime], candidate: pa.Table) -> ExpectationOutcome | None:
        """Days fully in the past with no record at all: partition failures that GE cannot see (no rows)."""
        if self.ctx.inventory.source(self.p.source).kind == "file_drop":
            return None
        present = {ts.date() for ts in candidate.column("ts").to_pylist()}
        empty = [d for d in days if d + timedelta(days=1) <= self.as_of and d.date() not in present]
        for d in empty:
            self._hold(d, "window_days_present")
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

    def promote(self, target_name: str, build: Callable[[], Plan], days: list[datetime], suite_name: str) -> None:
        """Write-audit-publish the rows `build` plans for `days` into `target_name`; failing rows go to quarantine.

        A validation conflict (the audited days, or the inputs the rows came from, changed before the publish)
        re-plans: `build` runs again on what is there now. A commit conflict only re-commits (see `_publish`).
        """
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            mark, held_before = len(self.quarantine_rows), {day: list(why) for day, why in self.held.items()}
            try:
                self._promote_once(target_name, build(), days, suite_name)
                return
            except StalePlan as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    raise
                wap.count_replan()
                log.info("%s; re-planning (attempt %d)", exc, attempt + 1)  # a conflict that heals itself: one INFO line
                del self.quarantine_rows[mark:]
                self.held = held_before

    def _promote_once(self, target_name: str, plan: Plan, days: list[datetime], suite_name: str) -> None:
        target = self.ctx.inventory.table(target_name)
        table = load_table(self.ctx.catalog, target_name)
        branch = wap.audit_branch_name(self.run_id)
        suite = self.ctx.inventory.suite(suite_name)
        candidate = plan.rows
        write_days = sorted({ts.replace(hour=0, minute=0, second=0, microsecond=0) for ts in candidate.column("ts").to_pylist()})
        if target.layer == "gold":
            write_days = days  # recompute semantics: a day with no rows left is emptied
        outcome_table = TableOutcome(table=target_name)
        started = time.perf_counter()
        base = wap.open_audit_branch(table, branch, run_id=self.run_id)
        wap.overwrite_days(table, candidate, write_days, branch=branch, properties=self.props(target.layer, plan))
        audited = self._as_written(table, branch, candidate, write_days, target)
        self.timed(f"{target_name}.write", started)
        started = time.perf_counter()
        outcome = validate(suite, audited, as_of=self.as_of)
        self.timed(f"{target_name}.audit", started)
        held_days = dict(outcome.held_days)
        if target.layer == "silver":
            self.partial = self._publishable_partial(suite_name, held_days, audited)
            held_days = {day: names for day, names in held_days.items() if day not in self.partial}
        for held_day, held_names in held_days.items():
            self._hold(held_day, ",".join(held_names))
        table_failed = bool(outcome.table_failures) or (self.table_held and target.layer == "silver")
        held_here = set(held_days) | (set(self.held) if target.layer == "silver" else set())
        clean_table, held_rows = self.route(target, audited, outcome, held_here, table_failed=table_failed)
        self.quarantine_rows.extend(held_rows)
        quarantined = len(held_rows)
        self.ctx.ledger.record_validation(self.run_id, target_name, suite.name, [*plan.checks, *outcome.outcomes])
        outcome_table.quality_score = self.ctx.ledger.record_quality(
            self.run_id, target_name, checked=audited.num_rows, passed=clean_table.num_rows
        )
        outcome_table.rows_quarantined = quarantined
        if table_failed:
            outcome_table.held_days = [d.date().isoformat() for d in write_days]
            self.result.tables.append(outcome_table)
            return  # main stays; the branch is kept for diagnosis
        publish_days = [d for d in write_days if d not in held_days and not (target.layer == "silver" and d in self.held)]
        if quarantined or (target.layer == "silver" and self.partial):
            # Restart from the audit's base with the clean rows only (and, for partial days, the snapshot's completeness flag).
            self._stage(table, branch, base, clean_table, publish_days, properties=self.props(target.layer, plan))
        snapshot = None
        if publish_days:
            with self.ctx.control.table_lock(target_name):
                snapshot = self._publish(table, branch, base, clean_table, publish_days, layer=target.layer, plan=plan, plan_days=days)
        else:
            wap.drop_branch(table, branch)
        outcome_table.rows_written = clean_table.num_rows
        outcome_table.snapshot_id = snapshot
        if target.layer == "silver":
            self.published_by_day = _count_by_day(clean_table)
        outcome_table.held_days = sorted(d.date().isoformat() for d in held_days)
        if target.layer == "silver":
            self.result.extents = self._extents(audited, held_here)
        self.snapshots[target_name] = snapshot
        self.result.tables.append(outcome_table)
        self.progress(f"{target_name}: published {clean_table.num_rows} rows, quarantined {quarantined}")

    def _publishable_partial(self, suite_name: str, held: dict[datetime, list[str]], audited: pa.Table) -> dict[datetime, list[str]]:
        """Days to publish with a completeness flag: the pipeline's policy says so, and only completeness checks failed."""
        if self.p.partial_days != "publish_flagged":
            return {}
        completeness = {e.name for e in self.ctx.inventory.suite(suite_name).expectations if e.completeness}
        has_rows = {d.date() for d in (pc.floor_temporal(audited.column("ts"), unit="day").to_pylist() if audited.num_rows else [])}
        return {day: names for day, names in held.items() if set(names) <= completeness and day.date() in has_rows}

    def _extents(self, audited: pa.Table, held: set[datetime]) -> list[DayExtent]:
        """The slots each held or partially published silver day has and lacks."""
        cadence = self.ctx.inventory.source(self.p.source).cadence_minutes
        days = sorted(held | set(self.partial))
        if not days or cadence >= 24 * 60:
            return []
        stamps = audited.column("ts").to_pylist() if audited.num_rows else []
        extents = []
        for day in days:
            present = [ts for ts in stamps if ts is not None and day <= ts < day + timedelta(days=1)]
            extents.append(
                day_extent(day, present, cadence_minutes=cadence, disposition="published_partial" if day in self.partial else "held")
            )
        return extents

    def _as_written(self, table: Table, branch: str, rows: pa.Table, days: list[datetime], target: TableSpec) -> pa.Table:
        """The rows the audit branch now holds for `days`: `rows` as the table types them, once the branch is seen to
        hold exactly that many there (a count from the `ts` column alone). The audit validates these; reading every
        column back from files this run has just written would only cost time."""
        held = wap.count_days(table, days, branch=branch)
        if held != rows.num_rows:
            raise PipelineError(f"{wap.table_name(table)}: audit branch {branch} holds {held} rows for its days; expected {rows.num_rows}")
        schema = arrow_schema(target)
        return rows.select(schema.names).cast(schema)

    def _stage(self, table: Table, branch: str, at: int, rows: pa.Table, days: list[datetime], *, properties: dict[str, str]) -> None:
        """Reset `branch` to snapshot `at` and write `rows` over `days`; the branch must then hold exactly `rows` there."""
        wap.open_audit_branch(table, branch, run_id=self.run_id, at=at)
        wap.overwrite_days(table, rows, days, branch=branch, properties=properties)
        held = wap.count_days(table, days, branch=branch)
        if held != rows.num_rows:
            raise PipelineError(f"{wap.table_name(table)}: audit branch {branch} holds {held} rows for its days; expected {rows.num_rows}")

    def _publish(
        self,
        table: Table,
        branch: str,
        base: int,
        rows: pa.Table,
        days: list[datetime],
        *,
        layer: str,
        plan: Plan,
        plan_days: list[datetime],
    ) -> int | None:
        """Move main to the audited branch. When main moved since `base` (another writer published other days,
        possibly from another machine), the audited rows are re-applied on the new main (a commit retry) as long
        as neither the published days nor the plan's inputs changed; otherwise the plan is stale (`StalePlan`)."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            if wap.days_changed(table, days, since=base):
                raise StalePlan(f"{wap.table_name(table)}: another writer changed {span(days)} after this run audited them")
            changed = changed_input(self.ctx, plan.inputs, plan_days)
            if changed:
                raise StalePlan(f"{wap.table_name(table)}: input {changed} changed for {span(plan_days)} after the rows were computed")
            main = wap.branch_head(table, wap.MAIN)
            if main is not None and main != base:
                self._stage(table, branch, main, rows, days, properties=self.props(layer, plan))
                base = main
                wap.count_commit_retry()
            try:
                return wap.publish(table, branch)
            except PublishConflictError as exc:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                wap.count_commit_retry()
                log.info("%s; retrying the publish (attempt %d)", exc, attempt + 1)
                time.sleep(random.uniform(0.01, 0.05 * attempt))
        raise AssertionError("unreachable")

    def route(
        self, target: TableSpec, audited: pa.Table, outcome: SuiteOutcome, held: set[datetime], *, table_failed: bool
    ) -> tuple[pa.Table, list[dict[str, Any]]]:
        """Split audited rows into those to publish and quarantine rows for the failing and the held ones."""
        if not outcome.failing_rows and not held and not table_failed:
            return audited, []
        n = audited.num_rows
        days = pc.floor_temporal(audited.column("ts"), unit="day").to_pylist() if n else []
        failing = outcome.failing_rows
        why = {o.name: o.why for o in outcome.outcomes}
        keep = [True] * n
        quarantine: list[dict[str, Any]] = []
        flagged = sorted(set(failing) | {i for i in range(n) if table_failed or days[i] in held})
        subset = audited.take(pa.array(flagged, type=pa.int64())).to_pylist() if flagged else []
        for i, row in zip(flagged, subset, strict=True):
            keep[i] = False
            if i in failing:
                names, scope = failing[i], "row"
                reason = "; ".join(f"{name}: {why[name]}" for name in names)
            else:
                day = days[i]
                names = outcome.table_failures or self.held.get(day) or outcome.held_days.get(day) or ["schema_contract"]
                scope = "table" if table_failed else "partition"
                reason = f"{'run' if table_failed else 'day ' + str(day.date() if day else '?')} held back: {', '.join(names)}"
            quarantine.append(
                quarantine_row(
                    ts=row["ts"],
                    record_key=row_key(target, row),
                    target=target.name,
                    expectation=",".join(names),
                    scope=scope,
                    reason=reason,
                    original=original_json(row),
                    run_id=self.run_id,
                    now=self.now,
                )
            )
        return audited.filter(pa.array(keep, type=pa.bool_())), quarantine

    def write_quarantine(self) -> int:
        """Append quarantine rows not already held for the same record, check and original values."""
        if not self.quarantine_rows:
            return 0
        table = load_table(self.ctx.catalog, self.p.quarantine)
        days = {(q["ts"] or self.window.start).replace(hour=0, minute=0, second=0, microsecond=0) for q in self.quarantine_rows}
        existing = wap.read_days(table, days, columns=("target_table", "record_key", "expectation", "original"))

        def marker(q: dict[str, Any]) -> tuple[str, str, str, str]:
            return (q["target_table"], q["record_key"], q["expectation"], hashlib.sha256(q["original"].encode()).hexdigest())

        seen = {marker(q) for q in existing.to_pylist()}
        fresh, batch_seen = [], set()
        for q in self.quarantine_rows:
            m = marker(q)
            if m not in seen and m not in batch_seen:
                batch_seen.add(m)
                fresh.append(q)
        for q in fresh:
            day = (q["ts"] or self.window.start).date().isoformat()  # the day `days` above files it under
            self.quarantined_by_day[day] = self.quarantined_by_day.get(day, 0) + 1
        groups: dict[tuple[str, str, str], QuarantineGroup] = {}
        for q in fresh:
            g = groups.setdefault(
                (q["target_table"], q["expectation"], q["scope"]),
                QuarantineGroup(
                    target_table=q["target_table"],
                    expectation=q["expectation"],
                    scope=q["scope"],
                    rows=0,
                    first_ts=q["ts"],
                    last_ts=q["ts"],
                ),
            )
            g.rows += 1
            if q["ts"] is not None:
                g.first_ts = min(filter(None, (g.first_ts, q["ts"])))
                g.last_ts = max(filter(None, (g.last_ts, q["ts"])))
            if len(g.sample) < 5:
                # a table-scope reason is one message for the whole run (e.g. the contract diff): keep all of it
                g.sample.append(f"{q['record_key']}: {q['reason'][: 600 if q['scope'] == 'table' else 160]}")
        self.result.quarantine = list(groups.values())
        data = pa.Table.from_pylist(fresh, schema=arrow_schema(self.ctx.inventory.table(self.p.quarantine)))
        self.snapshots[self.p.quarantine] = wap.append(table, data, properties=self.props("quarantine"))
        return len(fresh)

    def plan_silver(self, days: list[datetime]) -> Plan:
        """Conform bronze's rows of `days` into silver candidates; unreadable rows go to quarantine."""
        started = time.perf_counter()
        bronze = load_table(self.ctx.catalog, self.p.bronze)
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
        candidate = self.conform_rows(raw)
        del raw
        self.timed("conform", started)
        self.result.rows_in = candidate.num_rows
        presence = self.check_days_present(days, candidate)
        self.progress(f"silver: auditing {candidate.num_rows} rows over {len(days)} day(s)")
        return Plan(rows=candidate, inputs={self.p.bronze: read}, checks=[presence] if presence else [])

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
        before = list(self.result.quarantine)
        fresh = self.write_quarantine()
        self.quarantine_rows.clear()
        self.quarantined_so_far += fresh
        groups = {(g.target_table, g.expectation, g.scope): g for g in before}
        for g in self.result.quarantine if fresh else []:
            seen = groups.get((g.target_table, g.expectation, g.scope))
            if seen is None:
                groups[(g.target_table, g.expectation, g.scope)] = g
                continue
            stamps = [t for t in (seen.first_ts, seen.last_ts, g.first_ts, g.last_ts) if t is not None]
            groups[(g.target_table, g.expectation, g.scope)] = seen.model_copy(
                update={
                    "rows": seen.rows + g.rows,
                    "first_ts": min(stamps, default=None),
                    "last_ts": max(stamps, default=None),
                    "sample": (seen.sample + g.sample)[:5],
                }
            )
        self.result.quarantine = list(groups.values())
        return self.quarantined_so_far

    def execute(self) -> RunResult:
        fetched = self.fetch()
        if fetched.staged is not None:
            try:
                days = StagedPromotion(self, fetched.staged).execute()
            finally:
                fetched.staged.close()
        else:
            record_days = self.land_bronze(fetched)
            days = self.affected_days(record_days)
            self.promote(self.p.silver, lambda: self.plan_silver(days), days, self.p.suite)
        silver_outcome = self.result.tables[-1]
        self.result.rows_out = silver_outcome.rows_written
        if not self.table_held:
            mart_refresh.mark(self.ctx, self.p.marts, days, run_id=self.run_id)
        if self.refresh_marts:
            self.refresh_pending_marts()
        started = time.perf_counter()
        self.result.rows_quarantined = self.flush_quarantine()
        self.timed("quarantine", started)
        if fetched.files:  # dropped files are ingested once, and only once their rows are in bronze and quarantine
            DropManifest(self.ctx.ledger).record(fetched.files, run_id=self.run_id)
        self.result.held_days = sorted(d.date().isoformat() for d in self.held)
        self.result.status = "quarantined" if (self.held or self.table_held) else "succeeded"
        if self.published_by_day is not None and not self.table_held:  # staged files and whole-window holds: no split
            published, quarantined = self.published_by_day, self.quarantined_by_day
            self.result.rows_by_day = {
                d: DayRows(rows_out=published.get(d, 0), rows_quarantined=quarantined.get(d, 0)) for d in sorted({*published, *quarantined})
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

        self.promote(mart.table, plan, days, mart.suite)


def clean_audit_branches(ctx: PlatformContext, spec: PipelineSpec, *, now: datetime | None = None) -> list[str]:
    """Drop audit branches kept for diagnosis once their run was recovered or their retention has passed."""
    now = now or datetime.now(UTC)
    retention = timedelta(hours=ctx.settings.audit_branch_retention_hours)
    dropped = []
    for name in (spec.silver, *(ctx.inventory.mart(m).table for m in spec.marts)):
        table = load_table(ctx.catalog, name)
        for branch in wap.audit_branches(table):
            run = ctx.ledger.run(branch.removeprefix(wap.AUDIT_PREFIX))
            if run is None or run.status == "running":
                continue  # a live run owns it, or it is not ours to judge
            finished = run.finished_at or run.started_at
            if finished.tzinfo is None:
                finished = finished.replace(tzinfo=UTC)
            if run.recovered_by is not None or now - finished > retention:
                wap.drop_branch(table, branch)
                dropped.append(f"{name}@{branch}")
    return dropped


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


def _count_by_day(rows: pa.Table) -> dict[str, int]:
    """Rows per UTC day of their `ts`."""
    if not rows.num_rows:
        return {}
    counts = pc.value_counts(pc.floor_temporal(rows.column("ts"), unit="day")).to_pylist()
    return {c["values"].astimezone(UTC).date().isoformat(): c["counts"] for c in counts}


def day_floor(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def split_windows(start: datetime, end: datetime, days: int) -> list[Window]:
    """Whole-day windows of at most `days` days covering [start, end)."""
    return list(Window(start=day_floor(start), end=end if end == day_floor(end) else day_floor(end) + timedelta(days=1)).chunks(days))
