"""Models of a series' normal behaviour, which turn each new point into a calibrated tail probability.

A value monitor's score for a point is ``S = -log10 p``, where ``p`` is the probability, under the model of
that series fitted on its own recent past, of a deviation at least as large. Every point is judged against
the history of its UTC day: the usable points of the ``history_days`` days before the day starts. A day's
points therefore get the same score whether they arrive one at a time or all at once, which is what makes
the monitors' incremental scoring equal to scoring the whole series (tests/test_value_monitors.py).

The models (``model:`` in config/monitors.yaml):

* ``seasonal``: a level series with a daily shape (carbon intensity, generation shares). Two residuals,
  each a robust z-score against the history of the same hour of day (pooled with its neighbouring hours):
  the *level* (value against that hour's median and MAD) and the *step* (change from the previous point
  against the changes seen at that hour). Each residual's tail probability comes from the empirical
  distribution of the same residual over the history, with a Pareto tail (Hill estimator) beyond its 95th
  percentile, so a heavy-tailed series needs a larger deviation to score the same. They are combined,
  with the level's mean over ``SUSTAINED_POINTS`` slots, with a Bonferroni factor of 3. A run of
  identical values longer than twice the longest run of the history (and at least ``6`` points, ``3`` for a
  series whose history almost never repeats a value) is a
  *stuck* finding; a run of values equal to the same slots one day earlier, longer than twice the history's
  longest such run (and at least ``MIN_REPEATED_POINTS``), is a *repeated day* (a stale copy of the day
  before: over 2023 no run of the carbon series is longer than 3, nor of ERA5 temperature since 2020 than 1).
* ``forecast_error``: the error of a forecast (``actual - forecast``), heavy-tailed and with a spread that
  depends on the hour of day and the season: the level residual by hour of day over the last
  ``history_days`` (the season), with the same calibrated tail, and its mean over ``SUSTAINED_POINTS``
  slots (a forecast that stays biased). A stretch of up to ``GLITCH_MAX_SLOTS`` slots whose forecast
  (``reference``) also lies beyond the forecasts on both sides of it is a *forecast glitch*: its evidence is the product of the two tail probabilities, since
  a forecast is smooth from slot to slot whatever its error; it is reported as its own finding, and a
  point is scored once the slots a stretch needs after it have arrived. An error *stuck* at one value (as
  above; at 0, the forecast column is a copy of the actual) is a finding too, and so is the forecast itself
  frozen at one value while the actual moves. Once a day is complete, its mean
  error is judged against the days before it (`day_bias.py`): a *bias* over the whole day (an offset, a drift).
* ``detector``: the general-purpose detector of `anomaly.py` (robust seasonal and local z-scores and a
  novelty measure of the series' recent shape), the one benchmarked on the Numenta Anomaly Benchmark
  (benchmarks/nab.py), run over the day's history and its points; its evidence is the score.
* ``physical``: a series in which ordinary variation is never a defect at the level that would flag it
  (hourly temperature: weather is not an incident). Only what really goes wrong there is checked: a
  *stuck* sensor (as above), an *impossible step* (a change per point above three times the largest step
  of the history) and a *unit change* (a value further from its hour's median than three times the largest
  such distance of the history, e.g. kelvin or fahrenheit), and a *repeated day* (as above). A rule that
  fires scores ``RULE_SCORE``.

What a score must reach to open an incident (the threshold) is set by `calibration.py` from the monitor's
false-alarm budget and its own history. The series and the statistics every model shares (the per-hour
baseline, steps, the calibrated tail probability) are in `residuals.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
import pandas as pd

from config.inventory import ValueModel
from pipelines.monitors.residuals import HourlyBaseline, SeriesFrame, regular_steps, tail_or_one, tail_probability, tail_score

Direction = Literal["high", "low"]
Rule = Literal["level", "step", "error", "glitch", "stuck", "repeated_day", "impossible_step", "unit_change", "bias"]

RULE_SCORE = 12.0
"""Score of a rule that fired (stuck, impossible step, unit change, a day's bias): beyond any threshold a budget gives."""
MIN_STUCK_POINTS = 6
# A series whose history almost never repeats a value (a reanalysis temperature to four decimals: 42,626 distinct
# values in 50,400 hours, no run of equal values longer than 2) cannot hold three equal values in a row by chance;
# only a series of coarse values (whole gCO2/kWh) needs MIN_STUCK_POINTS before a run means anything.
MIN_STUCK_CONTINUOUS = 3
CONTINUOUS_SHARE = 0.5  # distinct values per history point above which a series counts as continuous
MIN_REPEATED_POINTS = 12
"""Points in a row equal to the same slots one day earlier before a day can be a copy of the day before."""
GLITCH_MAX_SLOTS = 4
"""The longest stretch of forecast slots that can be a glitch (NESO's of 2023 last one to four slots)."""
GLITCH_SHARE = 0.75
"""Share of a slot's forecast error that the forecast's departure from its neighbours must account for."""
SUSTAINED_POINTS = 12
"""Points whose mean residual is judged too: a deviation that lasts (a biased model, a drifting meter)."""
GLITCH_SCORE = 3.0
"""A forecast must stand out from both neighbours at least this much (p <= 1e-3) for a slot to be a glitch."""


@dataclass(frozen=True, kw_only=True)
class PointScore:
    """One scored point: its score (-log10 of the tail probability) and what the score is about."""

    index: int
    ts: datetime
    value: float
    score: float
    direction: Direction
    rule: Rule
    detail: str = ""
    since: datetime | None = None
    """Where the run a run rule (stuck, repeated day) found began: before the first point it flagged."""


def _spikes(frame: SeriesFrame, values: np.ndarray) -> np.ndarray:
    """How far each point's stretch of up to ``GLITCH_MAX_SLOTS`` slots leaves both slots around it.

    For a stretch ``values[i:i + L]`` between ``values[i - 1]`` and ``values[i + L]``, all consecutive slots,
    the departure is how far the whole stretch lies beyond both (signed; 0 if it does not lie beyond both on
    one side). Each point gets the largest departure of a stretch it belongs to; NaN where no stretch fits.
    """
    n = len(values)
    spikes = np.full(n, np.nan)
    step = frame.cadence.value
    for length in range(1, GLITCH_MAX_SLOTS + 1):
        if n < length + 2:
            break
        starts = np.arange(1, n - length)
        regular = (frame.nanos[starts + length] - frame.nanos[starts - 1]) == (length + 1) * step
        window = np.stack([values[starts + j] for j in range(length)], axis=1)
        before, after = values[starts - 1], values[starts + length]
        up = window.min(axis=1) - np.maximum(before, after)
        down = window.max(axis=1) - np.minimum(before, after)
        departure = np.where(up > 0, up, np.where(down < 0, down, 0.0))
        departure = np.where(regular, departure, np.nan)
        for j in range(length):
            idx = starts + j
            current = spikes[idx]
            better = np.isnan(current) | (np.abs(np.nan_to_num(departure)) > np.abs(np.nan_to_num(current)))
            spikes[idx] = np.where(better & ~np.isnan(departure), departure, current)
    return spikes


def _sustained(frame: SeriesFrame, z: np.ndarray) -> np.ndarray:
    """Mean of the last ``SUSTAINED_POINTS`` residuals where they are consecutive slots, else NaN."""
    k = SUSTAINED_POINTS
    out = np.full(len(z), np.nan)
    if len(z) >= k:
        means = pd.Series(z).rolling(k).mean().to_numpy()
        span = np.full(len(z), -1, dtype=np.int64)
        span[k - 1 :] = frame.nanos[k - 1 :] - frame.nanos[: len(z) - k + 1]
        out = np.where(span == (k - 1) * frame.cadence.value, means, np.nan)
    return out


def _runs(values: np.ndarray) -> np.ndarray:
    """Length of the run of identical values each point ends."""
    runs = np.ones(len(values), dtype=int)
    for i in range(1, len(values)):
        if values[i] == values[i - 1] and np.isfinite(values[i]):
            runs[i] = runs[i - 1] + 1
    return runs


@dataclass(frozen=True, kw_only=True)
class DayJudgement:
    """The scores of one day's points, and the in-sample daily maxima of its history (for calibration)."""

    scores: list[PointScore]
    history_daily_max: dict[str, float]


def judge_day(model: ValueModel, frame: SeriesFrame, history: np.ndarray, points: np.ndarray) -> DayJudgement:
    """Score ``points`` (indices of one UTC day) against ``history`` (usable indices before that day).

    ``frame`` holds the whole series read (history, the day, and the slot after the day's last point, which
    the glitch rule looks at). The returned scores are in point order; ``history_daily_max`` is the largest
    in-sample score of each history day, used to calibrate the threshold while out-of-sample scores are few.
    """
    hours = np.asarray(frame.ts.hour, dtype=np.int64)
    x = frame.x
    out: list[PointScore] = []
    level = HourlyBaseline(hours[history], x[history])
    z_hist = level.z(hours[history], x[history])
    z_new = level.z(hours[points], x[points])
    day_keys = frame.ts[history].strftime("%Y-%m-%d")
    if model == "physical":
        in_sample = np.zeros(len(history))
        out = _physical(frame, history, points, z_hist, z_new)
    elif model == "detector":
        in_sample, out = _detector(frame, history, points)
    else:
        sustained = _sustained(frame, level.z(hours, x))
        m_hist, m_new = sustained[history], sustained[points]
        p_level_hist = np.minimum(tail_probability(z_hist, z_hist), tail_or_one(m_hist, m_hist))
        p_level = np.minimum(tail_probability(z_hist, z_new), tail_or_one(m_hist, m_new))
        lasting_new = tail_or_one(m_hist, m_new) < tail_probability(z_hist, z_new)
        if model == "seasonal":
            steps = regular_steps(frame, x)
            step_base = HourlyBaseline(hours[history], steps[history])
            s_hist = step_base.z(hours[history], steps[history])
            s_new = step_base.z(hours[points], steps[points])
            p_step_hist = np.where(np.isnan(s_hist), 1.0, tail_probability(s_hist, s_hist))
            p_step = np.where(np.isnan(s_new), 1.0, tail_probability(s_hist, s_new))
            in_sample = tail_score(np.minimum(1.0, 3 * np.minimum(p_level_hist, p_step_hist)))
            scores = tail_score(np.minimum(1.0, 3 * np.minimum(p_level, p_step)))
            for k, i in enumerate(points):
                is_step = p_step[k] < p_level[k]
                residual = s_new[k] if is_step else (m_new[k] if lasting_new[k] else z_new[k])
                what = "step" if is_step else ("sustained level" if lasting_new[k] else "level")
                out.append(
                    PointScore(
                        index=int(i),
                        ts=frame.ts[i].to_pydatetime(),
                        value=float(x[i]),
                        score=float(scores[k]),
                        direction="high" if residual >= 0 else "low",
                        rule="step" if is_step else "level",
                        detail=f"{what} z={residual:+.1f}",
                    )
                )
            out = _with_repeats(frame, history, points, _with_stuck(frame, history, points, out))
        else:  # forecast_error
            p_point_hist, p_point = tail_probability(z_hist, z_hist), tail_probability(z_hist, z_new)
            glitch_hist = _glitch_evidence(frame, history, history, p_point_hist, z_hist)
            glitch = _glitch_evidence(frame, history, points, p_point, z_new)
            in_sample = np.maximum(tail_score(np.minimum(1.0, 2 * p_level_hist)), glitch_hist)
            error_scores = tail_score(np.minimum(1.0, 2 * p_level))
            for k, i in enumerate(points):
                is_glitch = glitch[k] > error_scores[k]
                rule: Rule = "glitch" if is_glitch else "error"
                residual = m_new[k] if lasting_new[k] and not is_glitch else z_new[k]
                out.append(
                    PointScore(
                        index=int(i),
                        ts=frame.ts[i].to_pydatetime(),
                        value=float(x[i]),
                        score=float(max(error_scores[k], glitch[k])),
                        direction="high" if residual >= 0 else "low",
                        rule=rule,
                        detail=f"{'sustained ' if lasting_new[k] and not is_glitch else ''}z={residual:+.1f}",
                    )
                )
            out = _with_stuck_forecast(frame, history, points, _with_stuck(frame, history, points, out))
    daily = pd.Series(in_sample).groupby(np.asarray(day_keys)).max() if len(history) else pd.Series(dtype=float)
    return DayJudgement(scores=out, history_daily_max={str(k): float(v) for k, v in daily.items()})


def _detector(frame: SeriesFrame, history: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, list[PointScore]]:
    """The NAB-benchmarked detector (`anomaly.py`) over the day's history and its points, as evidence."""
    from pipelines.monitors.anomaly import AnomalyDetector

    # The detector reads its input as one series: the history, then the whole day so far (points of the day
    # scored at an earlier tick included), so a day scored in pieces gets the numbers it gets in one go.
    day_start = frame.ts[points[0]].normalize()
    today = np.flatnonzero((frame.ts >= day_start) & (frame.ts <= frame.ts[points[-1]]))
    evidence = AnomalyDetector().evidence_series(frame.ts[np.concatenate([history, today])], frame.x[np.concatenate([history, today])])
    in_sample = np.zeros(len(history))  # its first points have too little past to stand in for calibration
    scores = evidence[len(history) :][np.searchsorted(today, points)]
    hours = np.asarray(frame.ts.hour, dtype=np.int64)
    level = HourlyBaseline(hours[history], frame.x[history])
    z = level.z(hours[points], frame.x[points])
    out = [
        PointScore(
            index=int(i),
            ts=frame.ts[i].to_pydatetime(),
            value=float(frame.x[i]),
            score=float(scores[k]),
            direction="high" if z[k] >= 0 else "low",
            rule="level",
            detail=f"detector evidence {scores[k]:.1f}, level z={z[k]:+.1f}",
        )
        for k, i in enumerate(points)
    ]
    return np.asarray(in_sample), out


def _glitch_evidence(frame: SeriesFrame, history: np.ndarray, points: np.ndarray, p_error: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Evidence that a point is a forecast glitch: its error and its forecast standing out from both neighbours.

    The two tail probabilities are multiplied (the forecast of a slot is smooth with its neighbours
    whatever the error), with a factor 3 for the tests made. Only a departure that explains the error
    counts: of the opposite sign (a forecast spiking up makes ``actual - forecast`` low) and at least
    ``GLITCH_SHARE`` of its size, so a forecast that was already off and wobbles is not a glitch. 0 without
    a reference series.
    """
    if frame.ref is None:
        return np.zeros(len(points))
    spikes = _spikes(frame, frame.ref)
    # A departure is judged against the forecast's ordinary slot-to-slot changes, not against past
    # departures: most slots depart from nothing, so their distribution would make any wobble look rare.
    p_spike = tail_or_one(regular_steps(frame, frame.ref)[history], spikes[points])
    departure = np.nan_to_num(spikes[points])
    error = np.asarray(frame.x[points], dtype=float)
    explains = (np.sign(departure) == -np.sign(z)) & (np.abs(departure) >= GLITCH_SHARE * np.abs(error))
    evidence = tail_score(np.minimum(1.0, 3 * p_error * p_spike))
    return np.where(explains & (tail_score(p_spike) >= GLITCH_SCORE), evidence, 0.0)


def _with_stuck(frame: SeriesFrame, history: np.ndarray, points: np.ndarray, scores: list[PointScore]) -> list[PointScore]:
    runs = _runs(frame.x)
    past = frame.x[history]
    past = past[np.isfinite(past)]
    continuous = len(past) > 0 and len(np.unique(past)) >= CONTINUOUS_SHARE * len(past)
    limit = max(MIN_STUCK_CONTINUOUS if continuous else MIN_STUCK_POINTS, 2 * int(runs[history].max(initial=1)))
    return _with_run_rule(frame, scores, runs, limit, "stuck", "identical values in a row")


def _with_stuck_forecast(frame: SeriesFrame, history: np.ndarray, points: np.ndarray, scores: list[PointScore]) -> list[PointScore]:
    """A forecast (the reference) frozen at one value: its error still moves with the actual, so only the forecast's
    own runs show it (NESO's longest run of equal forecasts over 2023 is 5 slots)."""
    if frame.ref is None:
        return scores
    runs = _runs(frame.ref)
    limit = max(MIN_STUCK_POINTS, 2 * int(runs[history].max(initial=1)))
    return _with_run_rule(frame, scores, runs, limit, "stuck", "identical forecasts in a row", values=frame.ref)


def _repeats(frame: SeriesFrame) -> np.ndarray:
    """Length of the run of points, each equal to the value at the same time one day earlier, that each point ends."""
    stamps = frame.nanos
    before = np.searchsorted(stamps, stamps - 86_400 * 10**9)
    found = before < len(stamps)
    found[found] = stamps[before[found]] == stamps[found] - 86_400 * 10**9
    previous = frame.x[np.where(found, before, 0)]
    same = found & np.isfinite(frame.x) & (frame.x == previous)
    runs = np.zeros(len(same), dtype=int)
    for i in np.flatnonzero(same):
        regular = i > 0 and stamps[i] - stamps[i - 1] == frame.cadence.value
        runs[i] = runs[i - 1] + 1 if regular else 1
    return runs


def _with_repeats(frame: SeriesFrame, history: np.ndarray, points: np.ndarray, scores: list[PointScore]) -> list[PointScore]:
    runs = _repeats(frame)
    limit = max(MIN_REPEATED_POINTS, 2 * int(runs[history].max(initial=0)))
    return _with_run_rule(frame, scores, runs, limit, "repeated_day", "values in a row equal to the same slots one day earlier")


def _with_run_rule(
    frame: SeriesFrame, scores: list[PointScore], runs: np.ndarray, limit: int, rule: Rule, what: str, *, values: np.ndarray | None = None
) -> list[PointScore]:
    """`scores` with each point that ends a run longer than `limit` scored ``RULE_SCORE`` under `rule`; the detail
    names where the run started, which is before the first point flagged. `values`: the series the run is of, when
    it is not the scored one (a forecast stuck under a moving error)."""
    out = []
    for entry in scores:
        run = int(runs[entry.index])
        if run > limit and entry.rule != "stuck":
            since = frame.ts[entry.index - run + 1].to_pydatetime()
            entry = PointScore(
                index=entry.index,
                ts=entry.ts,
                value=entry.value if values is None else float(values[entry.index]),
                score=RULE_SCORE,
                direction="low",
                rule=rule,
                detail=f"{run} {what} since {since.isoformat()} (the history's longest run: {limit // 2})",
                since=since,
            )
        out.append(entry)
    return out


def _physical(frame: SeriesFrame, history: np.ndarray, points: np.ndarray, z_hist: np.ndarray, z_new: np.ndarray) -> list[PointScore]:
    x = frame.x
    steps = regular_steps(frame, x)
    known_steps = np.abs(steps[history])
    known_steps = known_steps[np.isfinite(known_steps)]
    step_limit = 3.0 * float(known_steps.max()) if len(known_steps) else np.inf
    level_limit = 3.0 * float(np.abs(z_hist).max()) if len(z_hist) else np.inf
    out = []
    for k, i in enumerate(points):
        step = steps[i]
        rule: Rule = "level"
        score, detail = 0.0, ""
        direction: Direction = "high" if z_new[k] >= 0 else "low"
        if np.isfinite(step) and abs(step) > step_limit and step_limit > 0:
            rule, score = "impossible_step", RULE_SCORE
            detail = f"changed by {step:+.2f} in one step (limit {step_limit:.2f}: three times the history's largest)"
            direction = "high" if step > 0 else "low"
        elif abs(z_new[k]) > level_limit:
            rule, score = "unit_change", RULE_SCORE
            detail = f"{abs(z_new[k]):.0f} spreads from its hour's median (limit {level_limit:.0f}): a unit or scale change?"
        out.append(
            PointScore(
                index=int(i),
                ts=frame.ts[i].to_pydatetime(),
                value=float(x[i]),
                score=score,
                direction=direction,
                rule=rule,
                detail=detail,
            )
        )
    return _with_repeats(frame, history, points, _with_stuck(frame, history, points, out))
