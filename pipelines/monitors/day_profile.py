"""A day's summary of a column and how far it lies outside the range of the days before it.

The distribution monitor (pipelines/monitors/distribution.py, which explains the method and its figures)
summarises each day of a table by the median of each column, or by its interquartile range where a ratio
of medians means nothing, and by the median ratio of declared column pairs (`actual/forecast`), and scores
it as a log-ratio outside the range of the previous days' summaries, against a threshold calibrated on
those days' own scores and never below a floor.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from pipelines.monitors.day_history import day_floor

FLOOR_RATIO = 2.5  # no day within this factor of its references' range is called a scale error, whatever the history
# Two columns measuring one quantity agree far more closely than either varies: over 2023 NESO's daily median
# actual/forecast stays within 1.21x of its previous four weeks' range (8 June; 24 March 1.11), half-hourly and
# hourly alike, so one column rescaled by 2 or 1/2 alone lands beyond this on 98 to 99% of days, where its own
# range (FLOOR_RATIO) would let it through.
PAIR_FLOOR_RATIO = 1.5
MIN_REFERENCES = 7  # a history day is scored for calibration only against at least this many days of its own


@dataclass(frozen=True, kw_only=True)
class DayProfile:
    rows: int
    digest: str
    median: dict[str, float | None]
    iqr: dict[str, float | None]


@dataclass(frozen=True, kw_only=True)
class Judgement:
    column: str
    statistic: str
    score: float
    threshold: float
    log_ratio: float
    observed: float
    usual: float
    low: float
    high: float
    calibrated_on: int

    @property
    def out_of_line(self) -> bool:
        return self.score > self.threshold


def pair_name(pair: tuple[str, str]) -> str:
    """How a column pair is named in profiles and findings: "actual/forecast"."""
    return f"{pair[0]}/{pair[1]}"


def profile(rows: pa.Table, columns: tuple[str, ...], ratios: tuple[tuple[str, str], ...] = ()) -> DayProfile:
    """Median and interquartile range of each column over one day's rows, the median ratio of each pair of
    columns (over rows where both are positive), and a digest of the rows."""
    order = sorted(range(rows.num_rows), key=lambda i: rows.column("ts")[i].as_py())
    data = {c: [rows.column(c)[i].as_py() for i in order] for c in ("ts", *columns)}
    digest = hashlib.sha256(repr(sorted(zip(*data.values(), strict=True))).encode()).hexdigest()[:16]
    median: dict[str, float | None] = {}
    iqr: dict[str, float | None] = {}
    for column in columns:
        values = np.array([float(v) for v in data[column] if v is not None and not math.isnan(float(v))], dtype=float)
        if values.size:
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            median[column], iqr[column] = float(q50), float(q75 - q25)
        else:
            median[column] = iqr[column] = None
    for first, second in ratios:
        pairs = [(float(a), float(b)) for a, b in zip(data[first], data[second], strict=True) if a is not None and b is not None]
        quotients = np.array([a / b for a, b in pairs if a > 0 and b > 0], dtype=float)
        median[pair_name((first, second))] = float(np.median(quotients)) if quotients.size else None
        iqr[pair_name((first, second))] = None
    return DayProfile(rows=rows.num_rows, digest=digest, median=median, iqr=iqr)


def profiles(rows: pa.Table, columns: tuple[str, ...], ratios: tuple[tuple[str, str], ...] = ()) -> dict[datetime, DayProfile]:
    days = [day_floor(ts) for ts in rows.column("ts").to_pylist()]
    out = {}
    for day in sorted(set(days)):
        mask = pa.array([d == day for d in days], type=pa.bool_())
        out[day] = profile(rows.filter(mask), columns, ratios)
    return out


def scale_statistic(found: dict[datetime, DayProfile], column: str) -> str | None:
    """median for a strictly positive column, else the interquartile range; None when neither is a scale."""
    medians = [m for p in found.values() if (m := p.median[column]) is not None]
    if medians and min(medians) > 0:
        return "median"
    spreads = [s for p in found.values() if (s := p.iqr[column]) is not None]
    return "iqr" if spreads and min(spreads) > 0 else None


def log_statistic(found: DayProfile, column: str, statistic: str) -> float | None:
    value = (found.median if statistic == "median" else found.iqr)[column]
    return math.log(value) if value is not None and value > 0 else None


class Scorer:
    """Scores days of one column against the days before them."""

    def __init__(self, logs: dict[datetime, float], history_days: int) -> None:
        self.logs = logs
        self.days = sorted(logs)
        self.history_days = history_days

    def references(self, day: datetime) -> list[datetime]:
        start = day - timedelta(days=self.history_days)
        return [d for d in self.days if start <= d < day]

    def score(self, value: float, references: list[datetime]) -> tuple[float, float, float, float]:
        """(score, usual, low, high) of a day's log statistic: how far it lies outside the references' range."""
        logs = [self.logs[d] for d in references]
        low, high = min(logs), max(logs)
        return max(0.0, value - high, low - value), float(np.median(logs)), low, high

    def threshold(self, references: list[datetime], per_day: float, *, floor: float = FLOOR_RATIO) -> tuple[float, int]:
        """(log threshold, days calibrated on): the smallest log-ratio the references exceed within the budget, never below `floor`."""
        scores = []
        for day in references:
            own = self.references(day)
            if len(own) >= MIN_REFERENCES:
                scores.append(self.score(self.logs[day], own)[0])
        allowed = int(per_day * len(scores))
        ranked = sorted(scores, reverse=True)
        calibrated = ranked[allowed] if allowed < len(ranked) else 0.0
        return max(math.log(floor), calibrated), len(scores)
