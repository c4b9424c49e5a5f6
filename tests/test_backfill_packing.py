"""Packed backfills: consecutive day partitions in one run, each still its own outcome, read from the run honestly."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from config.errors import PipelineError
from config.settings import DataopsSettings
from pipelines import backfill, faults
from pipelines.backfill import BackfillReport, PartitionOutcome, packing_refusal, plan_packs, run_backfill
from pipelines.bronze_landing import BronzeLanding
from pipelines.context import PlatformContext
from pipelines.run_result import DayRows, RunResult
from pipelines.sources.base import Window
from tests.conftest import utc
from tests.test_backfill import AS_OF, contents, other_home


def per_day(report: BackfillReport) -> list[tuple[str, str, str, int, int, list[str]]]:
    """What the report says of each partition, without what differs between runs (run ids, durations, conflicts)."""
    return [(o.start.isoformat(), o.end.isoformat(), o.status, o.rows_out, o.rows_quarantined, o.held_days) for o in report.outcomes]


def fail_on(monkeypatch: pytest.MonkeyPatch, bad_day: datetime) -> None:
    """Every run whose silver plan covers `bad_day` fails for good, as a bug in that day's data would make it."""
    real_plan = BronzeLanding.plan_silver

    def plan_silver(self: Any, days: list[datetime]) -> Any:
        if bad_day in days:
            raise PipelineError(f"cannot plan {bad_day.date()}")
        return real_plan(self, days)

    monkeypatch.setattr(BronzeLanding, "plan_silver", plan_silver)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (utc(2023, 1, 22), utc(2023, 2, 1)),  # rows quarantined on 24, 26 and 31 January (the real 2023 defects)
        (utc(2023, 10, 17), utc(2023, 10, 26)),  # 20-22 October held back whole (the NESO outage)
    ],
)
def test_packed_outcomes_per_day_equal_the_unpacked_ones_on_real_data(settings: DataopsSettings, start: datetime, end: datetime) -> None:
    unpacked_home, packed_home = other_home(settings, "unpacked"), other_home(settings, "packed")
    unpacked = run_backfill(unpacked_home, "carbon_intensity", start, end, as_of=AS_OF)
    seen: list[tuple[str, int]] = []
    packed = run_backfill(
        packed_home, "carbon_intensity", start, end, as_of=AS_OF, max_partitions_per_run=7,
        on_partition=lambda o, total: seen.append((o.start.date().isoformat(), total)),
    )  # fmt: skip
    days = (end - start).days
    assert (unpacked.runs, unpacked.max_partitions_per_run) == (days, 1)
    assert (packed.partitions, packed.runs, packed.max_partitions_per_run, packed.unpacked_reruns) == (days, 2, 7, 0)
    assert per_day(packed) == per_day(unpacked), "each day reads as it does when it runs on its own"
    assert packed.rows_quarantined > 0 and (packed.quarantined, packed.failed) == (unpacked.quarantined, 0)
    assert [total for _, total in seen] == [days] * days and [d for d, _ in seen] == [o.start.date().isoformat() for o in packed.outcomes]
    assert contents(packed_home) == contents(unpacked_home), "the same silver, gold and quarantine"
    runs = {o.run_id: o.run_partitions for o in packed.outcomes}
    assert sorted(runs.values()) == [days - 7, 7], "two runs: a week and the rest"
    ledger = {r.run_id: r for r in packed_home.ledger.runs(pipeline="carbon_intensity")}
    assert set(ledger) == set(runs), "every packed run is in the ledger, as any run"
    week = ledger[packed.outcomes[0].run_id]
    assert (week.window_start, week.window_end) == (start, start + (end - start) / days * 7)
    assert week.rows_out == sum(o.rows_out for o in packed.outcomes[:7])
    again = run_backfill(packed_home, "carbon_intensity", start, end, as_of=AS_OF, max_partitions_per_run=7)
    assert again.failed == 0 and contents(packed_home) == contents(unpacked_home), "a packed backfill run again changes nothing"


def test_a_held_day_inside_a_pack_is_its_own_outcome(settings: DataopsSettings) -> None:
    outage = faults.SourceFault(kind="outage", source="carbon_intensity", start=utc(2023, 3, 3), end=utc(2023, 3, 4))
    homes = {n: other_home(settings, f"pack{n}") for n in (1, 7)}
    reports = {}
    for n, ctx in homes.items():
        ctx.faults.inject(outage)
        reports[n] = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 6), as_of=AS_OF, max_partitions_per_run=n)
    packed = reports[7]
    assert packed.runs == 1 and len({o.run_id for o in packed.outcomes}) == 1
    assert [(o.start.day, o.status, o.rows_out, o.held_days) for o in packed.outcomes] == [
        (1, "succeeded", 48, []),
        (2, "succeeded", 48, []),
        (3, "quarantined", 0, ["2023-03-03"]),
        (4, "succeeded", 48, []),
        (5, "succeeded", 48, []),
    ]
    assert (packed.succeeded, packed.quarantined, packed.failed) == (4, 1, 0)
    assert per_day(packed) == per_day(reports[1]) and contents(homes[7]) == contents(homes[1])
    (run,) = homes[7].ledger.runs(pipeline="carbon_intensity")
    assert run.status == "quarantined" and run.held_days == ["2023-03-03"], "the ledger keeps the packed run whole"


def test_a_pack_that_fails_for_good_runs_its_days_alone_and_only_the_bad_day_fails(
    ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_on(monkeypatch, utc(2023, 3, 3))
    report = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 6), as_of=AS_OF, max_partitions_per_run=7)
    assert [(o.start.day, o.status, o.rows_out, o.attempts, o.run_partitions) for o in report.outcomes] == [
        (1, "succeeded", 48, 2, 1),
        (2, "succeeded", 48, 2, 1),
        (3, "failed", 0, 2, 1),
        (4, "succeeded", 48, 2, 1),
        (5, "succeeded", 48, 2, 1),
    ]
    assert "cannot plan 2023-03-03" in (report.outcomes[2].error or "")
    assert (report.runs, report.unpacked_reruns, report.task_retries, report.failed) == (6, 5, 0, 1)
    assert contents(ctx)["silver.carbon_intensity"][0] == 4 * 48
    runs = ctx.ledger.runs(pipeline="carbon_intensity")
    packs = [r for r in runs if r.window_end - r.window_start > (utc(2023, 3, 2) - utc(2023, 3, 1))]
    assert [(p.status, p.window_start, p.window_end) for p in packs] == [("failed", utc(2023, 3, 1), utc(2023, 3, 6))]
    assert sorted(r.status for r in runs if r not in packs) == ["failed"] + ["succeeded"] * 4, "each day alone, in the ledger"


def test_a_pack_that_fails_transiently_runs_its_days_alone_after_the_backoff(settings: DataopsSettings) -> None:
    ctx = PlatformContext.open(settings.model_copy(update={"run_backoff_s": 0.0, "run_max_attempts": 2}))
    ctx.faults.inject(faults.SourceFault(kind="transient_error", source="carbon_intensity", start=utc(2023, 3, 3), end=utc(2023, 3, 4)))
    report = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 6), as_of=AS_OF, max_partitions_per_run=7)
    assert [(o.start.day, o.status, o.attempts) for o in report.outcomes] == [
        (1, "succeeded", 2),
        (2, "succeeded", 2),
        (3, "failed", 2),
        (4, "succeeded", 2),
        (5, "succeeded", 2),
    ], "the pack's round counts: each day had run_max_attempts runs"
    assert "503" in (report.outcomes[2].error or "") and (report.task_retries, report.unpacked_reruns, report.runs) == (5, 5, 6)
    assert contents(ctx)["silver.carbon_intensity"][0] == 4 * 48


def test_a_pack_that_fails_transiently_once_converges(settings: DataopsSettings) -> None:
    ctx = PlatformContext.open(settings.model_copy(update={"run_backoff_s": 0.0}))
    ctx.faults.inject(
        faults.SourceFault(kind="transient_error", source="carbon_intensity", start=utc(2023, 3, 3), end=utc(2023, 3, 4), times=1)
    )
    seen: list[tuple[str, str, int]] = []
    report = run_backfill(
        ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 6), as_of=AS_OF, max_partitions_per_run=7,
        on_partition=lambda o, total: seen.append((o.start.date().isoformat(), o.status, total)),
    )  # fmt: skip
    assert (report.succeeded, report.failed, report.rows_out) == (5, 0, 5 * 48)
    assert [status for _, status, _ in seen] == ["succeeded"] * 5 and {total for *_, total in seen} == {5}, (
        "a failed pack reports nothing: its days report once, from their own runs"
    )


def test_with_no_attempt_left_a_transiently_failed_pack_fails_every_day_it_covered(settings: DataopsSettings) -> None:
    ctx = PlatformContext.open(settings.model_copy(update={"run_backoff_s": 0.0, "run_max_attempts": 1}))
    ctx.faults.inject(faults.SourceFault(kind="transient_error", source="carbon_intensity", start=utc(2023, 3, 3), end=utc(2023, 3, 4)))
    report = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 4), as_of=AS_OF, max_partitions_per_run=7)
    assert [(o.status, o.run_partitions, o.rows_out) for o in report.outcomes] == [("failed", 3, 0)] * 3, "never marked succeeded"
    assert len({o.run_id for o in report.outcomes}) == 1 and report.runs == 1


def test_an_abandoned_run_is_recovered_only_once_every_day_it_covered_converged(
    ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx.ledger.start_run(
        run_id="lost-1", pipeline="carbon_intensity", window_start=utc(2023, 3, 2), window_end=utc(2023, 3, 4), as_of=AS_OF
    )
    ctx.ledger.finish_run("lost-1", pid=2**22 + 12345)  # its process is gone: the next backfill marks it abandoned
    with monkeypatch.context() as patched:
        fail_on(patched, utc(2023, 3, 3))
        failing = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 6), as_of=AS_OF, max_partitions_per_run=7)
    assert failing.failed == 1
    assert [r.run_id for r in ctx.ledger.unrecovered("carbon_intensity")] == ["lost-1"], "a day it covered still failed"
    done = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 6), as_of=AS_OF, max_partitions_per_run=7)
    assert done.failed == 0 and ctx.ledger.unrecovered("carbon_intensity") == []
    lost = ctx.ledger.run("lost-1")
    assert lost is not None and lost.recovered_by == done.backfill_id


def test_packs_keep_every_worker_busy_and_refuse_what_a_run_cannot_tell_apart(ctx: PlatformContext) -> None:
    days = backfill.plan_partitions(utc(2023, 3, 1), utc(2023, 3, 11))
    assert [len(p) for p in plan_packs(days, 7)] == [7, 3]
    assert [len(p) for p in plan_packs(days, 7, workers=2)] == [5, 5], "two workers, two runs"
    assert [len(p) for p in plan_packs(days, 7, workers=16)] == [1] * 10
    assert [len(p) for p in plan_packs(days, 1)] == [1] * 10
    with pytest.raises(PipelineError, match="at least one partition"):
        plan_packs(days, 0)
    assert packing_refusal(ctx, ctx.inventory.pipeline("carbon_intensity")) is None
    assert "dropped files" in (packing_refusal(ctx, ctx.inventory.pipeline("country_intensity")) or "")


def _result(
    status: str, rows_by_day: dict[str, DayRows] | None, *, rows_out: int, rows_quarantined: int = 0, held: list[str] | None = None
) -> RunResult:
    return RunResult(
        run_id="r", pipeline="carbon_intensity", status=status, window_start=utc(2023, 3, 1), window_end=utc(2023, 3, 4), as_of=AS_OF,
        rows_by_day=rows_by_day, held_days=held or [], rows_out=rows_out, rows_quarantined=rows_quarantined,
    )  # fmt: skip


def test_a_result_that_cannot_tell_its_days_apart_is_not_split() -> None:
    pack = backfill.plan_partitions(utc(2023, 3, 1), utc(2023, 3, 4))
    rows = {
        "2023-03-01": DayRows(rows_out=48),
        "2023-03-02": DayRows(rows_out=48, rows_quarantined=2),
        "2023-03-05": DayRows(rows_quarantined=1),
    }
    split = backfill._split(_result("succeeded", rows, rows_out=96, rows_quarantined=3), pack)
    assert split is not None
    assert [(o.status, o.rows_out, o.rows_quarantined) for o in split] == [
        ("succeeded", 48, 1),
        ("succeeded", 48, 2),
        ("succeeded", 0, 0),
    ], "a day outside the pack (a mart day another pipeline marked) counts on its first partition"
    assert backfill._split(_result("failed", rows, rows_out=96, rows_quarantined=3), pack) is None
    assert backfill._split(_result("succeeded", None, rows_out=96), pack) is None, "staged files or a whole-window hold"
    assert backfill._split(_result("succeeded", rows, rows_out=97, rows_quarantined=3), pack) is None, "counts that do not add up"
    assert backfill._split(_result("quarantined", rows, rows_out=96, rows_quarantined=3), pack) is None, "held for no day"
    held = backfill._split(_result("quarantined", rows, held=["2023-03-03"], rows_out=96, rows_quarantined=3), pack)
    assert held is not None and [o.status for o in held] == ["succeeded", "succeeded", "quarantined"]


def test_cli_packs_partitions_and_says_so_in_help(settings: DataopsSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    from evals.cli import app

    monkeypatch.setenv("DATAOPS_HOME", str(settings.home))
    runner = CliRunner()
    args = ["backfill", "carbon_intensity", "--start", "2023-03-01", "--end", "2023-03-05", "--as-of", "2024-01-01", "--json"]
    packed = runner.invoke(app, [*args, "--max-partitions-per-run", "3"])
    assert packed.exit_code == 0, packed.output
    report = json.loads(packed.stdout)
    assert (report["partitions"], report["runs"], report["max_partitions_per_run"], report["succeeded"]) == (4, 2, 3, 4)
    assert [o["rows_out"] for o in report["outcomes"]] == [48] * 4 and [o["run_partitions"] for o in report["outcomes"]] == [3, 3, 3, 1]
    by_default = json.loads(runner.invoke(app, args).stdout)
    assert (by_default["runs"], by_default["max_partitions_per_run"]) == (1, 4), "7 by default, no more than the range"
    one_each = json.loads(runner.invoke(app, [*args, "--max-partitions-per-run", "1"]).stdout)
    assert one_each["runs"] == 4 and [PartitionOutcome(**o).rows_out for o in one_each["outcomes"]] == [48] * 4
    human = runner.invoke(app, args[:-1])
    assert human.exit_code == 0 and "4 partitions in 1 run(s) (up to 4 a run)" in " ".join(human.stdout.split())
    wrong = runner.invoke(app, [*args, "--max-partitions-per-run", "0"])
    assert wrong.exit_code == 2
    helped = runner.invoke(app, ["backfill", "--help"], env={"COLUMNS": "200"})
    text = " ".join(helped.output.replace("│", " ").split())
    assert helped.exit_code == 0 and "--max-partitions-per-run" in text and "1: one run per partition" in text


def test_a_window_is_what_runners_see(ctx: PlatformContext) -> None:
    """A packed run is one runner call over the pack's joint window: the local runner and Ray's task need nothing more."""
    seen: list[Window] = []
    real_run = backfill.LocalRunner.run

    def recording(self: Any, windows: list[Window], *, attempt: int) -> Any:
        seen.extend(windows)
        return real_run(self, windows, attempt=attempt)

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(backfill.LocalRunner, "run", recording)
        run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 3), as_of=AS_OF, max_partitions_per_run=7)
    assert [(w.start, w.end) for w in seen] == [(utc(2023, 3, 1), utc(2023, 3, 3))]


@pytest.mark.slow
def test_ray_packs_partitions_too(settings: DataopsSettings) -> None:
    start, end = utc(2023, 1, 22), utc(2023, 2, 1)
    on_ray = other_home(settings, "ray")
    report = run_backfill(on_ray, "carbon_intensity", start, end, executor="ray", as_of=AS_OF, cpus=2, max_partitions_per_run=7)
    assert (report.executor, report.partitions, report.runs, report.max_partitions_per_run, report.failed) == ("ray", 10, 2, 5, 0)
    local = other_home(settings, "local")
    expected = run_backfill(local, "carbon_intensity", start, end, as_of=AS_OF)
    assert per_day(report) == per_day(expected) and contents(on_ray) == contents(local)
