"""Benchmark: what a `dataops` command costs before it does its work (CPU seconds and peak memory of the process).

    nice -n 19 python benchmarks/cli_startup.py [--repeat 5] [--vs REF] [--json]

Prepares a home with one day of carbon intensity (`dataops run`), then runs each command --repeat times as a
fresh process (`evals.cli:app`, what the installed `dataops` runs) and reports the median CPU
seconds (user + system, from the child's rusage: the machine's noise moves wall time far more) and the
largest peak RSS. In the same run it measures the floor, `python -c pass`, and with --vs REF the same
commands of another git revision (checked out into a temporary worktree, run side by side, one
measurement of each in turn), so a speed-up is a ratio measured under the same load.

Commands: `--help`, `--version`, `status`, `incidents`, `approvals`, `query "select count(*) ..."`, and `run`:
a one-day `dataops run carbon_intensity` of a day not run before (each measurement its own day), start-up
included. A second floor, `python -c "import great_expectations"`, is what any process that validates pays first.
JSON: {"help_cpu_s", "version_cpu_s", "status_cpu_s", "incidents_cpu_s", "approvals_cpu_s", "query_cpu_s",
"run_cpu_s", "python_cpu_s", "gx_import_cpu_s", "peak_rss_mb": {...}, "vs": {"ref", "<command>_cpu_s", ...,
"ratio": {...}}}.
Goals (issue "Speed"): --help <= 0.3 CPU-s; status, incidents, approvals, query <= 1.0 CPU-s; a one-day run
<= 1.5 CPU-s (out of reach while `gx_import_cpu_s` alone is above it: every promotion is validated by GX).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COMMANDS: dict[str, list[str]] = {
    "help": ["--help"],
    "version": ["--version"],
    "status": ["status"],
    "incidents": ["incidents"],
    "approvals": ["approvals"],
    "query": ["query", "select count(*) as slots from silver.carbon_intensity"],
    "run": ["run", "carbon_intensity", "--start", "{day}", "--end", "{next_day}"],  # a new day each time
}
NEW = {"version"}  # commands an older revision (--vs) may not have


def measure(argv: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(CPU seconds, peak RSS in MB) of one child process, from its own rusage; the command must succeed."""
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv)} failed ({child.returncode}):\n{err.read().decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # ru_maxrss in KiB on Linux


def worktree(ref: str, into: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(into), ref], check=True, capture_output=True)
    return into


def entry(tree: Path) -> list[str]:
    """What the installed `dataops` runs, for the revision in the working directory (evals.cli:app in every revision)."""
    return [sys.executable, "-c", "from evals.cli import app; app(prog_name='dataops')"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (median reported; default 5)")
    parser.add_argument("--vs", metavar="REF", help="also measure this git revision (e.g. HEAD~3), interleaved")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="dataops-cli-startup-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    env |= {"DATAOPS_HOME": str(scratch / "home"), "GX_ANALYTICS_ENABLED": "false"}
    trees = {"this": REPO}
    try:
        if args.vs:
            trees["vs"] = worktree(args.vs, scratch / "vs")
        print("preparing a home with one day of carbon intensity ...", file=sys.stderr)
        subprocess.run(
            [*entry(REPO), "run", "carbon_intensity", "--start", "2023-03-01", "--end", "2023-03-02"],
            cwd=REPO, env=env, check=True, capture_output=True,
        )  # fmt: skip
        cpu: dict[str, dict[str, list[float]]] = {t: {c: [] for c in COMMANDS} for t in trees}
        rss: dict[str, float] = {}
        floor: list[float] = []
        gx_floor: list[float] = []
        days = (date(2023, 3, 2) + timedelta(days=i) for i in range(10_000))  # the prepared home holds 2023-03-01
        for i in range(args.repeat):
            print(f"round {i + 1}/{args.repeat}", file=sys.stderr)
            floor.append(measure([sys.executable, "-c", "pass"], cwd=REPO, env=env)[0])
            gx_floor.append(measure([sys.executable, "-c", "import great_expectations"], cwd=REPO, env=env)[0])
            for command, argv in COMMANDS.items():
                for name, tree in trees.items():
                    if name == "vs" and command in NEW:
                        continue
                    day = next(days)
                    args_now = [a.format(day=day.isoformat(), next_day=(day + timedelta(days=1)).isoformat()) for a in argv]
                    seconds, peak = measure([*entry(tree), *args_now], cwd=tree, env=env)
                    cpu[name][command].append(seconds)
                    if name == "this":
                        rss[command] = max(rss.get(command, 0.0), peak)
        report: dict[str, Any] = {f"{c}_cpu_s": round(statistics.median(v), 3) for c, v in cpu["this"].items()}
        report["python_cpu_s"] = round(statistics.median(floor), 3)
        report["gx_import_cpu_s"] = round(statistics.median(gx_floor), 3)
        report["peak_rss_mb"] = {c: round(v) for c, v in rss.items()}
        report["repeat"] = args.repeat
        if args.vs:
            theirs = {f"{c}_cpu_s": round(statistics.median(v), 3) for c, v in cpu["vs"].items() if v}
            ratio = {c: round(report[f"{c}_cpu_s"] / theirs[f"{c}_cpu_s"], 3) for c in COMMANDS if f"{c}_cpu_s" in theirs}
            report["vs"] = {"ref": args.vs, **theirs, "ratio": ratio}
    finally:
        if "vs" in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["vs"])], capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{'command':<12}{'CPU s':>8}{'peak MB':>9}" + (f"{args.vs:>12}{'ratio':>8}" if args.vs else ""))
    for c in COMMANDS:
        line = f"{c:<12}{report[f'{c}_cpu_s']:>8.3f}{report['peak_rss_mb'][c]:>9}"
        if args.vs and c in report["vs"]["ratio"]:
            line += f"{report['vs'][f'{c}_cpu_s']:>12.3f}{report['vs']['ratio'][c]:>8.3f}"
        print(line)
    print(f"{'python':<12}{report['python_cpu_s']:>8.3f}   (the floor: `python -c pass`)")
    print(f'{"gx import":<12}{report["gx_import_cpu_s"]:>8.3f}   (`python -c "import great_expectations"`: what `run` pays first)')


if __name__ == "__main__":
    main()
