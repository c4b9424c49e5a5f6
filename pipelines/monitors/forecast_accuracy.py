"""The forecast monitor: the day-ahead accuracy of each issue day, judged against the forecast's own past accuracy.

A day's error is the mean absolute error of every slot up to 24 h ahead of the issues made that day, once all of
them are measured (two days later). Its score is how far the day's log error lies above the median of the previous
`history_days` days, in robust standard deviations, as -log10 of the normal tail; the threshold comes from the
monitor's false-alarm budget calibrated on the past days' scores (`calibration.calibrate`), as for the value
monitors. A model that degrades (a broken feature, a regime it never saw, an input gone stale) opens one
`forecast_degraded` incident per day, naming the day's error and the usual band. Fewer than `min_history_days`
judged days: warming up, no incident.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from config.inventory import ForecastSpec, MonitorSpec
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.monitors.calibration import calibrate
from pipelines.monitors.state import load_state, save_state

_MAD_TO_SD = 1.4826


def daily_errors(slots: pd.DataFrame, *, until: datetime) -> pd.Series:
    """Day-ahead MAE per issue day (UTC), for days whose issues are all measured by `until`."""
    from pipelines.forecast.accuracy import DAY_AHEAD_H

    if slots.empty:
        return pd.Series(dtype=float)
    day_ahead = slots[slots["horizon_h"].astype(float) <= DAY_AHEAD_H]
    day = pd.to_datetime(day_ahead["issued_at"], utc=True).dt.floor("D")
    errors = day_ahead["error"].abs().groupby(day).mean()
    complete = errors.index + pd.Timedelta(days=2) <= pd.Timestamp(until)
    return errors[complete].sort_index()


def day_score(history: np.ndarray, value: float) -> tuple[float, float, float]:
    """(score, median, upper edge of the usual band) of `value` against past daily errors: one-sided, worse only.

    The spread is estimated from a few weeks of days, so the tail is Student's t with one degree of freedom fewer
    than the days (a normal tail would page on the estimate's own noise); a day 10 % worse than usual is never news.
    """
    from scipy.stats import t as student_t

    logs = np.log(np.maximum(history, 1e-6))
    median = float(np.median(logs))
    spread = max(_MAD_TO_SD * float(np.median(np.abs(logs - median))), 0.1)
    z = (math.log(max(value, 1e-6)) - median) / spread
    tail = float(student_t.sf(z, df=max(len(history) - 1, 1))) if z > 0 else 0.5
    edge = median + float(student_t.ppf(0.975, df=max(len(history) - 1, 1))) * spread
    return -math.log10(max(tail, 1e-300)), math.exp(median), math.exp(edge)


def _forecast_of(ctx: PlatformContext, spec: MonitorSpec) -> ForecastSpec:
    for forecast in ctx.inventory.forecasts.values():
        if forecast.table == spec.table:
            return forecast
    raise ValueError(f"forecast monitor {spec.name!r}: no forecast writes {spec.table!r}")


def check_forecast(ctx: PlatformContext, spec: MonitorSpec, now: datetime) -> list[Finding]:
    """Judge the issue days completed since the last evaluation; a finding for each beyond the threshold."""
    from pipelines.forecast.accuracy import measured_slots

    forecast = _forecast_of(ctx, spec)
    watermark, state = load_state(ctx, spec.name)
    since = now - timedelta(days=spec.history_days + 3)
    errors = daily_errors(measured_slots(ctx, forecast, since=since, until=now), until=now)
    fresh = [day for day in errors.index if watermark is None or day.to_pydatetime() > watermark]
    past_scores: dict[str, float] = dict(state.get("daily_scores", {}))
    findings = []
    for day in fresh:
        history = errors[(errors.index < day) & (errors.index >= day - pd.Timedelta(days=spec.history_days))].to_numpy()
        if len(history) < spec.min_history_days:
            state["status"] = "warming_up"
            state["detail"] = f"warming up: {len(history)} of {spec.min_history_days} judged days of forecast accuracy before {day.date()}"
            continue
        value = float(errors[day])
        score, usual, edge = day_score(history, value)
        threshold = calibrate(spec.budget, 1.0, [past_scores[k] for k in sorted(past_scores)], sensitivity=ctx.settings.anomaly_sensitivity)
        key = day.strftime("%Y-%m-%d")
        past_scores[key] = min(score, threshold.score)  # a flagged day counts at the threshold, as in the value monitors
        state["status"], state["threshold"], state["detail"] = "active", round(threshold.score, 3), threshold.explain()
        if score >= threshold.score:
            findings.append(
                _finding(spec, day.to_pydatetime(), value=value, usual=usual, edge=edge, score=score, threshold=threshold.score)
            )
    state["daily_scores"] = dict(sorted(past_scores.items())[-180:])
    if fresh:
        save_state(ctx, spec.name, fresh[-1].to_pydatetime(), state)
    return findings


def _finding(spec: MonitorSpec, day: datetime, *, value: float, usual: float, edge: float, score: float, threshold: float) -> Finding:
    evidence: dict[str, Any] = {
        "monitor": spec.name,
        "day_ahead_mae": round(value, 2),
        "usual_mae": round(usual, 2),
        "band_upper": round(edge, 2),
        "score": round(score, 3),
        "threshold": round(threshold, 3),
    }
    return Finding(
        kind="forecast_degraded",
        severity=spec.severity,
        table=spec.table,
        cause_key=spec.name,
        partition=day.date().isoformat(),
        title=(
            f"Forecasts issued on {day.date()} were off by {value:.1f} gCO2/kWh on average up to 24 h ahead, against a usual "
            f"{usual:.1f} (band up to {edge:.1f}): the forecast model degraded or an input it learns from went wrong"
        ),
        occurred_at=day.astimezone(UTC),
        evidence=evidence,
    )
