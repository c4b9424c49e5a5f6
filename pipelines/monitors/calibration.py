"""From a monitor's false-alarm budget to its threshold, calibrated on the monitor's own history.

The budget (config/monitors.yaml ``budget: {incidents, per_days}``) is a rate ``r`` of incidents per day of
clean data. An incident is a day whose largest score crosses the threshold (the incident store groups a
day's flags into one incident), so the threshold is the ``1 - r`` quantile of the monitor's daily maximum
scores. It is estimated from a Gumbel fit (the law of maxima) to the daily maxima of the last
``CALIBRATION_DAYS`` days, which extrapolates sensibly when there are fewer days than ``1 / r``, and it is
never below ``log10(points per day / r)``: the threshold that the budget gives if every point were
independent and the model's probabilities exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from config.inventory import FalseAlarmBudget

CALIBRATION_DAYS = 180
MIN_CALIBRATION_DAYS = 7
_EULER_GAMMA = 0.5772156649


@dataclass(frozen=True, kw_only=True)
class Threshold:
    """A monitor's threshold on the score (-log10 p) and where it came from."""

    score: float
    floor: float
    gumbel: float | None
    days: int

    def explain(self) -> str:
        source = f"Gumbel fit on {self.days} daily maxima: {self.gumbel:.2f}" if self.gumbel is not None else "too few days to fit"
        return f"threshold {self.score:.2f} (independence floor {self.floor:.2f}; {source})"


def calibrate(budget: FalseAlarmBudget, points_per_day: float, daily_max: list[float], *, sensitivity: float = 1.0) -> Threshold:
    """The threshold that keeps incidents on clean data within the budget (times ``sensitivity``), given past daily maxima."""
    rate = min(budget.per_day * sensitivity, 0.5)
    floor = math.log10(max(points_per_day, 1.0) / rate)
    maxima = np.asarray(daily_max[-CALIBRATION_DAYS:], dtype=float)
    if len(maxima) < MIN_CALIBRATION_DAYS:
        return Threshold(score=floor, floor=floor, gumbel=None, days=len(maxima))
    beta = max(float(maxima.std()) * math.sqrt(6) / math.pi, 1e-6)
    mu = float(maxima.mean()) - _EULER_GAMMA * beta
    gumbel = mu - beta * math.log(-math.log(1.0 - rate))
    return Threshold(score=max(floor, gumbel), floor=floor, gumbel=gumbel, days=len(maxima))
