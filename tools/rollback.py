"""Rollback tool: move a silver or gold table's main back to one of its earlier snapshots."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from config.errors import ToolError
from pipelines import remediation
from pipelines.remediation import RollbackResult
from tools import names
from tools.base import Target, ToolContext, ToolInput, ToolSpec, pipeline_of_table, table_target
from tools.partitions import remediable_table, run_id_of


class RollbackTableInput(ToolInput):
    table: str = Field(description="A silver or gold table as layer.name, e.g. silver.carbon_intensity.")
    snapshot_id: int = Field(
        description="The snapshot main returns to; it must be in main's history, e.g. the snapshot_before a delete_partition "
        "reported. Every later commit on main is undone, not only the last one; rows a later quarantine_partition took out come back "
        "while staying in quarantine (a release_partition then clears them)."
    )
    reason: str = Field(min_length=1, max_length=1000, description="Why the table goes back; recorded with the rollback.")


def rollback_table(ctx: ToolContext, args: RollbackTableInput) -> RollbackResult:
    remediable_table(ctx, args.table)
    history = remediation.history_of(ctx.platform, args.table)
    if args.snapshot_id not in {h.snapshot_id for h in history}:
        raise ToolError(remediation.not_in_history(args.table, args.snapshot_id, history))
    # The lake side checks again under the table lock: main may move between this look and the rollback.
    return remediation.rollback(
        ctx.platform, args.table, args.snapshot_id, reason=args.reason, run_id=run_id_of(ctx, "rollback_table"), now=ctx.now
    )


def _target(ctx: ToolContext, args: RollbackTableInput) -> Target:
    remediable_table(ctx, args.table)
    # Refuse an impossible rollback before anyone is asked to approve it.
    history = remediation.history_of(ctx.platform, args.table)
    if args.snapshot_id not in {h.snapshot_id for h in history}:
        raise ToolError(remediation.not_in_history(args.table, args.snapshot_id, history))
    return table_target(ctx, args.table, pipeline=pipeline_of_table(ctx, args.table))


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.ROLLBACK_TABLE,
        description="Move a silver or gold table's main back to an earlier snapshot of its history, undoing every later commit. "
        "A no-op if main is already there. The policy asks a human to approve every rollback.",
        input=RollbackTableInput,
        result=RollbackResult,
        effect="write",
        run=rollback_table,
        target=_target,
        restores_snapshot=True,
    ),
]
