"""The rolling-origin backtest: its report keys, and that every model is scored the same way."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from pipelines.forecast.backtest import BacktestSpec, load_intensity, run_backtest, snapshot_comparison

SPEC = BacktestSpec(start=date(2023, 2, 10), end=date(2023, 2, 20), every_days=2, issue_hours=(0,), models=("persistence", "gbm"))


def _series(day_step: float) -> pd.Series:
    """A daily cycle in whole gCO2/kWh (as NESO publishes), plus `day_step` more each day (0: perfectly periodic)."""
    index = pd.date_range("2023-01-01", "2023-03-01", freq="30min", tz="UTC", inclusive="left")
    slot = np.arange(len(index))
    return pd.Series(np.round(150 + 50 * np.sin(2 * np.pi * slot / 48)) + day_step * (slot // 48), index=index)


@pytest.fixture(scope="module")
def periodic_report() -> dict[str, object]:
    return run_backtest(_series(0.0), spec=SPEC)


def test_the_report_has_the_headline_keys(periodic_report: dict[str, object]) -> None:
    for key in ("mae_24h", "mape_24h", "persistence_mae_24h", "persistence_mape_24h", "coverage_80", "coverage_95"):
        assert isinstance(periodic_report[key], float), key
    assert periodic_report["model"] == "gbm" and periodic_report["issues"] == 6
    assert set(periodic_report["mae_by_horizon"]) == {"1h", "6h", "24h", "48h"}  # type: ignore[arg-type]


def test_persistence_is_exact_on_a_daily_periodic_series(periodic_report: dict[str, object]) -> None:
    assert periodic_report["persistence_mae_24h"] == 0.0
    assert periodic_report["persistence_mape_24h"] == 0.0
    assert periodic_report["persistence_coverage_80"] == 1.0
    assert periodic_report["mae_24h"] < 1.0  # type: ignore[operator]


def test_persistence_errors_follow_the_day_it_repeats() -> None:
    """Rising 10 a day: horizons up to 24 h repeat yesterday (off by 10), 48 h the day before (off by 20)."""
    report = run_backtest(_series(10.0), spec=BacktestSpec(start=SPEC.start, end=SPEC.end, every_days=2, models=("persistence",)))
    assert report["persistence_mae_by_horizon"] == {"1h": 10.0, "6h": 10.0, "24h": 10.0, "48h": 20.0}
    assert report["by_model"]["persistence"]["issue_06utc"]["by_horizon"]["24h"]["mae"] == 10.0


def test_no_2024_snapshot_slot_has_both_a_neso_forecast_and_an_actual() -> None:
    actual, _ = load_intensity()
    comparison = snapshot_comparison(actual)
    assert comparison["fw48h_snapshots"] == 6 and comparison["forecast_slots"] == 13
    assert comparison["slots_with_actual"] == 0 and comparison["mae"] is None
