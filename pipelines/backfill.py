"""Backfills: a range of day partitions, each the pipeline's own idempotent run, on an executor.

    plan whole-UTC-day partitions ──► pack up to `max_partitions_per_run` consecutive ones into one run
        ──► executor runs each pack (`run_pipeline` over the pack's joint window; a pack of one is a partition)
        ──► each partition's outcome read from its pack's result (`RunResult.rows_by_day`, `held_days`)
        ──► a pack that failed, or whose result cannot tell its partitions apart, runs again one partition
            per run: at once when it failed for good, after the backoff when it failed transiently
        ──► partitions that failed transiently run again (pipelines/retry.py: `run_max_attempts`, the one
            backoff rule, the longest Retry-After among them honoured) ──► one report, one outcome per partition

Packing is Dagster's `BackfillPolicy.multi_run(max_partitions_per_run=N)`: the partitions stay the unit a
user asks for and the report lists, each with its own status, rows and held days, but a run's fixed cost
(commits, audit branch, suite: about 0.5 s) is paid once per pack instead of once per day of 48 rows. A
packed run validates its days together, as one `dataops run` over the same window (or `--partition-days`)
does. A partition's outcome is read from the packed run's result, never split by guess: its rows published
and newly quarantined are the rows of its days (`RunResult.rows_by_day`), its held days are the run's held
days among its days, and it is `quarantined` when it has one. Rows and held days of a day outside the pack
(a mart's day that another pipeline marked and this run refreshed, as any run does) count on the pack's
first partition. The run's id, duration and commit conflicts are shared by the partitions it covered
(`run_partitions`). A pack that failed never marks a partition succeeded: its partitions run again one
per run, so only a truly bad day ends failed and the rest converge. A partition runs in at most
`run_max_attempts` rounds of the retry, its pack's round included. Packing is off for pipelines whose
runs cannot tell their days apart (dropped files carry their own days) or whose suites judge a run's whole
batch (a `table`-scope check). On Ray, packs are made no larger than keeps every worker busy.

Executors: `local` (the default) runs the runs one after another in this process; `ray` fans them out as
one task each over a Ray cluster (`pipelines/ray_executor.py`: a local cluster with all cores, or the
`ray_address` setting's). Runs meet on the tables they share; the promotion resolves that
(`pipelines/lakehouse/wap.py`): commit conflicts are committed again on fresh metadata, validation
conflicts are planned again. The report counts both, with the task retries.

Every run, packed or not, is recorded in the ledger as any run is, so a backfill stopped half-way loses
nothing: run it again and each partition converges to the same contents.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from config.errors import PipelineError
from config.inventory import PipelineSpec
from pipelines.context import PlatformContext
from pipelines.partition_runs import (
    EXECUTORS,
    ExecutorName,
    LocalRunner,
    PartitionRunner,
)
from pipelines.promotion import day_floor, split_windows
from pipelines.retry import Failure, retry, scheduler_budget
from pipelines.run_result import RunResult
from pipelines.sources.base import Window

log = logging.getLogger(__name__)
Pack = list[Window]  # consecutive partitions run as one run over their joint window


class PartitionOutcome(BaseModel):
    """What became of one partition, after its last attempt."""

    start: datetime
    end: datetime
    status: str = Field(description="succeeded, quarantined (published, some rows held back) or failed")
    run_id: str
    attempts: int = Field(description="runs that covered this partition, a packed run included")
    rows_out: int = 0
    rows_quarantined: int = 0
    rows_already_held: int = Field(default=0, description="rows held back that an earlier run had already quarantined")
    held_days: list[str] = Field(default_factory=list)
    commit_retries: int = 0
    replans: int = 0
    error: str | None = None
    duration_s: float = 0.0
    run_partitions: int = Field(
        default=1, description="partitions the run of `run_id` covered; its duration and conflicts are that whole run's"
    )


class BackfillReport(BaseModel):
    """A backfill as `dataops backfill --json` prints it."""

    backfill_id: str
    pipeline: str
    executor: ExecutorName
    cluster: str | None = Field(default=None, description="the Ray cluster the partitions ran on")
    workers: int = Field(description="partitions that could run at once")
    start: datetime
    end: datetime
    partitions: int
    max_partitions_per_run: int = Field(default=1, description="most consecutive partitions packed into one run (1: one run each)")
    runs: int = Field(default=0, description="pipeline runs made, a packed run once, runs again included; each is in the ledger")
    unpacked_reruns: int = Field(
        default=0,
        description="partitions run again on their own because the packed run that covered them failed or could not tell them apart",
    )
    succeeded: int
    quarantined: int
    failed: int
    commit_retries: int = Field(description="commits re-done on fresh metadata after another partition committed first")
    replans: int = Field(description="promotions validated again because their days or inputs changed meanwhile")
    task_retries: int = Field(description="partition runs repeated after a transient failure")
    rows_out: int
    rows_quarantined: int
    rows_already_held: int = Field(default=0, description="rows held back that an earlier run had already quarantined (a backfill again)")
    duration_s: float
    outcomes: list[PartitionOutcome]


def plan_partitions(start: datetime, end: datetime, partition_days: int = 1) -> list[Window]:
    """Whole UTC days from `start` to `end` (exclusive), `partition_days` days per partition."""
    if partition_days < 1:
        raise PipelineError(f"a partition is at least one day, not {partition_days}")
    if end <= start:
        raise PipelineError(f"the backfill ends ({end.isoformat()}) before it starts ({start.isoformat()}); give --end after --start")
    return split_windows(start, end, partition_days)


def plan_packs(windows: list[Window], max_partitions_per_run: int, *, workers: int = 1) -> list[Pack]:
    """Consecutive partitions, at most `max_partitions_per_run` a pack, and no fewer packs than `workers` can run at once."""
    if max_partitions_per_run < 1:
        raise PipelineError(f"a run covers at least one partition, not {max_partitions_per_run}")
    size = max(1, min(max_partitions_per_run, math.ceil(len(windows) / max(1, workers))))
    return [windows[i : i + size] for i in range(0, len(windows), size)]


def packing_refusal(ctx: PlatformContext, spec: PipelineSpec) -> str | None:
    """Why runs of this pipeline cannot cover several partitions and still report each honestly; None when they can."""
    if ctx.inventory.source(spec.source).kind == "file_drop":
        return "its dropped files carry their own days, so a run's rows cannot be told apart by partition"
    for suite_name in (spec.suite, *(ctx.inventory.mart(m).suite for m in spec.marts)):
        if suite_name is None:
            continue
        for expectation in ctx.inventory.suite(suite_name).expectations:
            if expectation.scope == "table":
                return f"suite {suite_name} checks {expectation.name} over a run's whole batch (table scope)"
    return None


def runner_for(
    ctx: PlatformContext, pipeline: str, executor: ExecutorName, *, as_of: datetime, address: str | None, cpus: int | None
) -> PartitionRunner:
    if executor == "local":
        return LocalRunner(ctx, pipeline, as_of)
    if executor == "ray":
        from pipelines.ray_executor import RayRunner

        return RayRunner(ctx.settings, pipeline, as_of, address=address, cpus=cpus)
    raise PipelineError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")


def run_backfill(
    ctx: PlatformContext,
    pipeline: str,
    start: datetime,
    end: datetime,
    *,
    executor: ExecutorName = "local",
    as_of: datetime | None = None,
    partition_days: int = 1,
    max_partitions_per_run: int = 1,
    address: str | None = None,
    cpus: int | None = None,
    on_partition: Callable[[PartitionOutcome, int], None] | None = None,
) -> BackfillReport:
    """Run `pipeline` over every partition of [start, end) on `executor`; see the module docstring.

    Holds the pipeline's run lock throughout, so the scheduler's own runs wait; refuses a paused pipeline.
    `max_partitions_per_run` packs that many consecutive partitions into one run at most (1, the default
    here: a run per partition; `dataops backfill` packs 7). `on_partition(outcome, total)` hears of each
    partition's outcome as its run finishes (total counts the outcomes to expect, reports again included).
    """
    spec = ctx.inventory.pipeline(pipeline)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    if start >= as_of:
        raise PipelineError(f"the backfill starts at {start.isoformat()}, after the clock ({as_of.isoformat()}); nothing is known yet")
    windows = plan_partitions(start, min(end, day_floor(as_of) + timedelta(days=1)), partition_days)
    if max_partitions_per_run < 1:
        raise PipelineError(f"a run covers at least one partition, not {max_partitions_per_run}")
    if ctx.control.is_paused(pipeline):
        raise PipelineError(f"{pipeline} is paused; a backfill would bypass whoever paused it. `dataops resume {pipeline}` first")
    refusal = packing_refusal(ctx, spec) if max_partitions_per_run > 1 else None
    if refusal is not None:
        log.warning("%s: one run per partition, not up to %d: %s", spec.name, max_partitions_per_run, refusal)
        max_partitions_per_run = 1
    backfill_id = f"backfill-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    started = time.perf_counter()
    with ctx.control.exclusive(spec.name):
        _ = ctx.catalog  # opening it creates missing tables: here, once, before the partitions' workers open it together
        ctx.ledger.mark_abandoned(spec.name)
        lost = [r for r in ctx.ledger.unrecovered(spec.name) if windows[0].start <= r.window_start and r.window_end <= windows[-1].end]
        runner = runner_for(ctx, spec.name, executor, as_of=as_of, address=address, cpus=cpus)
        try:
            packs = plan_packs(windows, max_partitions_per_run, workers=runner.workers)
            state = _Backfill(runner, len(windows), on_partition)
            # One retry for the whole batch: the one backoff rule, the longest Retry-After among the partitions.
            _, report = retry(
                lambda number, _at: state.attempt(number, packs if number == 1 else None, backfill_id),
                _batch_failure,
                budget=scheduler_budget(ctx.settings),
                start=as_of,
                wait=time.sleep,
                seed=backfill_id,
            )
            if report.stopped == "retry_after":
                log.warning(
                    "%s: the source asks to wait %.0f s; the next run tries again", backfill_id, report.attempts[-1].retry_after_s or 0
                )
            state.settle(windows)  # partitions whose pack failed transiently and whose retries the budget did not allow
        finally:
            runner.close()
        outcomes = state.outcomes
        if lost and all(outcomes[w.start].status != "failed" for w in windows):
            ctx.ledger.mark_recovered([r.run_id for r in lost], by=backfill_id)
    ordered = [outcomes[w.start] for w in windows]
    return BackfillReport(
        backfill_id=backfill_id, pipeline=spec.name, executor=runner.name, cluster=runner.cluster, workers=runner.workers,
        start=windows[0].start, end=windows[-1].end, partitions=len(windows), max_partitions_per_run=max(len(p) for p in packs),
        runs=state.runs, unpacked_reruns=state.unpacked_reruns,
        succeeded=sum(o.status == "succeeded" for o in ordered), quarantined=sum(o.status == "quarantined" for o in ordered),
        failed=sum(o.status == "failed" for o in ordered), commit_retries=state.commit_retries, replans=state.replans,
        task_retries=state.task_retries, rows_out=sum(o.rows_out for o in ordered),
        rows_quarantined=sum(o.rows_quarantined for o in ordered), rows_already_held=sum(o.rows_already_held for o in ordered), duration_s=round(time.perf_counter() - started, 3),
        outcomes=ordered,
    )  # fmt: skip


class _Backfill:
    """The partitions' outcomes as the runs come back, and what each attempt of the retry still has to run."""

    def __init__(self, runner: PartitionRunner, partitions: int, on_partition: Callable[[PartitionOutcome, int], None] | None) -> None:
        self.runner, self.partitions, self.on_partition = runner, partitions, on_partition
        self.outcomes: dict[datetime, PartitionOutcome] = {}
        self.pending: list[Pack] = []  # after an attempt: single partitions that failed transiently, to run after the backoff
        self.covered: dict[datetime, int] = {}  # runs that covered each partition
        self.conflicts: dict[datetime, tuple[int, int]] = {}  # commit retries and re-plans of every run that covered it
        self.unsettled: dict[datetime, tuple[RunResult, int]] = {}  # partitions whose pack failed: its result, its size
        self.runs = self.task_retries = self.unpacked_reruns = self.commit_retries = self.replans = 0
        self.reported_again = 0

    def attempt(self, number: int, packs: list[Pack] | None, backfill_id: str) -> list[RunResult]:
        """Run the packs (attempt 1) or the partitions still pending; returns the runs that failed transiently."""
        todo = packs if packs is not None else self.pending
        if number > 1:
            self.task_retries += len(todo)
            self.reported_again += sum(p[0].start in self.outcomes for p in todo)
            log.warning("%s: %d partition(s) failed transiently; attempt %d", backfill_id, len(todo), number)
        transient: list[RunResult] = []
        self.pending = []
        alone = self._run(todo, number, transient)
        if alone:  # packs that failed for good or could not tell their partitions apart: each partition on its own, now
            log.info("%s: %d partition(s) of failed or unclear packed runs run again one per run", backfill_id, len(alone))
            self._run(alone, number, transient)
        self.pending.sort(key=lambda p: p[0].start)
        return transient

    def _run(self, todo: list[Pack], number: int, transient: list[RunResult]) -> list[Pack]:
        """Run `todo`, each pack as one run; returns the partitions to run again on their own at once."""
        by_window = {Window(start=p[0].start, end=p[-1].end): p for p in todo}
        alone: list[Pack] = []
        for window, result in self.runner.run(list(by_window), attempt=number):
            pack = by_window[window]
            self.runs += 1
            self.commit_retries += result.commit_retries
            self.replans += result.replans
            for w in pack:
                self.covered[w.start] = self.covered.get(w.start, 0) + 1
                retries, replans = self.conflicts.get(w.start, (0, 0))
                self.conflicts[w.start] = (retries + result.commit_retries, replans + result.replans)
            split = _split(result, pack) if len(pack) > 1 else [_outcome(result, pack[0])]
            if split is not None:
                for w, outcome in zip(pack, split, strict=True):
                    self._report(w, outcome)
                if len(pack) == 1 and _transient(result):
                    self.pending.append(pack)
                    transient.append(result)
                continue
            self.unpacked_reruns += len(pack)
            for w in pack:
                self.unsettled[w.start] = (result, len(pack))
            if _transient(result):
                self.pending.extend([w] for w in pack)  # after the backoff, as any transient failure
                transient.append(result)
            else:
                if result.status != "failed":
                    log.warning("run %s cannot tell its %d partitions apart; they run again one per run", result.run_id, len(pack))
                alone.extend([w] for w in pack)
        return alone

    def _report(self, window: Window, outcome: PartitionOutcome) -> None:
        outcome.attempts = self.covered[window.start]
        outcome.commit_retries, outcome.replans = self.conflicts[window.start]
        self.outcomes[window.start] = outcome
        self.unsettled.pop(window.start, None)
        if self.on_partition is not None:
            self.on_partition(outcome, self.partitions + self.reported_again)

    def settle(self, windows: list[Window]) -> None:
        """Partitions with no outcome of their own (their pack failed transiently, no attempt was left): failed, as the
        pack, with none of its rows, which a failed run cannot tell apart."""
        for w in windows:
            if w.start not in self.outcomes and w.start in self.unsettled:
                result, size = self.unsettled[w.start]
                outcome = _outcome(result, w)
                outcome.rows_out = outcome.rows_quarantined = outcome.rows_already_held = 0
                outcome.held_days, outcome.run_partitions = [], size
                self._report(w, outcome)


def _split(result: RunResult, pack: Pack) -> list[PartitionOutcome] | None:
    """Each partition's outcome, read from the run over the pack's joint window; None when the result cannot say.

    A failed run says nothing of its partitions. A finished one tells them apart by `rows_by_day` (the rows of
    each day, adding up to the run's totals) and `held_days`; a day outside the pack counts on its first partition.
    """
    if result.status not in ("succeeded", "quarantined") or result.rows_by_day is None:
        return None
    by_day = result.rows_by_day
    totals = (
        sum(d.rows_out for d in by_day.values()),
        sum(d.rows_quarantined for d in by_day.values()),
        sum(d.rows_already_held for d in by_day.values()),
    )
    if totals != (result.rows_out, result.rows_quarantined, result.rows_already_held):
        return None
    bounds = [(w.start.date().isoformat(), w.end.date().isoformat()) for w in pack]

    def home(day: str) -> int:
        return next((i for i, (first, end) in enumerate(bounds) if first <= day < end), 0)

    split = [_outcome(result, w) for w in pack]
    for outcome in split:
        outcome.rows_out = outcome.rows_quarantined = outcome.rows_already_held = 0
        outcome.held_days = []
        outcome.run_partitions = len(pack)
    for day, rows in sorted(by_day.items()):
        split[home(day)].rows_out += rows.rows_out
        split[home(day)].rows_quarantined += rows.rows_quarantined
        split[home(day)].rows_already_held += rows.rows_already_held
    for day in sorted(result.held_days):
        split[home(day)].held_days.append(day)
    for outcome in split:
        outcome.status = "quarantined" if outcome.held_days else "succeeded"
    if result.status == "quarantined" and not any(o.status == "quarantined" for o in split):
        return None  # held back for a reason of no day (the whole window): the partitions must show it on their own
    return split


def _transient(result: RunResult) -> bool:
    return result.status == "failed" and result.error_kind == "transient"


def _batch_failure(again: list[RunResult]) -> Failure | None:
    """A batch fails transiently while some run did: the retry waits the longest Retry-After among them."""
    if not again:
        return None
    retry_after = max((r.retry_after_s for r in again if r.retry_after_s is not None), default=None)
    return Failure(error=f"{len(again)} run(s) failed transiently: {again[0].error}", transient=True, retry_after_s=retry_after)


def _outcome(result: RunResult, window: Window) -> PartitionOutcome:
    return PartitionOutcome(
        start=window.start, end=window.end, status=result.status, run_id=result.run_id, attempts=1, rows_out=result.rows_out,
        rows_quarantined=result.rows_quarantined, rows_already_held=result.rows_already_held, held_days=result.held_days, commit_retries=result.commit_retries,
        replans=result.replans, error=result.error, duration_s=result.duration_s,
    )  # fmt: skip
