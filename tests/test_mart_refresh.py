"""Marts as assets: input runs mark the days they changed, one coalesced refresh at a time builds a mart.

`gold.intensity_vs_temperature_daily` reads silver.carbon_intensity and silver.weather: the two pipelines that
feed it must never race for it (no re-plan, no commit retry), a day both changed is built once, a refresh killed
half-way is done by the next run, and the mart always equals its recompute from the silver it was built from and,
once both inputs ran, from silver as it is now.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from config.errors import PublishConflictError
from config.inventory import MonitorSpec
from config.settings import DataopsSettings
from pipelines import mart_refresh, promotion, table_promotion
from pipelines.clock import SteppedClock
from pipelines.context import PlatformContext
from pipelines.control import PipelineControl
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.reconcile import check_reconcile, compare
from pipelines.promotion import INPUTS_PROPERTY, RunResult, run_pipeline
from pipelines.run_log import RUN_LOG, run_line
from pipelines.run_result import TableOutcome
from pipelines.service import Service
from pipelines.validation.suite import SuiteOutcome
from tests.conftest import REPO, utc, window

AS_OF = utc(2024, 1, 1)
DAY = utc(2023, 3, 1)
DAILY = "gold.intensity_vs_temperature_daily"
HOURLY = "gold.carbon_intensity_hourly"


def writers(ctx: PlatformContext, name: str) -> list[str]:
    """Run ids of the commits on `name`'s main, oldest first: who refreshed it, once per refresh."""
    table = load_table(ctx.catalog, name)
    chain, current = [], wap.branch_head(table, wap.MAIN)
    while current is not None and (snapshot := table.snapshot_by_id(current)) is not None:
        chain.append(snapshot.summary.additional_properties.get("run_id", "") if snapshot.summary else "")
        current = snapshot.parent_snapshot_id
    return list(dict.fromkeys(reversed(chain)))


def assert_mart_is_its_recompute(ctx: PlatformContext, days: list[datetime]) -> None:
    """The mart equals the SQL over silver as it is now, and the reconciliation monitor (which recomputes from
    the snapshots each publish recorded in `dataops.inputs`) finds every day reconciled."""
    mart = ctx.inventory.mart("intensity_vs_temperature_daily")
    spec = ctx.inventory.table(DAILY)
    inputs = {name: wap.read_days(load_table(ctx.catalog, name), days) for name in mart.inputs}
    recomputed = promotion.compute_mart(mart, spec, inputs, days=days)
    published = wap.read_days(load_table(ctx.catalog, DAILY), days)
    assert published.num_rows == len(days), published.to_pylist()
    assert compare(spec, published, recomputed).clean
    monitor = MonitorSpec(name="daily_reconcile", kind="reconcile", table=DAILY, history_days=7, severity="critical")
    assert check_reconcile(ctx, monitor, max(days) + timedelta(days=1)) == []
    snapshot = load_table(ctx.catalog, DAILY).current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    recorded = json.loads(snapshot.summary.additional_properties[INPUTS_PROPERTY])
    assert set(recorded) == set(mart.inputs), "each publish records the input snapshots it was computed from"


def no_conflicts(*results: RunResult) -> None:
    assert [(r.replans, r.commit_retries) for r in results] == [(0, 0)] * len(results)


def test_two_inputs_changing_one_mart_day_make_one_refresh_and_no_conflict(ctx: PlatformContext) -> None:
    w = window((2023, 3, 1), (2023, 3, 2))
    carbon = run_pipeline(ctx, "carbon_intensity", w, as_of=AS_OF, refresh_marts=False)
    assert mart_refresh.pending_days(ctx) == {HOURLY: [DAY], DAILY: [DAY]}, "the input run marked its marts' day"
    assert not [t for t in carbon.tables if t.table.startswith("gold.")], "and left the refresh to later"

    weather = run_pipeline(ctx, "weather", w, as_of=AS_OF)

    assert [t.table for t in weather.tables].count(DAILY) == 1
    assert writers(ctx, DAILY) == [weather.run_id], "one refresh built the day both inputs changed"
    no_conflicts(carbon, weather)
    assert mart_refresh.pending_days(ctx) == {HOURLY: [DAY]}, "the hourly mart reads carbon only: it waits for carbon's next run"
    assert_mart_is_its_recompute(ctx, [DAY])


def test_an_input_publishing_while_its_mart_refreshes_waits_instead_of_racing(
    settings: DataopsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Weather refreshes the mart; carbon is ready to publish the same day's silver right then. Before marts were
    # refreshed under their inputs' locks, weather then found an input changed under it and planned again.
    ctx = PlatformContext.open(settings)
    w = window((2023, 3, 1), (2023, 3, 2))
    at_publish, marked = threading.Event(), threading.Event()
    real_lock, real_mark, real_compute = PipelineControl.table_lock, mart_refresh.mark, promotion.compute_mart
    carbon: list[RunResult] = []
    started: list[threading.Thread] = []

    def table_lock(self: PipelineControl, table: str) -> Any:
        if table == "silver.carbon_intensity" and threading.current_thread().name == "carbon":
            at_publish.set()  # carbon audited its silver and asks to publish it
        return real_lock(self, table)

    def mark(context: PlatformContext, marts: Any, days: Any, *, run_id: str) -> None:
        real_mark(context, marts, days, run_id=run_id)
        if "carbon_intensity" in run_id:
            marked.set()

    def compute_mart(mart: Any, target: Any, inputs: dict[str, pa.Table], *, days: list[datetime]) -> pa.Table:
        rows = real_compute(mart, target, inputs, days=days)
        if mart.name == "intensity_vs_temperature_daily" and not started:
            run = lambda: carbon.append(run_pipeline(PlatformContext.open(settings), "carbon_intensity", w, as_of=AS_OF))  # noqa: E731
            started.append(threading.Thread(name="carbon", target=run))
            started[0].start()
            assert at_publish.wait(120)
            marked.wait(2)  # a carbon publish that did not wait for the refresh would be done by now
        return rows

    monkeypatch.setattr(PipelineControl, "table_lock", table_lock)
    monkeypatch.setattr(mart_refresh, "mark", mark)
    monkeypatch.setattr(promotion, "compute_mart", compute_mart)
    weather = run_pipeline(ctx, "weather", w, as_of=AS_OF)
    started[0].join(timeout=300)
    assert (weather.status, carbon[0].status) == ("succeeded", "succeeded")
    no_conflicts(weather, carbon[0])
    assert writers(ctx, DAILY) == [weather.run_id, carbon[0].run_id], "carbon published after the refresh, and refreshed again"
    assert mart_refresh.pending_days(ctx) == {}
    assert_mart_is_its_recompute(ctx, [DAY])


CRASH = """
import os, signal, sys
from datetime import datetime, UTC
from config.settings import load_settings
from pipelines import promotion
from pipelines.context import PlatformContext
from pipelines.sources.base import Window

def killed(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the process dies inside the mart refresh, after weather's silver published

promotion.compute_mart = killed
ctx = PlatformContext.open(load_settings(home=sys.argv[1]))
day = Window(start=datetime(2023, 3, 1, tzinfo=UTC), end=datetime(2023, 3, 2, tzinfo=UTC))
promotion.run_pipeline(ctx, "weather", day, as_of=datetime(2024, 1, 1, tzinfo=UTC))
"""


def test_a_refresh_killed_half_way_is_done_by_the_next_run(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 2)), as_of=AS_OF)
    assert wap.read_days(load_table(ctx.catalog, DAILY), [DAY]).num_rows == 0, "no temperatures yet: the join is empty"

    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    child = subprocess.run([sys.executable, "-c", CRASH, str(ctx.settings.home)], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    assert load_table(ctx.catalog, "silver.weather").scan().to_arrow().num_rows == 24, "weather's silver was published"
    assert wap.read_days(load_table(ctx.catalog, DAILY), [DAY]).num_rows == 0, "and the mart not yet"
    assert mart_refresh.pending_days(ctx) == {DAILY: [DAY]}, "the mark survived the kill"

    # The next run of either input (here carbon, over another day) builds the marked day too.
    later = run_pipeline(ctx, "carbon_intensity", window((2023, 3, 2), (2023, 3, 3)), as_of=AS_OF)
    assert later.status == "succeeded" and mart_refresh.pending_days(ctx) == {}
    no_conflicts(later)
    assert_mart_is_its_recompute(ctx, [DAY])


def test_a_catch_up_over_several_windows_refreshes_its_marts_once(ctx: PlatformContext, caplog: pytest.LogCaptureFixture) -> None:
    svc = Service(ctx, clock=SteppedClock(current=utc(2023, 1, 20)), sleep=lambda _s: None)
    with caplog.at_level(logging.INFO, logger=RUN_LOG.name):
        svc.tick("carbon_intensity")
    first, last = svc.results  # 14-day requests: 1..15 January, then 15..20
    assert not [t for t in first.tables if t.table.startswith("gold.")], "the first window only marked its days"
    assert {t.table: t.rows_written for t in last.tables if t.table.startswith("gold.")} == {HOURLY: 19 * 24, DAILY: 0}
    assert mart_refresh.pending_days(ctx) == {}
    lines = [r for r in caplog.records if r.name == RUN_LOG.name]
    assert [r.getMessage() for r in lines] == [run_line(first), run_line(last)], "one line per run"
    assert all(r.levelno == logging.INFO and not r.exc_info for r in lines)


def test_a_run_is_one_line_naming_window_rows_held_days_and_duration() -> None:
    result = RunResult(
        run_id="r1", pipeline="carbon_intensity", status="quarantined", window_start=utc(2023, 1, 25), window_end=utc(2023, 1, 27),
        as_of=utc(2023, 1, 27, 6), rows_out=47, rows_quarantined=49, held_days=["2023-01-26"], duration_s=0.8412,
        tables=[TableOutcome(table="silver.carbon_intensity", rows_written=47), TableOutcome(table=HOURLY, rows_written=1)],
        replans=1,
    )  # fmt: skip
    assert run_line(result) == (
        "carbon_intensity 2023-01-25..2023-01-27 quarantined in 0.84 s: 47 rows published, 49 quarantined, held 2023-01-26; "
        "gold.carbon_intensity_hourly 1 row (1 re-plans)"
    )
    failed = result.model_copy(update={"status": "failed", "error": "PublishConflictError: gold.x: main moved"})
    assert run_line(failed, attempts=2) == (
        "carbon_intensity 2023-01-25..2023-01-27 failed in 0.84 s (attempt 2): PublishConflictError: gold.x: main moved"
    )


def test_a_conflict_that_heals_itself_is_one_info_line_without_traceback(
    ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Another writer publishes over the day this run has just audited: the run plans again and publishes.
    real = table_promotion.validate
    intruded: list[bool] = []

    def validate(suite: Any, rows: pa.Table, *, as_of: datetime) -> SuiteOutcome:
        outcome = real(suite, rows, as_of=as_of)
        if suite.name == "carbon_intensity" and not intruded:
            intruded.append(True)
            table = load_table(ctx.catalog, "silver.carbon_intensity")
            wap.open_audit_branch(table, "audit-intruder", run_id="intruder")
            wap.overwrite_days(table, rows.slice(0, 1), [DAY], branch="audit-intruder", properties={"run_id": "intruder"})
            wap.publish(table, "audit-intruder")
        return outcome

    monkeypatch.setattr(table_promotion, "validate", validate)
    with caplog.at_level(logging.INFO):
        result = run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 2)), as_of=AS_OF)
    assert result.status == "succeeded" and result.replans == 1
    ours = [r for r in caplog.records if r.name.startswith("pipelines.")]
    (healed,) = [r for r in ours if "re-planning" in r.getMessage()]
    assert healed.levelno == logging.INFO and not healed.exc_info
    assert healed.getMessage().startswith("silver.carbon_intensity: another writer changed 2023-03-01"), "a table is named gold.name"
    assert not [r for r in ours if r.levelno >= logging.WARNING or r.exc_info], [r.getMessage() for r in ours]


def test_a_run_failing_on_a_conflict_logs_one_line_and_no_traceback(
    ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def conflict(*_args: Any, **_kwargs: Any) -> None:
        raise PublishConflictError("silver.carbon_intensity: main moved while publishing audit-x")

    monkeypatch.setattr(table_promotion.TablePromotion, "promote", conflict)
    with caplog.at_level(logging.INFO):
        result = run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 2)), as_of=AS_OF)
    assert (result.status, result.error_kind) == ("failed", "transient")
    ours = [r for r in caplog.records if r.name.startswith("pipelines.")]
    (failed,) = [r for r in ours if "failed" in r.getMessage()]
    assert failed.levelno == logging.INFO and not failed.exc_info
    assert "failed transiently: PublishConflictError: silver.carbon_intensity: main moved" in failed.getMessage()
    assert not [r for r in ours if r.levelno >= logging.WARNING or r.exc_info], [r.getMessage() for r in ours]


def test_marks_written_during_a_refresh_survive_it(ctx: PlatformContext) -> None:
    mart = ctx.inventory.mart("intensity_vs_temperature_daily")
    ctx.ledger.mark_mart_days([mart.name], [DAY], by="run-a")
    with mart_refresh.claim(ctx, mart) as days:
        assert days == [DAY]
        ctx.ledger.mark_mart_days([mart.name], [DAY], by="run-b")  # an input published again meanwhile
    assert mart_refresh.pending_days(ctx) == {DAILY: [DAY]}, "the later mark is for the next refresh"
    with pytest.raises(RuntimeError), mart_refresh.claim(ctx, mart):
        raise RuntimeError("the refresh failed")
    assert mart_refresh.pending_days(ctx) == {DAILY: [DAY]}, "a failed refresh clears nothing"
    with mart_refresh.claim(ctx, mart) as days:
        assert days == [DAY]
    assert mart_refresh.pending_days(ctx) == {}


def test_the_lock_files_live_in_the_home(ctx: PlatformContext) -> None:
    with mart_refresh.claim(ctx, ctx.inventory.mart("intensity_vs_temperature_daily")):
        pass
    assert Path(ctx.settings.home, "locks", "mart-intensity_vs_temperature_daily.lock").exists()
