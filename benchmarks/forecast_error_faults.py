"""The `forecast_error` value monitor on the 2023 series, clean and with whole-day faults injected, offline.

    .venv/bin/python benchmarks/forecast_error_faults.py [--every 14] [--offset 50] [--drift 0.04] [--without-day-bias] [--json]

Scores the bundled NESO 2023 series (``actual - forecast``, the forecast as reference) with the monitor's real code
(`pipelines.monitors.value.score_points` with the `forecast_error` entry of config/monitors.yaml), all at once, as a
tick over the whole year would. Then, for start days every ``--every`` days from 1 March (after the monitor's and
the day-bias rule's warm-up), it scores copies with one fault each:

* offset: ``--offset`` gCO2/kWh added to every actual of the start day (a meter or unit offset for a day);
* drift: the actual multiplied by ``(1 + drift) ** days`` from the start day on (a meter drifting away).

Prints the days flagged on clean data (by rule), how many offset days were flagged on that day, and for the drift
how many days it took to be flagged. Labels in benchmarks/defects_2023.yaml say which clean flags are real defects.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SERIES = REPO / "pipelines" / "sources" / "replay_data" / "neso_2023_national_intensity.csv.gz"
YEAR = pd.Timestamp("2023-01-01", tz="UTC")


def _flags(ts: pd.DatetimeIndex, actual: np.ndarray, forecast: np.ndarray) -> list[tuple[str, str]]:
    """(day, rule) of every point the monitor flags over the series, scored in one pass."""
    from config.inventory import load_inventory
    from pipelines.monitors.models import GLITCH_MAX_SLOTS
    from pipelines.monitors.residuals import SeriesFrame
    from pipelines.monitors.value import score_points

    spec = load_inventory(REPO / "config").monitors["forecast_error"]
    keep = np.isfinite(actual) & np.isfinite(forecast)
    frame = SeriesFrame(ts=ts[keep], x=(actual - forecast)[keep], ref=forecast[keep])
    _, flagged = score_points(spec, frame, np.arange(len(frame.ts) - GLITCH_MAX_SLOTS), {})
    return sorted({((p.since or p.ts).date().isoformat(), p.rule) for p in flagged})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=14, help="days between the start days of the injected faults")
    parser.add_argument("--offset", type=float, default=50.0, help="gCO2/kWh added to one day's actuals")
    parser.add_argument("--drift", type=float, default=0.04, help="relative drift of the actual per day")
    parser.add_argument("--without-day-bias", action="store_true", help="the baseline: the monitor without its day-bias rule")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.without_day_bias:
        from pipelines.monitors import value

        value._bias_of_the_day_before = lambda *_args, **_kwargs: None  # type: ignore[assignment]
    raw = pd.read_csv(SERIES)
    ts = pd.DatetimeIndex(pd.to_datetime(raw["from"], utc=True))
    actual, forecast = raw["actual"].to_numpy(float), raw["forecast"].to_numpy(float)
    age = np.asarray((ts - YEAR) / pd.Timedelta(days=1))
    clean = _flags(ts, actual, forecast)
    starts = pd.date_range("2023-03-01", "2023-12-15", freq=f"{args.every}D", tz="UTC")
    offsets, drifts = [], []
    for start in starts:
        day, at = start.date().isoformat(), float((start - YEAR) / pd.Timedelta(days=1))
        shifted = actual + np.where((age >= at) & (age < at + 1), args.offset, 0.0)
        offsets.append({"day": day, "flagged": any(d == day for d, _ in _flags(ts, shifted, forecast))})
        drifting = actual * np.where(age >= at, (1 + args.drift) ** np.maximum(age - at, 0), 1.0)
        after = sorted(d for d, _ in _flags(ts, drifting, forecast) if d >= day)
        drifts.append({"day": day, "days_to_flag": (pd.Timestamp(after[0]) - pd.Timestamp(day)).days if after else None})
        print(
            f"{day}: offset {'flagged' if offsets[-1]['flagged'] else 'missed'}, drift after {drifts[-1]['days_to_flag']} d",
            file=sys.stderr,
        )
    delays = [d["days_to_flag"] for d in drifts if d["days_to_flag"] is not None]
    result: dict[str, Any] = {
        "day_bias_rule": not args.without_day_bias,
        "clean_flags": [{"day": d, "rule": r} for d, r in clean],
        "offset": {"gco2": args.offset, "flagged": sum(o["flagged"] for o in offsets), "of": len(offsets), "days": offsets},
        "drift": {
            "per_day": args.drift,
            "flagged_within_7_days": sum(1 for d in delays if d <= 7),
            "of": len(drifts),
            "median_days": float(np.median(delays)) if delays else None,
            "days": drifts,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("clean 2023, days flagged: " + ", ".join(f"{d} ({r})" for d, r in clean))
        print(f"offset +{args.offset:g} on one day: flagged that day {result['offset']['flagged']} of {len(offsets)}")
        drift = result["drift"]
        print(
            f"drift {args.drift:.0%}/day: flagged within 7 days {drift['flagged_within_7_days']} of {len(drifts)} (median {drift['median_days']} d)"
        )
        print(f"{result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
