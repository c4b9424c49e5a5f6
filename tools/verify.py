"""Verification tool: re-validate a published partition and check what quarantine holds stays out of it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from pydantic import Field

from config.errors import PipelineError, ToolError
from pipelines.verification import PartitionCheck, check_partition
from tools import names
from tools.base import Target, ToolContext, ToolInput, ToolSpec, table_target


class ValidatePartitionInput(ToolInput):
    table: str = Field(description="A silver or gold table, e.g. silver.carbon_intensity.")
    day: date = Field(description="The UTC day to re-validate (YYYY-MM-DD).")


def validate_partition(ctx: ToolContext, args: ValidatePartitionInput) -> PartitionCheck:
    try:
        return check_partition(ctx.platform, args.table, datetime(args.day.year, args.day.month, args.day.day, tzinfo=UTC), as_of=ctx.now)
    except PipelineError as exc:
        raise ToolError(str(exc)) from None


def _target(ctx: ToolContext, args: ValidatePartitionInput) -> Target:
    return table_target(ctx, args.table, partition=args.day.isoformat())


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.VALIDATE_PARTITION,
        description="Re-validate a table's published day with its expectation suite and check quarantined rows stayed out.",
        input=ValidatePartitionInput,
        result=PartitionCheck,
        effect="read",
        run=validate_partition,
        target=_target,
        checks_containment=True,
    ),
]
