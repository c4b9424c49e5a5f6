"""The pipeline runs a rollback undid: their windows are gone from main until they are re-run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pydantic import BaseModel, Field

from pipelines.context import PlatformContext
from pipelines.ledger import as_utc


class UndoneRun(BaseModel):
    """A pipeline run whose commit a rollback undid: its window is published again by re-running it."""

    run_id: str
    pipeline: str
    start: str = Field(description="First UTC day of the run's window")
    end: str = Field(description="The day after its last day")


def runs_undone(ctx: PlatformContext, run_ids: Sequence[str]) -> list[UndoneRun]:
    """The pipeline runs (in the ledger) among the run ids of undone commits (newest first), oldest first, each once."""
    found: dict[str, UndoneRun] = {}
    for run_id in reversed(run_ids):
        run = ctx.ledger.run(run_id)
        if run is None or run.run_id in found:
            continue
        start, end = as_utc(run.window_start), as_utc(run.window_end)
        if start is None or end is None:
            continue
        last = end - timedelta(microseconds=1)
        found[run.run_id] = UndoneRun(
            run_id=run.run_id, pipeline=run.pipeline, start=start.date().isoformat(), end=(last.date() + timedelta(days=1)).isoformat()
        )
    return list(found.values())
