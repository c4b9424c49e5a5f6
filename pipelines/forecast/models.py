"""Day-ahead carbon-intensity models: two baselines and a gradient-boosted model, all with calibrated intervals.

    Forecaster.fit(history, until=...) ──► FittedForecaster.predict(history, issued_at=...) ──► IssuedForecast

The pipeline fits once a day and predicts many times, so `fit` holds the cost (a few CPU-seconds for the GBM)
and `predict` only builds one feature row per slot. Both truncate `history` at `until` / `issued_at` themselves:
callers may hand in the full series, later values included, and nothing at or after the issue time is read.

Models (see `MODELS`):

- persistence: the last observed day repeated (features.persistence).
- seasonal_naive: the mean of the same time of day over the 7 latest days (features.seasonal_naive).
- gbm: scikit-learn HistGradientBoostingRegressor on calendar, lag and rolling features relative to the issue
  (features.feature_matrix), one model for all 96 horizons, learning the correction to a shifted persistence.
- gbm_temperature: the same plus ERA5 temperature of the target slots, an observation known only afterwards:
  a perfect-prognosis upper bound (`perfect_prognosis=True`), never the default, reported separately.

Intervals: every model holds, per band of 4 horizons, empirical quantiles of actual/point measured out of
sample on the latest weeks before `until` (split conformal on ratios, so the width scales with the level).
The GBM measures them with a twin fitted without those weeks; the baselines need no fit, so their residuals
are out of sample already.

Errors (from config.errors)::

    PipelineError
    └── InsufficientHistoryError   too little actual intensity before the issue time
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from config.errors import DefinitionError, PipelineError
from pipelines.forecast import features
from pipelines.forecast.features import DAY_SLOTS, SlotGrid
from pipelines.forecast.schema import HORIZON_SLOTS, ForecastSlot, IssuedForecast

# Chosen by benchmarks/forecast.py on the first half of 2023 only (daily 00:00 issues 2023-03-01..06-30), by
# day-ahead MAE (mean over horizons 0.5-24 h): gbm 29.3 against persistence 39.2 and seasonal_naive 42.7. It is
# not better at every horizon: at 24 and 48 h it is level with persistence. gbm_temperature reads observed
# weather (perfect prognosis) and can never be the default.
DEFAULT_MODEL = "gbm"
ORIGIN_STEP = 5  # training/calibration origins every 2.5 h: coprime with 48, so they visit every issue time of day
BAND = 4  # horizons per interval-calibration band (2 hours)
QUANTILES = (0.025, 0.10, 0.90, 0.975)  # lo95, lo80, hi80, hi95
FLOOR = 1.0  # gCO2/kWh; intensities are positive and intervals must be too
# One thread for the GBM: on a shared, loaded machine OpenMP's spinning threads made a fit cost 18 CPU-s instead of
# 1.1 (measured); the pipeline and the backtest parallelise, if at all, across issues, not inside a fit.
GBM_THREADS = 1
PREDICT_LOOKBACK_DAYS = float(features.LOOKBACK_DAYS)  # what features read before an issue


class InsufficientHistoryError(PipelineError):
    """Too little actual intensity before the issue time for the model to fit or predict."""


class FittedForecaster(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def trained_until(self) -> datetime: ...
    def predict(self, history: pd.Series, *, issued_at: datetime, temperature: pd.Series | None = None) -> IssuedForecast: ...


class Forecaster(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def min_history_days(self) -> float: ...
    @property
    def perfect_prognosis(self) -> bool: ...
    def fit(self, history: pd.Series, *, until: datetime, temperature: pd.Series | None = None) -> FittedForecaster: ...


def _stamp(ts: datetime) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%MZ")


def check_issue_time(ts: datetime) -> None:
    """Forecasts start at a slot start: a tz-aware time on the hour or half past."""
    if not features.is_slot_start(ts):
        hint = _stamp(features.slot_floor(ts)) if ts.tzinfo is not None else "a tz-aware UTC time"
        raise PipelineError(f"issue time {ts.isoformat()} is not a tz-aware half-hour slot start; use e.g. {hint}")


def check_history(history: pd.Series, *, until: datetime, needed_days: float, name: str) -> None:
    """Raise InsufficientHistoryError unless the first actual before `until` is at least `needed_days` before it."""
    known = history[history.index < pd.Timestamp(until)].dropna()
    if len(known) == 0:
        raise InsufficientHistoryError(
            f"{name} forecast issued {_stamp(until)} needs {needed_days:g} days of actual intensity before it; it has none"
        )
    first = known.index.min()
    have = (pd.Timestamp(until) - first) / pd.Timedelta(days=1)
    if have < needed_days:
        raise InsufficientHistoryError(
            f"{name} forecast issued {_stamp(until)} needs {needed_days:g} days of actual intensity before it; "
            f"it has {have:.1f} (first actual {_stamp(first)})"
        )


def _recent_actuals(grid: SlotGrid, *, issued_at: datetime, name: str) -> None:
    """Predicting needs at least one actual in the week before the issue: every feature is relative to it."""
    week = grid.values[grid.end_pos - features.WEEK_SLOTS : grid.end_pos]
    if np.isnan(week).all():
        raise InsufficientHistoryError(
            f"{name} forecast issued {_stamp(issued_at)} needs actual intensity in the 7 days before it; it has none"
        )


@dataclass(frozen=True, kw_only=True)
class RatioIntervals:
    """Quantiles of actual/point per band of horizons, shape (96 / BAND, 4) in the order of QUANTILES."""

    ratios: np.ndarray

    @classmethod
    def calibrate(cls, points: np.ndarray, actuals: np.ndarray) -> RatioIntervals:
        """From out-of-sample points and actuals (origins x horizons); a band with under 30 pairs uses all bands."""
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = actuals / np.maximum(points, FLOOR)
        valid = np.isfinite(ratio)
        pooled = np.quantile(ratio[valid], QUANTILES) if valid.sum() >= 30 else np.array([0.7, 0.8, 1.2, 1.4])
        rows = []
        for band in range(HORIZON_SLOTS // BAND):
            cols = slice(band * BAND, (band + 1) * BAND)
            here = ratio[:, cols][valid[:, cols]]
            rows.append(np.quantile(here, QUANTILES) if len(here) >= 30 else pooled)
        return cls(ratios=np.clip(np.array(rows), 0.01, None))

    def slots(self, issued_at: datetime, points: np.ndarray) -> tuple[ForecastSlot, ...]:
        """The 96 slots of an issue, intervals ordered lo95 <= lo80 <= point <= hi80 <= hi95, all positive."""
        point = np.maximum(np.nan_to_num(points, nan=FLOOR), FLOOR)
        r = np.repeat(self.ratios, BAND, axis=0)
        lo80 = np.minimum(point * r[:, 1], point)
        hi80 = np.maximum(point * r[:, 2], point)
        lo95 = np.minimum(point * r[:, 0], lo80)
        hi95 = np.maximum(point * r[:, 3], hi80)
        return tuple(
            ForecastSlot(
                ts=ts,
                horizon_h=(i + 1) / 2,
                point=round(float(point[i]), 2),
                lo80=round(float(lo80[i]), 2),
                hi80=round(float(hi80[i]), 2),
                lo95=round(float(lo95[i]), 2),
                hi95=round(float(hi95[i]), 2),
            )
            for i, ts in enumerate(features.slot_times(issued_at))
        )


def _origins(grid: SlotGrid, *, after_days: float, step: int = ORIGIN_STEP) -> np.ndarray:
    """Origins from `after_days` past the first actual to the grid's end, stepping back from the end."""
    first = grid.first_known()
    lo = (first if first is not None else grid.end_pos) + int(after_days * DAY_SLOTS)
    return np.arange(grid.end_pos - 1, lo - 1, -step)[::-1]


PointFn = Callable[[SlotGrid, np.ndarray], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class FittedBaseline:
    name: str
    version: str
    trained_until: datetime
    point_fn: PointFn
    intervals: RatioIntervals

    def predict(self, history: pd.Series, *, issued_at: datetime, temperature: pd.Series | None = None) -> IssuedForecast:
        check_issue_time(issued_at)
        grid = SlotGrid.before(history, issued_at, days=PREDICT_LOOKBACK_DAYS)
        _recent_actuals(grid, issued_at=issued_at, name=self.name)
        points = self.point_fn(grid, np.array([grid.end_pos]))[0]
        return IssuedForecast(
            issued_at=issued_at, model=self.name, model_version=self.version, slots=self.intervals.slots(issued_at, points)
        )


@dataclass(frozen=True, kw_only=True)
class BaselineForecaster:
    """A rule with no parameters; `fit` only measures its past errors for the intervals (last 28 days)."""

    name: str
    point_fn: PointFn
    min_history_days: float
    version: str = "1"
    perfect_prognosis: bool = False
    calibration_days: float = 28.0

    def fit(self, history: pd.Series, *, until: datetime, temperature: pd.Series | None = None) -> FittedBaseline:
        check_issue_time(until)
        check_history(history, until=until, needed_days=self.min_history_days, name=self.name)
        grid = SlotGrid.before(history, until, days=self.calibration_days + PREDICT_LOOKBACK_DAYS)
        origins = _origins(grid, after_days=features.SEASONAL_DAYS + 1)
        origins = origins[origins >= grid.end_pos - int(self.calibration_days * DAY_SLOTS)]
        intervals = RatioIntervals.calibrate(self.point_fn(grid, origins), features.targets(grid, origins))
        return FittedBaseline(name=self.name, version=self.version, trained_until=until, point_fn=self.point_fn, intervals=intervals)


def _regressor() -> HistGradientBoostingRegressor:
    # Chosen on daily 00:00 issues of 2023-03-01..06-30 only (benchmarks/forecast.py --end 2023-06-30): shallow
    # trees with large leaves and few rounds beat 31 leaves of 40 rows and 150 rounds at 24-48 h, where the
    # correction is mostly noise (training rows are strongly correlated: far fewer independent samples than
    # rows). Day-ahead MAE there: 37.5 correcting the seasonal mean (100 rounds), 36.4 correcting persistence,
    # 36.1 with 50 rounds, 33.8 adding the level_shift feature, 29.3 with the shifted base (_base). Absolute-error
    # loss, learning rate 0.1, day-of-year features (trees memorise each training day's level with them) and
    # 28-day level features did no better and were dropped.
    return HistGradientBoostingRegressor(
        max_iter=50,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=200,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=0,
    )


def _training_rows(
    grid: SlotGrid, origins: np.ndarray, temperature: np.ndarray | None, *, before: int, max_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows, residual targets (actual - base) and bases for targets known before position `before`."""
    x = features.feature_matrix(grid, origins, temperature)
    y = features.targets(grid, origins).ravel()
    target_pos = (origins[:, None] + np.arange(HORIZON_SLOTS)[None, :]).ravel()
    base = _base(x)
    keep = np.flatnonzero((target_pos < before) & np.isfinite(y) & np.isfinite(base))
    if len(keep) > max_rows:  # an even thinning keeps every origin's horizons represented
        keep = keep[np.linspace(0, len(keep) - 1, max_rows).astype(int)]
    return x[keep], (y - base)[keep], base[keep]


def _base(x: np.ndarray) -> np.ndarray:
    """What the GBM corrects: persistence shifted by today's change from yesterday, the shift fading over 24 h.

    Trees with large leaves approximate "the latest level" poorly, so the base carries it: at the first slot it
    is yesterday's shape moved to the last actual, from 24 h on plain persistence. Gaps fall back to the seasonal
    mean, then to the last value.
    """
    horizon = x[:, features.FEATURE_NAMES.index("horizon")]
    fade = np.clip(1 - (horizon - 1) / DAY_SLOTS, 0, 1)
    shift = np.nan_to_num(x[:, features.FEATURE_NAMES.index("level_shift")])
    base = x[:, features.FEATURE_NAMES.index("persistence")] + shift * fade
    base = np.where(np.isfinite(base), base, x[:, features.FEATURE_NAMES.index("seasonal_mean")])
    return np.where(np.isfinite(base), base, x[:, features.FEATURE_NAMES.index("last_value")])


@dataclass(frozen=True, kw_only=True)
class FittedGbm:
    name: str
    version: str
    trained_until: datetime
    regressor: Any
    intervals: RatioIntervals
    uses_temperature: bool

    def predict(self, history: pd.Series, *, issued_at: datetime, temperature: pd.Series | None = None) -> IssuedForecast:
        check_issue_time(issued_at)
        grid = SlotGrid.before(history, issued_at, days=PREDICT_LOOKBACK_DAYS)
        _recent_actuals(grid, issued_at=issued_at, name=self.name)
        temp = _temperature(grid, temperature, name=self.name) if self.uses_temperature else None
        x = features.feature_matrix(grid, np.array([grid.end_pos]), temp)
        with threadpool_limits(limits=GBM_THREADS):
            points = _base(x) + self.regressor.predict(x)
        return IssuedForecast(
            issued_at=issued_at,
            model=self.name,
            model_version=self.version,
            slots=self.intervals.slots(issued_at, points),
            perfect_prognosis=self.uses_temperature,
        )


def _temperature(grid: SlotGrid, temperature: pd.Series | None, *, name: str) -> np.ndarray:
    aligned = grid.aligned(temperature)
    if aligned is None:
        raise PipelineError(f"model {name} reads the temperature of the forecast slots; pass temperature= (hourly, UTC index)")
    return aligned


@dataclass(frozen=True, kw_only=True)
class GbmForecaster:
    """One HistGradientBoostingRegressor for all horizons, trained on origins every 2.5 h over the last 90 days.

    Calibration: a twin is fitted on targets before the last 28 days (or half the usable history if shorter),
    its ratios actual/point on the origins of those days give the intervals, and the served model is refitted on
    everything (the twin's errors are then slightly pessimistic, which errs on the side of coverage). 14 days
    of calibration covered only 72 % with the 80 % interval on the first half of 2023: a fortnight is too short
    to see a full range of weather regimes.
    """

    name: str = "gbm"
    version: str = "1"
    uses_temperature: bool = False
    min_history_days: float = 28.0
    train_days: float = 90.0
    calibration_days: float = 28.0
    max_rows: int = 40_000
    perfect_prognosis: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "perfect_prognosis", self.uses_temperature)

    def fit(self, history: pd.Series, *, until: datetime, temperature: pd.Series | None = None) -> FittedGbm:
        with threadpool_limits(limits=GBM_THREADS):
            return self._fit(history, until=until, temperature=temperature)

    def _fit(self, history: pd.Series, *, until: datetime, temperature: pd.Series | None) -> FittedGbm:
        check_issue_time(until)
        check_history(history, until=until, needed_days=self.min_history_days, name=self.name)
        grid = SlotGrid.before(history, until, days=self.train_days)
        temp = _temperature(grid, temperature, name=self.name) if self.uses_temperature else None
        origins = _origins(grid, after_days=features.SEASONAL_DAYS + 1)
        # Short histories keep at least half of the usable origins for training the twin.
        usable_days = len(origins) * ORIGIN_STEP / DAY_SLOTS
        split = grid.end_pos - int(min(self.calibration_days, usable_days / 2) * DAY_SLOTS)
        twin = _regressor().fit(*_training_rows(grid, origins[origins < split], temp, before=split, max_rows=self.max_rows)[:2])
        held = origins[origins >= split]
        x_held = features.feature_matrix(grid, held, temp)
        held_points = (_base(x_held) + twin.predict(x_held)).reshape(len(held), HORIZON_SLOTS)
        intervals = RatioIntervals.calibrate(held_points, features.targets(grid, held))
        regressor = _regressor().fit(*_training_rows(grid, origins, temp, before=grid.end_pos, max_rows=self.max_rows)[:2])
        return FittedGbm(
            name=self.name,
            version=self.version,
            trained_until=until,
            regressor=regressor,
            intervals=intervals,
            uses_temperature=self.uses_temperature,
        )


_FACTORIES: dict[str, Callable[[], Forecaster]] = {
    "persistence": lambda: BaselineForecaster(name="persistence", point_fn=features.persistence, min_history_days=8.0),
    "seasonal_naive": lambda: BaselineForecaster(name="seasonal_naive", point_fn=features.seasonal_naive, min_history_days=14.0),
    "gbm": lambda: GbmForecaster(),
    "gbm_temperature": lambda: GbmForecaster(name="gbm_temperature", uses_temperature=True),
}
MODELS: tuple[str, ...] = tuple(_FACTORIES)


def build_model(name: str) -> Forecaster:
    """The forecaster called `name`; DefinitionError naming the known ones otherwise."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise DefinitionError(f"unknown forecast model {name!r}; known: {', '.join(MODELS)}") from None


def issue_forecast(
    history: pd.Series, *, issued_at: datetime, model: str = DEFAULT_MODEL, temperature: pd.Series | None = None
) -> IssuedForecast:
    """Fit `model` on the history before `issued_at` and issue the next 48 hours from there."""
    fitted = build_model(model).fit(history, until=issued_at, temperature=temperature)
    return fitted.predict(history, issued_at=issued_at, temperature=temperature)
