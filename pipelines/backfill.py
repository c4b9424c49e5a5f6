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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from config.errors import PipelineError
from config.settings import DataopsSettings
from pipelines.context import PlatformContext
from pipelines.promotion import RunResult, day_floor, run_pipeline, split_windows
from pipelines.retry import Failure, retry, scheduler_budget
from pipelines.sources.base import Window

log = logging.getLogger(__name__)
ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[ExecutorName, ...] = ("local", "ray")


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


class PartitionRunner(Protocol):
    """Runs partitions and yields each one's result as it completes, in any order."""

    name: ExecutorName
    cluster: str | None
    workers: int

    def run(self, windows: list[Window], *, attempt: int) -> Iterator[tuple[Window, RunResult]]: ...

    def close(self) -> None: ...


class LocalRunner:
    """Partitions one after another, in this process."""

    name: ExecutorName = "local"
    cluster: str | None = None
    workers: int = 1

    def __init__(self, ctx: PlatformContext, pipeline: str, as_of: datetime) -> None:
        self.ctx, self.pipeline, self.as_of = ctx, pipeline, as_of

    def run(self, windows: list[Window], *, attempt: int) -> Iterator[tuple[Window, RunResult]]:
        for window in windows:
            yield window, run_partition(self.ctx, self.pipeline, window, as_of=self.as_of, attempt=attempt)

    def close(self) -> None:
        pass


def run_partition(ctx: PlatformContext, pipeline: str, window: Window, *, as_of: datetime, attempt: int) -> RunResult:
    """One partition: the pipeline's run over `window`. A bug's exception becomes a failed result (the ledger has it too),
    so one bad partition does not stop the others."""
    try:
        return run_pipeline(ctx, pipeline, window, as_of=as_of, attempt=attempt)
    except Exception as exc:
        log.exception("partition %s of %s failed unexpectedly", window, pipeline)
        return failed_result(pipeline, window, as_of, f"{type(exc).__name__}: {exc}", kind="permanent")


def failed_result(pipeline: str, window: Window, as_of: datetime, error: str, *, kind: str) -> RunResult:
    return RunResult(
        run_id="-", pipeline=pipeline, status="failed", window_start=window.start, window_end=window.end, as_of=as_of,
        error=error, error_kind=kind,
    )  # fmt: skip


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


def shared_storage_problems(settings: DataopsSettings) -> list[str]:
    """What keeps workers on other machines from reaching this platform's tables and ledger."""
    problems = []
    if settings.catalog_type == "sql" and settings.catalog_url.startswith("sqlite"):
        problems.append(
            f"the Iceberg catalog is SQLite in {settings.home} (set DATAOPS_CATALOG_TYPE=rest or a postgresql DATAOPS_CATALOG_URI)"
        )
    rest_owns_warehouse = settings.catalog_type == "rest" and not settings.warehouse  # the REST server places the tables
    if not rest_owns_warehouse and not settings.warehouse_location.startswith(
        ("s3://", "s3a://", "s3n://", "gs://", "abfs://", "abfss://")
    ):
        problems.append(f"the warehouse is the local folder {settings.warehouse_location} (set DATAOPS_WAREHOUSE=s3://...)")
    if settings.ops_db.startswith("sqlite"):
        problems.append(f"the ops database is SQLite in {settings.home} (set DATAOPS_OPS_DB_URL=postgresql+psycopg2://...)")
    return problems
