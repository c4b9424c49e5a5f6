"""Partition tools: quarantine a day of a silver or gold table, release it after re-validation, or delete it.

The lake work (write-audit-publish, crash safety, idempotency) lives in `pipelines.remediation`; these
tools check the arguments, name the call's run id and pass through.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field

from config.errors import PipelineError, ToolError
from config.inventory import TableSpec
from pipelines import release, remediation
from pipelines.remediation import DeleteResult, QuarantineResult, ReleaseResult
from tools import names
from tools.base import Target, ToolContext, ToolInput, ToolSpec, pipeline_of_table, table_target


def remediable_table(ctx: ToolContext, table: str) -> TableSpec:
    """The spec of a silver or gold table; a ToolError naming the valid tables for anything else."""
    try:
        return remediation.remediable(ctx.platform.inventory, table)
    except PipelineError as exc:
        raise ToolError(str(exc)) from None


def run_id_of(ctx: ToolContext, tool: str) -> str:
    return remediation.tool_run_id(tool, ctx.call_id, ctx.now)


class PartitionInput(ToolInput):
    table: str = Field(
        description="A silver or gold table as layer.name, e.g. silver.carbon_intensity or gold.carbon_intensity_hourly. "
        "Bronze (raw landing) and quarantine tables are refused."
    )
    day: date = Field(description="The UTC day (YYYY-MM-DD) whose rows to act on.")


class QuarantinePartitionInput(PartitionInput):
    reason: str = Field(
        min_length=1, max_length=1000, description="Why the day is taken out: the incident and the defect seen. Stored beside every row."
    )


class ReleasePartitionInput(PartitionInput):
    include_pipeline_holds: bool = Field(
        default=False,
        description="Also release rows the pipeline itself quarantined for this day, if their original values pass the suite now. "
        "Default false: only rows taken out with quarantine_partition.",
    )


class DeletePartitionInput(PartitionInput):
    reason: str = Field(min_length=1, max_length=1000, description="Why the rows must go; recorded on the commit.")


def _partition_target(ctx: ToolContext, args: PartitionInput) -> Target:
    remediable_table(ctx, args.table)
    return table_target(ctx, args.table, pipeline=pipeline_of_table(ctx, args.table), partition=args.day.isoformat(), span_days=1.0)


def quarantine_partition(ctx: ToolContext, args: QuarantinePartitionInput) -> QuarantineResult:
    remediable_table(ctx, args.table)
    return remediation.quarantine_day(
        ctx.platform, args.table, args.day, reason=args.reason, run_id=run_id_of(ctx, "quarantine_partition"), actor=ctx.actor, now=ctx.now
    )


def release_partition(ctx: ToolContext, args: ReleasePartitionInput) -> ReleaseResult:
    remediable_table(ctx, args.table)
    return release.release_day(
        ctx.platform,
        args.table,
        args.day,
        run_id=run_id_of(ctx, "release_partition"),
        as_of=ctx.now,
        include_pipeline_holds=args.include_pipeline_holds,
    )


def delete_partition(ctx: ToolContext, args: DeletePartitionInput) -> DeleteResult:
    remediable_table(ctx, args.table)
    return remediation.delete_day(ctx.platform, args.table, args.day, reason=args.reason, run_id=run_id_of(ctx, "delete_partition"))


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.QUARANTINE_PARTITION,
        description="Take every row of one UTC day out of a silver or gold table into its quarantine table, with your reason. "
        "Idempotent; undo with release_partition.",
        input=QuarantinePartitionInput,
        result=QuarantineResult,
        effect="write",
        run=quarantine_partition,
        target=_partition_target,
    ),
    ToolSpec(
        name=names.RELEASE_PARTITION,
        description="Re-validate the quarantined rows of one UTC day with the table's expectation suite and, only if they pass, "
        "publish them back and take them out of quarantine. On failure nothing changes and the failing expectations are listed.",
        input=ReleasePartitionInput,
        result=ReleaseResult,
        effect="write",
        run=release_partition,
        target=_partition_target,
    ),
    ToolSpec(
        name=names.DELETE_PARTITION,
        description="Delete every row of one UTC day from a silver or gold table. Returns the snapshot before, so rollback_table can undo it.",
        input=DeletePartitionInput,
        result=DeleteResult,
        effect="destructive",
        run=delete_partition,
        target=_partition_target,
    ),
]
