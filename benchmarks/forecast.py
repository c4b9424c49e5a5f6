"""Benchmark: rolling-origin backtest of the day-ahead carbon-intensity models over the bundled 2023 data.

    python benchmarks/forecast.py [--start 2023-03-01] [--end 2023-12-30] [--every-days 1] [--refit-days 7]
                                  [--issue-hours 0,6] [--models persistence,seasonal_naive,gbm,gbm_temperature] [--json]

Each day from --start to --end (inclusive, every --every-days) every model issues 48 hours at each of the
--issue-hours (UTC) from actuals before the issue only; models are refitted every --refit-days at 00:00 UTC.
January and February 2023 (before the default --start) are warm-up history only. Horizons are slot ends:
"24h" is the slot ending 24 h after the issue; "day_ahead" is the mean over horizons 0.5-24 h.

Headline keys describe the default model (pipelines.forecast.models.DEFAULT_MODEL) issued at the first issue
hour: mae_24h, mape_24h, mae_day_ahead, mape_day_ahead, coverage_80, coverage_95 (over all 96 slots), then the
same with persistence_ and seasonal_naive_ prefixes, `by_model` with each issue hour and the two halves of
2023, `perfect_prognosis` (gbm_temperature, which reads observed temperature: never a headline),
`neso_reference` (NESO's own short-horizon forecast column on the same days) and `snapshots_2024_01_12`.
Goals (issue 17): day-ahead MAPE <= 20 %, MAE at 24 h <= 0.6x persistence's, 80 % intervals covering 75-85 %.
Progress goes to stderr; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.forecast.backtest import BacktestSpec, load_intensity, load_temperature, run_backtest  # noqa: E402
from pipelines.forecast.models import MODELS  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    default = BacktestSpec()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=date.fromisoformat, default=default.start, help="first issue day (UTC)")
    parser.add_argument("--end", type=date.fromisoformat, default=default.end, help="last issue day, inclusive")
    parser.add_argument("--every-days", type=int, default=default.every_days, help="days between issue days")
    parser.add_argument("--refit-days", type=int, default=default.refit_days, help="days between refits of each model")
    parser.add_argument("--issue-hours", default=",".join(map(str, default.issue_hours)), help="UTC hours to issue at, comma-separated")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    return parser


def _text(report: dict[str, Any]) -> str:
    lines = [f"{report['issues']} issues {report['start']}..{report['end']} at {report['issue_hour_utc']:02d}:00 UTC"]
    for name, per_hour in {**report["by_model"], **report["perfect_prognosis"]}.items():
        for hour, summary in per_hour.items():
            if not hour.startswith("issue_"):
                continue
            h = summary["by_horizon"]
            cells = "  ".join(f"{k} {v['mae']}/{v['mape']}%" for k, v in h.items())
            da, al = summary["day_ahead"], summary["all_48h"]
            lines.append(
                f"{name:16} {hour}  MAE/MAPE {cells}  day-ahead {da['mae']}/{da['mape']}%  "
                f"cover80 {al['coverage_80']} cover95 {al['coverage_95']}"
            )
    if "neso_reference" in report:
        ref = report["neso_reference"]
        lines.append(f"NESO own forecast (reference, ~1 h ahead): MAE {ref['mae']} MAPE {ref['mape']}% over {ref['slots']} slots")
    lines.append(f"{report['seconds']} s, fit CPU-s mean {report['fit_cpu_seconds_mean']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    spec = BacktestSpec(
        start=args.start,
        end=args.end,
        every_days=args.every_days,
        refit_days=args.refit_days,
        issue_hours=tuple(int(h) for h in args.issue_hours.split(",")),
        models=tuple(m.strip() for m in args.models.split(",")),
    )
    actual, neso = load_intensity()
    temperature = load_temperature()

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    report = run_backtest(actual, spec=spec, temperature=temperature, neso_forecast=neso, progress=progress)
    print(json.dumps(report, indent=2) if args.json else _text(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
