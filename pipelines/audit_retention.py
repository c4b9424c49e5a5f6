"""Retention of audit branches: a run that fails its audit keeps its branch for diagnosis; this drops it later.

A kept branch goes once its run was recovered (a later run re-ran its window) or the retention
(`audit_branch_retention_hours`) has passed since the run finished. Branches of running runs, and of runs the
ledger does not know, are never touched. Each run of a pipeline cleans its tables' branches before it starts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from config.inventory import PipelineSpec
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table


def clean_audit_branches(ctx: PlatformContext, spec: PipelineSpec, *, now: datetime | None = None) -> list[str]:
    """Drop audit branches kept for diagnosis once their run was recovered or their retention has passed."""
    now = now or datetime.now(UTC)
    retention = timedelta(hours=ctx.settings.audit_branch_retention_hours)
    dropped = []
    for name in (spec.silver, *(ctx.inventory.mart(m).table for m in spec.marts)):
        table = load_table(ctx.catalog, name)
        for branch in wap.audit_branches(table):
            run = ctx.ledger.run(branch.removeprefix(wap.AUDIT_PREFIX))
            if run is None or run.status == "running":
                continue  # a live run owns it, or it is not ours to judge
            finished = run.finished_at or run.started_at
            if finished.tzinfo is None:
                finished = finished.replace(tzinfo=UTC)
            if run.recovered_by is not None or now - finished > retention:
                wap.drop_branch(table, branch)
                dropped.append(f"{name}@{branch}")
    return dropped
