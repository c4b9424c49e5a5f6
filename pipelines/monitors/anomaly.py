"""Value-anomaly detector of the monitors: robust seasonal baselines and an Isolation Forest, calibrated.

Every point is scored against data before it only. Points are scored in blocks of ``block`` points that
share the history ending where the block starts, so scoring a whole series and scoring only its latest
points give the same numbers. For each point:

1. **Residuals against robust baselines from the past.** Each is a robust z-score ``(x - median) /
   (1.4826 * MAD)`` over the last ``history`` usable points (not NaN, not in ``exclude``):

   * *seasonal*: the median and MAD of the point's hour-of-week bucket, falling back to its hour-of-day
     bucket and then to the whole history when a bucket holds fewer than ``min_bucket`` points;
   * *local*: the median and MAD of the last ``local_window`` usable points (drifts that a slow seasonal
     baseline would absorb late);
   * *volatility*: the log ratio of the standard deviation over the last ``volatility_window`` points to
     its median over the history (a signal that flat-lines or turns noisy).

   Scales are floored at half the history's mean absolute deviation, so a constant stretch does not turn
   the next wobble into an infinite z-score.
2. **Isolation Forest** (scikit-learn, fixed ``random_state``) over the three residuals, log-compressed,
   refitted every ``refit_every`` points on the last ``forest_history`` usable points. It scores how
   isolated the combination is (a normal level with an abnormal volatility, say); no single residual
   has to be extreme.
3. **Calibration.** The three residual magnitudes and the forest's score become evidence ``S = -log10
   P(value >= observed)`` under a normal fit (mean, standard deviation) of the same quantity over the last
   ``calibration`` scored points, so a series with heavy-tailed residuals needs a larger deviation to
   score the same. The largest evidence, times ``sensitivity``, maps to the score ``S / (S + h)``, where
   ``h`` puts ``alert_score`` at ``alert_evidence``.
4. **Incidents.** A point scoring ``alert_score`` or more opens an incident for ``incident_points``
   points, during which scores are multiplied by ``incident_damping``: one alert per event, as a monitor
   with an open incident does not page again. The detector keeps learning from those points (a level
   shift becomes the new normal); points the caller passes in ``exclude`` (already inside known incidents)
   stay out of every baseline, calibration and forest.

Scores are in [0, 1): around 0.2 to 0.5 for ordinary points, ``alert_score`` (0.8) and above for
anomalies. ``benchmarks/nab.py`` measures the method on the Numenta Anomaly Benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from scipy.special import log_ndtr
from sklearn.ensemble import IsolationForest

from config.errors import DataOpsError

_LN10 = float(np.log(10.0))
_MAD_TO_SIGMA = 1.4826
_RESIDUALS = 3  # seasonal, local, volatility; the forest's score is the fourth calibrated column
_POSITIVE_FIELDS = (
    "sensitivity", "alert_evidence", "history", "local_window", "volatility_window", "min_history",
    "min_bucket", "calibration", "block", "forest_history", "refit_every", "n_estimators",
)  # fmt: skip


class AnomalyDetectorError(DataOpsError, ValueError):
    """A detector setting or an input series the detector cannot use; the message names the bad value."""


@dataclass(frozen=True, kw_only=True)
class AnomalyDetectorSpec:
    """How the detector scores. The defaults are the configuration benchmarked on NAB (benchmarks/nab.py)."""

    sensitivity: float = 1.0
    """Multiplies the evidence before it becomes a score: 2.0 alerts on deviations half as improbable in
    log10 terms (tail probability 1e-4.6 instead of 1e-9.3), 0.5 only on ones twice as improbable."""
    alert_score: float = 0.8
    """Score at or above which a point opens an incident (and the monitors' default threshold)."""
    alert_evidence: float = 9.3
    """Evidence (-log10 of the calibrated tail probability) that scores ``alert_score`` at sensitivity 1."""
    history: int = 3000
    """Usable past points the baselines look at."""
    local_window: int = 100
    """Usable past points of the local baseline."""
    volatility_window: int = 12
    """Points of the rolling standard deviation behind the volatility residual."""
    min_history: int = 100
    """Usable past points needed before a point is scored; earlier points score 0."""
    min_bucket: int = 3
    """Points a seasonal bucket needs before it is used instead of its coarser parent."""
    calibration: int = 2000
    """Scored points whose residuals calibrate the evidence."""
    block: int = 48
    """Points scored together against the history that ends where the block starts."""
    forest_history: int = 2000
    """Usable scored points the Isolation Forest is fitted on."""
    refit_every: int = 256
    """Points between refits of the forest."""
    n_estimators: int = 100
    random_state: int = 0
    incident_points: int = 100
    """Points after an alert during which scores are damped."""
    incident_damping: float = 0.5
    """Factor applied to scores inside an open incident."""

    def __post_init__(self) -> None:
        if not 0 < self.alert_score < 1:
            raise AnomalyDetectorError(f"alert_score must be in (0, 1), got {self.alert_score}")
        if not 0 <= self.incident_damping <= 1:
            raise AnomalyDetectorError(f"incident_damping must be in [0, 1], got {self.incident_damping}")
        for name in _POSITIVE_FIELDS:
            if not getattr(self, name) > 0:
                raise AnomalyDetectorError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def evidence_half(self) -> float:
        """Evidence that scores 0.5."""
        return self.alert_evidence * (1.0 - self.alert_score) / self.alert_score


class AnomalyDetector:
    """Scores a series point by point with past data only; the module docstring explains the method."""

    def __init__(self, spec: AnomalyDetectorSpec | None = None) -> None:
        self.spec = spec or AnomalyDetectorSpec()

    def score_series(
        self,
        timestamps: Sequence[datetime] | pd.DatetimeIndex | pd.Series,
        values: Sequence[float] | np.ndarray,
        *,
        exclude: Sequence[bool] | np.ndarray | None = None,
    ) -> np.ndarray:
        """A score in [0, 1) for every point, in order, each against the points before it.

        NaN values score 0, and so does every point before ``min_history`` usable points have passed.
        ``exclude`` flags points (inside known incidents, say) that no baseline, calibration or forest
        may learn from; they are still scored.
        """
        x = np.asarray(values, dtype=float)
        stamps = pd.DatetimeIndex(pd.to_datetime(timestamps))
        if len(stamps) != len(x):
            raise AnomalyDetectorError(f"{len(stamps)} timestamps but {len(x)} values")
        usable = ~np.isnan(x)
        if exclude is not None:
            flags = np.asarray(exclude, dtype=bool)
            if flags.shape != x.shape:
                raise AnomalyDetectorError(f"exclude has {len(flags)} flags for {len(x)} values")
            usable &= ~flags
        return _Pass(self.spec, stamps, x, usable).run()

    def score_latest(
        self,
        timestamps: Sequence[datetime] | pd.DatetimeIndex | pd.Series,
        values: Sequence[float] | np.ndarray,
        n_latest: int,
        exclude: Sequence[bool] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores of the last ``n_latest`` points, each against the history before it (the live monitors)."""
        if n_latest <= 0:
            return np.zeros(0)
        return self.score_series(timestamps, values, exclude=exclude)[-n_latest:]


def _robust(values: np.ndarray) -> tuple[float, float]:
    """Median, and MAD scaled to a normal standard deviation."""
    median = float(np.median(values))
    return median, _MAD_TO_SIGMA * float(np.median(np.abs(values - median)))


def _compress(residuals: np.ndarray) -> np.ndarray:
    """Signed log, so one 1000-sigma spike does not squash every other split of the forest."""
    return np.asarray(np.sign(residuals) * np.log1p(np.abs(residuals)))


class _Pass:
    """One pass over one series: the state that scoring block after block builds up."""

    def __init__(self, spec: AnomalyDetectorSpec, stamps: pd.DatetimeIndex, x: np.ndarray, usable: np.ndarray) -> None:
        self.spec, self.x, self.usable = spec, x, usable
        n = len(x)
        hour = np.asarray(stamps.hour, dtype=np.int64)
        self.buckets = (hour, np.asarray(stamps.dayofweek, dtype=np.int64) * 24 + hour)  # coarse to fine
        learnable = pd.Series(np.where(usable, x, np.nan))  # pandas skips NaN: excluded values never count
        self.rolling_std = learnable.rolling(spec.volatility_window, min_periods=2).std().fillna(0.0).to_numpy()
        self.residuals = np.zeros((n, _RESIDUALS))
        self.magnitudes = np.full((n, _RESIDUALS + 1), np.nan)  # |residuals| and the forest's score
        self.scored = np.zeros(n, dtype=bool)
        self.scores = np.zeros(n)
        self.forest: IsolationForest | None = None
        self.forest_fitted_at = 0
        self.incident_until = -1

    def run(self) -> np.ndarray:
        spec, n = self.spec, len(self.x)
        for start in range(0, n, spec.block):
            end = min(n, start + spec.block)
            first = max(0, start - spec.history)
            past = first + np.flatnonzero(self.usable[first:start])
            if len(past) < spec.min_history:
                continue
            self._residuals(start, end, past)
            self.magnitudes[start:end, :_RESIDUALS] = np.abs(self.residuals[start:end])
            self.magnitudes[start:end, _RESIDUALS] = self._forest(start, end)
            self.scored[start:end] = True
            raw = self._calibrated(start, end)
            self._incidents(start, np.where(np.isnan(self.x[start:end]), 0.0, raw))
        return self.scores

    def _residuals(self, start: int, end: int, past: np.ndarray) -> None:
        spec, block = self.spec, self.x[start:end]
        hx = self.x[past]
        median, scale = _robust(hx)
        floor = max(0.5 * float(np.mean(np.abs(hx - median))), 1e-6 * (1.0 + abs(median)), 1e-9)
        medians, scales = np.full(end - start, median), np.full(end - start, scale)
        for keys in self.buckets:  # a finer bucket overwrites its parent where it holds enough points
            frame = pd.DataFrame({"k": keys[past], "x": hx})
            grouped = frame.groupby("k")["x"]
            b_median = grouped.median()
            b_scale = (frame["x"] - frame["k"].map(b_median)).abs().groupby(frame["k"]).median() * _MAD_TO_SIGMA
            here = pd.Series(keys[start:end])
            enough = here.map(grouped.size()).fillna(0).to_numpy() >= spec.min_bucket
            medians[enough] = here.map(b_median).to_numpy()[enough]
            scales[enough] = here.map(b_scale).to_numpy()[enough]
        local_median, local_scale = _robust(hx[-spec.local_window :])
        typical_std = float(np.median(self.rolling_std[past]))
        eps = max(1e-3 * floor, 1e-12)
        residuals = np.column_stack(
            [
                (block - medians) / np.maximum(scales, floor),
                (block - local_median) / max(local_scale, floor),
                np.log((self.rolling_std[start:end] + eps) / (typical_std + eps)),
            ]
        )
        self.residuals[start:end] = np.nan_to_num(residuals, nan=0.0, posinf=1e6, neginf=-1e6)

    def _reference(self, start: int, length: int) -> np.ndarray:
        """The last ``length`` scored, usable points before ``start``."""
        return np.flatnonzero(self.scored[:start] & self.usable[:start])[-length:]

    def _forest(self, start: int, end: int) -> np.ndarray:
        spec = self.spec
        if self.forest is None or start - self.forest_fitted_at >= spec.refit_every:
            reference = self._reference(start, spec.forest_history)
            if len(reference) < 50:
                return np.full(end - start, np.nan)
            self.forest = IsolationForest(
                n_estimators=spec.n_estimators, max_samples=min(256, len(reference)), random_state=spec.random_state
            ).fit(_compress(self.residuals[reference]))
            self.forest_fitted_at = start
        return np.asarray(-self.forest.score_samples(_compress(self.residuals[start:end])))

    def _calibrated(self, start: int, end: int) -> np.ndarray:
        """Largest evidence over the residuals and the forest, mapped into [0, 1)."""
        spec = self.spec
        reference = self._reference(start, spec.calibration)
        if len(reference) < 20:
            return np.zeros(end - start)
        history = self.magnitudes[reference]
        columns = history.shape[1]
        mean, std, valid = np.zeros(columns), np.ones(columns), np.zeros(columns, dtype=bool)
        for c in range(columns):
            known = history[~np.isnan(history[:, c]), c]
            if len(known) >= 20:  # the forest's column starts empty
                mean[c], std[c], valid[c] = known.mean(), max(float(known.std()), 1e-6), True
        evidence = -log_ndtr(-(self.magnitudes[start:end] - mean) / std) / _LN10
        evidence = np.where(valid & ~np.isnan(evidence), evidence, 0.0)
        strongest = evidence.max(axis=1) * spec.sensitivity
        return np.asarray(strongest / (strongest + spec.evidence_half))

    def _incidents(self, start: int, raw: np.ndarray) -> None:
        spec = self.spec
        for offset, value in enumerate(raw):
            i = start + offset
            if i <= self.incident_until:
                value *= spec.incident_damping
            elif value >= spec.alert_score and self.usable[i]:  # an excluded point is inside a known incident
                self.incident_until = i + spec.incident_points
            self.scores[i] = value
