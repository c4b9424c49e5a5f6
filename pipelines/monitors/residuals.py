"""The series a value model reads, and the robust statistics every model builds on.

`models.py` judges each point of a series against its own past; all four models share these pieces: the series
itself (`SeriesFrame`), the median and robust scale per hour of day (`HourlyBaseline`), the change between
consecutive slots (`regular_steps`), and the calibrated tail probability of a residual (`tail_probability`:
the empirical distribution of the history with a Pareto tail) with its score ``-log10 p`` (`tail_score`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TAIL_QUANTILE = 0.95
MAX_TAIL_INDEX = 4.0
"""The Pareto tail is never taken lighter than index 4 (a Student-t with 4 degrees of freedom): a history
that happens to be calm must not make the next ordinary swing look impossible."""
_MAD_TO_SIGMA = 1.4826
_MIN_TAIL_POINTS = 20


@dataclass(frozen=True, kw_only=True)
class SeriesFrame:
    """A monitored series in time order: timestamps (UTC), values, and the reference series if any."""

    ts: pd.DatetimeIndex
    x: np.ndarray
    ref: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.ts) != len(self.x) or (self.ref is not None and len(self.ref) != len(self.x)):
            raise ValueError("timestamps, values and reference must have the same length")

    @property
    def nanos(self) -> np.ndarray:
        """The timestamps as int64 nanoseconds."""
        return np.asarray(self.ts.as_unit("ns").asi8)

    @property
    def cadence(self) -> pd.Timedelta:
        """The usual spacing between points (the median step), one hour if it cannot be told."""
        if len(self.ts) < 3:
            return pd.Timedelta(hours=1)
        return pd.Timedelta(int(np.median(np.diff(self.nanos))), unit="ns")


def tail_probability(history: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """P(|Z| >= |observed|) under the empirical distribution of ``history`` with a Pareto tail.

    Below the history's 95th percentile ``u`` the empirical exceedance fraction is used; beyond it,
    ``0.05 * (z / u) ** -alpha`` with ``alpha`` the Hill estimate over the exceedances (at most
    ``MAX_TAIL_INDEX``), so the probability keeps falling past the largest value seen instead of stopping at
    ``1 / n``, but no faster than a heavy tail would.
    """
    h = np.sort(np.abs(history[np.isfinite(history)]))
    z = np.abs(np.asarray(observed, dtype=float))
    if len(h) < _MIN_TAIL_POINTS:
        return np.ones_like(z)
    n = len(h)
    u = float(np.quantile(h, TAIL_QUANTILE))
    body = (n - np.searchsorted(h, z, side="left") + 1) / (n + 1)
    top = h[h > u] if u > 0 else h[h > 0]
    if u <= 0 or len(top) < 5:
        u = max(u, float(h[-1]), 1e-12)
        top = h[-max(5, n // 20) :]
    alpha = len(top) / max(float(np.sum(np.log(np.maximum(top, 1e-300) / u))), 1e-9)
    alpha = float(np.clip(alpha, 0.5, MAX_TAIL_INDEX))
    tail = (1.0 - TAIL_QUANTILE) * np.power(np.maximum(z, u) / u, -alpha)
    return np.asarray(np.where(z > u, np.minimum(tail, body), body))


def tail_score(p: np.ndarray) -> np.ndarray:
    """The score of a tail probability: ``-log10 p``, with ``p`` clipped to [1e-300, 1]."""
    return np.asarray(-np.log10(np.clip(p, 1e-300, 1.0)))


def tail_or_one(history: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """`tail_probability` over the finite values; 1 where the observed value is NaN."""
    known = history[np.isfinite(history)]
    return np.where(np.isnan(observed), 1.0, tail_probability(known, np.nan_to_num(observed)))


class HourlyBaseline:
    """Median and robust scale per hour of day (pooled with the neighbouring hours) of a history."""

    def __init__(self, hours: np.ndarray, values: np.ndarray) -> None:
        keep = np.isfinite(values)
        hours, values = hours[keep], values[keep]
        overall_median = float(np.median(values)) if len(values) else 0.0
        overall_scale = _MAD_TO_SIGMA * float(np.median(np.abs(values - overall_median))) if len(values) else 1.0
        floor = max(0.1 * overall_scale, 1e-6 * (1.0 + abs(overall_median)), 1e-9)
        self.median = np.full(24, overall_median)
        self.scale = np.full(24, max(overall_scale, floor))
        for hour in range(24):
            pooled = values[np.isin(hours, ((hour - 1) % 24, hour, (hour + 1) % 24))]
            if len(pooled) >= 10:
                median = float(np.median(pooled))
                self.median[hour] = median
                self.scale[hour] = max(_MAD_TO_SIGMA * float(np.median(np.abs(pooled - median))), floor)

    def z(self, hours: np.ndarray, values: np.ndarray) -> np.ndarray:
        return np.asarray((values - self.median[hours]) / self.scale[hours])


def regular_steps(frame: SeriesFrame, values: np.ndarray) -> np.ndarray:
    """Change from the previous point where the two are one cadence apart, else NaN."""
    steps = np.full(len(values), np.nan)
    if len(values) > 1:
        regular = np.diff(frame.nanos) == frame.cadence.value
        steps[1:] = np.where(regular, np.diff(values), np.nan)
    return steps
