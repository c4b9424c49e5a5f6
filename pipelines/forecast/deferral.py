"""Heavy work at the cleanest hour: the platform defers its own upkeep to the greenest window of the carbon-intensity
forecast within a deadline, and records the intensity the work ran at.

    upkeep due at `now` ──► greenest window of DATAOPS_UPKEEP_GREEN_WINDOW_HOURS ending within
        DATAOPS_UPKEEP_GREEN_DEADLINE_HOURS ──► later than the next slot? run then : run now
    upkeep runs ──► the intensity of its slot (measured if silver has it, else the forecast's point) is logged,
        shown as `dataops_upkeep_intensity_gco2_per_kwh` and kept in the ops database (`dataops.upkeep`)

Without a usable forecast (none issued yet, stale, too short) the work runs when due, saying why: deferral saves
carbon, it must never starve the tables of upkeep.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from config.errors import DataOpsError
from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.forecast.schema import SLOT

UPKEEP_STATE = "dataops.upkeep"  # the ops-database state row where the last upkeep's intensity is kept


class Deferral(BaseModel):
    """When deferred work should run, and why."""

    due_at: datetime
    run_at: datetime
    expected_intensity: float | None = Field(default=None, description="Forecast mean over the chosen window, gCO2/kWh")
    now_intensity: float | None = Field(default=None, description="Forecast mean had the work started now, gCO2/kWh")
    reason: str

    @property
    def deferred(self) -> bool:
        return self.run_at > self.due_at


class IntensityAt(BaseModel):
    """The carbon intensity of the slot an instant falls in."""

    at: datetime
    value: float | None
    kind: Literal["actual", "forecast", "unknown"]


def plan_deferral(ctx: PlatformContext, *, now: datetime, hours: float, deadline_hours: float) -> Deferral:
    """Run at the greenest `hours`-hour window ending within `deadline_hours`, or now when that is as clean or unknown."""
    from pipelines.forecast.greenest import find_greenest_window

    if deadline_hours <= 0:
        return Deferral(due_at=now, run_at=now, reason="deferral is off (DATAOPS_UPKEEP_GREEN_DEADLINE_HOURS=0)")
    try:
        window = find_greenest_window(ctx, now=now, hours=hours, within=timedelta(hours=deadline_hours))
    except DataOpsError as exc:
        return Deferral(due_at=now, run_at=now, reason=f"running when due: {exc}")
    if window.start <= now + SLOT or window.saving is None or window.saving <= 0:
        return Deferral(
            due_at=now,
            run_at=now,
            expected_intensity=window.now_intensity,
            now_intensity=window.now_intensity,
            reason="now is the cleanest window within the deadline",
        )
    return Deferral(
        due_at=now,
        run_at=window.start,
        expected_intensity=window.intensity,
        now_intensity=window.now_intensity,
        reason=(
            f"deferred to {window.start:%Y-%m-%dT%H:%MZ}, the cleanest {window.hours:g} h within {deadline_hours:g} h: "
            f"{window.intensity:g} gCO2/kWh expected against {window.now_intensity:g} now ({window.saving_pct:g} % less)"
        ),
    )


def intensity_at(ctx: PlatformContext, at: datetime, name: str = "forecast") -> IntensityAt:
    """The measured intensity of the slot `at` falls in, else the latest forecast's point for it, else unknown."""
    from pipelines.forecast.store import latest_issue
    from pipelines.lakehouse import wap
    from pipelines.lakehouse.catalog import load_table

    spec = ctx.inventory.forecast(name)
    at = at.astimezone(UTC)
    slot = at - timedelta(minutes=at.minute % 30, seconds=at.second, microseconds=at.microsecond)
    day = slot.replace(hour=0, minute=0)
    rows = wap.read_days(load_table(ctx.catalog, spec.input), [day], columns=("ts", spec.column)).to_pylist()
    measured = next((r[spec.column] for r in rows if r["ts"] == slot and r[spec.column] is not None), None)
    if measured is not None:
        return IntensityAt(at=at, value=float(measured), kind="actual")
    issue = latest_issue(ctx, as_of=at)
    point = next((s.point for s in issue.slots if s.ts == slot), None) if issue is not None else None
    return IntensityAt(at=at, value=point, kind="forecast" if point is not None else "unknown")


def record_upkeep_intensity(ctx: PlatformContext, *, at: datetime, deferral: Deferral | None) -> IntensityAt:
    """Keep the intensity upkeep ran at: a gauge, and the ops database's `dataops.upkeep` state row."""
    from pipelines.monitors.state import MonitorStateRow

    intensity = intensity_at(ctx, at) if ctx.inventory.forecasts else IntensityAt(at=at, value=None, kind="unknown")
    if intensity.value is not None:
        metrics.UPKEEP_INTENSITY.set(intensity.value)
    with ctx.ledger.session() as session, session.begin():
        row = session.get(MonitorStateRow, UPKEEP_STATE) or MonitorStateRow(name=UPKEEP_STATE)
        row.state = {
            "ran_at": at.isoformat(),
            "intensity_gco2_per_kwh": intensity.value,
            "intensity_kind": intensity.kind,
            "due_at": deferral.due_at.isoformat() if deferral else at.isoformat(),
            "reason": deferral.reason if deferral else "run when due",
        }
        session.add(row)
    return intensity
