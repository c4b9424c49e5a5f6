"""Marts as assets: input runs mark the days they changed, and one coalesced refresh at a time builds a mart.

    an input run publishes silver ──► marks (mart, day) in the ops database (`mart_pending`)
    a refresh: the mart's lock ──► its inputs' table locks ──► claim every marked day ──► recompute, audit and
        publish them (write-audit-publish, pipelines/table_promotion.py) ──► clear exactly the marks it claimed

Why. `gold.intensity_vs_temperature_daily` reads carbon intensity and weather. When each input run refreshed it
for its own days, two runs computed it at once and the later publish found the days, or an input, changed under
it and planned again (1.29 re-plans per carbon run under `dataops serve`). Now a mart has one writer at a time;
a refresh builds every day any input changed since the last one in one go (a day both inputs changed is built
once); and no input publishes while the refresh reads it (the refresh holds the table locks those publishes
take), so what it validated is what it publishes.

Who refreshes. The run that marked, as its last step (`run_pipeline(..., refresh_marts=True)`, the default), so
`dataops run`, the agent's re-runs and backfill partitions leave their marts fresh when they return; the service
marks in every window of a catch-up and refreshes once, in the last. A refresh is part of the run that made it:
its snapshots carry that run id and `dataops.inputs` (what the reconciliation monitor recomputes from), its
validation results sit under that run in the ledger, and its lineage events name the mart as an output.

Crash safety. A mark is written after the silver publish it describes and cleared only after the refresh that
claimed it published. A process killed in between leaves its run abandoned, and the next run re-runs that window
and marks again; a refresh killed half-way leaves its marks for the next run of any input of the mart. Marks
written while a refresh runs have ids it did not claim, so they survive it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime

from filelock import FileLock

from config.inventory import MartSpec
from pipelines import metrics
from pipelines.context import PlatformContext


def mark(ctx: PlatformContext, marts: Iterable[str], days: Iterable[datetime], *, run_id: str) -> None:
    """Record that `days` of each mart in `marts` changed in an input (call it after the input's publish)."""
    names = list(marts)
    if not names:
        return
    ctx.ledger.mark_mart_days(names, days, by=run_id)
    for name in names:
        metrics.MART_PENDING_DAYS.labels(ctx.inventory.mart(name).table).set(len(ctx.ledger.pending_mart_days(name).days))


@contextmanager
def claim(ctx: PlatformContext, mart: MartSpec) -> Iterator[list[datetime]]:
    """Hold the mart's refresh lock and its inputs' table locks; yield the days marked so far, oldest first.

    When the block returns, the marks it was given are cleared; when it raises, they stay for the next refresh.
    Locks are taken in one order (the mart's, then its inputs' by name), and a silver publish takes only its own
    table's, so refreshes and input runs wait for each other but never deadlock.
    """
    locks = ctx.settings.home / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(locks / f"mart-{mart.name}.lock", fallback_to_soft=False), ExitStack() as inputs:
        for name in sorted(mart.inputs):
            inputs.enter_context(ctx.control.table_lock(name))
        pending = ctx.ledger.pending_mart_days(mart.name)
        yield list(pending.days)
        ctx.ledger.clear_mart_marks(pending.ids)
        metrics.MART_PENDING_DAYS.labels(mart.table).set(len(ctx.ledger.pending_mart_days(mart.name).days))


def pending_days(ctx: PlatformContext) -> dict[str, list[datetime]]:
    """Days of each mart table waiting for a refresh (marts with none are left out)."""
    return {ctx.inventory.mart(name).table: days for name, days in ctx.ledger.pending_marts().items() if name in ctx.inventory.marts}
