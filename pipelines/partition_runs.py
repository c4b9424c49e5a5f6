"""One run of a backfill, whichever executor runs it: the executors, the local runner, the run itself and what
shared storage remote workers need. A run covers one partition's window, or the joint window of a pack of
consecutive partitions: runners only see windows. `pipelines/backfill.py` plans, packs, tells apart and
retries partitions; `pipelines/ray_executor.py` runs the runs as Ray tasks; both use this.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Literal, Protocol

from config.settings import DataopsSettings
from pipelines.context import PlatformContext
from pipelines.promotion import run_pipeline
from pipelines.run_result import RunResult
from pipelines.sources.base import Window

log = logging.getLogger(__name__)
ExecutorName = Literal["local", "ray"]
EXECUTORS: tuple[ExecutorName, ...] = ("local", "ray")


class PartitionRunner(Protocol):
    """Runs windows (a partition, or a pack's joint window) and yields each one's result as it completes, in any order."""

    name: ExecutorName
    cluster: str | None
    workers: int

    def run(self, windows: list[Window], *, attempt: int) -> Iterator[tuple[Window, RunResult]]: ...

    def close(self) -> None: ...


class LocalRunner:
    """Runs one after another, in this process."""

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
    """One run: the pipeline's run over `window` (a partition or a pack). A bug's exception becomes a failed result (the
    ledger has it too), so one bad run does not stop the others."""
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
