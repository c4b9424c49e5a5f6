"""Rolling-origin backtest of the forecast models over the bundled 2023 NESO national intensity.

Every `every_days` days from `start` to `end` (inclusive) each model issues at the `issue_hours` (UTC), from
data before the issue only. Models are refitted every `refit_days` days at 00:00 UTC of the refit day and
predict with that fit and all data up to each issue, as the pipeline does (fit daily or less, predict often).
All models are scored on the same issues and slots, so the baselines are measured exactly as the GBM is.

Scores per model and issue hour: MAE and MAPE at horizons 1, 6, 24 and 48 h (a horizon is the end of a slot:
"24h" is the slot ending 24 h after the issue), the day-ahead mean over horizons 0.5-24 h, and the share of
actuals inside the 80 and 95 % intervals. Slots without an actual are skipped (5 in the CSV);
actuals of 0 (5 slots, recording faults: GB intensity was never zero in 2023) count as missing too, for fitting
and scoring.

NESO's own `forecast` column is scored on the same slots as a reference only: it is their shortest-horizon
forecast, made about an hour ahead, not a day-ahead forecast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pipelines.forecast.models import DEFAULT_MODEL, MODELS, FittedForecaster, build_model
from pipelines.forecast.schema import HORIZON_SLOTS, IssuedForecast
from pipelines.sources import replay

INTENSITY_CSV = replay.DATA_DIR / "neso_2023_national_intensity.csv.gz"
TEMPERATURE_CSV = replay.DATA_DIR / "era5_uk_t2m_hourly.csv.gz"
SNAPSHOTS = replay.DATA_DIR / "intensity_revisions_2024-01-12"
HORIZONS = {"1h": 2, "6h": 12, "24h": 48, "48h": 96}  # label -> slot number whose end is that many hours out
MIDYEAR = datetime(2023, 7, 1, tzinfo=UTC)
FIELDS = ("point", "lo80", "hi80", "lo95", "hi95")


@dataclass(frozen=True, kw_only=True)
class BacktestSpec:
    """Which issues to make: days `start`..`end` inclusive, every `every_days`, at each of `issue_hours` UTC."""

    start: date = date(2023, 3, 1)  # January and February are warm-up: 59 days before the first issue
    end: date = date(2023, 12, 30)  # the last day whose 00:00 issue has all 48 hours of actuals
    every_days: int = 1
    refit_days: int = 7
    issue_hours: tuple[int, ...] = (0, 6)
    models: tuple[str, ...] = MODELS


def load_intensity() -> tuple[pd.Series, pd.Series]:
    """Actual and NESO-forecast intensity by slot start (UTC); zero actuals become missing."""
    frame = pd.read_csv(INTENSITY_CSV)
    index = pd.DatetimeIndex(pd.to_datetime(frame["from"], utc=True))
    actual = pd.Series(frame["actual"].to_numpy(dtype=float), index=index, name="actual")
    forecast = pd.Series(frame["forecast"].to_numpy(dtype=float), index=index, name="forecast")
    return actual.where(actual > 0), forecast


def load_temperature() -> pd.Series:
    """Hourly ERA5 2 m temperature over the UK, degrees C, by hour start (UTC)."""
    frame = pd.read_csv(TEMPERATURE_CSV)
    return pd.Series(frame["temp_2m"].to_numpy(dtype=float), index=pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True)))


@dataclass(kw_only=True)
class _Issues:
    """Forecast and actual values of one model's issues at one hour: rows are issues, columns the 96 slots."""

    issued: list[datetime]
    values: dict[str, list[np.ndarray]]

    def add(self, forecast: IssuedForecast, actual: pd.Series) -> None:
        self.issued.append(forecast.issued_at)
        for name in FIELDS:
            self.values[name].append(np.array([getattr(s, name) for s in forecast.slots]))
        self.values["actual"].append(actual.reindex([s.ts for s in forecast.slots]).to_numpy(dtype=float))

    def arrays(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: np.array(v).reshape(-1, HORIZON_SLOTS)[rows] for name, v in self.values.items()}


def _scores(a: dict[str, np.ndarray], cols: slice | int) -> dict[str, float | None]:
    """MAE, MAPE (%) and interval coverage (0-1) over the chosen slot columns, skipping missing actuals."""
    actual, point = a["actual"][:, cols], a["point"][:, cols]
    ok = np.isfinite(actual)
    if not ok.any():
        return {"mae": None, "mape": None, "coverage_80": None, "coverage_95": None, "n": 0}
    err = np.abs(point - actual)[ok]
    inside80 = (a["lo80"][:, cols] <= actual) & (actual <= a["hi80"][:, cols])
    inside95 = (a["lo95"][:, cols] <= actual) & (actual <= a["hi95"][:, cols])
    return {
        "mae": round(float(err.mean()), 2),
        "mape": round(float((err / actual[ok]).mean() * 100), 2),
        "coverage_80": round(float(inside80[ok].mean()), 4),
        "coverage_95": round(float(inside95[ok].mean()), 4),
        "n": int(ok.sum()),
    }


def summarize(issues: _Issues, rows: np.ndarray | None = None) -> dict[str, Any]:
    """Scores by horizon, for the day ahead (0.5-24 h) and over all 48 hours."""
    a = issues.arrays(rows if rows is not None else np.arange(len(issues.issued)))
    return {
        "issues": len(a["point"]),
        "by_horizon": {label: _scores(a, slot - 1) for label, slot in HORIZONS.items()},
        "day_ahead": _scores(a, slice(0, 48)),
        "all_48h": _scores(a, slice(0, HORIZON_SLOTS)),
    }


def _halves(issues: _Issues) -> dict[str, Any]:
    first = np.array([t < MIDYEAR for t in issues.issued], dtype=bool)
    return {"first_half": summarize(issues, np.flatnonzero(first)), "second_half": summarize(issues, np.flatnonzero(~first))}


def neso_reference(actual: pd.Series, forecast: pd.Series, spec: BacktestSpec) -> dict[str, Any]:
    """NESO's own forecast column over the day-ahead slots of the 00:00 issues (each day of the range once)."""
    lo = pd.Timestamp(spec.start, tz="UTC")
    hi = pd.Timestamp(spec.end, tz="UTC") + pd.Timedelta(days=1)
    both = pd.DataFrame({"a": actual, "f": forecast})[lambda d: (d.index >= lo) & (d.index < hi)].dropna()
    err = (both["f"] - both["a"]).abs()
    return {
        "mae": round(float(err.mean()), 2),
        "mape": round(float((err / both["a"]).mean() * 100), 2),
        "slots": len(both),
        "note": "NESO's shortest-horizon forecast (made about an hour ahead), not day-ahead: a reference, not a baseline",
    }


def snapshot_comparison(actual: pd.Series) -> dict[str, Any]:
    """What the 2024-01-12 API snapshots allow: NESO 48 h forecasts against any actual for the same slots."""
    forecasts: dict[str, list[float]] = {}
    actuals: dict[str, float] = {}
    for path in sorted(SNAPSHOTS.glob("*.json")):
        for record in json.loads(path.read_text())["data"]:
            values = record["intensity"]
            if path.stem.startswith("pt24h"):
                if values.get("actual") is not None:
                    actuals[record["from"]] = float(values["actual"])
            elif values.get("forecast") is not None:
                forecasts.setdefault(record["from"], []).append(float(values["forecast"]))
    matched = sorted(set(forecasts) & set(actuals))
    revisions = [max(v) - min(v) for v in forecasts.values() if len(v) > 1]
    return {
        "fw48h_snapshots": len(list(SNAPSHOTS.glob("2024-*.json"))),
        "forecast_slots": len(forecasts),
        "slots_with_actual": len(matched),
        "mae": round(float(np.mean([abs(np.mean(forecasts[k]) - actuals[k]) for k in matched])), 2) if matched else None,
        "mean_revision_range": round(float(np.mean(revisions)), 2) if revisions else None,
        "note": (
            "the fw48h snapshots forecast 2024-01-12 06:00-12:30Z, the pt24h snapshot holds actuals for 2024-01-11 "
            "06:00-10:00Z: no slot has both, and our models cannot issue there either (the bundled actuals end "
            f"{actual.dropna().index.max():%Y-%m-%d %H:%MZ}, more than 7 days earlier). Only NESO's revision range "
            "between snapshots of the same slot is reported."
        ),
    }


def run_backtest(
    actual: pd.Series,
    *,
    spec: BacktestSpec,
    temperature: pd.Series | None = None,
    neso_forecast: pd.Series | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Issue, score and summarise; the flat headline keys describe DEFAULT_MODEL at the first issue hour."""
    began, cpu_began = time.perf_counter(), time.process_time()
    issues = {(m, h): _Issues(issued=[], values={k: [] for k in (*FIELDS, "actual")}) for m in spec.models for h in spec.issue_hours}
    fitted: dict[str, FittedForecaster] = {}
    fit_cpu: dict[str, list[float]] = {m: [] for m in spec.models}
    day, n_days = spec.start, 0
    while day <= spec.end:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for name in spec.models:
            current = fitted.get(name)
            if current is None or midnight - current.trained_until >= timedelta(days=spec.refit_days):
                cpu = time.process_time()
                fitted[name] = build_model(name).fit(actual, until=midnight, temperature=temperature)
                fit_cpu[name].append(time.process_time() - cpu)
            for hour in spec.issue_hours:
                issued_at = midnight + timedelta(hours=hour)
                forecast = fitted[name].predict(actual, issued_at=issued_at, temperature=temperature)
                issues[(name, hour)].add(forecast, actual)
        n_days += 1
        if progress is not None and n_days % 10 == 0:
            progress(f"{day.isoformat()}: {n_days} issue days, {time.perf_counter() - began:.0f} s")
        day += timedelta(days=spec.every_days)
    return _report(issues, spec=spec, actual=actual, neso_forecast=neso_forecast, fit_cpu=fit_cpu, began=(began, cpu_began))


def _report(
    issues: dict[tuple[str, int], _Issues],
    *,
    spec: BacktestSpec,
    actual: pd.Series,
    neso_forecast: pd.Series | None,
    fit_cpu: dict[str, list[float]],
    began: tuple[float, float],
) -> dict[str, Any]:
    hour = spec.issue_hours[0]
    by_model = {
        name: {f"issue_{h:02d}utc": {**summarize(issues[(name, h)]), **_halves(issues[(name, h)])} for h in spec.issue_hours}
        for name in spec.models
    }
    out: dict[str, Any] = {
        "model": DEFAULT_MODEL,
        "issue_hour_utc": hour,
        "issues": len(issues[(spec.models[0], hour)].issued),
        "start": spec.start.isoformat(),
        "end": spec.end.isoformat(),
        "every_days": spec.every_days,
        "refit_days": spec.refit_days,
        "warmup": f"actuals before {spec.start.isoformat()} are history only; no issue is scored before it",
    }
    for name in spec.models:
        summary = by_model[name][f"issue_{hour:02d}utc"]
        prefix = "" if name == DEFAULT_MODEL else f"{name}_"
        out[f"{prefix}mae_24h"] = summary["by_horizon"]["24h"]["mae"]
        out[f"{prefix}mape_24h"] = summary["by_horizon"]["24h"]["mape"]
        out[f"{prefix}mae_day_ahead"] = summary["day_ahead"]["mae"]
        out[f"{prefix}mape_day_ahead"] = summary["day_ahead"]["mape"]
        out[f"{prefix}coverage_80"] = summary["all_48h"]["coverage_80"]
        out[f"{prefix}coverage_95"] = summary["all_48h"]["coverage_95"]
        out[f"{prefix}mae_by_horizon"] = {k: v["mae"] for k, v in summary["by_horizon"].items()}
        out[f"{prefix}mape_by_horizon"] = {k: v["mape"] for k, v in summary["by_horizon"].items()}
    if "persistence" in spec.models and DEFAULT_MODEL in spec.models and out.get("persistence_mae_24h"):
        out["mae_24h_vs_persistence"] = round(out["mae_24h"] / out["persistence_mae_24h"], 3)
    out["perfect_prognosis"] = {
        name: {"note": "uses observed temperature of the forecast slots: an upper bound, not issuable", **by_model[name]}
        for name in spec.models
        if build_model(name).perfect_prognosis
    }
    out["by_model"] = {name: v for name, v in by_model.items() if name not in out["perfect_prognosis"]}
    if neso_forecast is not None:
        out["neso_reference"] = neso_reference(actual, neso_forecast, spec)
    out["snapshots_2024_01_12"] = snapshot_comparison(actual)
    out["fit_cpu_seconds_mean"] = {name: round(float(np.mean(v)), 2) for name, v in fit_cpu.items() if v}
    out["seconds"] = round(time.perf_counter() - began[0], 1)
    out["cpu_seconds"] = round(time.process_time() - began[1], 1)
    return out
