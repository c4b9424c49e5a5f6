"""Benchmark: a backfill on the local executor against the same backfill on Ray, in one run.

    python benchmarks/backfill.py [--start 2023-01-01] [--end 2024-01-01] [--pipeline carbon_intensity]
                                  [--cpus N] [--partition-days 1] [--max-partitions-per-run 7] [--unpacked]
                                  [--executors local,ray] [--json]

Each executor backfills the range into its own fresh platform home (SQLite catalog, local warehouse, as
the embedded default) from the bundled replay data, through `pipelines.backfill.run_backfill`, the call
`dataops backfill` makes. Times are end to end as a user sees them: the Ray figure includes starting the
local cluster and each worker's first Great Expectations context. The report gives both wall times, their
ratio, the commit retries and re-plans the partitions met, and whether silver, gold and quarantine ended
with identical contents under both executors (rows compared without run ids and timestamps of the run).
It also reports how a commit's cost moves with the table's history: on the local executor (one partition
after another into the same tables) the mean duration of partitions 101-120 against partitions 1-20
(`late_vs_early_partition_ratio`; 1.0 means a commit costs the same however much history the table has)
and the local executor's time for the range (`year_day_partitions_s` for the default year of day
partitions). Partitions are packed as `dataops backfill` packs them, up to `--max-partitions-per-run`
(default: the command's, 7) consecutive partitions per run; `--unpacked` also backfills the range on the
local executor one run per partition (`local-unpacked`, `year_day_partitions_unpacked_s`), and the
tables and every partition's outcome (status, rows, held days) must then match that too
(`identical_outcomes`). `--executors local` skips Ray.
Nothing is written outside the temporary homes, which are removed afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from config.settings import load_settings  # noqa: E402
from pipelines.backfill import BackfillReport, ExecutorName, run_backfill  # noqa: E402
from pipelines.backfill_cli import DEFAULT_MAX_PARTITIONS_PER_RUN  # noqa: E402
from pipelines.context import PlatformContext  # noqa: E402
from pipelines.lakehouse.catalog import load_table  # noqa: E402

RUN_COLUMNS = {"run_id", "fetched_at", "quarantined_at"}  # differ between any two runs by design


def _without_run(row: dict[str, Any]) -> dict[str, Any]:
    """A quarantine row's `original` is the held row as JSON, run id included: compare it without."""
    original = row.get("original")
    if isinstance(original, str) and original.startswith("{"):
        row = {**row, "original": {k: v for k, v in json.loads(original).items() if k not in RUN_COLUMNS}}
    return row


def table_digest(ctx: PlatformContext, name: str) -> tuple[int, str]:
    """Row count and a digest of the rows' values, independent of file layout and order."""
    data = load_table(ctx.catalog, name).scan().to_arrow()
    keep = [c for c in data.column_names if c not in RUN_COLUMNS]
    rows = sorted(json.dumps(_without_run(r), default=str, sort_keys=True) for r in data.select(keep).to_pylist())
    return len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def late_vs_early(report: BackfillReport) -> float | None:
    """Mean duration of partitions 101-120 over partitions 1-20, in range order; None below 120 partitions.
    A packed partition's duration is its run's, so packed, this compares the runs that covered them."""
    durations = [o.duration_s for o in sorted(report.outcomes, key=lambda o: o.start)]
    if len(durations) < 120:
        return None
    early, late = durations[:20], durations[100:120]
    return round((sum(late) / len(late)) / (sum(early) / len(early)), 2)


def per_partition(report: BackfillReport) -> list[tuple[str, str, int, int, list[str]]]:
    """What the report says of each partition, packed or not: status, rows published and quarantined, held days."""
    return [(o.start.isoformat(), o.status, o.rows_out, o.rows_quarantined, o.held_days) for o in report.outcomes]


def run_one(
    label: str, executor: ExecutorName, args: argparse.Namespace, root: Path, *, max_partitions_per_run: int
) -> tuple[BackfillReport, dict[str, tuple[int, str]]]:
    settings = load_settings(home=root / label)
    ctx = PlatformContext.open(settings)
    start, end = (datetime.fromisoformat(v).replace(tzinfo=UTC) for v in (args.start, args.end))
    done = 0

    def progress(outcome: Any, total: int) -> None:
        nonlocal done
        done += 1
        if done % 30 == 0 or done == total:
            print(f"  {label}: {done}/{total} partitions", file=sys.stderr, flush=True)

    report = run_backfill(
        ctx, args.pipeline, start, end, executor=executor, as_of=end, partition_days=args.partition_days,
        max_partitions_per_run=max_partitions_per_run, cpus=args.cpus if executor == "ray" else None, on_partition=progress,
    )  # fmt: skip
    spec = ctx.inventory.pipeline(args.pipeline)
    tables = [spec.silver, spec.quarantine, *(ctx.inventory.mart(m).table for m in spec.marts)]
    return report, {name: table_digest(ctx, name) for name in tables}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2023-01-01", help="first day (default 2023-01-01)")
    parser.add_argument("--end", default="2024-01-01", help="end day, exclusive (default 2024-01-01: one year)")
    parser.add_argument("--pipeline", default="carbon_intensity", help="pipeline to backfill (default carbon_intensity)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: every core)")
    parser.add_argument("--partition-days", type=int, default=1, help="days per partition, both executors (default 1)")
    parser.add_argument(
        "--max-partitions-per-run",
        type=int,
        default=DEFAULT_MAX_PARTITIONS_PER_RUN,
        help=f"consecutive partitions packed into one run, both executors (default {DEFAULT_MAX_PARTITIONS_PER_RUN}, as dataops backfill)",
    )
    parser.add_argument(
        "--unpacked", action="store_true", help="also backfill on the local executor one run per partition, and compare its tables"
    )
    parser.add_argument("--executors", default="local,ray", help="comma-separated: local, ray or both (default both)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    args = parser.parse_args(argv)
    chosen = [e.strip() for e in args.executors.split(",") if e.strip()]
    if not chosen or any(e not in ("local", "ray") for e in chosen):
        parser.error(f"--executors {args.executors!r}: name local, ray or both")
    if args.max_partitions_per_run < 1:
        parser.error("--max-partitions-per-run: at least 1")
    plans: list[tuple[str, ExecutorName, int]] = [(e, cast(ExecutorName, e), args.max_partitions_per_run) for e in chosen]
    if args.unpacked:
        plans.append(("local-unpacked", "local", 1))
    for key in [k for k in os.environ if k.startswith("DATAOPS_")]:
        del os.environ[key]  # the embedded default, whatever this shell points at
    root = Path(tempfile.mkdtemp(prefix="dataops-bench-backfill-"))
    try:
        results = {label: run_one(label, executor, args, root, max_partitions_per_run=n) for label, executor, n in plans}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first_label = plans[0][0]
    first = results[first_label][0]
    summary: dict[str, Any] = {
        "pipeline": args.pipeline,
        "range": f"{args.start}..{args.end}",
        "partitions": first.partitions,
        "cpus": os.cpu_count(),
        "executors": {
            name: {
                "seconds": report.duration_s,
                "workers": report.workers,
                "max_partitions_per_run": report.max_partitions_per_run,
                "runs": report.runs,
                "partitions_per_s": round(report.partitions / report.duration_s, 2),
                "succeeded": report.succeeded,
                "quarantined": report.quarantined,
                "failed": report.failed,
                "commit_retries": report.commit_retries,
                "replans": report.replans,
                "task_retries": report.task_retries,
                "rows_published": report.rows_out,
                "rows_quarantined": report.rows_quarantined,
            }
            for name, (report, _tables) in results.items()
        },
        "tables": {
            name: {"rows": rows, **{e: results[e][1][name][1] for e in results}} for name, (rows, _) in results[first_label][1].items()
        },
    }
    if "local" in results:
        local = results["local"][0]
        summary["year_day_partitions_s"] = local.duration_s if args.partition_days == 1 else None
        summary["max_partitions_per_run"] = local.max_partitions_per_run
    if "local-unpacked" in results:
        summary["year_day_partitions_unpacked_s"] = results["local-unpacked"][0].duration_s if args.partition_days == 1 else None
        if "local" in results:
            summary["speedup_packed_over_unpacked"] = round(results["local-unpacked"][0].duration_s / results["local"][0].duration_s, 2)
    timed = results.get("local-unpacked", results.get("local"))
    if timed is not None:
        summary["late_vs_early_partition_ratio"] = late_vs_early(timed[0])
    if "local" in results and "ray" in results:
        summary["speedup_ray_over_local"] = round(results["local"][0].duration_s / results["ray"][0].duration_s, 2)
    if len(results) > 1:
        summary["identical_tables"] = all(tables == results[first_label][1] for _, tables in results.values())
        summary["identical_outcomes"] = all(per_partition(report) == per_partition(first) for report, _ in results.values())
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"backfill of {args.pipeline} {summary['range']}: {summary['partitions']} partitions, {summary['cpus']} cores")
        print(
            f"{'executor':<14} {'seconds':>8} {'workers':>7} {'runs':>5} {'part/s':>7} {'commit retries':>14} {'re-plans':>8} "
            f"{'task retries':>12} {'failed':>6}"
        )
        for name, e in summary["executors"].items():
            print(
                f"{name:<14} {e['seconds']:>8.1f} {e['workers']:>7} {e['runs']:>5} {e['partitions_per_s']:>7.2f} {e['commit_retries']:>14} "
                f"{e['replans']:>8} {e['task_retries']:>12} {e['failed']:>6}"
            )
        if "late_vs_early_partition_ratio" in summary:
            ratio = summary["late_vs_early_partition_ratio"]
            print(f"local: partitions 101-120 take {ratio}x partitions 1-20" if ratio is not None else "local: fewer than 120 partitions")
        if "speedup_packed_over_unpacked" in summary:
            print(
                f"speed-up of up to {summary['max_partitions_per_run']} partitions a run over one: {summary['speedup_packed_over_unpacked']}x"
            )
        if "speedup_ray_over_local" in summary:
            print(f"speed-up of ray over local: {summary['speedup_ray_over_local']}x")
        if "identical_tables" in summary:
            print(f"identical silver, gold and quarantine contents: {'yes' if summary['identical_tables'] else 'NO'}")
            print(f"identical outcome of every partition: {'yes' if summary['identical_outcomes'] else 'NO'}")
        for name, t in summary["tables"].items():
            print(f"  {name}: {t['rows']} rows, " + ", ".join(f"{e} {t[e]}" for e in results))
    failed = any(report.failed for report, _ in results.values())
    return 0 if summary.get("identical_tables", True) and summary.get("identical_outcomes", True) and not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
