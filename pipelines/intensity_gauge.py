"""The carbon intensity a run just published, as the gauges `dataops_carbon_intensity_gco2_per_kwh{kind}` and
`dataops_carbon_intensity_slot_timestamp_seconds{kind}` (pipelines/metrics.py) that the Grafana dashboard shows.

Why from the run. The service calls `observe_intensity` after each run; a run that published
`silver.carbon_intensity` names the snapshot it made, and the days it wrote are its window's. Reading those days
at that snapshot (day partitions prune the rest) gives the newest value without scanning the table, and never a
value from a snapshot another writer made later. A kind with no value in the window (the actual of a slot not
yet measured) keeps what the gauge showed; before the first publish both gauges are absent, not 0.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.run_result import RunResult

log = logging.getLogger(__name__)

INTENSITY_TABLE = "silver.carbon_intensity"
KINDS = ("actual", "forecast")  # label value = column of INTENSITY_TABLE, gCO2/kWh


def observe_intensity(ctx: PlatformContext, result: RunResult) -> None:
    """Set the carbon-intensity gauges from what `result` published to silver.carbon_intensity, if anything.

    A failure to read is logged and leaves the gauges as they were: a metric must never fail a run.
    """
    snapshot = next((t.snapshot_id for t in result.tables if t.table == INTENSITY_TABLE and t.snapshot_id is not None), None)
    if snapshot is None:
        return
    try:
        rows = _published(ctx, snapshot, result.window_start, min(result.window_end, result.as_of))
    except Exception:
        log.warning(
            "could not read %s at snapshot %d for the intensity gauge", INTENSITY_TABLE, snapshot, exc_info=log.isEnabledFor(logging.DEBUG)
        )
        return
    for kind, (slot, value) in latest_values(rows, as_of=result.as_of).items():
        metrics.CARBON_INTENSITY.labels(kind).set(value)
        metrics.CARBON_INTENSITY_SLOT.labels(kind).set(slot.timestamp())


def latest_values(rows: pa.Table, *, as_of: datetime) -> dict[str, tuple[datetime, float]]:
    """Per kind, the start and value of the newest slot that started by `as_of` and has a value (a window is at most
    a source's chunk_days of half-hours, so Python lists are fine)."""
    stamps = rows.column("ts").to_pylist()
    latest: dict[str, tuple[datetime, float]] = {}
    for kind in KINDS:
        known = [(ts, float(v)) for ts, v in zip(stamps, rows.column(kind).to_pylist(), strict=True) if v is not None and ts <= as_of]
        if known:
            latest[kind] = max(known)
    return latest


def _published(ctx: PlatformContext, snapshot: int, start: datetime, end: datetime) -> pa.Table:
    """Slot starts and values of the days in [start, end) as snapshot `snapshot` holds them."""
    days, day = [], start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    table = load_table(ctx.catalog, INTENSITY_TABLE)
    parts = list(wap.read_days_in_parts(table, days, snapshot_id=snapshot, columns=("ts", *KINDS)))
    return pa.concat_tables(parts) if parts else pa.table({"ts": [], **{kind: [] for kind in KINDS}})
