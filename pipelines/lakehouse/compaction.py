"""Compaction: rewrite each UTC day of a table that has many small data files into one file per day.

Bronze grows by one small append per scheduled run (a day of half-hour slots can become dozens of files);
readers pay for every file. Compaction goes through write-audit-publish like every other write:

    under the table's write lock: pick days with at least `min_files` data files
    ──► rewrite them on an audit branch ──► the branch must hold exactly the rows main held for those days
    ──► publish (main must still be the branch's ancestor; a writer that got in first means re-plan)

The rows do not change, so readers see the same data before and after, in fewer files.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, date, datetime

from pydantic import BaseModel, Field

from config.errors import LakehouseError, PublishConflictError
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table

log = logging.getLogger(__name__)
DEFAULT_MIN_FILES = 4
ATTEMPTS = 3


class CompactionResult(BaseModel):
    table: str
    days_compacted: list[str] = Field(description="UTC days rewritten into one file each")
    files_before: int = Field(description="Data files of those days before")
    files_after: int = Field(description="Data files of those days after")
    rows: int = Field(description="Rows of those days, the same before and after")
    snapshot_id: int | None = Field(description="The published snapshot, or None when nothing needed compacting")


def files_per_day(ctx: PlatformContext, name: str) -> dict[date, int]:
    """Data files per UTC day partition on main."""
    table = load_table(ctx.catalog, name)
    current = table.current_snapshot()
    if current is None or not current.manifests(table.io):
        return {}  # no snapshot, or an empty one (a genesis snapshot): pyiceberg's inspect cannot list it
    files = table.inspect.files().select(["content", "partition"]).to_pylist()
    counts: Counter[date] = Counter()
    for f in files:
        day = next(iter((f["partition"] or {}).values()), None)
        if f["content"] == 0 and isinstance(day, date):
            counts[day] += 1
    return dict(counts)


def compact_table(
    ctx: PlatformContext, name: str, *, run_id: str, min_files: int = DEFAULT_MIN_FILES, days: list[date] | None = None
) -> CompactionResult:
    """Rewrite every day of `name` with at least `min_files` data files (or just `days`) into one file per day."""
    ctx.inventory.table(name)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with ctx.control.table_lock(name):
                return _compact(ctx, name, run_id=f"{run_id}-{attempt}", min_files=min_files, days=days)
        except PublishConflictError as exc:
            if attempt == ATTEMPTS:
                raise
            log.warning("%s; re-planning the compaction (attempt %d)", exc, attempt)
    raise AssertionError("unreachable")


def _compact(ctx: PlatformContext, name: str, *, run_id: str, min_files: int, days: list[date] | None) -> CompactionResult:
    counts = files_per_day(ctx, name)
    chosen = sorted(d for d, n in counts.items() if n >= min_files and (days is None or d in days))
    if not chosen:
        return CompactionResult(table=name, days_compacted=[], files_before=0, files_after=0, rows=0, snapshot_id=None)
    table = load_table(ctx.catalog, name)
    stamps = [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in chosen]
    rows = wap.read_days(table, stamps)
    branch = wap.audit_branch_name(run_id)
    wap.open_audit_branch(table, branch, run_id=run_id)
    props = {"run_id": run_id, "dataops.operation": "compaction"}
    wap.overwrite_days(table, rows, stamps, branch=branch, properties=props)
    audited = wap.read_days(table, stamps, branch=branch)
    if audited.num_rows != rows.num_rows:
        wap.drop_branch(table, branch)
        raise LakehouseError(f"{name}: compaction would turn {rows.num_rows} rows into {audited.num_rows}; nothing was published")
    snapshot = wap.publish(table, branch)
    after = files_per_day(ctx, name)
    return CompactionResult(
        table=name, days_compacted=[d.isoformat() for d in chosen], files_before=sum(counts[d] for d in chosen),
        files_after=sum(after.get(d, 0) for d in chosen), rows=rows.num_rows, snapshot_id=snapshot,
    )  # fmt: skip
