"""Write-audit-publish of one table for a run: the rows a plan holds go to an audit branch, are validated, and
main moves to them once the failing and held rows are out (to the run's quarantine).

    plan ──► audit branch (overwrite the plan's days) ──► suite ──► hold days, route failing rows
        ──► restage the clean rows when any were taken out ──► publish under the table lock

Two kinds of conflict with other writers. A commit conflict (main moved, but not over the audited days nor the
plan's inputs) re-applies the audited rows on the new main and commits again (`COMMIT_ATTEMPTS`). A stale plan
(the audited days, or the inputs the rows were computed from, changed) plans again (`PUBLISH_ATTEMPTS`).

The run (`pipelines.promotion`) owns what outlives one table: the quarantine rows, the held days, the result.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

from config.errors import PipelineError, PublishConflictError
from config.inventory import PipelineSpec, TableSpec
from pipelines.context import PlatformContext
from pipelines.extent import DayExtent, day_extent
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.plan import PUBLISH_ATTEMPTS, Plan, StalePlan, changed_input, span
from pipelines.quarantine import original_json, quarantine_row, row_key
from pipelines.run_result import RunResult, TableOutcome
from pipelines.validation.suite import SuiteOutcome, validate

log = logging.getLogger("pipelines.promotion")  # one logger for a run's steps, as operators filter on it
COMMIT_ATTEMPTS = 8  # publishes of one plan (commit conflicts re-apply the audited rows on the new main)


class PromotionRun(Protocol):
    """What a table promotion needs of the run it is part of (`pipelines.promotion`)."""

    ctx: PlatformContext
    p: PipelineSpec
    run_id: str
    as_of: datetime
    now: datetime
    result: RunResult
    snapshots: dict[str, int | None]
    quarantine_rows: list[dict[str, Any]]
    held: dict[datetime, list[str]]
    partial: dict[datetime, list[str]]
    table_held: bool
    published_by_day: dict[str, int] | None

    def progress(self, message: str) -> None: ...
    def props(self, layer: str, plan: Plan | None = None) -> dict[str, str]: ...
    def timed(self, name: str, started: float) -> None: ...
    def hold(self, day: datetime, reason: str) -> None: ...


class TablePromotion:
    """Write-audit-publish into one table of `run`; `promote()` does it, re-planning while the plan goes stale."""

    def __init__(self, run: PromotionRun) -> None:
        self.run = run

    def promote(self, target_name: str, build: Callable[[], Plan], days: list[datetime], suite_name: str) -> None:
        """Write-audit-publish the rows `build` plans for `days` into `target_name`; failing rows go to quarantine.

        A validation conflict (the audited days, or the inputs the rows came from, changed before the publish)
        re-plans: `build` runs again on what is there now. A commit conflict only re-commits (see `_publish`).
        """
        run = self.run
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            mark, held_before = len(run.quarantine_rows), {day: list(why) for day, why in run.held.items()}
            try:
                self._promote_once(target_name, build(), days, suite_name)
                return
            except StalePlan as exc:
                if attempt == PUBLISH_ATTEMPTS:
                    raise
                wap.count_replan()
                log.info("%s; re-planning (attempt %d)", exc, attempt + 1)  # a conflict that heals itself: one INFO line
                del run.quarantine_rows[mark:]
                run.held = held_before

    def _promote_once(self, target_name: str, plan: Plan, days: list[datetime], suite_name: str) -> None:
        run = self.run
        target = run.ctx.inventory.table(target_name)
        table = load_table(run.ctx.catalog, target_name)
        branch = wap.audit_branch_name(run.run_id)
        suite = run.ctx.inventory.suite(suite_name)
        candidate = plan.rows
        write_days = sorted({ts.replace(hour=0, minute=0, second=0, microsecond=0) for ts in candidate.column("ts").to_pylist()})
        if target.layer == "gold":
            write_days = days  # recompute semantics: a day with no rows left is emptied
        outcome_table = TableOutcome(table=target_name)
        started = time.perf_counter()
        base = wap.open_audit_branch(table, branch, run_id=run.run_id)
        wap.overwrite_days(table, candidate, write_days, branch=branch, properties=run.props(target.layer, plan))
        audited = self._as_written(table, branch, candidate, write_days, target)
        run.timed(f"{target_name}.write", started)
        started = time.perf_counter()
        outcome = validate(suite, audited, as_of=run.as_of)
        run.timed(f"{target_name}.audit", started)
        held_days = dict(outcome.held_days)
        if target.layer == "silver":
            run.partial = self._publishable_partial(suite_name, held_days, audited)
            held_days = {day: names for day, names in held_days.items() if day not in run.partial}
        for held_day, held_names in held_days.items():
            run.hold(held_day, ",".join(held_names))
        table_failed = bool(outcome.table_failures) or (run.table_held and target.layer == "silver")
        held_here = set(held_days) | (set(run.held) if target.layer == "silver" else set())
        clean_table, held_rows = self.route(target, audited, outcome, held_here, table_failed=table_failed)
        run.quarantine_rows.extend(held_rows)
        quarantined = len(held_rows)
        run.ctx.ledger.record_validation(run.run_id, target_name, suite.name, [*plan.checks, *outcome.outcomes])
        outcome_table.quality_score = run.ctx.ledger.record_quality(
            run.run_id, target_name, checked=audited.num_rows, passed=clean_table.num_rows
        )
        outcome_table.rows_quarantined = quarantined
        if table_failed:
            if target.layer == "silver":
                run.table_held = True  # the run's status says so, and no mart is marked for days silver did not change
            outcome_table.held_days = [d.date().isoformat() for d in write_days]
            run.result.tables.append(outcome_table)
            return  # main stays; the branch is kept for diagnosis
        publish_days = [d for d in write_days if d not in held_days and not (target.layer == "silver" and d in run.held)]
        if target.layer == "silver" and held_rows and publish_days:
            # A revision the checks refuse does not delete what was published: the slot keeps its last good value.
            kept = _kept_published(table, target, clean_table, held_rows, publish_days)
            if kept.num_rows:
                clean_table = pa.concat_tables([clean_table, kept])
                outcome_table.rows_kept = kept.num_rows
        if quarantined or (target.layer == "silver" and run.partial):
            # Restart from the audit's base with the clean rows only (and, for partial days, the snapshot's completeness flag).
            self._stage(table, branch, base, clean_table, publish_days, properties=run.props(target.layer, plan))
        snapshot = None
        if publish_days:
            with run.ctx.control.table_lock(target_name):
                snapshot = self._publish(table, branch, base, clean_table, publish_days, layer=target.layer, plan=plan, plan_days=days)
        else:
            wap.drop_branch(table, branch)
        outcome_table.rows_written = clean_table.num_rows
        outcome_table.snapshot_id = snapshot
        if target.layer == "silver":
            run.published_by_day = _count_by_day(clean_table)
        outcome_table.held_days = sorted(d.date().isoformat() for d in held_days)
        if target.layer == "silver":
            run.result.extents = self._extents(audited, held_here)
        run.snapshots[target_name] = snapshot
        run.result.tables.append(outcome_table)
        run.progress(f"{target_name}: published {clean_table.num_rows} rows, quarantined {quarantined}")

    def _publishable_partial(self, suite_name: str, held: dict[datetime, list[str]], audited: pa.Table) -> dict[datetime, list[str]]:
        """Days to publish with a completeness flag: the pipeline's policy says so, and only completeness checks failed."""
        if self.run.p.partial_days != "publish_flagged":
            return {}
        completeness = {e.name for e in self.run.ctx.inventory.suite(suite_name).expectations if e.completeness}
        has_rows = {d.date() for d in (pc.floor_temporal(audited.column("ts"), unit="day").to_pylist() if audited.num_rows else [])}
        return {day: names for day, names in held.items() if set(names) <= completeness and day.date() in has_rows}

    def _extents(self, audited: pa.Table, held: set[datetime]) -> list[DayExtent]:
        """The slots each held or partially published silver day has and lacks."""
        cadence = self.run.ctx.inventory.source(self.run.p.source).cadence_minutes
        days = sorted(held | set(self.run.partial))
        if not days or cadence >= 24 * 60:
            return []
        stamps = audited.column("ts").to_pylist() if audited.num_rows else []
        extents = []
        for day in days:
            present = [ts for ts in stamps if ts is not None and day <= ts < day + timedelta(days=1)]
            extents.append(
                day_extent(day, present, cadence_minutes=cadence, disposition="published_partial" if day in self.run.partial else "held")
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
        wap.open_audit_branch(table, branch, run_id=self.run.run_id, at=at)
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
            changed = changed_input(self.run.ctx, plan.inputs, plan_days)
            if changed:
                raise StalePlan(f"{wap.table_name(table)}: input {changed} changed for {span(plan_days)} after the rows were computed")
            main = wap.branch_head(table, wap.MAIN)
            if main is not None and main != base:
                self._stage(table, branch, main, rows, days, properties=self.run.props(layer, plan))
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
                names = outcome.table_failures or self.run.held.get(day) or outcome.held_days.get(day) or ["schema_contract"]
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
                    run_id=self.run.run_id,
                    now=self.run.now,
                )
            )
        return audited.filter(pa.array(keep, type=pa.bool_())), quarantine


def _kept_published(table: Table, target: TableSpec, clean: pa.Table, held: list[dict[str, Any]], days: list[datetime]) -> pa.Table:
    """Rows main publishes on `days` whose key this run quarantined by a row check and does not publish again: a
    refused revision leaves the earlier, validated value where it was instead of a hole."""
    refused = {str(q["record_key"]) for q in held if q["scope"] == "row"}
    if not refused:
        return clean.schema.empty_table()
    published = wap.read_days(table, days)
    if not published.num_rows:
        return clean.schema.empty_table()
    fresh = {row_key(target, r) for r in clean.select(list(target.key)).to_pylist()} if clean.num_rows else set()
    keys = [row_key(target, r) for r in published.select(list(target.key)).to_pylist()]
    keep = [k in refused and k not in fresh for k in keys]
    return published.filter(pa.array(keep, type=pa.bool_())).select(clean.schema.names).cast(clean.schema)


def _count_by_day(rows: pa.Table) -> dict[str, int]:
    """Rows per UTC day of their `ts`."""
    if not rows.num_rows:
        return {}
    counts = pc.value_counts(pc.floor_temporal(rows.column("ts"), unit="day")).to_pylist()
    return {c["values"].astimezone(UTC).date().isoformat(): c["counts"] for c in counts}
