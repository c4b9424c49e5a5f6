"""Value-anomaly detector: robust baselines and subsequence novelty, calibrated by their tails, point by point.

Every point is scored against data before it only. Points are scored in blocks of ``block`` points that
share the history ending where the block starts, so scoring a whole series and scoring only its latest
points give the same numbers. For each point:

1. **Three deviations from the past**, over the last ``history`` usable points (not NaN, not in
   ``exclude``):

   * *seasonal*: the robust z-score ``(x - median) / (1.4826 * MAD)`` in the point's hour-of-week bucket,
     falling back to its hour-of-day bucket and then to the whole history when a bucket holds fewer than
     ``min_bucket`` points;
   * *local*: the same against the last ``local_window`` usable points (a drift the seasonal baseline
     would absorb late);
   * *novelty*: how far the recent shape is from everything seen before. The point's window is the
     means of ``novelty_taps`` consecutive runs of ``novelty_step`` points ending at the point; its novelty
     is the RMS distance to the nearest window of the history that ends at least one window span before
     the block (the left matrix profile of the smoothed series, without trivial self-matches). A level,
     slope or pattern the series has shown before is near something; a new one is not.

   Robust scales are floored at half the history's mean absolute deviation, so a constant stretch does
   not turn the next wobble into an infinite z-score.
2. **Calibration by the tail.** Each magnitude becomes evidence ``S = -log10 P(X >= observed)``, where
   ``X`` is the same magnitude over the last ``calibration`` scored points: the empirical frequency below
   their top ``tail`` fraction, an exponential tail fitted to that top fraction above it (peaks over a
   threshold). A series whose deviations are often large needs a larger one to score the same, and a
   deviation larger than any seen keeps gaining evidence with its size.
3. **Score.** (The value monitors' ``model: detector`` takes the evidence of step 2 and judges it with its
   own calibrated threshold; steps 3 and 4 are this detector's own alerting, which NAB scores.) The
   largest evidence, times ``sensitivity``, maps to ``S / (S + h)``, where ``h`` puts
   ``alert_score`` at ``alert_evidence``: a point alerts when its calibrated tail probability is below
   ``10 ** -alert_evidence`` (at sensitivity 1).
4. **Incidents.** A point scoring ``alert_score`` or more opens an incident. It stays open while the
   evidence keeps coming back to ``incident_hold`` times ``alert_evidence`` or more, and closes after
   ``incident_points`` points in a row below that; scores inside it are multiplied by
   ``incident_damping``. One alert per event, as a monitor with an open incident does not page again,
   however long the event lasts, and the novelty of a new pattern (which stays new for a window span)
   does not page twice. The detector keeps learning from those points (a level shift becomes the new
   normal); points the caller passes in ``exclude`` (already inside known incidents) stay out of every
   baseline, window and calibration (a window holding one has no novelty), and neither open nor hold an
   incident.

Steps 1 and 2 give `AnomalyDetector.evidence_series`; steps 3 and 4 are `AnomalyDetector.score_evidence`,
so a benchmark can try several thresholds on one pass. Scores are in [0, 1): mostly 0.2 to 0.6 for
ordinary points (a median near 0.4), ``alert_score`` (0.8) and above for anomalies.

``benchmarks/nab.py`` measures the method on the Numenta Anomaly Benchmark. The defaults are the
configuration its leave-one-category-out procedure (``nab.py --cv``) chooses when trained on all four
categories; an Isolation Forest and a volatility residual of earlier versions were dropped after they
added false alarms there and no detections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from config.errors import DataOpsError

_LN10 = float(np.log(10.0))
_MAD_TO_SIGMA = 1.4826
_COLUMNS = 3  # seasonal, local, novelty
_MIN_REFERENCE = 20  # scored points a column needs before its evidence counts
_MIN_TAIL = 10  # points the exponential tail is fitted on, at least
_POSITIVE_FIELDS = (
    "sensitivity",
    "alert_evidence",
    "history",
    "local_window",
    "min_history",
    "min_bucket",
    "novelty_taps",
    "novelty_step",
    "calibration",
    "tail",
    "block",
)

SCORING_FIELDS = ("sensitivity", "alert_score", "alert_evidence", "incident_points", "incident_hold", "incident_damping")
"""Fields that only turn evidence into scores; `AnomalyDetector.evidence_series` does not read them."""


class AnomalyDetectorError(DataOpsError, ValueError):
    """A detector setting or an input series the detector cannot use; the message names the bad value."""


@dataclass(frozen=True, kw_only=True)
class AnomalyDetectorSpec:
    """How the detector scores. The defaults are what ``benchmarks/nab.py --cv`` chooses on all four NAB categories."""

    sensitivity: float = 1.0
    """Multiplies the evidence before it becomes a score: 2.0 alerts on deviations half as improbable in
    log10 terms, 0.5 only on ones twice as improbable."""
    alert_score: float = 0.8
    """Score at or above which a point alerts and opens an incident."""
    alert_evidence: float = 3.4
    """Evidence (-log10 of the calibrated tail probability) that scores ``alert_score`` at sensitivity 1."""
    history: int = 3000
    """Usable past points the baselines and the novelty search look at."""
    local_window: int = 100
    """Usable past points of the local baseline."""
    min_history: int = 100
    """Usable past points needed before a point is scored; earlier points score 0."""
    min_bucket: int = 3
    """Points a seasonal bucket needs before it is used instead of its coarser parent."""
    novelty_taps: int = 8
    """Means in a novelty window."""
    novelty_step: int = 8
    """Points averaged into each mean of a novelty window (the window spans taps * step points)."""
    calibration: int = 2000
    """Scored points whose magnitudes calibrate the evidence."""
    tail: float = 0.05
    """Top fraction of the calibration points the exponential tail is fitted on."""
    block: int = 48
    """Points scored together against the history that ends where the block starts."""
    incident_points: int = 25
    """Quiet points after which an incident closes."""
    incident_hold: float = 0.5
    """Fraction of ``alert_evidence`` that keeps an open incident open (a quiet point is below it)."""
    incident_damping: float = 0.5
    """Factor applied to scores inside an open incident."""

    def __post_init__(self) -> None:
        if not 0 < self.alert_score < 1:
            raise AnomalyDetectorError(f"alert_score must be in (0, 1), got {self.alert_score}")
        if not 0 <= self.incident_damping <= 1:
            raise AnomalyDetectorError(f"incident_damping must be in [0, 1], got {self.incident_damping}")
        if not 0 < self.tail < 1:
            raise AnomalyDetectorError(f"tail must be in (0, 1), got {self.tail}")
        if not 0 < self.incident_hold <= 1:
            raise AnomalyDetectorError(f"incident_hold must be in (0, 1], got {self.incident_hold}")
        for name in _POSITIVE_FIELDS:
            if not getattr(self, name) > 0:
                raise AnomalyDetectorError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.incident_points < 0:
            raise AnomalyDetectorError(f"incident_points must be >= 0, got {self.incident_points}")

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
        ``exclude`` flags points (inside known incidents, say) that no baseline, reference window or
        calibration may learn from; they are still scored.
        """
        return self.score_evidence(self.evidence_series(timestamps, values, exclude=exclude), exclude=exclude)

    def score_latest(
        self,
        timestamps: Sequence[datetime] | pd.DatetimeIndex | pd.Series,
        values: Sequence[float] | np.ndarray,
        n_latest: int,
        exclude: Sequence[bool] | np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores of the last ``n_latest`` points, each against the history before it (a live monitor's view)."""
        if n_latest <= 0:
            return np.zeros(0)
        return self.score_series(timestamps, values, exclude=exclude)[-n_latest:]

    def evidence_series(
        self,
        timestamps: Sequence[datetime] | pd.DatetimeIndex | pd.Series,
        values: Sequence[float] | np.ndarray,
        *,
        exclude: Sequence[bool] | np.ndarray | None = None,
    ) -> np.ndarray:
        """The strongest calibrated evidence of every point (steps 1 and 2), before sensitivity and incidents."""
        x = np.asarray(values, dtype=float)
        stamps = pd.DatetimeIndex(pd.to_datetime(timestamps))
        if len(stamps) != len(x):
            raise AnomalyDetectorError(f"{len(stamps)} timestamps but {len(x)} values")
        return _Pass(self.spec, stamps, x, ~np.isnan(x) & ~_flags(exclude, len(x))).run()

    def score_evidence(self, evidence: np.ndarray, *, exclude: Sequence[bool] | np.ndarray | None = None) -> np.ndarray:
        """Scores from `evidence_series` (steps 3 and 4): the mapping into [0, 1) and the incidents' damping."""
        spec = self.spec
        strongest = np.asarray(evidence, dtype=float) * spec.sensitivity
        scores = strongest / (strongest + spec.evidence_half)
        known = _flags(exclude, len(scores))  # inside known incidents: they neither open nor hold one
        alerts = np.flatnonzero((scores >= spec.alert_score) & ~known)
        holding = np.flatnonzero(((strongest >= spec.incident_hold * spec.alert_evidence) | (scores >= spec.alert_score)) & ~known)
        # an incident ends incident_points points after the last holding point before a longer quiet stretch
        ends = np.append(holding[:-1][np.diff(holding) > spec.incident_points], holding[-1:]) + spec.incident_points
        i = 0
        while i < len(alerts):  # one pass per incident
            opened = int(alerts[i])
            closed = int(ends[np.searchsorted(ends, opened + spec.incident_points)])
            scores[opened + 1 : closed + 1] *= spec.incident_damping
            i = int(np.searchsorted(alerts, closed, side="right"))
        return np.asarray(scores)


def _flags(exclude: Sequence[bool] | np.ndarray | None, n: int) -> np.ndarray:
    if exclude is None:
        return np.zeros(n, dtype=bool)
    flags = np.asarray(exclude, dtype=bool)
    if flags.shape != (n,):
        raise AnomalyDetectorError(f"exclude has {len(flags)} flags for {n} values")
    return flags


def _robust(values: np.ndarray) -> tuple[float, float]:
    """Median, and MAD scaled to a normal standard deviation."""
    median = float(np.median(values))
    return median, _MAD_TO_SIGMA * float(np.median(np.abs(values - median)))


def _tail_evidence(reference: np.ndarray, observed: np.ndarray, tail: float) -> np.ndarray:
    """``-log10 P(X >= observed)`` for X distributed as ``reference``: empirical, with an exponential top ``tail``."""
    ref = np.sort(reference)
    n = len(ref)
    k = min(max(_MIN_TAIL, int(tail * n)), n - 1)
    threshold = ref[n - k - 1]
    scale = max(float(np.mean(ref[n - k :] - threshold)), 1e-9 * (1.0 + abs(float(threshold))), 1e-12)
    at_least = n - np.searchsorted(ref, observed, side="left")
    empirical = -np.log10((at_least + 1) / (n + 1))
    exponential = -np.log10(k / n) + (observed - threshold) / (scale * _LN10)
    return np.asarray(np.maximum(np.where(observed > threshold, exponential, empirical), 0.0))


class _Pass:
    """One pass over one series: the state that scoring block after block builds up."""

    def __init__(self, spec: AnomalyDetectorSpec, stamps: pd.DatetimeIndex, x: np.ndarray, usable: np.ndarray) -> None:
        self.spec, self.x, self.usable = spec, x, usable
        n = len(x)
        hour = np.asarray(stamps.hour, dtype=np.int64)
        self.buckets = (hour, np.asarray(stamps.dayofweek, dtype=np.int64) * 24 + hour)  # coarse to fine
        # novelty windows: row i holds the means of the taps ending at point i; NaN where incomplete
        step, taps = spec.novelty_step, spec.novelty_taps
        lags = np.arange(taps - 1, -1, -1) * step
        rows = np.arange(n)[:, None] - lags[None, :]
        self.span = taps * step
        self.windows = _tap_means(np.where(usable, x, np.nan), step, rows)  # excluded values never count
        self.magnitudes = np.full((n, _COLUMNS), np.nan)
        self.scored = np.zeros(n, dtype=bool)
        self.evidence = np.zeros(n)

    def run(self) -> np.ndarray:
        spec, n = self.spec, len(self.x)
        for start in range(0, n, spec.block):
            end = min(n, start + spec.block)
            first = max(0, start - spec.history)
            past = first + np.flatnonzero(self.usable[first:start])
            if len(past) < spec.min_history:
                continue
            self._deviations(start, end, past)
            self.magnitudes[start:end, 2] = self._novelty(start, end)
            self.scored[start:end] = True
            self.evidence[start:end] = np.where(np.isnan(self.x[start:end]), 0.0, self._calibrated(start, end))
        return self.evidence

    def _deviations(self, start: int, end: int, past: np.ndarray) -> None:
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
        residuals = np.column_stack([(block - medians) / np.maximum(scales, floor), (block - local_median) / max(local_scale, floor)])
        self.magnitudes[start:end, :2] = np.minimum(np.abs(residuals), 1e6)  # NaN (a NaN value) stays NaN

    def _novelty(self, start: int, end: int) -> np.ndarray:
        """RMS distance of each point's window to the nearest complete window ending a span before the block."""
        last = start - self.span  # windows ending here or earlier do not overlap the block's first window
        candidates = np.arange(max(0, last - self.spec.history + 1), max(0, last + 1))
        reference = self.windows[candidates]
        reference = reference[~np.isnan(reference).any(axis=1)]
        if len(reference) == 0:
            return np.full(end - start, np.nan)
        centre = float(reference.mean())  # distances by dot products lose less precision near zero
        reference = reference - centre
        query = self.windows[start:end] - centre  # a window holding an excluded value has no novelty
        distance2 = ((query**2).sum(axis=1)[:, None] + (reference**2).sum(axis=1)[None, :] - 2.0 * query @ reference.T).min(axis=1)
        return np.asarray(np.sqrt(np.maximum(distance2, 0.0) / self.spec.novelty_taps))  # NaN rows stay NaN

    def _calibrated(self, start: int, end: int) -> np.ndarray:
        """Largest evidence over the columns, each against its last ``calibration`` scored magnitudes."""
        spec = self.spec
        reference = np.flatnonzero(self.scored[:start] & self.usable[:start])[-spec.calibration :]
        strongest = np.zeros(end - start)
        for c in range(_COLUMNS):
            known = self.magnitudes[reference, c]
            known = known[~np.isnan(known)]
            observed = self.magnitudes[start:end, c]
            if len(known) < _MIN_REFERENCE:
                continue  # the novelty column starts later than the others
            evidence = _tail_evidence(known, np.nan_to_num(observed, nan=-np.inf), spec.tail)
            strongest = np.maximum(strongest, np.where(np.isnan(observed), 0.0, evidence))
        return strongest


def _tap_means(values: np.ndarray, step: int, rows: np.ndarray) -> np.ndarray:
    """Means of ``step`` points ending at each index of ``rows`` (NaN where a run is cut short or holds NaN)."""
    means = pd.Series(values).rolling(step, min_periods=step).mean().to_numpy()
    out = np.full(rows.shape, np.nan)
    inside = rows >= 0
    out[inside] = means[rows[inside]]
    return out
