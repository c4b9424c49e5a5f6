"""Why a day's record count left its usual band: a finer grain (records off the slot grid), or fewer records.

The volume monitor counts distinct records a day in bronze. More than usual, with records off the source's slot
grid, is a finer grain: the slot check holds those records and the day check holds the day back, so nothing
extra is published and a backfill would fetch the same records. Fewer than usual is what the completeness
incident of that day explains in full; this names it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.diagnosis import Diagnosis, latest
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.incidents import Incident
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table


def volume(ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    evidence = latest(incident)
    observed, usual, day = evidence.get("observed"), evidence.get("median"), evidence.get("day")
    pipeline = lineage.owning_pipeline(ctx.inventory, incident.table)
    if not isinstance(observed, int | float) or not isinstance(usual, int | float) or not day or pipeline is None:
        return Diagnosis(cause="unknown", confidence=0.3, summary="the volume evidence names no day and counts", evidence=[incident.title])
    if observed < usual:
        return Diagnosis(
            cause="source_outage",
            confidence=0.5,
            summary=f"{observed:.0f} records on {day} against a usual {usual:.0f}: the source sent fewer; the day's completeness incident "
            "names the missing slots",
            evidence=[incident.title],
        )
    cadence = ctx.inventory.source(ctx.inventory.pipeline(pipeline).source).cadence_minutes
    start = datetime.fromisoformat(str(day)).replace(tzinfo=UTC)
    stamps = wap.read_days(load_table(ctx.catalog, incident.table), [start], columns=("ts",)).column("ts").to_pylist()
    off_grid = {t for t in stamps if t is not None and start <= t < start + timedelta(days=1) and (t.minute % cadence or t.second)}
    if not off_grid:
        return Diagnosis(
            cause="unknown",
            confidence=0.4,
            summary=f"{observed:.0f} records on {day} against a usual {usual:.0f}, every one on the {cadence}-minute slot grid: "
            "more records per slot than usual; a person should judge whether the source changed what a record is",
            evidence=[incident.title],
        )
    return Diagnosis(
        cause="bad_values",
        confidence=0.8,
        summary=f"the source sent {observed:.0f} records on {day}, {observed / usual:.0f}x the usual {usual:.0f}: {len(off_grid)} distinct "
        f"time(s) off the {cadence}-minute slot grid, a finer grain than the contract's; the slot check holds them and the day "
        "check holds the day back, so nothing extra was published, and a backfill would fetch the same records",
        evidence=[incident.title, f"first off-grid time: {min(off_grid):%Y-%m-%d %H:%M} UTC"],
    )
