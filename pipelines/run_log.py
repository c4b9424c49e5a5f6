"""The service's log of runs: one line per pipeline run (`run_line`) and per forecast run (`forecast_line`).

`dataops serve` (pipelines/service.py) says each run in one line on `RUN_LOG` (WARNING when it failed), with
the commit conflicts that healed themselves counted on the same line: the log reads as a list of runs, not of steps.
"""

from __future__ import annotations

import logging

from pipelines.forecast.run import ForecastRunResult
from pipelines.run_result import RunResult

# One line per run (`run_line`): the service's own voice, shown at INFO whatever the root level (see
# `Service.serve_forever`). Named after the service that speaks it: operators' logging configurations and
# benchmarks/serve_marts.py filter on this name.
RUN_LOG = logging.getLogger("pipelines.service.runs")


def run_line(result: RunResult, attempts: int = 1) -> str:
    """A run in one line: pipeline, window, outcome, duration, rows published and quarantined, held days, marts.

    carbon_intensity 2023-01-03..2023-01-04 succeeded in 0.84 s: 26 rows published, 0 quarantined, no day held;
    gold.carbon_intensity_hourly 13 rows
    """
    window = f"{result.window_start.date()}..{result.window_end.date()}"
    head = f"{result.pipeline} {window} {result.status} in {result.duration_s:.2f} s"
    if attempts > 1:
        head += f" (attempt {attempts})"
    if result.status == "failed":
        return f"{head}: {result.error}"
    held = f"held {', '.join(result.held_days)}" if result.held_days else "no day held"
    line = f"{head}: {_rows(result.rows_out)} published, {result.quarantined_text('quarantined')}, {held}"
    marts = [f"{t.table} {_rows(t.rows_written)}" for t in result.tables if t.table.startswith("gold.")]
    if marts:
        line += "; " + ", ".join(marts)
    conflicts = [f"{n} {what}" for n, what in ((result.commit_retries, "commit retries"), (result.replans, "re-plans")) if n]
    if conflicts:
        line += f" ({', '.join(conflicts)})"
    return line


def forecast_line(result: ForecastRunResult) -> str:
    """A forecast run in one line: forecast 2023-01-03T12:00Z published by gbm (refitted) in 1.20 s: 96 slots."""
    head = f"{result.forecast} {result.issued_at:%Y-%m-%dT%H:%MZ} {result.status} by {result.model}"
    if result.refitted:
        head += " (refitted)"
    head += f" in {result.duration_s:.2f} s"
    if result.status == "published":
        return f"{head}: {result.rows_published} slots"
    return f"{head}: {result.message}"


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"
