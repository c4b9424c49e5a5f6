"""Numenta Anomaly Benchmark (NAB v1.1) scoring, reimplemented with numpy.

Follows github.com/numenta/NAB at ea702d75 (`nab/sweeper.py`, `nab/optimizer.py`, `nab/runner.py`):

* A file's first ``min(floor(0.15 * rows), 0.15 * 5000)`` rows are probation: detections there are
  ignored, and so are the rows of any window that falls inside it.
* A row is a detection when its anomaly score is ``>= threshold``.
* Each labelled window scores once: the earliest detection inside it earns
  ``tpWeight * sigma(-(right - i + 1) / width) / sigma(-1)``, with ``sigma(y) = 2 / (1 + e^(5y)) - 1``
  (y = -1 at the left edge, close to 0 at the right edge); a window without detection costs ``-fnWeight``.
* Every detection outside all windows costs ``fpWeight * sigma((i - right_prev) / (width_prev - 1))``,
  where ``right_prev``/``width_prev`` belong to the closest preceding window (``sigma`` is -1 beyond 3),
  or ``-fpWeight`` when no window precedes it.
* One threshold per detector and profile for the whole corpus, chosen by sweeping every distinct score
  (ties go to the highest threshold, as NAB's stable sort does).
* Normalised score ``100 * (S - S_null) / (S_perfect - S_null)`` with ``S_null = -fnWeight * windows``
  (the detector that never fires) and ``S_perfect = tpWeight * windows``.

Beyond NAB: leave-one-category-out cross-validation (`loco_choices`, `loco_thresholds`), which chooses a
configuration or threshold for each category on the other categories' files only.

The per-file ``Total_Count`` in NAB's published ``*_scores.csv`` files is the file's row count (they
were written by the scorer before the sweeper); `FileScore.rows` reproduces it, while ``tp + tn + fp +
fn`` counts only the scored (post-probation) rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PROBATION_PERCENT = 0.15
NO_DETECTION_THRESHOLD = 1.1  # NAB's sweep starts above every score in [0, 1]
OUTSIDE = -1  # window id of a scored row outside every window
PROBATION = -2  # window id of a probation row


class NabScoringError(ValueError):
    """Labels, profiles or scores that NAB scoring cannot use; the message names the bad value."""


@dataclass(frozen=True, kw_only=True)
class CostProfile:
    """One NAB application profile (its cost matrix); tnWeight is unused by NAB and left out."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile(name="standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0),
    "reward_low_FP_rate": CostProfile(name="reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    "reward_low_FN_rate": CostProfile(name="reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
}


def load_profiles(path: Path) -> dict[str, CostProfile]:
    """Profiles from NAB's ``config/profiles.json``."""
    raw = json.loads(path.read_text())
    return {
        name: CostProfile(
            name=name,
            tp_weight=float(body["CostMatrix"]["tpWeight"]),
            fp_weight=float(body["CostMatrix"]["fpWeight"]),
            fn_weight=float(body["CostMatrix"]["fnWeight"]),
        )
        for name, body in raw.items()
    }


Windows = list[tuple[pd.Timestamp, pd.Timestamp]]


def load_windows(path: Path) -> dict[str, Windows]:
    """Windows per data file (``"realKnownCause/nyc_taxi.csv"``) from ``combined_windows.json``."""
    raw = json.loads(path.read_text())
    return {name: [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in pairs] for name, pairs in raw.items()}


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> float:
    """Rows with index below this are probation (NAB's ``getProbationPeriod``)."""
    return min(math.floor(percent * rows), percent * 5000)


def scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    """NAB's ``2 / (1 + e^(5y)) - 1``, and -1 beyond y = 3."""
    position = np.asarray(position, dtype=float)
    with np.errstate(over="ignore"):
        value = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position > 3.0, -1.0, value)


_MAX_TP = float(scaled_sigmoid(np.array(-1.0)))


@dataclass(frozen=True, kw_only=True)
class FileSweep:
    """One file's rows laid against its windows, independent of threshold and profile.

    ``window_id`` is the window's index in the file (``OUTSIDE``, ``PROBATION``); ``tp_value`` is the
    unweighted reward of a first detection at that row (in-window rows), ``fp_value`` the unweighted
    cost of a detection there (outside rows, negative).
    """

    name: str
    scores: np.ndarray
    window_id: np.ndarray
    tp_value: np.ndarray
    fp_value: np.ndarray
    window_starts: tuple[int, ...]
    scored_windows: int

    @property
    def rows(self) -> int:
        return len(self.scores)


def _index_of(stamps: np.ndarray, stamp: pd.Timestamp, name: str) -> int:
    key = np.datetime64(stamp.to_datetime64(), "ns")
    i = int(np.searchsorted(stamps, key))
    if i >= len(stamps) or stamps[i] != key:
        raise NabScoringError(f"window limit {stamp} is not a timestamp of {name}; NAB needs exact timestamps")
    return i


def sweep_file(
    name: str,
    timestamps: Sequence[object] | np.ndarray | pd.Series,
    scores: Sequence[float] | np.ndarray | pd.Series,
    windows: Windows,
    *,
    probation_percent: float = PROBATION_PERCENT,
) -> FileSweep:
    """Lay one file's anomaly scores against its windows (NAB's ``Sweeper.calcSweepScore``)."""
    stamps = pd.to_datetime(pd.Series(timestamps)).to_numpy(dtype="datetime64[ns]")
    values = np.asarray(scores, dtype=float)
    if len(stamps) != len(values):
        raise NabScoringError(f"{name}: {len(stamps)} timestamps but {len(values)} scores")
    if np.isnan(values).any():
        raise NabScoringError(f"{name}: anomaly scores contain NaN at rows {np.flatnonzero(np.isnan(values))[:5].tolist()}")
    n = len(values)
    rows = np.arange(n)
    window_id = np.full(n, OUTSIDE, dtype=np.int64)
    tp_value = np.zeros(n)
    fp_value = np.full(n, -1.0)  # before any window
    starts: list[int] = []
    bounds = sorted((_index_of(stamps, a, name), _index_of(stamps, b, name)) for a, b in windows)
    for k, (left, right) in enumerate(bounds):
        if starts and left <= bounds[k - 1][1]:
            raise NabScoringError(f"{name}: windows {k - 1} and {k} overlap")
        width = right - left + 1
        inside = slice(left, right + 1)
        window_id[inside] = k
        tp_value[inside] = scaled_sigmoid(-(right - rows[inside] + 1) / width) / _MAX_TP
        end = bounds[k + 1][0] if k + 1 < len(bounds) else n
        after = slice(right + 1, end)
        # NAB divides by width - 1; a one-row window would divide by zero there, and does in NAB too
        fp_value[after] = scaled_sigmoid(np.abs(rows[after] - right) / float(width - 1)) if width > 1 else -1.0
        starts.append(left)
    probation = rows < probation_length(n, probation_percent)
    scored_windows = len(set(window_id[~probation & (window_id >= 0)].tolist()))
    window_id = np.where(probation, PROBATION, window_id)
    return FileSweep(
        name=name,
        scores=values,
        window_id=window_id,
        tp_value=tp_value,
        fp_value=fp_value,
        window_starts=tuple(starts),
        scored_windows=scored_windows,
    )


@dataclass(frozen=True, kw_only=True)
class FileScore:
    """One file's NAB score at one threshold, with the row counts of NAB's score CSVs."""

    name: str
    threshold: float
    score: float
    tp: int
    tn: int
    fp: int
    fn: int
    rows: int
    windows: int  # windows with rows after probation
    windows_detected: int
    contributions: np.ndarray  # NAB's S(t) column: each window's TP/FN at its first row, each FP at its row


def score_file(sweep: FileSweep, profile: CostProfile, threshold: float) -> FileScore:
    """Score one file at a fixed threshold (NAB's ``scoreDataSet``)."""
    scored = sweep.window_id != PROBATION
    detected = scored & (sweep.scores >= threshold)
    outside = sweep.window_id == OUTSIDE
    contributions = np.zeros(sweep.rows)
    fp_rows = detected & outside
    contributions[fp_rows] = sweep.fp_value[fp_rows] * profile.fp_weight
    detected_windows = 0
    for k, start in enumerate(sweep.window_starts):
        in_window = sweep.window_id == k
        if not in_window.any():
            continue  # the whole window is in probation: NAB's sweeper ignores it
        hits = np.flatnonzero(in_window & detected)
        if len(hits):
            contributions[start] = sweep.tp_value[hits[0]] * profile.tp_weight
            detected_windows += 1
        else:
            contributions[start] = -profile.fn_weight
    inside = sweep.window_id >= 0
    return FileScore(
        name=sweep.name,
        threshold=threshold,
        score=float(contributions.sum()),
        tp=int((detected & inside).sum()),
        tn=int((scored & ~detected & outside).sum()),
        fp=int(fp_rows.sum()),
        fn=int((~detected & inside).sum()),
        rows=sweep.rows,
        windows=sweep.scored_windows,
        windows_detected=detected_windows,
        contributions=contributions,
    )


@dataclass(frozen=True, kw_only=True)
class ThresholdCurve:
    """Corpus score for every candidate threshold, highest threshold first."""

    thresholds: np.ndarray
    scores: np.ndarray

    def best(self) -> tuple[float, float]:
        """(threshold, score) of the best score; ties go to the highest threshold, as in NAB."""
        i = int(np.argmax(self.scores))
        return float(self.thresholds[i]), float(self.scores[i])


def threshold_curve(sweeps: Sequence[FileSweep], profile: CostProfile) -> ThresholdCurve:
    """Score the whole corpus at every distinct anomaly score (NAB's ``calcScoreByThreshold``)."""
    scores, values, groups = [], [], []
    offset = 0
    windows = 0
    for sweep in sweeps:
        keep = sweep.window_id != PROBATION
        wid = sweep.window_id[keep]
        scores.append(sweep.scores[keep])
        values.append(np.where(wid >= 0, sweep.tp_value[keep] * profile.tp_weight, sweep.fp_value[keep] * profile.fp_weight))
        groups.append(np.where(wid >= 0, wid + offset, OUTSIDE))
        offset += len(sweep.window_starts)
        windows += sweep.scored_windows
    s = np.concatenate(scores) if scores else np.zeros(0)
    v = np.concatenate(values) if values else np.zeros(0)
    g = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    order = np.argsort(-s, kind="stable")
    s, v, g = s[order], v[order], g[order]
    delta = np.where(g == OUTSIDE, v, 0.0)
    inside = g != OUTSIDE
    if inside.any():
        frame = pd.DataFrame({"g": g[inside], "v": v[inside]})
        best_so_far = frame.groupby("g")["v"].cummax()  # the earliest detection so far scores the window
        before = best_so_far.groupby(frame["g"]).shift(1).fillna(-profile.fn_weight)
        delta[inside] = (best_so_far - before).to_numpy()
    null = -profile.fn_weight * windows
    running = null + np.cumsum(delta)
    last_of_group = np.append(s[1:] != s[:-1], True) if len(s) else np.zeros(0, dtype=bool)
    return ThresholdCurve(
        thresholds=np.concatenate([[NO_DETECTION_THRESHOLD], s[last_of_group]]),
        scores=np.concatenate([[null], running[last_of_group]]),
    )


@dataclass(frozen=True, kw_only=True)
class CorpusScore:
    """A detector's result for one profile: the corpus-wide threshold and every file's score there."""

    profile: str
    threshold: float
    score: float
    null_score: float
    perfect_score: float
    files: tuple[FileScore, ...]

    @property
    def normalised(self) -> float:
        return normalise(self.score, null=self.null_score, perfect=self.perfect_score)


def normalise(score: float, *, null: float, perfect: float) -> float:
    """NAB's normalised score: 0 for the detector that never fires, 100 for a perfect one."""
    return 100.0 * (score - null) / (perfect - null)


def score_corpus(sweeps: Sequence[FileSweep], profile: CostProfile, threshold: float | None = None) -> CorpusScore:
    """Score every file at ``threshold``, or at the corpus-optimal threshold when it is None."""
    if threshold is None:
        threshold, _ = threshold_curve(sweeps, profile).best()
    files = tuple(score_file(sweep, profile, threshold) for sweep in sweeps)
    windows = sum(sweep.scored_windows for sweep in sweeps)
    return CorpusScore(
        profile=profile.name,
        threshold=threshold,
        score=sum(f.score for f in files),
        null_score=-profile.fn_weight * windows,
        perfect_score=profile.tp_weight * windows,
        files=files,
    )


def published_scores(results_dir: Path, files: Sequence[str], profiles: Sequence[str]) -> dict[str, dict[str, float]]:
    """Normalised scores of NAB's published detectors on ``files``, from ``results/<detector>/*_scores.csv``.

    Detectors whose CSVs lack any of the files are left out. The null detector's scores on the same
    files give S_null, and S_perfect = tpWeight * windows with windows = -S_null / fnWeight.
    """
    out: dict[str, dict[str, float]] = {}
    wanted = set(files)
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        row: dict[str, float] = {}
        for profile_name in profiles:
            csv = folder / f"{folder.name}_{profile_name}_scores.csv"
            null_csv = results_dir / "null" / f"null_{profile_name}_scores.csv"
            if not csv.exists() or not null_csv.exists():
                break
            table = pd.read_csv(csv)
            null_table = pd.read_csv(null_csv)
            table = table[table["File"].isin(wanted)]
            null_table = null_table[null_table["File"].isin(wanted)]
            if set(table["File"]) != wanted or set(null_table["File"]) != wanted:
                break
            profile = PROFILES[profile_name]
            null = float(null_table["Score"].sum())
            windows = -null / profile.fn_weight
            row[profile_name] = normalise(float(table["Score"].sum()), null=null, perfect=profile.tp_weight * windows)
        else:
            out[folder.name] = row
    return out


def published_file_scores(results_dir: Path, detector: str, profile: str) -> dict[str, float]:
    """Per-file scores of one published detector and profile, from ``results/<detector>/<detector>_<profile>_scores.csv``."""
    table = pd.read_csv(results_dir / detector / f"{detector}_{profile}_scores.csv")
    table = table[table["File"].str.contains("/", regex=False, na=False)]  # NAB adds a "Totals" row
    return {str(f): float(s) for f, s in zip(table["File"], table["Score"], strict=True)}


# -- leave-one-category-out cross-validation ---------------------------------------------------------
# NAB optimises each detector's threshold on the very files it scores. Here every category (the folder
# of a data file) is held out in turn: the configuration is chosen on the other categories' files only,
# then the held-out files are scored with it.


def category(name: str) -> str:
    """A data file's NAB category, the folder in ``realKnownCause/nyc_taxi.csv``."""
    return name.split("/", 1)[0]


def choose(table: Mapping[str, Mapping[str, float]]) -> str:
    """The candidate whose files score highest in total; ties go to the first candidate in ``table``."""
    best, best_total = "", -math.inf
    for label, scores in table.items():
        total = sum(scores.values())
        if total > best_total + 1e-9:
            best, best_total = label, total
    if not best:
        raise NabScoringError("no candidate configurations to choose from")
    return best


def loco_choices(table: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """For each category, the candidate `choose` picks from the other categories' files only.

    ``table`` maps each candidate (in declared order) to every file's score for one profile; the held-out
    category's scores are removed before `choose` sees the table, so they cannot influence its choice.
    """
    files = sorted({f for scores in table.values() for f in scores})
    out = {}
    for held_out in sorted({category(f) for f in files}):
        training = {label: {f: s for f, s in scores.items() if category(f) != held_out} for label, scores in table.items()}
        out[held_out] = choose(training)
    return out


def loco_thresholds(sweeps: Sequence[FileSweep], profile: CostProfile) -> dict[str, float]:
    """For each category, NAB's corpus-optimal threshold over the other categories' files only."""
    out = {}
    for held_out in sorted({category(s.name) for s in sweeps}):
        out[held_out] = threshold_curve([s for s in sweeps if category(s.name) != held_out], profile).best()[0]
    return out


@dataclass(frozen=True, kw_only=True)
class HeldOut:
    """One held-out category scored with the configuration and threshold chosen without it."""

    category: str
    chosen: str
    threshold: float
    files: tuple[FileScore, ...]

    @property
    def score(self) -> float:
        return sum(f.score for f in self.files)

    @property
    def windows(self) -> int:
        return sum(f.windows for f in self.files)

    @property
    def fp(self) -> int:
        return sum(f.fp for f in self.files)

    def normalised(self, profile: CostProfile) -> float | None:
        """The category's own normalised score; None when it has no windows (artificialNoAnomaly)."""
        if not self.windows:
            return None
        return normalise(self.score, null=-profile.fn_weight * self.windows, perfect=profile.tp_weight * self.windows)


@dataclass(frozen=True, kw_only=True)
class CrossValidation:
    """Cross-validated result for one profile: every file scored by the configuration chosen without its category."""

    profile: CostProfile
    folds: tuple[HeldOut, ...]

    @property
    def score(self) -> float:
        return sum(f.score for f in self.folds)

    @property
    def normalised(self) -> float:
        windows = sum(f.windows for f in self.folds)
        return normalise(self.score, null=-self.profile.fn_weight * windows, perfect=self.profile.tp_weight * windows)
