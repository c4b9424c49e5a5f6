"""Realised accuracy of the published forecasts: every issue's slots that have since been measured, joined with the
measurement, by horizon and by day.

Why from the table. Issues are never overwritten, so what each issue said is still there when its slots are
measured; the metrics (`dataops_forecast_abs_error{horizon}`), the forecast monitor and `dataops forecast` all read
accuracy this way, with the same join.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from config.inventory import ForecastSpec
from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.sources.base import Window

REPORTED_HORIZONS = (1.0, 6.0, 24.0, 48.0)
DAY_AHEAD_H = 24.0


class HorizonAccuracy(BaseModel):
    horizon_h: float
    mae: float | None = Field(description="Mean absolute error, gCO2/kWh; None when no slot at this horizon is measured yet")
    mape: float | None = Field(description="Mean absolute percentage error, percent")
    slots: int


class RealisedAccuracy(BaseModel):
    """Accuracy of the issues made in [since, until) whose slots were measured by `until`."""

    since: datetime
    until: datetime
    issues: int
    slots: int
    by_horizon: list[HorizonAccuracy]
    day_ahead_mae: float | None = Field(description="MAE over horizons up to 24 h")
    day_ahead_mape: float | None
    coverage_80: float | None = Field(description="Share of measured slots inside the 80 % interval")
    coverage_95: float | None


def measured_slots(ctx: PlatformContext, spec: ForecastSpec, *, since: datetime, until: datetime) -> pd.DataFrame:
    """One row per slot of every issue made in [since, until) whose slot ended by `until` and was measured:
    issued_at, ts, horizon_h, point, lo80, hi80, lo95, hi95, actual, error (actual - point)."""
    from pipelines.lakehouse import wap
    from pipelines.lakehouse.catalog import load_table

    table = load_table(ctx.catalog, spec.table)
    columns = ["issued_at", "ts", "horizon_h", "point", "lo80", "hi80", "lo95", "hi95", "actual", "error"]
    if table.current_snapshot() is None:
        return pd.DataFrame(columns=columns)
    row_filter = f"issued_at >= '{since.astimezone(UTC).isoformat()}' AND issued_at < '{until.astimezone(UTC).isoformat()}'"
    issued = table.scan(row_filter=row_filter, selected_fields=tuple(columns[:8])).to_pandas()
    if issued.empty:
        return pd.DataFrame(columns=columns)
    days = Window(start=pd.Timestamp(issued["ts"].min()).to_pydatetime(), end=until).days()
    actual = wap.read_days(load_table(ctx.catalog, spec.input), days, columns=("ts", spec.column)).to_pandas()
    actual = actual.rename(columns={spec.column: "actual"}).dropna().drop_duplicates("ts", keep="last")
    joined = issued.merge(actual, on="ts", how="inner")
    joined = joined[joined["ts"] + pd.Timedelta(minutes=30) <= pd.Timestamp(until)]
    joined = joined.assign(error=joined["actual"] - joined["point"])
    return joined[columns].reset_index(drop=True)


def summarise(slots: pd.DataFrame, *, since: datetime, until: datetime) -> RealisedAccuracy:
    """Accuracy figures of `measured_slots` rows."""
    by_horizon = []
    for h in REPORTED_HORIZONS:
        at = slots[np.isclose(slots["horizon_h"].astype(float), h)] if len(slots) else slots
        by_horizon.append(HorizonAccuracy(horizon_h=h, mae=_mae(at), mape=_mape(at), slots=len(at)))
    day_ahead = slots[slots["horizon_h"].astype(float) <= DAY_AHEAD_H] if len(slots) else slots
    return RealisedAccuracy(
        since=since,
        until=until,
        issues=int(slots["issued_at"].nunique()) if len(slots) else 0,
        slots=len(slots),
        by_horizon=by_horizon,
        day_ahead_mae=_mae(day_ahead),
        day_ahead_mape=_mape(day_ahead),
        coverage_80=_inside(slots, "lo80", "hi80"),
        coverage_95=_inside(slots, "lo95", "hi95"),
    )


def realised_accuracy(ctx: PlatformContext, name: str = "forecast", *, until: datetime, days: int = 7) -> RealisedAccuracy:
    """Accuracy of the issues of the `days` before `until`, as far as their slots are measured by `until`."""
    spec = ctx.inventory.forecast(name)
    since = until - timedelta(days=days)
    return summarise(measured_slots(ctx, spec, since=since, until=until), since=since, until=until)


def observe_accuracy(ctx: PlatformContext, name: str = "forecast", *, until: datetime) -> RealisedAccuracy:
    """Set `dataops_forecast_abs_error{horizon}` and the interval coverage gauges from the last 7 days of issues."""
    accuracy = realised_accuracy(ctx, name, until=until)
    for h in accuracy.by_horizon:
        if h.mae is not None:
            metrics.FORECAST_ABS_ERROR.labels(f"{h.horizon_h:g}").set(h.mae)
    for interval, value in (("80", accuracy.coverage_80), ("95", accuracy.coverage_95)):
        if value is not None:
            metrics.FORECAST_COVERAGE.labels(interval).set(value)
    return accuracy


def _mae(rows: pd.DataFrame) -> float | None:
    return round(float(rows["error"].abs().mean()), 3) if len(rows) else None


def _mape(rows: pd.DataFrame) -> float | None:
    rows = rows[rows["actual"] > 0] if len(rows) else rows
    return round(float((rows["error"].abs() / rows["actual"]).mean() * 100), 2) if len(rows) else None


def _inside(rows: pd.DataFrame, lo: str, hi: str) -> float | None:
    if not len(rows):
        return None
    return round(float(((rows["actual"] >= rows[lo]) & (rows["actual"] <= rows[hi])).mean()), 4)
