"""Maintenance tools: expire old snapshots and delete unreferenced files; compact small files per day."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import Field

from pipelines.lakehouse import maintenance
from pipelines.lakehouse.compaction import CompactionResult, compact_table
from pipelines.lakehouse.maintenance import MaintenanceResult
from tools import names
from tools.base import Target, ToolContext, ToolInput, ToolSpec, table_target


class ExpireSnapshotsInput(ToolInput):
    table: str = Field(description="The table to clean, as layer.name, e.g. bronze.carbon_intensity.")
    older_than_hours: float = Field(
        default=168,
        ge=0,
        le=24 * 366,
        description="Expire snapshots of main's history committed more than this many hours ago (default a week).",
    )
    retain_last: int = Field(default=5, ge=1, le=1000, description="Always keep main's newest this-many snapshots, however old they are.")
    dry_run: bool = Field(default=False, description="true: report what would be expired and deleted, and change nothing.")


def expire_snapshots(ctx: ToolContext, args: ExpireSnapshotsInput) -> MaintenanceResult:
    # Ages are measured on the wall clock, not ctx.now: snapshot timestamps and file times are wall-clock
    # times even when the platform replays an earlier period.
    return maintenance.expire_and_clean(
        ctx.platform, args.table, older_than=timedelta(hours=args.older_than_hours), retain_last=args.retain_last, dry_run=args.dry_run
    )


def _target(ctx: ToolContext, args: ExpireSnapshotsInput | CompactTableInput) -> Target:
    return table_target(ctx, args.table)


class CompactTableInput(ToolInput):
    table: str = Field(description="The table to compact, as layer.name; bronze tables collect one small file per run.")
    min_files: int = Field(default=4, ge=2, le=10_000, description="Compact the UTC days that have at least this many data files.")


def compact(ctx: ToolContext, args: CompactTableInput) -> CompactionResult:
    run_id = f"tool-compact_table-{ctx.call_id or 'cli'}"
    return compact_table(ctx.platform, args.table, run_id=run_id, min_files=args.min_files)


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.EXPIRE_SNAPSHOTS,
        description=(
            "Expire a table's old snapshots (main's history beyond the newest few; never a branch's or tag's) and delete the data "
            "and metadata files no remaining snapshot needs. Irreversible: time travel to expired snapshots is lost. "
            "dry_run=true only reports."
        ),
        input=ExpireSnapshotsInput,
        result=MaintenanceResult,
        effect="destructive",
        run=expire_snapshots,
        target=_target,
    ),
    ToolSpec(
        name=names.COMPACT_TABLE,
        description="Rewrite the days of a table that have many small data files into one file per day (same rows, audited "
        "on a branch, then published). Readers see the same data, faster.",
        input=CompactTableInput,
        result=CompactionResult,
        effect="write",
        run=compact,
        target=_target,
    ),
]
