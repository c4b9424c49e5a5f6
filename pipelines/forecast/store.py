"""Reading issued forecasts back from `gold.carbon_intensity_forecast`: the latest issue as of an instant, and
every issue whose slots have since been measured (for accuracy by horizon).

Forecasts are never overwritten, so any past issue can be read again; the latest one is what `greenest` and the
agent answer from.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.context import PlatformContext
from pipelines.forecast.schema import ForecastSlot, IssuedForecast

FORECAST_TABLE = "gold.carbon_intensity_forecast"
SLOT_COLUMNS = ("ts", "horizon_h", "point", "lo80", "hi80", "lo95", "hi95")


def _scan(ctx: PlatformContext, row_filter: str, columns: tuple[str, ...] = ("*",)) -> pa.Table:
    from pipelines.lakehouse.catalog import load_table

    table = load_table(ctx.catalog, FORECAST_TABLE)
    if table.current_snapshot() is None:
        return table.schema().as_arrow().empty_table() if columns == ("*",) else pa.table({c: [] for c in columns})
    return table.scan(row_filter=row_filter, selected_fields=columns).to_arrow()


def latest_issue_time(ctx: PlatformContext, *, as_of: datetime | None = None, perfect_prognosis: bool = False) -> datetime | None:
    """The issue time of the newest published forecast issued at or before `as_of` (default: any). Perfect-prognosis
    issues (made with observed weather, for comparison only) are left out unless asked for: nobody plans on them."""
    clauses = [f"issued_at <= '{as_of.astimezone(UTC).isoformat()}'"] if as_of is not None else []
    if not perfect_prognosis:
        clauses.append("perfect_prognosis == False")
    row_filter = " AND ".join(clauses) or "True"
    issued = _scan(ctx, row_filter, ("issued_at",)).column("issued_at")
    if len(issued) == 0:
        return None
    latest = pc.max(issued).as_py()
    return latest.astimezone(UTC) if latest is not None else None


def issue_at(ctx: PlatformContext, issued_at: datetime) -> IssuedForecast | None:
    """The forecast issued at exactly `issued_at`, or None."""
    rows = _scan(ctx, f"issued_at == '{issued_at.astimezone(UTC).isoformat()}'")
    if rows.num_rows == 0:
        return None
    return to_issue(rows)


def latest_issue(ctx: PlatformContext, *, as_of: datetime | None = None, perfect_prognosis: bool = False) -> IssuedForecast | None:
    """The newest published forecast issued at or before `as_of` (default: the newest of all), or None if none is;
    perfect-prognosis issues only when asked for."""
    issued_at = latest_issue_time(ctx, as_of=as_of, perfect_prognosis=perfect_prognosis)
    return None if issued_at is None else issue_at(ctx, issued_at)


def to_issue(rows: pa.Table) -> IssuedForecast:
    """One issue's rows (all with the same issued_at) as an IssuedForecast, slots in time order."""
    rows = rows.sort_by("ts")
    first = rows.slice(0, 1).to_pylist()[0]
    slots = tuple(
        ForecastSlot.model_validate({k: (v.astimezone(UTC) if isinstance(v, datetime) else v) for k, v in row.items()})
        for row in rows.select(list(SLOT_COLUMNS)).to_pylist()
    )
    return IssuedForecast(
        issued_at=first["issued_at"].astimezone(UTC),
        model=first["model"],
        model_version=first["model_version"],
        perfect_prognosis=bool(first["perfect_prognosis"]),
        slots=slots,
    )
