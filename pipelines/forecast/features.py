"""Everything a forecast may know at its issue time, as arrays: the slot grid, the baselines and the GBM features.

All models read history through `SlotGrid.before(history, until)`, which drops every value at or after `until`
first. That single truncation is what makes "no look-ahead" true by construction: later code indexes only the
returned grid, whose last slot ends at `until`. Positions are integers: position `i` is the slot starting at
`grid.start + i * SLOT`, and an *origin* `o` is an issue time at the start of slot `o`, so slots `< o` are known.

The baselines are defined here because the GBM uses them as features too:

- persistence: the value at the same time of day on the latest day fully before the issue, i.e. the slot
  `k * 24 h` earlier with the smallest `k` that lies before the issue (k = 1 for horizons up to 24 h, 2 beyond),
  falling back to older days when that slot is missing.
- seasonal naive: the mean of the same time of day over the 7 latest days before the issue (missing ones skipped).

Calendar features use Europe/London local time as well as UTC, since demand follows the clock people live by.
`level_shift` (the last slot minus the same slot a day earlier) says how today differs from the day persistence
repeats; the GBM's base carries it into the first hours (models._base).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from pipelines.forecast.schema import HORIZON_SLOTS, SLOT

DAY_SLOTS = 48
WEEK_SLOTS = 7 * DAY_SLOTS
SEASONAL_DAYS = 7
# Front padding: features look back at most (2 + SEASONAL_DAYS) days or one week plus a horizon; 16 days covers both.
LOOKBACK_DAYS = 16
_PAD = LOOKBACK_DAYS * DAY_SLOTS
FEATURE_NAMES: tuple[str, ...] = (
    "horizon",
    "issue_slot_utc",
    "slot_local",
    "dow_local",
    "persistence",
    "day_before_persistence",
    "week_lag",
    "seasonal_mean",
    "seasonal_std",
    "last_value",
    "mean_24h",
    "min_24h",
    "max_24h",
    "mean_7d",
    "level_shift",
)
TEMPERATURE_FEATURES: tuple[str, ...] = ("temperature", "temperature_change_24h")


def slot_floor(ts: datetime) -> pd.Timestamp:
    """The start of the half-hour slot containing `ts`, UTC."""
    return pd.Timestamp(ts).tz_convert("UTC").floor("30min")


def is_slot_start(ts: datetime) -> bool:
    """Whether `ts` is tz-aware and exactly on a half-hour boundary."""
    if ts.tzinfo is None:
        return False
    return bool(slot_floor(ts) == pd.Timestamp(ts))


@dataclass(frozen=True, kw_only=True)
class SlotGrid:
    """Half-hour values before `end`, NaN where missing, padded in front so lags never index below zero.

    `values[i]` is the slot starting at `start + i * SLOT`; `end_pos` is the position of `end` (the first slot
    not known). Positions at or after `end_pos` hold NaN: the tail padding lets training read "targets" beyond
    the data, which then drop out as missing.
    """

    start: pd.Timestamp
    values: np.ndarray
    end_pos: int

    @classmethod
    def before(cls, series: pd.Series, until: datetime, *, days: float | None = None) -> SlotGrid:
        """The grid of `series` strictly before `until` (and at most `days` before it), with NaN in the gaps."""
        end = pd.Timestamp(until).tz_convert("UTC")
        known = series[series.index < end].dropna()
        first = end - pd.Timedelta(days=days) if days is not None else None
        if first is not None:
            known = known[known.index >= first]
        if first is None:
            first = known.index.min().floor("30min") if len(known) else end
        start = pd.Timestamp(first).floor("30min") - _PAD * pd.Timedelta(SLOT)
        index = pd.date_range(start, end, freq="30min", inclusive="left")
        known = known[~known.index.duplicated(keep="last")]
        values = known.reindex(index).to_numpy(dtype=float)
        tail = np.full(HORIZON_SLOTS, np.nan)
        return cls(start=start, values=np.concatenate([values, tail]), end_pos=len(index))

    def pos(self, ts: datetime) -> int:
        """The position of slot start `ts`."""
        return int((pd.Timestamp(ts) - self.start) // pd.Timedelta(SLOT))

    def first_known(self) -> int | None:
        """Position of the first non-missing value, if any."""
        known = np.flatnonzero(~np.isnan(self.values[: self.end_pos]))
        return int(known[0]) if len(known) else None

    def aligned(self, series: pd.Series | None) -> np.ndarray | None:
        """`series` (e.g. hourly temperature) on this grid's positions, each slot taking its hour's value."""
        if series is None:
            return None
        index = pd.date_range(self.start, periods=len(self.values), freq="30min")
        hourly = series[~series.index.duplicated(keep="last")].sort_index()
        return hourly.reindex(index, method="ffill", limit=1, tolerance=pd.Timedelta(hours=1)).to_numpy(dtype=float)


def _targets(origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target positions (origins x horizons) and the horizon index 1..96 of each."""
    horizon = np.arange(1, HORIZON_SLOTS + 1)
    return origins[:, None] + horizon[None, :] - 1, np.broadcast_to(horizon, (len(origins), HORIZON_SLOTS))


def _days_back(horizon: np.ndarray) -> np.ndarray:
    """The smallest whole number of days back from a target at `horizon` that lies before the origin."""
    return np.asarray((horizon + DAY_SLOTS - 1) // DAY_SLOTS)


def persistence(grid: SlotGrid, origins: np.ndarray) -> np.ndarray:
    """Persistence points (origins x horizons): the latest known day at this time of day, older days if missing."""
    target, horizon = _targets(origins)
    k = _days_back(horizon)
    out = grid.values[target - k * DAY_SLOTS]
    for extra in range(1, SEASONAL_DAYS):
        missing = np.isnan(out)
        if not missing.any():
            break
        out = np.where(missing, grid.values[target - (k + extra) * DAY_SLOTS], out)
    return np.asarray(out)


def seasonal_stack(grid: SlotGrid, origins: np.ndarray, days: int = SEASONAL_DAYS) -> np.ndarray:
    """Values at the target's time of day on the `days` latest known days: shape (origins, horizons, days)."""
    target, horizon = _targets(origins)
    k = _days_back(horizon)
    back = (k[..., None] + np.arange(days)) * DAY_SLOTS
    return np.asarray(grid.values[target[..., None] - back])


def _nanmean(a: np.ndarray, axis: int) -> np.ndarray:
    count = np.sum(~np.isnan(a), axis=axis)
    total = np.nansum(a, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def seasonal_naive(grid: SlotGrid, origins: np.ndarray) -> np.ndarray:
    """Seasonal-naive points (origins x horizons): mean of the same time of day over the 7 latest known days."""
    return _nanmean(seasonal_stack(grid, origins), axis=2)


def _window(grid: SlotGrid, origins: np.ndarray, slots: int) -> np.ndarray:
    """The `slots` values just before each origin: shape (origins, slots)."""
    return np.asarray(grid.values[origins[:, None] - slots + np.arange(slots)[None, :]])


def _last_value(grid: SlotGrid, origins: np.ndarray) -> np.ndarray:
    """The latest non-missing value within a week before each origin."""
    window = _window(grid, origins, WEEK_SLOTS)
    known = ~np.isnan(window)
    last = WEEK_SLOTS - 1 - np.argmax(known[:, ::-1], axis=1)
    return np.where(known.any(axis=1), window[np.arange(len(origins)), last], np.nan)


def feature_matrix(grid: SlotGrid, origins: np.ndarray, temperature: np.ndarray | None = None) -> np.ndarray:
    """One row per (origin, horizon), origin-major, columns FEATURE_NAMES (+ TEMPERATURE_FEATURES when given).

    Intensity features read only positions before the origin. `temperature` is read at the target slot: the
    perfect-prognosis variant, which treats an observation as if it had been forecast.
    """
    n = len(origins)
    target, horizon = _targets(origins)
    ts = pd.DatetimeIndex(grid.start + pd.to_timedelta(target.ravel() * 30, unit="min"))
    local = ts.tz_convert("Europe/London")
    issue_slot = ((grid.start.hour * 2 + grid.start.minute // 30) + origins) % DAY_SLOTS
    seasonal = seasonal_stack(grid, origins)
    day24 = _window(grid, origins, DAY_SLOTS)
    # An all-missing window is a NaN feature, which the GBM handles: silence numpy's warning about it.
    with warnings.catch_warnings(action="ignore", category=RuntimeWarning):
        columns = [
            horizon.ravel().astype(float),
            np.repeat(issue_slot, HORIZON_SLOTS).astype(float),
            (local.hour * 2 + local.minute // 30).to_numpy(dtype=float),
            local.dayofweek.to_numpy(dtype=float),
            persistence(grid, origins).ravel(),
            grid.values[target - (_days_back(horizon) + 1) * DAY_SLOTS].ravel(),
            grid.values[target - WEEK_SLOTS].ravel(),
            _nanmean(seasonal, axis=2).ravel(),
            np.nanstd(seasonal, axis=2).ravel(),
            np.repeat(_last_value(grid, origins), HORIZON_SLOTS),
            np.repeat(_nanmean(day24, axis=1), HORIZON_SLOTS),
            np.repeat(np.nanmin(day24, axis=1), HORIZON_SLOTS),
            np.repeat(np.nanmax(day24, axis=1), HORIZON_SLOTS),
            np.repeat(_nanmean(_window(grid, origins, WEEK_SLOTS), axis=1), HORIZON_SLOTS),
            np.repeat(grid.values[origins - 1] - grid.values[origins - 1 - DAY_SLOTS], HORIZON_SLOTS),
        ]
    if temperature is not None:
        at_target = temperature[target]
        columns += [at_target.ravel(), (at_target - temperature[target - _days_back(horizon) * DAY_SLOTS]).ravel()]
    matrix = np.column_stack(columns)
    assert matrix.shape == (n * HORIZON_SLOTS, len(FEATURE_NAMES) + (len(TEMPERATURE_FEATURES) if temperature is not None else 0))
    return matrix


def targets(grid: SlotGrid, origins: np.ndarray) -> np.ndarray:
    """Actual values at the targets (origins x horizons); NaN where unknown or beyond the grid's end."""
    target, _ = _targets(origins)
    values = grid.values[target]
    return np.where(target < grid.end_pos, values, np.nan)


def slot_times(issued_at: datetime) -> list[datetime]:
    """Start times of the 96 slots of an issue."""
    return [issued_at + i * timedelta(minutes=30) for i in range(HORIZON_SLOTS)]
