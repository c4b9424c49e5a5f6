"""Benchmark: validated promotion of carbon-intensity records against one plain Parquet write.

    python benchmarks/promotion.py [--rows N] [--home DIR] [--json] [--profile FILE]

Synthesises N half-hour slots (rounded up to whole UTC days) shaped like NESO API records, from the
bundled real 2023 series perturbed per synthetic year, and measures in one process:

  baseline   pyarrow.parquet.write_table of the conformed silver-shaped rows, once (zstd, like the tables)
  promotion  the real run (`pipelines.promotion._Run`, fed by a source serving the synthetic records):
             bronze landing, conform, write-audit-publish to silver with the Great Expectations suite,
             the gold hourly mart recomputed and promoted the same way
  query      a weekly aggregate of one year of gold.carbon_intensity_hourly through `run_query`
             (what `dataops query` runs): median and p95 over repetitions, cold and warm scan cache

Only the hourly mart is promoted: the daily intensity-versus-temperature mart needs weather, which the
synthetic data does not have. Nothing outside --home (default a temporary folder) is written.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import json
import math
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow.parquet as pq

from config.settings import load_settings
from pipelines import promotion
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.sources import replay
from pipelines.sources.base import FetchResult, SourceRecord, Window
from pipelines.validation.suite import _context as _gx_context

PIPELINE = "carbon_intensity"
MART = "carbon_intensity_hourly"
END = datetime(2024, 1, 1, tzinfo=UTC)  # the synthetic history ends where the bundled 2023 series does
SLOT = timedelta(minutes=30)
BANDS = ((40, "very low"), (120, "low"), (200, "moderate"), (290, "high"))
QUERY_YEAR = 2023
QUERY = f"""
SELECT date_trunc('week', ts) AS week, avg(actual) AS mean_actual, min(actual) AS min_actual,
       max(actual) AS max_actual, avg(forecast) AS mean_forecast, sum(slots) AS slots
FROM gold.carbon_intensity_hourly
WHERE ts >= TIMESTAMPTZ '{QUERY_YEAR}-01-01 00:00:00+00' AND ts < TIMESTAMPTZ '{QUERY_YEAR + 1}-01-01 00:00:00+00'
GROUP BY 1 ORDER BY 1
"""


# -- synthetic data -------------------------------------------------------------------------------
def real_2023_series() -> tuple[np.ndarray, np.ndarray]:
    """(forecast, actual) of every 2023 slot as first published; the few missing actuals take the forecast."""
    versions = [v for v in replay.intensity_versions() if v.slot.year == 2023 and v.captured_at == v.slot + SLOT]
    versions.sort(key=lambda v: v.slot)
    forecast = np.array([v.record["intensity"]["forecast"] for v in versions], dtype=float)
    actual = np.array([np.nan if v.record["intensity"]["actual"] is None else v.record["intensity"]["actual"] for v in versions])
    actual = np.where(np.isnan(actual), forecast, actual)
    return forecast, actual


def band(value: float) -> str:
    for limit, name in BANDS:
        if value < limit:
            return name
    return "very high"


def synthetic_records(rows: int, *, seed: int = 2023) -> list[SourceRecord]:
    """`rows` slots ending at END, rounded up to whole days; each synthetic year is 2023 scaled and jittered.

    The last 17,520 slots follow the real 2023 series (jittered); earlier years repeat it on a dirtier grid,
    about 2 % more carbon-intensive per year back, as GB's grid was.

    Values stay valid under the carbon_intensity suite (positive, below 1000, forecast within 120 of the
    actual, the band matching the actual), so every row is promoted and none is quarantined.
    """
    slots = math.ceil(rows / 48) * 48
    start = END - slots * SLOT
    forecast_2023, actual_2023 = real_2023_series()
    rng = np.random.default_rng(seed)
    back = np.arange(slots)[::-1]  # slots before END, 0 = the last slot of 2023
    position = len(actual_2023) - 1 - back % len(actual_2023)
    years_back = back // len(actual_2023)
    # A different grid each synthetic year (a decarbonising trend plus noise), as real years differ.
    year_scale = np.clip(1.0 + 0.02 * years_back + rng.normal(0, 0.03, size=years_back.max() + 1)[years_back], 0.5, 2.5)
    actual = np.clip(np.rint(actual_2023[position] * year_scale * rng.normal(1, 0.03, slots)), 5, 990)
    miss = np.clip(np.rint(forecast_2023[position] - actual_2023[position] + rng.normal(0, 4, slots)), -100, 100)
    forecast = np.clip(actual + miss, 5, 990)
    records = []
    for i in range(slots):
        ts = start + i * SLOT
        payload = {
            "from": ts.strftime("%Y-%m-%dT%H:%MZ"),
            "to": (ts + SLOT).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": int(forecast[i]), "actual": int(actual[i]), "index": band(actual[i])},
        }
        records.append(SourceRecord(ts=ts, record_key=ts.isoformat(), payload=payload, source_uri="bench://synthetic"))
    return records


@dataclass(kw_only=True)
class SyntheticSource:
    """Serves the prebuilt records whatever the window: the fetch stage costs only the platform's own work."""

    records: list[SourceRecord]

    def fetch(self, window: Window, *, as_of: datetime) -> FetchResult:
        return FetchResult.model_construct(records=list(self.records), problems=[], requests=0, retries=0)


# -- timing ---------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Stopwatch:
    """Wall time per named step; steps may nest, each keeps its own total."""

    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rows: dict[str, int] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] += time.perf_counter() - started


def instrument(watch: Stopwatch) -> Callable[[], None]:
    """Wrap the lakehouse, conform, validate and mart entry points the run calls; returns an undo."""
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, label: Callable[..., str]) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with watch.step(label(*args, **kwargs)):
                return original(*args, **kwargs)

        patched.append((owner, attr, original))
        setattr(owner, attr, timed)

    wrap(wap, "append", lambda t, *a, **k: f"{_layer(t)}: append")
    wrap(wap, "open_audit_branch", lambda t, *a, **k: f"{_layer(t)}: open audit branch")
    wrap(wap, "overwrite_days", lambda t, *a, **k: f"{_layer(t)}: overwrite days on branch")
    wrap(wap, "read_days", lambda t, *a, **k: f"{_layer(t)}: read days" + (" (branch)" if k.get("branch", "main") != "main" else ""))
    wrap(wap, "publish", lambda t, *a, **k: f"{_layer(t)}: publish")
    wrap(promotion, "conform", lambda *a, **k: "silver: conform (json -> rows)")
    wrap(promotion, "validate", lambda suite, *a, **k: f"{suite.table.split('.')[0]}: validate (GE)")
    wrap(promotion, "compute_mart", lambda *a, **k: "gold: compute mart (DuckDB)")

    def undo() -> None:
        for owner, attr, original in reversed(patched):
            setattr(owner, attr, original)

    return undo


def _layer(table: Any) -> str:
    ident = table.name()
    return str(ident[0]) if isinstance(ident, tuple) else str(ident).split(".")[0]


class TimedRun(promotion._Run):
    """The real run, with each of its steps timed as a whole (the wrappers above split them further)."""

    watch: Stopwatch

    def fetch(self) -> FetchResult:
        with self.watch.step("fetch: dedupe records"):
            return super().fetch()

    def land_bronze(self, fetched: FetchResult) -> list[datetime]:
        with self.watch.step("bronze: landing (total)"):
            return super().land_bronze(fetched)

    def promote(self, target_name: str, *args: Any, **kwargs: Any) -> None:
        with self.watch.step(f"{target_name.split('.')[0]}: promote (total)"):
            super().promote(target_name, *args, **kwargs)

    def refresh_mart(self, mart_name: str, days: list[datetime]) -> None:
        with self.watch.step("gold: refresh mart (total)"):
            super().refresh_mart(mart_name, days)

    def write_quarantine(self) -> int:
        with self.watch.step("quarantine: write"):
            return super().write_quarantine()


# -- the measured run -----------------------------------------------------------------------------
def promote(ctx: PlatformContext, records: list[SourceRecord], watch: Stopwatch) -> tuple[promotion.RunResult, float]:
    spec = ctx.inventory.pipeline(PIPELINE).model_copy(update={"marts": (MART,)})
    window = Window(start=records[0].ts, end=records[-1].ts + SLOT)
    as_of = window.end + timedelta(hours=1)
    run_id = promotion.new_run_id(PIPELINE)
    ctx.ledger.start_run(run_id=run_id, pipeline=PIPELINE, window_start=window.start, window_end=window.end, as_of=as_of)
    source = SyntheticSource(records=records)
    original_build = promotion.build_source
    promotion.build_source = lambda *_a, **_k: source  # type: ignore[assignment]
    undo = instrument(watch)
    run = TimedRun(ctx, spec, window, as_of=as_of, run_id=run_id, progress=None)
    run.watch = watch
    try:
        started = time.perf_counter()
        result = run.execute()
        elapsed = time.perf_counter() - started
    finally:
        undo()
        promotion.build_source = original_build
    ctx.ledger.finish_run(run_id, status=result.status, rows_in=result.rows_in, rows_out=result.rows_out, timings=run.timings)
    return result, elapsed


def baseline_parquet(ctx: PlatformContext, directory: Path) -> tuple[float, int, int]:
    """One pyarrow.parquet.write_table of silver as published (same rows, same schema, zstd)."""
    silver = load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow()
    path = directory / "silver.parquet"
    started = time.perf_counter()
    pq.write_table(silver, path, compression="zstd")
    elapsed = time.perf_counter() - started
    return elapsed, silver.num_rows, path.stat().st_size


def query_latency(ctx: PlatformContext, repetitions: int, *, cold: bool) -> dict[str, Any]:
    from pipelines import query

    samples, rows = [], 0
    for _ in range(repetitions):
        if cold:
            # Drop the per-snapshot scan cache, as the first query after a new snapshot (or a new process) sees it.
            getattr(query, "_SCANS", {}).clear()
        started = time.perf_counter()
        result = query.run_query(ctx, QUERY)
        samples.append((time.perf_counter() - started) * 1000)
        rows = result.row_count
    samples.sort()
    return {
        "repetitions": repetitions,
        "result_rows": rows,
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[min(len(samples) - 1, math.ceil(0.95 * len(samples)) - 1)], 2),
        "min_ms": round(samples[0], 2),
    }


def query_pushdown_latency(ctx: PlatformContext, repetitions: int) -> dict[str, Any]:
    """The same aggregate when the year is pushed into the Iceberg scan (partition pruning), for comparison."""
    import duckdb
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    sql = QUERY.replace("gold.carbon_intensity_hourly", "hourly")
    samples = []
    for _ in range(repetitions):
        started = time.perf_counter()
        table = load_table(ctx.catalog, "gold.carbon_intensity_hourly")
        year = table.scan(
            row_filter=And(
                GreaterThanOrEqual("ts", f"{QUERY_YEAR}-01-01T00:00:00+00:00"), LessThan("ts", f"{QUERY_YEAR + 1}-01-01T00:00:00+00:00")
            )
        ).to_arrow()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.register("hourly", year)
        con.execute(sql).fetchall()
        con.close()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "repetitions": repetitions,
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[min(len(samples) - 1, math.ceil(0.95 * len(samples)) - 1)], 2),
    }


# -- report ---------------------------------------------------------------------------------------
def rate(rows: int, seconds: float) -> float | None:
    return round(rows / seconds) if seconds > 0 else None


def build_report(
    args: argparse.Namespace,
    records: int,
    generate_s: float,
    result: promotion.RunResult,
    total_s: float,
    watch: Stopwatch,
    baseline: tuple[float, int, int],
    queries: dict[str, Any],
) -> dict[str, Any]:
    gold_rows = next((t.rows_written for t in result.tables if t.table.startswith("gold.")), 0)
    stages = []
    for name, seconds in sorted(watch.totals.items(), key=lambda kv: -kv[1]):
        layer = name.split(":")[0]
        rows = gold_rows if layer == "gold" else result.bronze_new if layer in ("bronze", "fetch") else result.rows_in
        stages.append(
            {
                "stage": name,
                "seconds": round(seconds, 3),
                "rows": rows,
                "rows_per_s": rate(rows, seconds),
                "share_of_promotion": round(seconds / total_s, 3),
            }
        )
    top = [s for s in stages if "(total)" in s["stage"]]
    leaves = [s for s in stages if "(total)" not in s["stage"]]
    baseline_s, baseline_rows, baseline_bytes = baseline
    return {
        "rows_requested": args.rows,
        "records": records,
        "days": records // 48,
        "generate_s": round(generate_s, 2),
        "run": {
            "status": result.status,
            "bronze_new": result.bronze_new,
            "silver_rows": result.rows_out,
            "gold_rows": gold_rows,
            "quarantined": result.rows_quarantined,
        },
        "promotion_s": round(total_s, 3),
        "promotion_rows_per_s": rate(result.rows_in, total_s),
        "baseline_parquet": {
            "seconds": round(baseline_s, 3),
            "rows": baseline_rows,
            "bytes": baseline_bytes,
            "rows_per_s": rate(baseline_rows, baseline_s),
        },
        "ratio_promotion_to_parquet": round(total_s / baseline_s, 1),
        "ratio_goal": 4.0,
        "steps": top,
        "stages": leaves,
        "dominant_stage": leaves[0]["stage"] if leaves else None,
        "query": queries,
        "query_goal_median_ms": 100.0,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nValidated promotion of {report['records']:,} carbon-intensity records ({report['days']:,} UTC days); synthesis took {report['generate_s']} s (not counted)"
    )
    run = report["run"]
    print(
        f"run status {run['status']}: bronze +{run['bronze_new']:,}, silver {run['silver_rows']:,}, gold {run['gold_rows']:,}, quarantined {run['quarantined']:,}\n"
    )
    print(f"{'step / stage':<44}{'seconds':>10}{'rows':>12}{'rows/s':>12}{'share':>8}")
    print("-" * 86)
    for section in ("steps", "stages"):
        for s in report[section]:
            rps = f"{s['rows_per_s']:,}" if s["rows_per_s"] else "-"
            print(f"{s['stage']:<44}{s['seconds']:>10.3f}{s['rows']:>12,}{rps:>12}{s['share_of_promotion']:>8.1%}")
        print("-" * 86)
    b = report["baseline_parquet"]
    print(
        f"{'validated promotion, end to end':<44}{report['promotion_s']:>10.3f}{report['run']['silver_rows']:>12,}{report['promotion_rows_per_s']:>12,}"
    )
    print(f"{'baseline: one pyarrow.parquet.write_table':<44}{b['seconds']:>10.3f}{b['rows']:>12,}{b['rows_per_s']:>12,}")
    verdict = "meets" if report["ratio_promotion_to_parquet"] <= report["ratio_goal"] else "misses"
    print(
        f"\nratio promotion / parquet write: {report['ratio_promotion_to_parquet']}x ({verdict} the {report['ratio_goal']}x goal); dominant stage: {report['dominant_stage']}"
    )
    print(
        f"\nquery: weekly aggregate of {QUERY_YEAR} from gold.carbon_intensity_hourly ({report['query']['result_rows_cold'] if 'result_rows_cold' in report['query'] else '?'} rows out)"
    )
    for name, q in report["query"].items():
        if isinstance(q, dict):
            verdict = "meets" if q["median_ms"] < report["query_goal_median_ms"] else "misses"
            print(
                f"  {name:<58} median {q['median_ms']:>9.2f} ms  p95 {q['p95_ms']:>9.2f} ms  ({q['repetitions']} reps; {verdict} < 100 ms)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="records to promote, rounded up to whole days (default 1,000,000)")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="DATAOPS_HOME to use; must be empty or absent (default: a temporary folder, removed afterwards)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.add_argument("--repetitions", type=int, default=30, help="warm query repetitions (default 30)")
    parser.add_argument("--cold-repetitions", type=int, default=5, help="cold query repetitions, each rescanning gold (default 5)")
    parser.add_argument(
        "--profile", type=Path, default=None, help="also write cProfile stats of the promotion to this file and print the top functions"
    )
    args = parser.parse_args(argv)
    if args.rows < 48:
        parser.error("--rows must be at least 48 (one day)")

    temporary = args.home is None
    home = Path(tempfile.mkdtemp(prefix="dataops-bench-")) if temporary else args.home
    if not temporary and home.exists() and any(home.iterdir()):
        parser.error(f"--home {home} is not empty; the benchmark needs a fresh platform")
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        for key in [k for k in os.environ if k.startswith("DATAOPS_")]:
            del os.environ[key]
        ctx = PlatformContext.open(load_settings(home=home))
        ctx.catalog  # noqa: B018 - create the tables before timing anything
        _gx_context()  # GX loads lazily; warm it so its import is not billed to the first audit
        log(f"synthesising {args.rows:,} records ...")
        started = time.perf_counter()
        records = synthetic_records(args.rows)
        generate_s = time.perf_counter() - started
        log(f"promoting {len(records):,} records through bronze, silver and gold ...")
        watch = Stopwatch()
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        result, total_s = promote(ctx, records, watch)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        del records
        if result.status != "succeeded":
            print(f"the run ended {result.status}: {result.error or result.held_days[:5]}", file=sys.stderr)
            return 1
        log("baseline parquet write ...")
        with tempfile.TemporaryDirectory(prefix="dataops-bench-parquet-") as directory:
            baseline = baseline_parquet(ctx, Path(directory))
        log("query latency ...")
        queries: dict[str, Any] = {}
        cold = query_latency(ctx, args.cold_repetitions, cold=True)
        warm = query_latency(ctx, args.repetitions, cold=False)
        queries["result_rows_cold"] = cold.pop("result_rows")
        warm.pop("result_rows")
        queries["dataops query, cold (full table scan into DuckDB)"] = cold
        queries["dataops query, warm (scan cached per snapshot)"] = warm
        queries["pyiceberg scan with the year pushed down + DuckDB"] = query_pushdown_latency(ctx, args.repetitions)
        report = build_report(args, result.rows_in, generate_s, result, total_s, watch, baseline, queries)
        if args.json:
            print(json.dumps(report, indent=2, default=str))
        else:
            print_report(report)
            if args.profile:
                print(f"\ncProfile of the promotion, top 25 by own time ({args.profile}):")
                pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(25)
        return 0
    finally:
        with contextlib.suppress(Exception):
            ctx.ledger.engine.dispose()
        if temporary:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
