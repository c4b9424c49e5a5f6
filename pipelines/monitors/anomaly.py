"""Value-anomaly detector of the monitors: robust seasonal baselines, calibrated, with an Isolation Forest.

Every point is scored only against data before it (points of the same block of ``block`` points share the
history that ends where the block starts), so scoring a whole series point by point and scoring only its
latest points give the same numbers. For each point:

1. **Baselines, robust and from the past only.** Three residuals, each a robust z-score ``(x - median) /
   (1.4826 * MAD)`` over the last ``history`` usable points (not excluded, not NaN):

   * *seasonal*: median and MAD of the point's hour-of-week bucket, falling back to its hour-of-day bucket
     and then to all of the history when a bucket holds fewer than ``min_bucket`` points;
   * *local*: median and MAD of the last ``local_window`` usable points (catches drifts a slow seasonal
     baseline absorbs late);
   * *volatility*: log ratio of the standard deviation over the last ``volatility_window`` points to its
     median over the history (catches flat-lined or suddenly noisy signals).

   Scales are floored at half the history's mean absolute deviation, so a constant stretch does not
   turn every later wobble into an infinite z-score.
2. **Calibration.** Each residual's magnitude is turned into evidence ``S = -log10 P(|z| >= observed)``
   under a normal fit (mean, standard deviation) of that residual's own magnitudes over the last
   ``calibration`` scored points: a series whose residuals are heavy-tailed needs a larger deviation to
   score the same. The largest evidence of the three, times ``sensitivity``, maps to ``S / (S + evidence_half)``.
3. **Isolation Forest** (scikit-learn, fixed ``random_state``) over the three residuals, refitted every
   ``refit_every`` points on the last ``forest_history`` usable points: it flags combinations (a normal
   level with an abnormal volatility, say) that no single residual makes extreme. Its score
   (``-score_samples``, about 0.35 for ordinary points and 0.7 or more for isolated ones) is averaged with
   the calibrated evidence.
4. **Incidents.** A point scoring ``alert_score`` or more opens an incident for ``incident_points`` points,
   during which scores are multiplied by ``incident_damping`` (one alert per event, as a monitor that has
   already opened an incident does not re-page), and the incident's points are left out of later
   baselines and calibrations (unless ``learn_from_incidents``), as are points the caller passes in
   ``exclude``.

Scores are in [0, 1]: near 0.3 for ordinary points, ``alert_score`` and above for anomalies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import log_ndtr
from sklearn.ensemble import IsolationForest

_LN10 = float(np.log(10.0))
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, kw_only=True)
class AnomalyDetectorSpec:
    """How the detector scores; every field has a default that was benchmarked on NAB (benchmarks/nab.py)."""

    sensitivity: float = 1.0
    """Multiplies the calibrated evidence: 2.0 asks half as improbable a deviation (in log10 odds) for the
    same score, 0.5 twice as improbable. 1.0 is the benchmarked setting."""
    alert_score: float = 0.8
    """Score at or above which a point opens an incident (and starts the damping)."""
    evidence_half: float = 1.875
    """Evidence (-log10 tail probability) at which the calibrated part of the score is 0.5."""
    history: int = 3000
    """Usable points of the past the baselines look at."""
    local_window: int = 100
    """Usable points of the past the local baseline looks at."""
    volatility_window: int = 12
    """Points over which the rolling standard deviation of the volatility residual is taken."""
    min_history: int = 100
    """Usable points needed before anything is scored; earlier points score 0."""
    min_bucket: int = 3
    """Points a seasonal bucket needs to be used instead of its coarser parent."""
    calibration: int = 2000
    """Scored points whose residual magnitudes calibrate the evidence."""
    block: int = 48
    """Points scored together against the history that ends where the block starts."""
    forest_history: int = 2000
    refit_every: int = 256
    n_estimators: int = 100
    random_state: int = 0
    incident_points: int = 100
    incident_damping: float = 0.5
    forest_weight: float | None = None
    trim: float = 0.0
    peak_mode: bool = False
    activity_window: int = 0
    activity_cap: float = 10.0
    peak_margin: float = 0.0
    learn_from_incidents: bool = True
    """When False, points inside the detector's own incidents are left out of later baselines."""

    def __post_init__(self) -> None:
        if not self.sensitivity > 0:
            raise ValueError(f"sensitivity must be > 0, got {self.sensitivity}")
        if not 0 < self.alert_score <= 1:
            raise ValueError(f"alert_score must be in (0, 1], got {self.alert_score}")
        for name in ("history", "local_window", "min_history", "calibration", "block", "forest_history", "refit_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _robust(values: np.ndarray) -> tuple[float, float]:
    """Median and MAD scaled to a normal standard deviation."""
    median = float(np.median(values))
    return median, _MAD_TO_SIGMA * float(np.median(np.abs(values - median)))


class AnomalyDetector:
    """Scores a series point by point with past data only; see the module docstring for the method."""

    def __init__(self, spec: AnomalyDetectorSpec | None = None) -> None:
        self.spec = spec or AnomalyDetectorSpec()

    def score_latest(
        self,
        timestamps: Sequence[datetime] | pd.DatetimeIndex,
        values: Sequence[float] | np.ndarray,
        n_latest: int,
        exclude: Sequence[bool] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores of the last ``n_latest`` points, each against the history before it."""
        if n_latest <= 0:
            return np.zeros(0)
        return self.score_series(timestamps, values, exclude=exclude)[-n_latest:]

    def score_series(
        self,
        timestamps: Sequence[datetime] | pd.DatetimeIndex,
        values: Sequence[float] | np.ndarray,
        *,
        exclude: Sequence[bool] | np.ndarray | None = None,
    ) -> np.ndarray:
        """A score in [0, 1] for every point, in order; NaN values and the first ``min_history`` usable
        points score 0. ``exclude`` marks points (inside known incidents, say) that no baseline may use."""
        x = np.asarray(values, dtype=float)
        stamps = pd.DatetimeIndex(pd.to_datetime(list(timestamps) if not isinstance(timestamps, pd.DatetimeIndex) else timestamps))
        if len(stamps) != len(x):
            raise ValueError(f"{len(stamps)} timestamps but {len(x)} values")
        usable = ~np.isnan(x)
        if exclude is not None:
            mask = np.asarray(exclude, dtype=bool)
            if len(mask) != len(x):
                raise ValueError(f"exclude has {len(mask)} flags for {len(x)} values")
            usable &= ~mask
        return _Run(self.spec, stamps, x, usable).scores()


class _Run:
    """State of one pass over one series."""

    def __init__(self, spec: AnomalyDetectorSpec, stamps: pd.DatetimeIndex, x: np.ndarray, usable: np.ndarray) -> None:
        self.spec, self.x, self.usable = spec, x, usable.copy()
        n = len(x)
        hour = np.asarray(stamps.hour, dtype=np.int64)
        self.buckets = (np.asarray(stamps.dayofweek, dtype=np.int64) * 24 + hour, hour)  # finest first
        filled = pd.Series(x).ffill().bfill().fillna(0.0)
        self.rolling_std = filled.rolling(spec.volatility_window, min_periods=2).std().fillna(0.0).to_numpy()
        self.residuals = np.zeros((n, 4 if spec.activity_window else 3))  # seasonal, local, volatility
        self.scored = np.zeros(n, dtype=bool)
        self.out = np.zeros(n)
        self.forest: IsolationForest | None = None
        self.forest_fitted_at = -(10**9)
        self.incident_until = -1
        self.raw_hist = np.zeros(n)

    def scores(self) -> np.ndarray:
        spec, n = self.spec, len(self.x)
        for start in range(0, n, spec.block):
            end = min(n, start + spec.block)
            past = np.flatnonzero(self.usable[max(0, start - spec.history) : start]) + max(0, start - spec.history)
            if len(past) < spec.min_history:
                continue
            self._residuals(start, end, past)
            evidence = self._evidence(start, end)
            forest = self._forest(start, end)
            mix = 0.5 * (evidence + forest) if spec.forest_weight is None else (evidence if spec.forest_weight == 0 else 0.5 * (evidence + forest))
            raw = np.where(np.isnan(self.x[start:end]), 0.0, mix)
            self._incidents(start, raw)
        return self.out

    def _residuals(self, start: int, end: int, past: np.ndarray) -> None:
        spec, x = self.spec, self.x
        hx = x[past]
        g_median, g_scale = _robust(hx)
        floor = max(0.5 * float(np.mean(np.abs(hx - g_median))), 1e-6 * (1.0 + abs(g_median)), 1e-9)
        median = np.full(end - start, g_median)
        scale = np.full(end - start, g_scale)
        for keys in reversed(self.buckets):  # coarse first, so finer buckets overwrite where they can
            frame = pd.DataFrame({"k": keys[past], "x": hx})
            grouped = frame.groupby("k")["x"]
            b_median = grouped.median()
            b_mad = (frame["x"] - frame["k"].map(b_median)).abs().groupby(frame["k"]).median() * _MAD_TO_SIGMA
            here = pd.Series(keys[start:end])
            enough = here.map(grouped.size()).fillna(0).to_numpy() >= spec.min_bucket
            median[enough] = here.map(b_median).to_numpy()[enough]
            scale[enough] = here.map(b_mad).to_numpy()[enough]
        block = x[start:end]
        self.residuals[start:end, 0] = (block - median) / np.maximum(scale, floor)
        l_median, l_scale = _robust(hx[-spec.local_window :])
        self.residuals[start:end, 1] = (block - l_median) / max(l_scale, floor)
        vol_median = float(np.median(self.rolling_std[past]))
        eps = max(1e-3 * floor, 1e-12)
        self.residuals[start:end, 2] = np.log((self.rolling_std[start:end] + eps) / (vol_median + eps))
        self.residuals[start:end, :3] = np.nan_to_num(self.residuals[start:end, :3], nan=0.0, posinf=1e6, neginf=-1e6)
        if spec.activity_window:
            w = spec.activity_window
            a = np.abs(self.residuals[max(0, start - w + 1):end, 0])
            c = np.concatenate([[0.0], np.cumsum(np.minimum(a, spec.activity_cap))])
            idx = np.arange(start, end) - max(0, start - w + 1) + 1
            lo = np.maximum(idx - w, 0)
            self.residuals[start:end, 3] = (c[idx] - c[lo]) / (idx - lo)
        self.scored[start:end] = True

    def _reference(self, start: int, length: int) -> np.ndarray:
        """Indices of the last ``length`` scored, usable points before ``start``."""
        candidates = np.flatnonzero(self.scored[:start] & self.usable[:start])
        return candidates[-length:]

    def _evidence(self, start: int, end: int) -> np.ndarray:
        spec = self.spec
        ref = self._reference(start, spec.calibration)
        if len(ref) < 20:
            return np.zeros(end - start)
        magnitude = np.abs(self.residuals[ref])
        if spec.trim:
            cap = np.quantile(magnitude, 1 - spec.trim, axis=0)
            magnitude = np.minimum(magnitude, cap)
        mean, std = magnitude.mean(axis=0), np.maximum(magnitude.std(axis=0), 1e-6)
        z = (np.abs(self.residuals[start:end]) - mean) / std
        evidence = (-log_ndtr(-z) / _LN10).max(axis=1) * spec.sensitivity
        return np.asarray(evidence / (evidence + spec.evidence_half))

    def _forest(self, start: int, end: int) -> np.ndarray:
        spec = self.spec
        if start - self.forest_fitted_at >= spec.refit_every or self.forest is None:
            ref = self._reference(start, spec.forest_history)
            if len(ref) < 50:
                return np.zeros(end - start)
            self.forest = IsolationForest(
                n_estimators=spec.n_estimators, max_samples=min(256, len(ref)), random_state=spec.random_state
            ).fit(_features(self.residuals[ref]))
            self.forest_fitted_at = start
        return np.asarray(-self.forest.score_samples(_features(self.residuals[start:end])))

    def _incidents(self, start: int, raw: np.ndarray) -> None:
        spec = self.spec
        if spec.peak_mode:
            for offset, value in enumerate(raw):
                i = start + offset
                lo = max(0, i - spec.incident_points)
                prev = self.raw_hist[lo:i].max() if i > lo else 0.0
                self.raw_hist[i] = value
                self.out[i] = value if value > prev + spec.peak_margin else value * spec.incident_damping
            return
        for offset, value in enumerate(raw):
            i = start + offset
            if i <= self.incident_until:
                value *= spec.incident_damping
                if not spec.learn_from_incidents:
                    self.usable[i] = False
            elif value >= spec.alert_score:
                self.incident_until = i + spec.incident_points
                if not spec.learn_from_incidents:
                    self.usable[i] = False
            self.out[i] = value


def _features(residuals: np.ndarray) -> Any:
    """Signed log compression, so a 1000-sigma spike does not squash every other split of the forest."""
    return np.sign(residuals) * np.log1p(np.abs(residuals))
