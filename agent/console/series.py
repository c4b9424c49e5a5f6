"""What the Data page shows, read from the lake over a range of days: carbon intensity actual and forecast
(silver.carbon_intensity), the generation mix (silver.generation_mix), the temperature (silver.weather), and the
defects to mark over them: the days and slots held in quarantine and the incidents raised on intensity tables.

The tables are read as lake.py reads them (`load_table`, a `ts` range filter), once per page; a table that does not
exist yet reads as no rows, so the page works before the first run.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from config.errors import DataOpsError
from pipelines.context import PlatformContext
from pipelines.incidents import Incident

INTENSITY, MIX, WEATHER = "silver.carbon_intensity", "silver.generation_mix", "silver.weather"
INTENSITY_TABLES = frozenset({"bronze.carbon_intensity", INTENSITY, "gold.carbon_intensity_hourly", "gold.intensity_vs_temperature_daily"})
MAX_DAYS = 93
DEFAULT_DAYS = 7


class DayRange(BaseModel):
    """The Data page's date range picker (GET /data?start=&end=): UTC days, both included."""

    start: date = Field(description="First day shown (YYYY-MM-DD, UTC)")
    end: date = Field(description="Last day shown, included (YYYY-MM-DD, UTC)")

    @field_validator("end")
    @classmethod
    def _ordered(cls, end: date, info: ValidationInfo) -> date:
        start = info.data.get("start")
        if start is None:  # start itself is wrong, and says so
            return end
        if end < start:
            raise ValueError(f"{end} is before the first day {start}")
        if (end - start).days + 1 > MAX_DAYS:
            raise ValueError(f"{(end - start).days + 1} days asked; at most {MAX_DAYS} at a time")
        return end

    @classmethod
    def before(cls, now: datetime, days: int = DEFAULT_DAYS) -> DayRange:
        """The `days` whole days before `now` (the platform clock): what the page shows when nothing is picked."""
        end = now.astimezone(UTC).date() - timedelta(days=1)
        return cls(start=end - timedelta(days=days - 1), end=end)

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time(), tzinfo=UTC)

    @property
    def until(self) -> datetime:
        """The end of the last day (exclusive)."""
        return datetime.combine(self.end + timedelta(days=1), time(), tzinfo=UTC)


class IntensityPoint(BaseModel):
    ts: datetime
    forecast: float | None
    actual: float | None


class QuarantinedDay(BaseModel):
    """A day of intensity with rows held back from silver, and the checks that held them."""

    day: date
    rows: int
    checks: list[str]
    slots: list[datetime]


class GridData(BaseModel):
    """Everything the Data page draws for one range."""

    range: DayRange
    intensity: list[IntensityPoint]
    mix: dict[str, list[tuple[datetime, float]]]
    temperature: list[tuple[datetime, float]]
    quarantined: list[QuarantinedDay]
    incidents: list[Incident]
    problems: list[str] = []


def grid_data(ctx: PlatformContext, picked: DayRange) -> GridData:
    """The three series and the defects over `picked`, each read once."""
    problems: list[str] = []
    intensity = intensity_points(ctx, picked, problems)
    mix: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for r in _rows(ctx, MIX, picked, ("ts", "fuel", "perc"), problems):
        if r.get("perc") is not None:
            mix[str(r["fuel"])].append((r["ts"], float(r["perc"])))
    temperature = [
        (r["ts"], float(r["temperature_c"]))
        for r in _rows(ctx, WEATHER, picked, ("ts", "temperature_c"), problems)
        if r.get("temperature_c") is not None
    ]
    return GridData(
        range=picked,
        intensity=intensity,
        mix=dict(sorted(mix.items(), key=lambda kv: -sum(v for _, v in kv[1]))),  # the biggest share at the bottom
        temperature=temperature,
        quarantined=_quarantined_days(ctx, picked, problems),
        incidents=_incidents(ctx, picked),
        problems=problems,
    )


def intensity_points(ctx: PlatformContext, picked: DayRange, problems: list[str]) -> list[IntensityPoint]:
    """Actual and NESO-forecast carbon intensity over `picked`, oldest first; a read failure goes to `problems`."""
    return [
        IntensityPoint(ts=r["ts"], forecast=r.get("forecast"), actual=r.get("actual"))
        for r in _rows(ctx, INTENSITY, picked, ("ts", "forecast", "actual"), problems)
    ]


def _rows(
    ctx: PlatformContext, name: str, picked: DayRange, columns: tuple[str, ...], problems: list[str], extra: Any = None
) -> list[dict[str, Any]]:
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
    from pyiceberg.table import Table

    from pipelines.lakehouse.catalog import load_table

    try:
        table: Table = load_table(ctx.catalog, name)
    except DataOpsError:
        return []  # not written yet: no rows, as before the first run
    # pyiceberg predicates take positional (term, literal); their pydantic signatures hide that from mypy.
    where = And(GreaterThanOrEqual("ts", picked.since.isoformat()), LessThan("ts", picked.until.isoformat()))  # type: ignore[call-arg,arg-type]
    if extra is not None:
        where = And(where, extra)
    try:
        rows = table.scan(row_filter=where, selected_fields=columns).to_arrow().to_pylist()
    except (DataOpsError, OSError, ValueError) as exc:  # a page with the other charts beats no page
        problems.append(f"{name} could not be read: {exc}")
        return []
    return sorted((r for r in rows if r.get("ts") is not None), key=lambda r: r["ts"])


def _quarantined_days(ctx: PlatformContext, picked: DayRange, problems: list[str]) -> list[QuarantinedDay]:
    from pyiceberg.expressions import EqualTo

    quarantine = next((p.quarantine for p in ctx.inventory.pipelines.values() if p.silver == INTENSITY), None)
    if quarantine is None:
        return []
    held = _rows(ctx, quarantine, picked, ("ts", "target_table", "expectation"), problems, EqualTo("target_table", INTENSITY))  # type: ignore[call-arg,arg-type]
    days: dict[date, QuarantinedDay] = {}
    for r in held:
        ts: datetime = r["ts"].astimezone(UTC)
        day = days.setdefault(ts.date(), QuarantinedDay(day=ts.date(), rows=0, checks=[], slots=[]))
        day.rows += 1
        if r["expectation"] not in day.checks:
            day.checks.append(str(r["expectation"]))
        if ts not in day.slots:
            day.slots.append(ts)
    return [days[d] for d in sorted(days)]


def _incidents(ctx: PlatformContext, picked: DayRange) -> list[Incident]:
    """Incidents on the intensity tables whose defect (occurred_at) falls in the range, oldest first."""
    found = [
        i
        for i in ctx.incidents.list(status=None, limit=1000)
        if i.table in INTENSITY_TABLES and i.occurred_at is not None and picked.since <= i.occurred_at < picked.until
    ]
    return sorted(found, key=lambda i: (i.occurred_at or picked.since, i.id))
