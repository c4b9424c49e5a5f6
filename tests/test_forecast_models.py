"""The forecast models: no look-ahead, well-formed issues, clear errors on too little history or unknown names."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from config.errors import DefinitionError, PipelineError
from pipelines.forecast.models import MODELS, Forecaster, GbmForecaster, InsufficientHistoryError, build_model, issue_forecast
from pipelines.forecast.schema import HORIZON_SLOTS, IssuedForecast

START = datetime(2023, 1, 1, tzinfo=UTC)
ISSUED = datetime(2023, 2, 5, tzinfo=UTC)  # 35 days of history before it, 5 after


def _series(days: int = 40, *, start: datetime = START, seed: int = 0) -> pd.Series:
    """A daily and weekly cycle with noise: enough structure for every model to fit."""
    index = pd.date_range(start, periods=days * 48, freq="30min", tz="UTC")
    slot = np.arange(len(index))
    rng = np.random.default_rng(seed)
    values = 180 + 60 * np.sin(2 * np.pi * slot / 48) + 20 * np.sin(2 * np.pi * slot / 336) + rng.normal(0, 8, len(index))
    return pd.Series(values, index=index)


def _temperature() -> pd.Series:
    index = pd.date_range(START, periods=40 * 24, freq="h", tz="UTC")
    return pd.Series(5 + 3 * np.sin(2 * np.pi * np.arange(len(index)) / 24), index=index)


def _model(name: str) -> Forecaster:
    """The registered model; the GBMs on fewer training rows, to keep this file fast (same code path)."""
    model = build_model(name)
    return replace(model, max_rows=3000) if isinstance(model, GbmForecaster) else model


def _issue(history: pd.Series, name: str, issued_at: datetime = ISSUED) -> IssuedForecast:
    temperature = _temperature()
    return (
        _model(name).fit(history, until=issued_at, temperature=temperature).predict(history, issued_at=issued_at, temperature=temperature)
    )


@pytest.fixture(scope="module")
def history() -> pd.Series:
    return _series()


@pytest.fixture(scope="module")
def issued(history: pd.Series) -> dict[str, IssuedForecast]:
    return {name: _issue(history, name) for name in MODELS}


@pytest.mark.parametrize("name", MODELS)
def test_nothing_at_or_after_the_issue_time_changes_the_forecast(name: str, history: pd.Series, issued: dict[str, IssuedForecast]) -> None:
    later = history.index >= pd.Timestamp(ISSUED)
    blanked = history.where(~later)
    spiked = history.copy()
    spiked[later] = spiked[later] * 3 + 500
    spiked[pd.Timestamp(ISSUED)] = 1e6
    for changed in (blanked, spiked):
        assert _issue(changed, name) == issued[name]


@pytest.mark.parametrize("name", MODELS)
def test_an_issue_has_96_ordered_slots_from_the_issue_time(name: str, issued: dict[str, IssuedForecast]) -> None:
    forecast = issued[name]
    assert forecast.issued_at == ISSUED and forecast.model == name
    assert forecast.perfect_prognosis is build_model(name).perfect_prognosis
    assert len(forecast.slots) == HORIZON_SLOTS
    for i, s in enumerate(forecast.slots):
        assert s.ts == ISSUED + i * timedelta(minutes=30)
        assert s.horizon_h == (i + 1) / 2
        assert 0 < s.lo95 <= s.lo80 <= s.point <= s.hi80 <= s.hi95


def test_issue_forecast_fits_then_predicts(history: pd.Series, issued: dict[str, IssuedForecast]) -> None:
    changed = history.where(history.index < pd.Timestamp(ISSUED))
    assert issue_forecast(changed, issued_at=ISSUED, model="seasonal_naive") == issued["seasonal_naive"]


def test_only_the_temperature_model_is_perfect_prognosis() -> None:
    assert [m for m in MODELS if build_model(m).perfect_prognosis] == ["gbm_temperature"]
    with pytest.raises(PipelineError, match="pass temperature="):
        build_model("gbm_temperature").fit(_series(), until=ISSUED)


def test_too_little_history_names_what_is_needed_and_what_there_is() -> None:
    short = _series(days=4)
    with pytest.raises(InsufficientHistoryError) as caught:
        issue_forecast(short, issued_at=START + timedelta(days=4), model="gbm")
    assert str(caught.value) == (
        "gbm forecast issued 2023-01-05T00:00Z needs 28 days of actual intensity before it; it has 4.0 (first actual 2023-01-01T00:00Z)"
    )
    with pytest.raises(InsufficientHistoryError, match=r"persistence forecast issued 2022-12-01T00:00Z needs 8 days .* it has none"):
        issue_forecast(short, issued_at=datetime(2022, 12, 1, tzinfo=UTC), model="persistence")


def test_a_fit_predicts_later_issues_from_the_data_up_to_each(history: pd.Series) -> None:
    fitted = build_model("persistence").fit(history, until=ISSUED)
    later = ISSUED + timedelta(hours=6)
    forecast = fitted.predict(history, issued_at=later)
    assert forecast.slots[0].point == round(history[pd.Timestamp(later - timedelta(days=1))], 2)
    with pytest.raises(InsufficientHistoryError, match="needs actual intensity in the 7 days before it"):
        fitted.predict(history, issued_at=ISSUED + timedelta(days=30))


@pytest.mark.parametrize("name", MODELS)
def test_a_missing_day_in_the_history_still_forecasts(name: str, history: pd.Series) -> None:
    day_before = (history.index >= pd.Timestamp(ISSUED - timedelta(days=1))) & (history.index < pd.Timestamp(ISSUED))
    gappy = history[~day_before]
    gappy[pd.Timestamp(ISSUED - timedelta(days=9))] = np.nan
    forecast = _issue(gappy, name)
    assert all(np.isfinite(s.point) and s.point > 0 for s in forecast.slots)
    if name == "persistence":  # the missing day falls back to the day before it
        assert forecast.slots[0].point == round(history[pd.Timestamp(ISSUED - timedelta(days=2))], 2)


def test_an_issue_time_off_the_half_hour_is_refused(history: pd.Series) -> None:
    with pytest.raises(PipelineError, match=r"not a tz-aware half-hour slot start; use e.g. 2023-02-05T00:00Z"):
        issue_forecast(history, issued_at=ISSUED + timedelta(minutes=10), model="persistence")


def test_an_unknown_model_name_lists_the_known_ones() -> None:
    with pytest.raises(DefinitionError) as caught:
        build_model("prophet")
    assert str(caught.value) == "unknown forecast model 'prophet'; known: persistence, seasonal_naive, gbm, gbm_temperature"
