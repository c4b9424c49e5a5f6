"""Benchmark: peak memory of landing a large dropped CSV, streaming reader against the old whole-file read.

    nice -n 19 python benchmarks/drop_memory.py [--size-mb 1024] [--pipeline-mb 2] [--cap-mb 6144] [--phases ...] [--json]

Writes a CSV of about --size-mb of country intensities (unique country and year per row, ~36 bytes a row)
into a temporary drop folder and measures each phase in its own child process (peak RSS is the child's
`ru_maxrss`). A child whose RSS passes --cap-mb is killed and reported as such, so a phase that does not
fit never takes the machine (an address-space limit would not do: pyarrow's and pyiceberg's thread pools
reserve gigabytes they never touch):

  read       the drop folder's streaming CSV reader (`pipelines.sources.drop_formats.csv_records`), rows
             counted as they pass: what reading the file costs
  baseline   the previous reader (the whole file read into one string, then every row into a list of
             dicts), the code this replaced: run at --size-mb and, for the scaling, at 1/16 of it
  pipeline   `run_pipeline("country_intensity")` on a file of --pipeline-mb (default 1/64 of --size-mb):
             drop folder, bronze, silver with its suite, quarantine
  landing    the same whole pipeline on the --size-mb file: the goal, a 1 GB CSV landing under 500 MB
             (`bronze_peak_rss_mb`: the peak up to the end of the bronze landing, before silver and its suite)
  bronze     the --size-mb file through the drop folder into bronze only, the run stopped where silver would
             begin (not in the default plan: `--phases bronze`)

--phases picks some of them (default all, in the order above).

Nothing is written outside a temporary folder, removed afterwards.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONTRACT = ("country_code", "country_or_region", "year", "emissions_intensity_gco2_per_kwh")


def write_csv(path: Path, size_bytes: int) -> int:
    """A CSV of at least `size_bytes` of rows the silver suite accepts, unique (country, year); returns the rows written."""
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(CONTRACT) + "\n")
        written = 0
        while written < size_bytes:
            lines = []
            for i in range(rows, rows + 100_000):
                country, year = divmod(i, 110)  # valid rows: ISO-3-shaped codes, years 1990..2099, 0.5..899.5 g/kWh
                code = "".join(chr(65 + country // 26**k % 26) for k in (2, 1, 0))
                lines.append(f"{code},Country {country:07d},{1990 + year},{(i * 37) % 900 + 0.5}\n")
            block = "".join(lines)
            out.write(block)
            written += len(block)
            rows += 100_000
    return rows


def _read(path: str) -> dict[str, Any]:
    from pipelines.sources.drop_formats import csv_records

    with open(path, "rb") as stream:
        return {"rows": sum(1 for _ in csv_records(stream, CONTRACT))}


def _baseline(path: str) -> dict[str, Any]:
    # The reader this replaced (pipelines/sources/file_drop.py before issue 14), verbatim in effect.
    text = Path(path).read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    rows = [dict(zip(header, row, strict=True)) for row in reader]
    return {"rows": len(rows)}


class _StopAfterBronze(Exception):
    """The `bronze` phase ends the run where silver would begin."""


def _bronze(path: str) -> dict[str, Any]:
    return _pipeline(path, bronze_only=True)


def _pipeline(path: str, *, bronze_only: bool = False) -> dict[str, Any]:
    from config.settings import load_settings
    from pipelines.context import PlatformContext
    from pipelines.promotion import run_pipeline
    from pipelines.sources.base import Window

    home = Path(path).parent / "home"
    settings = load_settings(home=home, source_mode="http")  # http: the bundled Ember file stays out of the count
    drop = settings.drop_folder / "country_intensity"
    drop.mkdir(parents=True, exist_ok=True)
    os.link(path, drop / "big.csv")
    os.unlink(path)  # one name again: the drop folder refuses hard links
    ctx = PlatformContext.open(settings)
    from datetime import UTC, datetime

    from pipelines.staged_promotion import StagedPromotion

    bronze_peak: list[float] = []
    promote = StagedPromotion.promote

    def timed_promote(self: StagedPromotion, groups: list[list[datetime]]) -> None:
        # Peak memory up to here is the fetch and the bronze landing; silver (and Great Expectations) comes next.
        bronze_peak.append(round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        if bronze_only:
            raise _StopAfterBronze("stopped after the bronze landing (phase bronze)")
        promote(self, groups)

    StagedPromotion.promote = timed_promote  # type: ignore[method-assign]
    window = Window(start=datetime(2023, 1, 1, tzinfo=UTC), end=datetime(2023, 1, 2, tzinfo=UTC))
    try:
        result = run_pipeline(ctx, "country_intensity", window)
    except _StopAfterBronze:
        from pipelines.lakehouse.catalog import load_table

        bronze = load_table(ctx.catalog, "bronze.country_intensity")  # rows from the manifests' record counts
        landed = sum(task.file.record_count for task in bronze.scan().plan_files())
        return {"rows": landed, "status": "bronze landed", "silver_rows": 0, "error": None, "bronze_peak_rss_mb": bronze_peak[0]}
    return {
        "rows": result.bronze_new,
        "status": result.status,
        "silver_rows": result.rows_out,
        "error": result.error,
        "bronze_peak_rss_mb": bronze_peak[0] if bronze_peak else None,
    }


PHASES = {"read": _read, "baseline": _baseline, "pipeline": _pipeline, "landing": _pipeline, "bronze": _bronze}


def _child(phase: str, path: str, out: Any) -> None:
    started = time.perf_counter()
    report = PHASES[phase](path)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out.put(report)


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)


def measure(phase: str, size_mb: float, cap_mb: int, folder: Path) -> dict[str, Any]:
    work = folder / f"{phase}-{size_mb:g}"
    work.mkdir()
    path = work / "big.csv"
    written = write_csv(path, int(size_mb * 1024 * 1024))
    queue: mp.Queue[dict[str, Any]] = mp.get_context("fork").Queue()
    child = mp.get_context("fork").Process(target=_child, args=(phase, str(path), queue))
    child.start()
    started, peak_kb = time.perf_counter(), 0
    while child.is_alive():
        peak_kb = max(peak_kb, _rss_kb(child.pid or 0))
        if peak_kb > cap_mb * 1024:
            child.kill()
            break
        child.join(0.2)
    child.join()
    if not queue.empty():
        report = queue.get()
    else:
        seconds = round(time.perf_counter() - started, 1)
        report = {
            "error": f"killed past the {cap_mb} MiB RSS cap" if peak_kb > cap_mb * 1024 else f"died (exit {child.exitcode})",
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "seconds": seconds,
        }
    shutil.rmtree(work, ignore_errors=True)
    return {"phase": phase, "size_mb": size_mb, "csv_rows": written, **report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1024.0)
    parser.add_argument("--pipeline-mb", type=float, default=None, help="size of the smaller pipeline run (default size/64)")
    parser.add_argument("--cap-mb", type=int, default=6144, help="RSS past which a child is killed, MiB")
    parser.add_argument("--phases", nargs="+", choices=sorted(PHASES), default=None, help="phases to run (default all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    size, small = args.size_mb, args.pipeline_mb or args.size_mb / 64
    plan = [("read", size), ("baseline", size / 16), ("baseline", size), ("pipeline", small), ("landing", size)]
    plan += [("bronze", size)] if args.phases and "bronze" in args.phases else []
    plan = [(phase, mb) for phase, mb in plan if args.phases is None or phase in args.phases]
    with tempfile.TemporaryDirectory(prefix="dataops-drop-memory-") as tmp:
        results = [measure(phase, mb, args.cap_mb, Path(tmp)) for phase, mb in plan]
    summary = {"size_mb": size, "cap_mb": args.cap_mb, "goal": "land a 1 GB CSV under 500 MB peak RSS", "phases": results}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for r in results:
            extra = (
                f" status={r['status']} silver_rows={r['silver_rows']} bronze_peak_rss={r['bronze_peak_rss_mb']} MB"
                if "status" in r
                else ""
            )
            error = f" error={r['error']}" if r.get("error") else ""
            print(
                f"{r['phase']:9} {r['size_mb']:8.1f} MB  rows={r.get('rows', '-')!s:>10}  "
                f"peak_rss={r['peak_rss_mb']:8.1f} MB  {r['seconds']:7.1f} s{extra}{error}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
