"""Backfills: a range of day partitions, each the pipeline's own idempotent run, on an executor.

    plan whole-UTC-day partitions ──► executor runs each (`run_pipeline` over one partition)
        ──► partitions that failed transiently run again (pipelines/retry.py: `run_max_attempts`, the one
            backoff rule, the longest Retry-After among them honoured) ──► one report

Executors: `local` (the default) runs the partitions one after another in this process; `ray` fans them
out as one task each over a Ray cluster (`pipelines/ray_executor.py`: a local cluster with all cores, or
the `ray_address` setting's). Partitions meet on the tables they share; the promotion resolves that
(`pipelines/lakehouse/wap.py`): commit conflicts are committed again on fresh metadata, validation
conflicts are planned again. The report counts both, with the task retries.

Every partition run is recorded in the ledger as any run is, so a backfill stopped half-way loses
nothing: run it again and each partition converges to the same contents.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from config.errors import PipelineError
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


class PartitionOutcome(BaseModel):
    """What became of one partition, after its last attempt."""

    start: datetime
    end: datetime
    status: str = Field(description="succeeded, quarantined (published, some rows held back) or failed")
    run_id: str
    attempts: int
    rows_out: int = 0
    rows_quarantined: int = 0
    held_days: list[str] = Field(default_factory=list)
    commit_retries: int = 0
    replans: int = 0
    error: str | None = None
    duration_s: float = 0.0


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
    succeeded: int
    quarantined: int
    failed: int
    commit_retries: int = Field(description="commits re-done on fresh metadata after another partition committed first")
    replans: int = Field(description="promotions validated again because their days or inputs changed meanwhile")
    task_retries: int = Field(description="partition runs repeated after a transient failure")
    rows_out: int
    rows_quarantined: int
    duration_s: float
    outcomes: list[PartitionOutcome]


def plan_partitions(start: datetime, end: datetime, partition_days: int = 1) -> list[Window]:
    """Whole UTC days from `start` to `end` (exclusive), `partition_days` days per partition."""
    if partition_days < 1:
        raise PipelineError(f"a partition is at least one day, not {partition_days}")
    if end <= start:
        raise PipelineError(f"the backfill ends ({end.isoformat()}) before it starts ({start.isoformat()}); give --end after --start")
    return split_windows(start, end, partition_days)


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
    address: str | None = None,
    cpus: int | None = None,
    on_partition: Callable[[PartitionOutcome, int], None] | None = None,
) -> BackfillReport:
    """Run `pipeline` over every partition of [start, end) on `executor`; see the module docstring.

    Holds the pipeline's run lock throughout, so the scheduler's own runs wait; refuses a paused pipeline.
    `on_partition(outcome, total)` hears of each finished partition run (total counts the retries so far).
    """
    spec = ctx.inventory.pipeline(pipeline)
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    if start >= as_of:
        raise PipelineError(f"the backfill starts at {start.isoformat()}, after the clock ({as_of.isoformat()}); nothing is known yet")
    windows = plan_partitions(start, min(end, day_floor(as_of) + timedelta(days=1)), partition_days)
    if ctx.control.is_paused(pipeline):
        raise PipelineError(f"{pipeline} is paused; a backfill would bypass whoever paused it. `dataops resume {pipeline}` first")
    backfill_id = f"backfill-{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
    started = time.perf_counter()
    outcomes: dict[datetime, PartitionOutcome] = {}
    task_retries = 0
    with ctx.control.exclusive(spec.name):
        _ = ctx.catalog  # opening it creates missing tables: here, once, before the partitions' workers open it together
        ctx.ledger.mark_abandoned(spec.name)
        lost = [r for r in ctx.ledger.unrecovered(spec.name) if windows[0].start <= r.window_start and r.window_end <= windows[-1].end]
        runner = runner_for(ctx, spec.name, executor, as_of=as_of, address=address, cpus=cpus)
        pending = windows

        def attempt(number: int, _at: datetime) -> list[tuple[Window, RunResult]]:
            """Run the partitions still pending; the ones that failed transiently are pending next time."""
            nonlocal pending, task_retries
            if number > 1:
                task_retries += len(pending)
                log.warning("%s: %d partition(s) failed transiently; attempt %d", backfill_id, len(pending), number)
            finished = []
            for window, result in runner.run(pending, attempt=number):
                outcome = _outcome(result, window, number)
                earlier = outcomes.get(window.start)
                if earlier is not None:  # the conflicts of every attempt count
                    outcome.commit_retries += earlier.commit_retries
                    outcome.replans += earlier.replans
                outcomes[window.start] = outcome
                finished.append((window, result))
                if on_partition is not None:
                    on_partition(outcome, len(windows) + task_retries)
            pending = sorted((w for w, r in finished if _transient(r)), key=lambda w: w.start)
            return finished

        try:
            # One retry for the whole batch: the one backoff rule, the longest Retry-After among the partitions.
            _, report = retry(
                attempt, _batch_failure, budget=scheduler_budget(ctx.settings), start=as_of, wait=time.sleep, seed=backfill_id
            )
            if report.stopped == "retry_after":
                log.warning(
                    "%s: the source asks to wait %.0f s; the next run tries again", backfill_id, report.attempts[-1].retry_after_s or 0
                )
        finally:
            runner.close()
        if lost and all(outcomes[w.start].status != "failed" for w in windows):
            ctx.ledger.mark_recovered([r.run_id for r in lost], by=backfill_id)
    ordered = [outcomes[w.start] for w in windows]
    return BackfillReport(
        backfill_id=backfill_id, pipeline=spec.name, executor=runner.name, cluster=runner.cluster, workers=runner.workers,
        start=windows[0].start, end=windows[-1].end, partitions=len(windows),
        succeeded=sum(o.status == "succeeded" for o in ordered), quarantined=sum(o.status == "quarantined" for o in ordered),
        failed=sum(o.status == "failed" for o in ordered), commit_retries=sum(o.commit_retries for o in ordered),
        replans=sum(o.replans for o in ordered), task_retries=task_retries, rows_out=sum(o.rows_out for o in ordered),
        rows_quarantined=sum(o.rows_quarantined for o in ordered), duration_s=round(time.perf_counter() - started, 3),
        outcomes=ordered,
    )  # fmt: skip


def _transient(result: RunResult) -> bool:
    return result.status == "failed" and result.error_kind == "transient"


def _batch_failure(finished: list[tuple[Window, RunResult]]) -> Failure | None:
    """A batch fails transiently while some partition did: the retry waits the longest Retry-After among them."""
    again = [r for _, r in finished if _transient(r)]
    if not again:
        return None
    retry_after = max((r.retry_after_s for r in again if r.retry_after_s is not None), default=None)
    return Failure(error=f"{len(again)} partition(s) failed transiently: {again[0].error}", transient=True, retry_after_s=retry_after)


def _outcome(result: RunResult, window: Window, attempt: int) -> PartitionOutcome:
    return PartitionOutcome(
        start=window.start, end=window.end, status=result.status, run_id=result.run_id, attempts=attempt, rows_out=result.rows_out,
        rows_quarantined=result.rows_quarantined, held_days=result.held_days, commit_retries=result.commit_retries,
        replans=result.replans, error=result.error, duration_s=result.duration_s,
    )  # fmt: skip
