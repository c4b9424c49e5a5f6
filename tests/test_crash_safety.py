"""A run killed with SIGKILL at any commit leaves main of every table valid and unchanged, and the next run completes it.

A real child process runs `run_pipeline` on a platform home of its own and kills itself with SIGKILL at one
catalog commit (`SqlCatalog.commit_table`, patched in the child only):

    before  the commit is not attempted
    torn    the new metadata file is written but the catalog pointer is not swapped yet
    after   the commit is in the catalog; the run dies before the next step

The parent then checks every table the pipeline writes: main is where it was, or moved by commits of the
killed run only, to exactly what a clean run publishes; main scans; keys are unique. A second, in-process
run of the same window must end with the contents of a clean run and mark the killed run abandoned.

Two scenarios: `populated` (an earlier carbon window already published, so "unchanged" means
something; every commit of the run is a kill point) and `fresh` (an empty platform, killed right after
each genesis snapshot, when main of a table first exists and is empty).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table.update import AddSnapshotUpdate, RemoveSnapshotRefUpdate, SetSnapshotRefUpdate

from config.settings import load_settings
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import RunResult, run_pipeline
from pipelines.sources.base import Window
from tests.conftest import REPO, utc, window

pytestmark = pytest.mark.slow

PIPELINE = "carbon_intensity"
# Holds real defects (7 slots quarantined), so silver's audit branch is written, reset and rewritten.
WINDOW = window((2023, 1, 20), (2023, 2, 3))
EARLIER = window((2023, 1, 6), (2023, 1, 20))
AS_OF = utc(2024, 6, 1)  # after every capture in the replay data: each run sees the same records
TABLES = (
    "bronze.carbon_intensity",
    "silver.carbon_intensity",
    "gold.carbon_intensity_hourly",
    "gold.intensity_vs_temperature_daily",
    "quarantine.carbon_intensity",
)
KEYS = {
    "bronze.carbon_intensity": ("record_key", "payload_hash"),
    "silver.carbon_intensity": ("ts",),
    "gold.carbon_intensity_hourly": ("ts",),
    "gold.intensity_vs_temperature_daily": ("ts",),
}
# Lineage and clock columns: silver and gold carry the *landing* run's id, so they differ between homes.
VOLATILE = frozenset({"run_id", "fetched_at", "quarantined_at"})
PARALLEL_CHILDREN = 2
CHILD_TIMEOUT_S = 300


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    prepare: tuple[tuple[str, Window], ...]  # completed runs before the one that is killed
    commits: tuple[str, ...]  # what a clean run of WINDOW commits, in order; kill points are named after them


def _promotion(table: str, *, genesis: bool, rewrite: bool) -> tuple[str, ...]:
    steps = ["genesis"] if genesis else []
    steps += ["open audit branch", "write audit branch"]
    steps += ["reset audit branch", "write audit branch"] if rewrite else []
    return tuple(f"{table}: {step}" for step in [*steps, "publish"])


def _commits(*, genesis: bool) -> tuple[str, ...]:
    return (
        "bronze.carbon_intensity: append",
        *_promotion("silver.carbon_intensity", genesis=genesis, rewrite=True),
        *_promotion("gold.carbon_intensity_hourly", genesis=genesis, rewrite=False),
        *_promotion("gold.intensity_vs_temperature_daily", genesis=genesis, rewrite=False),
        "quarantine.carbon_intensity: append",
    )


SCENARIOS = {
    "populated": Scenario(name="populated", prepare=((PIPELINE, EARLIER),), commits=_commits(genesis=False)),
    "fresh": Scenario(name="fresh", prepare=(), commits=_commits(genesis=True)),
}


@dataclass(frozen=True, kw_only=True)
class KillPoint:
    scenario: str
    commit: int  # 1-based index into the scenario's commits
    when: str  # before | torn | after

    @property
    def label(self) -> str:
        return SCENARIOS[self.scenario].commits[self.commit - 1]

    @property
    def table(self) -> str:
        return self.label.split(":")[0]

    @property
    def id(self) -> str:
        return f"{self.scenario}-{self.when}-{self.commit:02d}-{re.sub(r'[^a-z0-9.]+', '-', self.label)}"


MOVES_MAIN = ("append", "genesis", "publish")


def _kill_points() -> list[KillPoint]:
    """After every commit; torn inside every commit that moves main; before the first (nothing committed)."""
    points = [KillPoint(scenario="populated", commit=1, when="before")]
    for i, label in enumerate(SCENARIOS["populated"].commits, 1):
        if label.endswith(MOVES_MAIN):
            points.append(KillPoint(scenario="populated", commit=i, when="torn"))
        points.append(KillPoint(scenario="populated", commit=i, when="after"))
    fresh = SCENARIOS["fresh"].commits
    points += [KillPoint(scenario="fresh", commit=i, when="after") for i, label in enumerate(fresh, 1) if label.endswith("genesis")]
    return points


KILL_POINTS = _kill_points()

# Runs in the child: count catalog commits, SIGKILL this process at commit k, before/inside/after it.
CHILD = """
import os, signal, sys
from datetime import datetime

from pyiceberg.catalog.sql import SqlCatalog

pipeline, start, end, as_of, when, k = sys.argv[1:]
k = int(k)
commits = 0
commit_table = SqlCatalog.commit_table
write_metadata = SqlCatalog._write_metadata


def die():
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def counting_commit_table(self, table, requirements, updates):
    global commits
    commits += 1
    print(f"commit {commits} {'.'.join(table.name())}", file=sys.stderr, flush=True)
    if commits == k and when == "before":
        die()
    response = commit_table(self, table, requirements, updates)
    if commits == k and when == "after":
        die()
    return response


def tearing_write_metadata(metadata, io, metadata_path):
    write_metadata(metadata, io, metadata_path)
    if commits == k and when == "torn":
        die()


SqlCatalog.commit_table = counting_commit_table
SqlCatalog._write_metadata = staticmethod(tearing_write_metadata)

from config.settings import load_settings
from pipelines.context import PlatformContext
from pipelines.promotion import run_pipeline
from pipelines.sources.base import Window

ctx = PlatformContext.open(load_settings())
window = Window(start=datetime.fromisoformat(start), end=datetime.fromisoformat(end))
result = run_pipeline(ctx, pipeline, window, as_of=datetime.fromisoformat(as_of))
print(f"not killed: run {result.status} after {commits} commits; error {result.error}", file=sys.stderr, flush=True)
"""


# -- reading a platform --------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class TableState:
    main: int | None
    rows: list[str]  # canonical JSON of each row without VOLATILE columns, sorted
    duplicate_keys: int


@contextmanager
def platform(home: Path) -> Iterator[PlatformContext]:
    ctx = PlatformContext.open(load_settings(home=home))
    try:
        yield ctx
    finally:
        ctx.ledger.engine.dispose()
        catalog = ctx.__dict__.get("catalog")
        if isinstance(catalog, SqlCatalog):
            catalog.engine.dispose()


def _canonical(row: dict[str, Any]) -> str:
    row = {k: v for k, v in row.items() if k not in VOLATILE}
    if isinstance(row.get("original"), str):
        # A quarantined silver row keeps its original values, landing run id and fetch time included.
        try:
            original = json.loads(row["original"])
        except ValueError:
            original = row["original"]
        if isinstance(original, dict):
            original = {k: v for k, v in original.items() if k not in VOLATILE}
        row["original"] = original
    return json.dumps(row, default=str, sort_keys=True)


def capture(ctx: PlatformContext) -> dict[str, TableState]:
    """Main of every table the pipeline writes, scanned in full."""
    states = {}
    for name in TABLES:
        table = load_table(ctx.catalog, name)
        main = wap.branch_head(table, wap.MAIN)
        data = table.scan().to_arrow() if main is not None else pa.table({})
        rows = data.to_pylist()
        keys = KEYS.get(name)
        duplicates = len(rows) - len({tuple(r[k] for k in keys) for r in rows}) if keys else 0
        states[name] = TableState(main=main, rows=sorted(_canonical(r) for r in rows), duplicate_keys=duplicates)
    return states


def row_difference(actual: list[str], expected: list[str]) -> str:
    """Empty when both hold the same rows; otherwise counts and a few examples of each side."""
    missing = Counter(expected) - Counter(actual)
    extra = Counter(actual) - Counter(expected)
    if not missing and not extra:
        return ""
    return (
        f"{len(actual)} rows, expected {len(expected)}; {sum(missing.values())} missing, e.g. {list(missing)[:2]}; "
        f"{sum(extra.values())} unexpected, e.g. {list(extra)[:2]}"
    )


def describe_commit(table: str, updates: tuple[Any, ...]) -> str:
    """One catalog commit in the words of `Scenario.commits`."""
    added = [u.snapshot for u in updates if isinstance(u, AddSnapshotUpdate)]
    moved = sorted(u.ref_name.split("-")[0] for u in updates if isinstance(u, SetSnapshotRefUpdate))
    removed = sorted(u.ref_name.split("-")[0] for u in updates if isinstance(u, RemoveSnapshotRefUpdate))
    match (len(added), moved, removed):
        case (1, ["main"], []):
            return f"{table}: {'genesis' if added[0].summary['dataops.operation'] == 'genesis' else 'append'}"
        case (1, ["audit"], []):
            return f"{table}: write audit branch"
        case (0, ["audit"], []):
            return f"{table}: open audit branch"
        case (0, ["audit"], ["audit"]):
            return f"{table}: reset audit branch"
        case (0, ["main"], ["audit"]):
            return f"{table}: publish"
    return f"{table}: {[type(u).__name__ for u in updates]}"


# -- fixtures --------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Reference:
    before: dict[str, TableState]  # after the scenario's preparation
    after: dict[str, TableState]  # after a clean run of WINDOW
    commits: list[str]
    status: str


@dataclass(frozen=True, kw_only=True)
class Victim:
    home: Path
    before: dict[str, TableState]
    pid: int
    returncode: int | None
    log: str


@pytest.fixture(scope="module")
def platform_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("DATAOPS_"):
                mp.delenv(key)
        mp.setenv("GX_ANALYTICS_ENABLED", "false")
        yield


def prepare(ctx: PlatformContext, scenario: Scenario) -> None:
    for pipeline, span in scenario.prepare:
        result = run_pipeline(ctx, pipeline, span, as_of=AS_OF)
        assert result.status == "succeeded", f"preparing {scenario.name}: {pipeline} {span} ended {result.status}: {result.error}"


def run_recording_commits(ctx: PlatformContext) -> tuple[RunResult, list[str]]:
    """Run WINDOW in-process, describing each catalog commit."""
    commits: list[str] = []
    commit_table = SqlCatalog.commit_table

    def recording(self: SqlCatalog, table: Any, requirements: Any, updates: Any) -> Any:
        commits.append(describe_commit(".".join(table.name()), updates))
        return commit_table(self, table, requirements, updates)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SqlCatalog, "commit_table", recording)
        result = run_pipeline(ctx, PIPELINE, WINDOW, as_of=AS_OF)
    return result, commits


@pytest.fixture(scope="module")
def reference(platform_env: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reference]:
    """Per scenario: contents before and after a clean, in-process run of WINDOW, and its commits."""
    references = {}
    for scenario in SCENARIOS.values():
        with platform(tmp_path_factory.mktemp(f"reference-{scenario.name}") / "home") as ctx:
            prepare(ctx, scenario)
            before = capture(ctx)
            result, commits = run_recording_commits(ctx)
            references[scenario.name] = Reference(before=before, after=capture(ctx), commits=commits, status=result.status)
    return references


@pytest.fixture(scope="module")
def victims(reference: dict[str, Reference], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Victim]:
    """Every kill point run in a child on a home of its own, PARALLEL_CHILDREN at a time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    done: dict[str, Victim] = {}
    running: list[tuple[KillPoint, Path, dict[str, TableState], subprocess.Popen[bytes], Path]] = []

    def reap() -> None:
        point, home, before, child, log = running.pop(0)
        try:
            child.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        done[point.id] = Victim(home=home, before=before, pid=child.pid, returncode=child.returncode, log=log.read_text())

    for point in KILL_POINTS:
        base = tmp_path_factory.mktemp(point.id)
        home, log = base / "home", base / "child.log"
        with platform(home) as ctx:
            prepare(ctx, SCENARIOS[point.scenario])
            before = capture(ctx)
        args = [PIPELINE, WINDOW.start.isoformat(), WINDOW.end.isoformat(), AS_OF.isoformat(), point.when, str(point.commit)]
        while len(running) >= PARALLEL_CHILDREN:
            reap()
        with log.open("wb") as out:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, *args], cwd=REPO, env={**env, "DATAOPS_HOME": str(home)}, stdout=out, stderr=subprocess.STDOUT
            )
        running.append((point, home, before, child, log))
    while running:
        reap()
    return done


# -- tests -----------------------------------------------------------------------------------------
def test_a_clean_run_commits_what_the_kill_points_are_named_after(reference: dict[str, Reference]) -> None:
    for name, scenario in SCENARIOS.items():
        assert reference[name].commits == list(scenario.commits), (
            f"a clean {name} run of {WINDOW} now commits differently; update Scenario.commits so every commit stays a kill point"
        )
        assert reference[name].status == "succeeded"
    quarantined = reference["populated"].after["quarantine.carbon_intensity"].rows
    assert len(quarantined) == 7, "the window's real defects reach quarantine, so silver's audit branch is rewritten"


def _main_moves(ctx: PlatformContext, name: str, before: int | None) -> list[str | None]:
    """Run ids of the snapshots between main before the kill and main now (none when main did not move)."""
    table = load_table(ctx.catalog, name)
    run_ids: list[str | None] = []
    current = wap.branch_head(table, wap.MAIN)
    while current != before:
        assert current is not None, f"{name}: main no longer descends from {before}, its snapshot before the kill"
        snapshot = table.metadata.snapshot_by_id(current)
        assert snapshot is not None, f"{name}: main points at {current}, which the table's metadata does not hold"
        run_ids.append(snapshot.summary["run_id"])
        current = snapshot.parent_snapshot_id
    return run_ids


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.id)
def test_sigkill_leaves_main_valid_and_unchanged_and_the_next_run_completes_the_window(
    point: KillPoint, victims: dict[str, Victim], reference: dict[str, Reference]
) -> None:
    victim, clean = victims[point.id], reference[point.scenario]
    assert victim.returncode == -signal.SIGKILL, f"the child was not killed (exit {victim.returncode}):\n{victim.log[-4000:]}"
    commit_lines = re.findall(r"^commit \d+ \S+$", victim.log, flags=re.MULTILINE)
    assert commit_lines and commit_lines[-1] == f"commit {point.commit} {point.table}", victim.log[-4000:]
    assert {n: s.rows for n, s in victim.before.items()} == {n: s.rows for n, s in clean.before.items()}, "prepared home differs"

    with platform(victim.home) as ctx:
        running = [r for r in ctx.ledger.runs(pipeline=PIPELINE) if r.status == "running"]
        assert [r.pid for r in running] == [victim.pid], "the killed run is left 'running' with the child's pid"
        killed_run = running[0].run_id

        crashed = capture(ctx)
        for name in TABLES:
            state, before, after = crashed[name], victim.before[name], clean.after[name]
            moves = _main_moves(ctx, name, before.main)
            assert set(moves) <= {killed_run}, f"{name}: main moved by snapshots of other runs: {moves}"
            assert (state.main == before.main) == (not moves)
            assert state.duplicate_keys == 0, f"{name}: {state.duplicate_keys} duplicate keys on main after the kill"
            if not row_difference(state.rows, before.rows):
                continue  # unchanged
            diff = row_difference(state.rows, after.rows)
            assert moves and not diff, f"{name}: main is neither as before the kill nor as a clean run publishes it: {diff}"

        result = run_pipeline(ctx, PIPELINE, WINDOW, as_of=AS_OF)
        assert result.status == clean.status, f"the next run ended {result.status}: {result.error}"
        statuses = {r.run_id: r.status for r in ctx.ledger.runs(pipeline=PIPELINE)}
        assert statuses[killed_run] == "abandoned"
        assert statuses[result.run_id] == result.status
        completed = capture(ctx)
        for name in TABLES:
            diff = row_difference(completed[name].rows, clean.after[name].rows)
            assert not diff, f"{name} after the next run differs from a clean run: {diff}"
            assert completed[name].duplicate_keys == 0, f"{name}: duplicate keys after the next run"
            leftover = wap.audit_branches(load_table(ctx.catalog, name))
            assert set(leftover) <= {wap.audit_branch_name(killed_run)}, f"{name}: audit branches of finished runs remain: {leftover}"
