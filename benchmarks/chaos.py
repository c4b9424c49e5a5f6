"""Chaos: random SIGKILLs of runs and of `serve`, concurrent writers and bad inputs, each followed by invariant checks.

    .venv/bin/python benchmarks/chaos.py                 # 50 kills (40 runs, 10 serve), 4 concurrent writers, every bad input
    .venv/bin/python benchmarks/chaos.py --kills 10 --json
    .venv/bin/python benchmarks/chaos.py --seed 7 --keep /tmp/chaos   # keep the homes to look at

One platform home takes every kill in turn, as a real deployment would: a `dataops run` of a random window
of carbon intensity or weather (or `dataops serve` on the replay clock, agent off) is started and killed with
SIGKILL after a random delay. After each kill the invariants are checked on that home:

    every table's main scans                 no duplicate key in silver or gold
    every slot bronze holds is in silver or in quarantine (nothing fetched is lost on the way)

At the end a recovery run of every window touched completes the home, and silver and gold must equal those
of a never-killed reference home that ran the same windows (lineage and clock columns aside): `lost_rows`
counts reference rows missing or different. Then four writers run overlapping windows at once on a fresh
home and must converge to the reference, and each bad input (drop-folder attacks, malformed settings) must
end in a clear error: an exit code and a message, never a traceback, and never a file outside the drop
folder read. Prints `{"kills", "survived", "lost_rows", "bad_inputs", "clear_errors", ...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATAOPS = str(Path(sys.executable).parent / "dataops")
PIPELINES = ("carbon_intensity", "weather")
FIRST_DAY = date(2023, 1, 2)
SPAN_DAYS = 40  # windows are drawn from FIRST_DAY .. FIRST_DAY + SPAN_DAYS (real defects on 26 and 31 January among them)
KEYS = {
    "silver.carbon_intensity": ("ts",),
    "silver.weather": ("ts",),
    "gold.carbon_intensity_hourly": ("ts",),
    "gold.intensity_vs_temperature_daily": ("ts",),
}
VOLATILE = frozenset({"run_id", "fetched_at", "quarantined_at"})
AS_OF = "2024-06-01T00:00:00Z"  # after every capture in the replay data: each run sees the same records


@dataclass
class Report:
    kills: int = 0
    run_kills: int = 0
    serve_kills: int = 0
    survived: int = 0
    lost_rows: int = 0
    concurrent_writers: int = 0
    concurrent_converged: bool = False
    concurrent_refusals: int = 0
    bad_inputs: int = 0
    clear_errors: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    return env | {"DATAOPS_HOME": str(home), "DATAOPS_AGENT_ENABLED": "false"} | extra


def _run_args(pipeline: str, start: date, end: date) -> list[str]:
    return [DATAOPS, "run", pipeline, "--start", start.isoformat(), "--end", end.isoformat(), "--as-of", AS_OF]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _window(rng: random.Random) -> tuple[str, date, date]:
    start = FIRST_DAY + timedelta(days=rng.randrange(SPAN_DAYS - 1))
    end = min(start + timedelta(days=rng.randint(1, 7)), FIRST_DAY + timedelta(days=SPAN_DAYS))
    return rng.choice(PIPELINES), start, end


def _kill_after(args: list[str], env: dict[str, str], delay_s: float, log: Path) -> bool:
    """Start the command, SIGKILL it after `delay_s`; True when it was still running (a real kill)."""
    with log.open("ab") as out:
        child = subprocess.Popen(args, env=env, stdout=out, stderr=out, cwd=REPO, start_new_session=True)
        try:
            child.wait(timeout=delay_s)
            return False
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return True


def _platform(home: Path) -> Any:
    from config.settings import load_settings
    from pipelines.context import PlatformContext

    return PlatformContext.open(load_settings(home=home))


def _rows(ctx: Any, table: str) -> list[dict[str, Any]]:
    from config.errors import LakehouseError
    from pipelines.lakehouse.catalog import load_table

    try:
        table_ = load_table(ctx.catalog, table)
    except LakehouseError:
        return []  # not created yet: empty; a table that exists but does not scan raises below and is reported
    return table_.scan().to_arrow().to_pylist()  # type: ignore[no-any-return]


def invariants(home: Path) -> list[str]:
    """What must hold on a home at any moment, however it was interrupted: every table scans, no key twice."""
    problems: list[str] = []
    ctx = _platform(home)
    try:
        for table, key in KEYS.items():
            rows = _rows(ctx, table)
            dupes = [k for k, n in Counter(tuple(r[c] for c in key) for r in rows).items() if n > 1]
            if dupes:
                problems.append(f"{table}: {len(dupes)} duplicate key(s), e.g. {dupes[0]}")
        for pipeline in PIPELINES:
            # Bronze must scan too; slots a killed run landed in bronze but not yet in silver are pending, not lost:
            # the next run of their window promotes them, and the final check after recovery counts any left over.
            _rows(ctx, ctx.inventory.pipeline(pipeline).bronze)
    except Exception as exc:  # any failure to read back is the finding, whatever its kind
        problems.append(f"the home does not read back: {type(exc).__name__}: {exc}")
    return problems


def _contents(home: Path) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    ctx = _platform(home)
    return {
        table: {tuple(r[c] for c in key): {k: v for k, v in r.items() if k not in VOLATILE} for r in _rows(ctx, table)}
        for table, key in KEYS.items()
    }


def lost_rows(home: Path, reference: Path) -> tuple[int, list[str]]:
    """Reference rows the home lacks or holds differently; and fetched slots neither published nor quarantined."""
    mine, theirs = _contents(home), _contents(reference)
    lost, notes = 0, []
    for table, rows in theirs.items():
        missing = [k for k, row in rows.items() if mine[table].get(k) != row]
        if missing:
            notes.append(f"{table}: {len(missing)} row(s) missing or different, e.g. {missing[0]}")
        lost += len(missing)
    ctx = _platform(home)
    for pipeline in PIPELINES:
        spec = ctx.inventory.pipeline(pipeline)
        fetched = {r["ts"] for r in _rows(ctx, spec.bronze)}
        placed = {r["ts"] for r in _rows(ctx, spec.silver)} | {
            r["ts"] for r in _rows(ctx, spec.quarantine) if r["target_table"] == spec.silver
        }
        stray = fetched - placed
        if stray:
            notes.append(f"{pipeline}: {len(stray)} fetched slot(s) neither in silver nor in quarantine")
        lost += len(stray)
    return lost, notes


def _landed(home: Path) -> list[tuple[str, date, date]]:
    """The days each pipeline's bronze holds (serve runs windows of its own clock): recovery must cover them too."""
    if not home.exists():
        return []
    ctx = _platform(home)
    spans = []
    for pipeline in PIPELINES:
        stamps = [r["ts"] for r in _rows(ctx, ctx.inventory.pipeline(pipeline).bronze) if r["ts"] is not None]
        if stamps:
            spans.append((pipeline, min(stamps).date(), max(stamps).date() + timedelta(days=1)))
    return spans


def _complete(home: Path, windows: list[tuple[str, date, date]], log: Path) -> None:
    for pipeline, start, end in windows:
        with log.open("ab") as out:
            subprocess.run(_run_args(pipeline, start, end), env=_env(home), stdout=out, stderr=out, cwd=REPO, check=False, timeout=900)


def _cover(windows: list[tuple[str, date, date]]) -> list[tuple[str, date, date]]:
    """One window per pipeline spanning everything touched (a recovery run and the reference run the same)."""
    spans: dict[str, tuple[date, date]] = {}
    for pipeline, start, end in windows:
        a, b = spans.get(pipeline, (start, end))
        spans[pipeline] = (min(a, start), max(b, end))
    return [(p, a, b) for p, (a, b) in sorted(spans.items())]


def kill_loop(report: Report, home: Path, *, kills: int, serve_share: float, rng: random.Random, log: Path) -> list[tuple[str, date, date]]:
    touched: list[tuple[str, date, date]] = []
    for i in range(kills):
        if rng.random() < serve_share:
            env = _env(home, DATAOPS_METRICS_PORT=str(_free_port()), DATAOPS_REPLAY_SPEED="86400",
                       DATAOPS_REPLAY_START=(FIRST_DAY + timedelta(days=rng.randrange(SPAN_DAYS - 5))).isoformat() + "T00:00:00Z")  # fmt: skip
            killed = _kill_after([DATAOPS, "serve"], env, rng.uniform(4.0, 20.0), log)
            report.serve_kills += killed
        else:
            window = _window(rng)
            touched.append(window)
            killed = _kill_after(_run_args(*window), _env(home), rng.uniform(1.0, 12.0), log)
            report.run_kills += killed
        report.kills += killed
        problems = invariants(home)
        if problems:
            report.failures.extend(f"after kill {i + 1}: {p}" for p in problems)
        else:
            report.survived += killed
        print(f"kill {i + 1}/{kills}: {'killed' if killed else 'finished first'}; {'ok' if not problems else problems[0]}", file=sys.stderr)
    return touched


def concurrent(report: Report, home: Path, reference: Path, log: Path) -> None:
    windows = [
        ("carbon_intensity", FIRST_DAY, FIRST_DAY + timedelta(days=10)),
        ("carbon_intensity", FIRST_DAY + timedelta(days=5), FIRST_DAY + timedelta(days=14)),
        ("weather", FIRST_DAY, FIRST_DAY + timedelta(days=14)),
        ("weather", FIRST_DAY + timedelta(days=3), FIRST_DAY + timedelta(days=8)),
    ]
    # All four start at once. Two runs of one pipeline never interleave: the second is refused ("already
    # running") and, as the scheduler would, tries again once the first is done; the two pipelines write the
    # shared mart gold.intensity_vs_temperature_daily truly at the same time.
    pending = list(windows)
    codes: list[int] = []
    for _round in range(len(windows)):
        with log.open("ab") as out:
            children = [(w, subprocess.Popen(_run_args(*w), env=_env(home), stdout=out, stderr=subprocess.PIPE, cwd=REPO)) for w in pending]
            finished = [(w, c.wait(timeout=1800), (c.stderr.read() if c.stderr else b"").decode()) for w, c in children]
        for _w, _code, err in finished:
            with log.open("a") as out:
                out.write(err)
        pending = [w for w, code, err in finished if code == 1 and "already running" in err]
        codes += [code for _w, code, err in finished if not (code == 1 and "already running" in err)]
        report.concurrent_refusals += len(pending)
        if not pending:
            break
    report.concurrent_writers = len(windows)
    _complete(reference, _cover(windows), log)
    lost, notes = lost_rows(home, reference)
    report.concurrent_converged = lost == 0 and not pending and all(c in (0, 3) for c in codes)
    if not report.concurrent_converged:
        report.failures.append(f"concurrent writers (exit codes {codes}): " + "; ".join(notes or ["a writer failed"]))


def _bad_drop_files(folder: Path, outside: Path) -> dict[str, str]:
    """Drop-folder attacks and malformed files; the value says what must not happen."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = outside / "secret.csv"
    secret.write_text("country,year,intensity\nSECRET-OUTSIDE-THE-FOLDER,2023,1\n")
    (folder / "passwd.csv").symlink_to("/etc/passwd")
    (folder / "outside.csv").symlink_to(secret)
    os.link(secret, folder / "hardlink.csv")
    (folder / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (folder / "garbage.parquet").write_bytes(os.urandom(4096))
    (folder / "empty.csv").write_text("")
    (folder / "wrong_header.csv").write_text("a,b\n1,2\n")
    (folder / "not_a_list.json").write_text('{"country": "GB"}')
    (folder / ".hidden.csv").write_text("country,year,intensity\nHIDDEN,2023,1\n")
    (folder / "upload.csv.part").write_text("country,year,intensity\nPARTIAL,2023,1\n")
    return {
        "SECRET-OUTSIDE-THE-FOLDER": "read through a link",
        "root:": "read /etc/passwd",
        "HIDDEN": "read a hidden file",
        "PARTIAL": "read a partial upload",
    }


def bad_inputs(report: Report, root: Path, log: Path) -> None:
    home = root / "bad-inputs"
    outside = root / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    leaks = _bad_drop_files(home / "drop" / "country_intensity", outside)
    cases: list[tuple[str, list[str], dict[str, str]]] = [
        ("drop folder attacks", [DATAOPS, "run", "country_intensity"], {}),
        ("DATAOPS_METRICS_PORT=abc", [DATAOPS, "status"], {"DATAOPS_METRICS_PORT": "abc"}),
        ("DATAOPS_REPLAY_SPEED=0", [DATAOPS, "status"], {"DATAOPS_REPLAY_SPEED": "0"}),
        ("DATAOPS_SLACK_PORT=70000", [DATAOPS, "status"], {"DATAOPS_SLACK_PORT": "70000"}),
        ("unreachable Postgres", [DATAOPS, "status"], {"DATAOPS_OPS_DB_URL": "postgresql+psycopg://u:p@127.0.0.1:1/x"}),
        ("unknown pipeline", [DATAOPS, "run", "no_such_pipeline"], {}),
        ("window end before start", [DATAOPS, "run", "carbon_intensity", "--start", "2023-02-01", "--end", "2023-01-01"], {}),
        ("malformed SQL", [DATAOPS, "query", "SELEC nonsense"], {}),
        ("a write through query", [DATAOPS, "query", "DELETE FROM silver.carbon_intensity"], {}),
    ]
    for name, args, extra in cases:
        report.bad_inputs += 1
        done = subprocess.run(args, env=_env(home, **extra), capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
        text = done.stdout + done.stderr
        with log.open("a") as out:
            out.write(f"--- {name}: exit {done.returncode}\n{text[-3000:]}\n")
        clear = "Traceback" not in text and (done.returncode == 0 or text.strip() != "")
        if name == "drop folder attacks":
            lake = _dump(home)
            leaked = [what for needle, what in leaks.items() if needle in lake]
            clear = clear and not leaked
            if leaked:
                report.failures.append(f"drop folder: {', '.join(leaked)}")
        elif done.returncode == 0:
            clear = False
        report.clear_errors += clear
        if not clear:
            report.failures.append(
                f"bad input {name!r}: exit {done.returncode}, {'traceback' if 'Traceback' in text else 'no clear error'}"
            )


def _dump(home: Path) -> str:
    """Everything the lake and the ops database hold, as text (to look for content that must never get in)."""
    ctx = _platform(home)
    parts = [json.dumps(_rows(ctx, t), default=str) for t in ctx.inventory.tables]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs in all (default 50)")
    parser.add_argument("--serve-share", type=float, default=0.2, help="share of kills aimed at `dataops serve` (default 0.2)")
    parser.add_argument("--seed", type=int, default=20231020)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", type=Path, help="keep the homes and the log in this folder")
    parser.add_argument("--skip", choices=("concurrent", "bad-inputs"), action="append", default=[])
    args = parser.parse_args(argv)
    if args.kills < 0 or not 0 <= args.serve_share <= 1:
        parser.error("--kills must be >= 0 and --serve-share between 0 and 1")
    root = args.keep or Path(tempfile.mkdtemp(prefix="chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    log = root / "chaos.log"
    rng = random.Random(args.seed)
    report = Report()
    started = time.perf_counter()
    try:
        home, reference = root / "killed", root / "reference"
        touched = kill_loop(report, home, kills=args.kills, serve_share=args.serve_share, rng=rng, log=log)
        recovery = _cover(touched + _landed(home)) or [("carbon_intensity", FIRST_DAY, FIRST_DAY + timedelta(days=3))]
        print("recovery and reference runs", file=sys.stderr)
        _complete(home, recovery, log)
        _complete(reference, recovery, log)
        report.lost_rows, notes = lost_rows(home, reference)
        report.failures.extend(notes)
        if "concurrent" not in args.skip:
            print("concurrent writers", file=sys.stderr)
            concurrent(report, root / "concurrent", root / "concurrent-reference", log)
        if "bad-inputs" not in args.skip:
            print("bad inputs", file=sys.stderr)
            bad_inputs(report, root, log)
    finally:
        report.seconds = round(time.perf_counter() - started, 1)
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    summary = {k: v for k, v in report.__dict__.items()}
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    ok = report.survived == report.kills and report.lost_rows == 0 and report.clear_errors == report.bad_inputs
    ok = ok and (report.concurrent_converged or "concurrent" in args.skip)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
