"""`make run`'s first simulated weeks, measured: lake conflicts, mart freshness and the calm of the log.

    .venv/bin/python benchmarks/serve_marts.py              # 35 simulated days at the default speed (about 3 minutes)
    .venv/bin/python benchmarks/serve_marts.py --days 7 --json
    .venv/bin/python benchmarks/serve_marts.py --keep /tmp/serve-home   # keep the home to look at

Runs the real `dataops serve` (the agent attached, as `make run` starts it) in a fresh home until the replay
clock has covered `--days`, scraping /metrics until it stops. Then, from the home it wrote:

    conflicts      dataops_lake_conflicts_total by kind (re-plans, commit retries), and re-plans per carbon run
    mart lag       for each publish of a mart's input on main, the real seconds until the first mart publish
                   computed from it (or a later snapshot of it); and the same in simulated minutes
    recompute      each mart equals its SQL over silver as it is now (every input change reached it)
    pending        mart days still marked for a refresh when the service stopped
    log            ERROR lines, tracebacks and WARNING lines in the output, and its lines in the first two minutes

Prints a summary, or with --json `{"conflicts", "replans_per_carbon_run", "runs", "marts", "log"}`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
FIRST_MINUTES_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def serve(home: Path, days: int, speed: float | None) -> tuple[str, list[tuple[float, str]], float]:
    """Run `dataops serve` until the clock passes `days`; returns the last /metrics, the output lines with
    their real second, and the duration."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    env |= {"DATAOPS_HOME": str(home), "DATAOPS_METRICS_PORT": str(port)}
    until = (datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=days)).isoformat()
    command = [str(Path(sys.executable).with_name("dataops")), "serve", "--until", until]
    if speed is not None:
        command += ["--speed", str(speed)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    metrics = ""
    while process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                metrics = response.read().decode()
        except OSError:
            pass
        time.sleep(0.5)
    reader.join(timeout=10)
    if process.returncode != 0:
        raise SystemExit(f"dataops serve exited {process.returncode}:\n" + "\n".join(line for _, line in lines[-40:]))
    return metrics, lines, time.monotonic() - started


def _main_chain(table: Any) -> list[Any]:
    chain, current = [], table.metadata.current_snapshot_id
    while current is not None and (snapshot := table.snapshot_by_id(current)) is not None:
        chain.append(snapshot)
        current = snapshot.parent_snapshot_id
    return chain[::-1]


def marts(home: Path, speed: float) -> dict[str, Any]:
    """Lag of each mart behind its inputs' publishes, whether it equals its recompute, and what is left marked."""
    from config.settings import load_settings
    from pipelines import mart_refresh
    from pipelines.context import PlatformContext
    from pipelines.lakehouse.catalog import load_table
    from pipelines.monitors.reconcile import compare
    from pipelines.promotion import INPUTS_PROPERTY
    from pipelines.transforms.marts import compute_mart

    ctx = PlatformContext.open(load_settings(home=home))
    pending = mart_refresh.pending_days(ctx)
    report: dict[str, Any] = {}
    for mart in ctx.inventory.marts.values():
        gold = load_table(ctx.catalog, mart.table)
        publishes = [
            (s.timestamp_ms, json.loads(s.summary.additional_properties.get(INPUTS_PROPERTY, "{}")))
            for s in _main_chain(gold)
            if s.summary is not None and INPUTS_PROPERTY in s.summary.additional_properties
        ]
        if not publishes:
            continue
        lags = []
        inputs = {}
        for name in mart.inputs:
            table = load_table(ctx.catalog, name)
            inputs[name] = table.scan().to_arrow()
            stamp = {s.snapshot_id: s.timestamp_ms for s in table.metadata.snapshots}
            for snapshot in _main_chain(table):
                built = [at for at, read in publishes if stamp.get(read.get(name) or -1, 0) >= snapshot.timestamp_ms]
                if built:
                    lags.append((min(built) - snapshot.timestamp_ms) / 1000)
        days = sorted({ts.replace(hour=0, minute=0, second=0, microsecond=0) for t in inputs.values() for ts in t.column("ts").to_pylist()})
        spec = ctx.inventory.table(mart.table)
        recomputed = compute_mart(mart, spec, inputs, days=days)
        report[mart.table] = {
            "publishes": len(publishes),
            "lag_s": {"median": round(statistics.median(lags), 2), "max": round(max(lags), 2)} if lags else None,
            "lag_simulated_min": {"median": round(statistics.median(lags) * speed / 60), "max": round(max(lags) * speed / 60)}
            if lags
            else None,
            "equals_recompute": compare(spec, gold.scan().to_arrow(), recomputed).clean,
            "pending_days": len(pending.get(mart.table, [])),
        }
    return report


def log_summary(lines: list[tuple[float, str]]) -> dict[str, Any]:
    text = [line for _, line in lines]
    first = [line for at, line in lines if at <= FIRST_MINUTES_S]
    return {
        "errors": sum(line.startswith("ERROR") for line in text),
        "tracebacks": sum("Traceback (most recent call last)" in line for line in text),
        "warnings": sum(line.startswith("WARNING") for line in text),
        "run_lines": sum(line.startswith("INFO pipelines.service.runs:") for line in text),
        "lines_first_two_minutes": len(first),
        "errors_or_tracebacks_first_two_minutes": sum(line.startswith("ERROR") or "Traceback" in line for line in first),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=35, help="simulated days from the replay start (default 35)")
    parser.add_argument("--speed", type=float, default=None, help="replay speed (default DATAOPS_REPLAY_SPEED's default, 17280)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the platform home here")
    parser.add_argument("--log", type=Path, default=None, help="write the service's output here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    home = args.keep or Path(tempfile.mkdtemp(prefix="serve-marts-"))
    try:
        metrics, lines, duration = serve(home, args.days, args.speed)
        if args.log:
            args.log.write_text("".join(f"[{at:6.1f}s] {line}\n" for at, line in lines))
        conflicts = _samples(metrics, "dataops_lake_conflicts_total")
        runs = _samples(metrics, "dataops_pipeline_runs_total")
        by_kind: dict[str, float] = {}
        for labels, value in conflicts.items():
            kind = dict(labels)["kind"]
            by_kind[kind] = by_kind.get(kind, 0) + value
        per_pipeline: dict[str, float] = {}
        for labels, value in runs.items():
            pipeline = dict(labels)["pipeline"]
            per_pipeline[pipeline] = per_pipeline.get(pipeline, 0) + value
        carbon_replans = sum(v for labels, v in conflicts.items() if dict(labels) == {"pipeline": "carbon_intensity", "kind": "replan"})
        report = {
            "simulated_days": args.days,
            "duration_s": round(duration, 1),
            "conflicts": {k: int(v) for k, v in sorted(by_kind.items())},
            "replans_per_carbon_run": round(carbon_replans / per_pipeline["carbon_intensity"], 2)
            if per_pipeline.get("carbon_intensity")
            else None,
            "runs": {k: int(v) for k, v in sorted(per_pipeline.items())},
            "marts": marts(home, args.speed or 17280.0),
            "log": log_summary(lines),
        }
    finally:
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.days} simulated days in {report['duration_s']} s: runs {report['runs']}")
    print(f"conflicts {report['conflicts']}; re-plans per carbon run {report['replans_per_carbon_run']}")
    for table, figures in report["marts"].items():
        print(f"{table}: {figures}")
    print(f"log: {report['log']}")


if __name__ == "__main__":
    main()
