"""How often the forecast monitor pages on clean data: a replay of its judgement over a year of real forecasts.

Issues the default model every day of 2023 at 00:00 UTC from the bundled actuals (refitted daily, as the pipeline
does), measures each issue's day-ahead error, and judges the days one after another exactly as
`pipelines/monitors/forecast_accuracy.py` does (the same score, the same calibration from the budget). Nothing in
the data is a defect of the forecast, so every alarm is a false one, to be weighed against the budget.

    .venv/bin/python benchmarks/forecast_monitor.py                      # the budget of config/monitors.yaml
    .venv/bin/python benchmarks/forecast_monitor.py --per-days 30 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from config.inventory import FalseAlarmBudget, load_inventory  # noqa: E402
from pipelines.forecast.backtest import load_intensity  # noqa: E402
from pipelines.forecast.models import DEFAULT_MODEL, build_model  # noqa: E402
from pipelines.monitors.calibration import calibrate  # noqa: E402
from pipelines.monitors.forecast_accuracy import day_score  # noqa: E402


def daily_errors(first: date, last: date) -> list[tuple[date, float]]:
    """Day-ahead MAE (horizons 0.5-24 h) of the default model's 00:00 issue of each day."""
    actual, _ = load_intensity()
    fitted = None
    errors = []
    day = first
    while day <= last:
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if fitted is None or midnight - fitted.trained_until >= timedelta(days=1):
            fitted = build_model(DEFAULT_MODEL).fit(actual, until=midnight)
        slots = fitted.predict(actual, issued_at=midnight).slots[:48]
        measured = actual.reindex([s.ts for s in slots]).to_numpy(dtype=float)
        ok = np.isfinite(measured)
        if ok.any():
            errors.append((day, float(np.abs(np.array([s.point for s in slots])[ok] - measured[ok]).mean())))
        day += timedelta(days=1)
    return errors


def replay(errors: list[tuple[date, float]], *, budget: FalseAlarmBudget, history_days: int, min_history_days: int) -> list[dict[str, Any]]:
    """The days the monitor would have opened an incident for, judged in order as the monitor does."""
    past_scores: list[float] = []
    alarms = []
    for i, (day, value) in enumerate(errors):
        history = np.array([v for d, v in errors[:i] if d >= day - timedelta(days=history_days)])
        if len(history) < min_history_days:
            continue
        score, usual, _edge = day_score(history, value)
        threshold = calibrate(budget, 1.0, past_scores)
        past_scores.append(min(score, threshold.score))
        if score >= threshold.score:
            alarms.append({"day": day.isoformat(), "mae": round(value, 1), "usual": round(usual, 1), "score": round(score, 2)})
    return alarms


def main() -> None:
    spec = load_inventory(REPO / "config").monitors["forecast_accuracy"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2023-02-01", help="First issue day (history before it trains the model).")
    parser.add_argument("--end", default="2023-12-29", help="Last issue day (its day ahead must be in the data).")
    parser.add_argument("--per-days", type=int, default=spec.budget.per_days, help="Budget: one incident per this many days.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    args = parser.parse_args()
    began = time.perf_counter()
    errors = daily_errors(date.fromisoformat(args.start), date.fromisoformat(args.end))
    budget = FalseAlarmBudget(incidents=1, per_days=args.per_days)
    alarms = replay(errors, budget=budget, history_days=spec.history_days, min_history_days=spec.min_history_days)
    result = {
        "days": len(errors),
        "budget_per_days": args.per_days,
        "alarms": len(alarms),
        "expected_at_budget": round(len(errors) / args.per_days, 1),
        "alarm_days": alarms,
        "seconds": round(time.perf_counter() - began, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['days']} judged days, budget 1 per {args.per_days}: {result['alarms']} alarms ({result['expected_at_budget']} at budget)"
        )
        for alarm in alarms:
            print(f"  {alarm['day']}: day-ahead MAE {alarm['mae']} against a usual {alarm['usual']} (score {alarm['score']})")


if __name__ == "__main__":
    main()
