"""A forecast error biased for a whole day: the day's mean error judged against the monitor's own past days.

The point rules of the ``forecast_error`` model (`models.py`) judge slots and runs of a few hours against their hour
of day; a forecast error has a heavy tail there (a windy day the forecast did not see coming misses by 40 for hours),
so an offset of +50 on every slot of a day, or an actual drifting away from the forecast by 4 % a day, stays inside
what single slots and short runs are allowed. What such a defect does move is the day's mean error, which on clean
data is tight: over 2023 the daily mean of ``actual - forecast`` has a standard deviation of 5.5 gCO2/kWh and never
exceeds 32.

Once a UTC day is over (the first slot of a later day is scored), the day's mean is compared with the daily means
of the ``history_days`` days before it (their median; days already found biased left out), in units of the
long-run spread (the median of the references' MAD over the past judged days: a drift that has gone on for weeks
widens its own references' spread and would hide behind it). The deviation is scored as the two-sided tail of a
Student-t with ``TAIL_DF`` = 3 degrees of freedom around the past judged days' median deviation: heavy-tailed, as
daily forecast misses are, and fixed in advance, since a few weeks of days cannot estimate a 1-in-360 tail
empirically. The threshold comes from a quarter of the monitor's false-alarm budget (``BUDGET_SHARE``: the monitor
as a whole stays within its budget), calibrated on the past days' scores, one test per day. Until
``MIN_PAST_DAYS`` deviations exist the rule only records them: it speaks four weeks after the monitor does (and
four weeks after an upgrade onto a running home whose monitor state has no day-bias history yet). A day
with fewer than ``MIN_SHARE_OF_SLOTS`` of its slots is not judged. A biased day is left out of later references,
so a drift that persists keeps being reported instead of becoming the new normal.

Measured with `benchmarks/forecast_error_faults.py --every 28` (the monitor's real code over the 2023 series,
see benchmarks/README.md): on clean 2023 the rule flags no day; an offset of +50 on one day is flagged on 10 of 11
start days (was 1 without the rule) and a drift of the actual by 4 % a day within 7 days on 8 of 11 (was 1). The
misses are the offset on 1 March and the drifts from 1 and 29 March, before the rule has enough past days, and the
drift from 13 September (flagged after 8 days).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from config.inventory import FalseAlarmBudget
from pipelines.monitors.calibration import CALIBRATION_DAYS, calibrate
from pipelines.monitors.residuals import SeriesFrame

MIN_PAST_DAYS = 28
"""Judged days of deviations the rule needs before it scores: fewer would make its tail an estimate of nothing."""
BUDGET_SHARE = 0.25
"""Share of the monitor's false-alarm budget this rule spends: with half, the monitor as a whole went over its budget
on clean 2023 (benchmarks/README.md)."""
TAIL_DF = 3
"""Degrees of freedom of the deviations' Student-t: heavy, as daily forecast misses are."""
MIN_SHARE_OF_SLOTS = 0.75
"""A day with fewer of its slots (an outage, slots held in quarantine) is not judged: its mean is not the day's."""
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True, kw_only=True)
class DayBias:
    """One judged day: its mean error, the usual mean and spread of the days before it, and the verdict."""

    day: str
    mean: float
    usual: float
    spread: float
    deviation: float
    score: float
    threshold: float
    references: int

    @property
    def biased(self) -> bool:
        return self.score >= self.threshold

    def detail(self) -> str:
        return (
            f"mean error over the day {self.mean:+.1f} against {self.usual:+.1f} ± {self.spread:.1f} over the "
            f"{self.references} days before ({self.deviation:+.1f} spreads; p = 1e-{self.score:.1f}, threshold "
            f"1e-{self.threshold:.1f} from its false-alarm budget)"
        )


def judge(
    frame: SeriesFrame,
    day: pd.Timestamp,
    points: np.ndarray,
    history: np.ndarray,
    state: dict[str, Any],
    budget: FalseAlarmBudget,
    *,
    sensitivity: float = 1.0,
) -> DayBias | None:
    """Judge ``day`` (its ``points``) against the daily means of ``history``; updates ``state``; None while warming up
    or when the day holds too few slots to say anything about it (``MIN_SHARE_OF_SLOTS``)."""
    if len(points) < MIN_SHARE_OF_SLOTS * (pd.Timedelta(days=1) / frame.cadence):
        return None
    key = day.strftime("%Y-%m-%d")
    flagged = set(state.get("bias_flagged", []))
    day_of = frame.ts[history].strftime("%Y-%m-%d")
    means = pd.Series(frame.x[history]).groupby(np.asarray(day_of)).mean()
    refs = means[[k for k in means.index if k not in flagged and k < key]].to_numpy(dtype=float)
    if len(refs) < 2:
        return None
    mean = float(np.nanmean(frame.x[points]))
    usual = float(np.median(refs))
    # The spread is the long-run one (the median of the spreads of the past judged days and this one): a drift that
    # has been going on for weeks widens its own references' spread, and would hide behind it.
    local = max(_MAD_TO_SIGMA * float(np.median(np.abs(refs - usual))), 1e-6 * (1.0 + abs(usual)))
    spreads: dict[str, float] = {k: v for k, v in state.get("bias_spreads", {}).items() if k < key}
    spread = float(np.median([*list(spreads.values())[-CALIBRATION_DAYS:], local]))
    deviation = (mean - usual) / spread
    state["bias_spreads"] = _last({**spreads, key: local})
    past: dict[str, float] = {k: v for k, v in state.get("bias_deviations", {}).items() if k < key}
    scores: dict[str, float] = {k: v for k, v in state.get("bias_scores", {}).items() if k < key}
    if len(past) < MIN_PAST_DAYS:
        state["bias_deviations"] = _last({**past, key: deviation})
        return None
    p = _tail(np.array([past[k] for k in sorted(past)][-CALIBRATION_DAYS:]), deviation)
    score = -math.log10(max(p, 1e-300))
    threshold = calibrate(budget, 1.0, [scores[k] for k in sorted(scores)], sensitivity=sensitivity * BUDGET_SHARE).score
    verdict = DayBias(
        day=key, mean=mean, usual=usual, spread=spread, deviation=deviation, score=score, threshold=threshold, references=len(refs)
    )
    # A biased day stays out of the deviations and references, and counts at the threshold in the calibration.
    state["bias_scores"] = _last({**scores, key: min(score, threshold)})
    if verdict.biased:
        state["bias_flagged"] = sorted(flagged | {key})[-CALIBRATION_DAYS:]
        state["bias_deviations"] = _last(past)
    else:
        state["bias_deviations"] = _last({**past, key: deviation})
    return verdict


def _tail(past: np.ndarray, deviation: float) -> float:
    """Two-sided tail probability of `deviation` (in long-run spreads) under a Student-t with ``TAIL_DF`` degrees of
    freedom centred on the past deviations' median. A few weeks of days cannot estimate the far tail empirically (the
    largest of 30 days says little about 1 in 360), and daily forecast misses are heavy-tailed (a storm the forecast
    did not see): a heavy-tailed law fixed in advance, with the threshold calibrated on the past days' scores, stays
    stable."""
    from scipy.stats import t as student_t

    centre = float(np.median(past))
    return float(2 * student_t.sf(abs(deviation - centre), df=TAIL_DF))


def _last(values: dict[str, float]) -> dict[str, float]:
    return dict(sorted(values.items())[-CALIBRATION_DAYS:])
