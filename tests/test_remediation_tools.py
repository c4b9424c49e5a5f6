"""The agent's data-changing tools on real tables filled by the real carbon_intensity pipeline (January 2023)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from pyiceberg.table.snapshots import Snapshot

from config.errors import ToolError
from pipelines import release, remediation
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import run_pipeline
from tests.conftest import utc, window
from tools.base import Target, ToolContext
from tools.registry import REGISTRY

NOW = utc(2023, 2, 1)
SILVER = "silver.carbon_intensity"
HELD = "quarantine.carbon_intensity"


def rows(ctx: PlatformContext, name: str, *, day: str | None = None) -> list[dict[str, Any]]:
    table = load_table(ctx.catalog, name)
    if table.current_snapshot() is None:
        return []
    found = table.scan().to_arrow().to_pylist()
    if day is not None:
        found = [r for r in found if r["ts"].date().isoformat() == day]
    return sorted(found, key=lambda r: json.dumps(r, default=str, sort_keys=True))


def held(ctx: PlatformContext, target: str = SILVER, *, manual: bool | None = None) -> list[dict[str, Any]]:
    found = [q for q in rows(ctx, HELD) if q["target_table"] == target]
    if manual is not None:
        found = [q for q in found if (q["expectation"] == remediation.MANUAL) == manual]
    return found


def properties(snapshot: Snapshot) -> dict[str, str]:
    assert snapshot.summary is not None
    return dict(snapshot.summary.additional_properties)


def call(ctx: PlatformContext, tool: str, args: dict[str, Any], *, call_id: str = "call-1", now: datetime = NOW) -> Any:
    spec = REGISTRY[tool]
    return spec.invoke(ToolContext(platform=ctx, now=now, call_id=call_id), spec.parse(args))


@pytest.fixture
def lake(ctx: PlatformContext) -> PlatformContext:
    """25 January 2023 is clean; on the 26th the promotion held 5 slots without an actual (43 published)."""
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 25), (2023, 1, 27)))
    assert result.status == "succeeded" and result.rows_quarantined == 5
    return ctx


def test_quarantine_then_release_round_trips_exactly(lake: PlatformContext) -> None:
    before = rows(lake, SILVER)
    hourly_before = rows(lake, "gold.carbon_intensity_hourly")
    pipeline_holds = held(lake)

    moved = call(lake, "quarantine_partition", {"table": SILVER, "day": "2023-01-25", "reason": "incident 7: actuals look doubled"})
    assert moved.changed and moved.rows_quarantined == 48 and moved.rows_already_held == 0
    assert moved.run_id == "tool-quarantine_partition-call-1"
    assert moved.quarantine_table == HELD and moved.downstream[:1] == ["gold.carbon_intensity_hourly"]
    assert rows(lake, SILVER, day="2023-01-25") == []
    assert len(rows(lake, SILVER)) == len(before) - 48
    manual = held(lake, manual=True)
    assert len(manual) == 48
    assert all(q["run_id"] == moved.run_id and q["scope"] == "partition" for q in manual)
    assert all(q["reason"] == "quarantined by agent: incident 7: actuals look doubled" for q in manual)
    assert {json.loads(q["original"])["ts"] for q in manual} == {r["ts"].isoformat() for r in before if r["ts"].day == 25}
    assert rows(lake, "gold.carbon_intensity_hourly") == hourly_before, "the marts are rebuilt by the next run, not by the call"
    assert moved.marts_to_rebuild == ["gold.carbon_intensity_hourly", "gold.intensity_vs_temperature_daily"]
    assert moved.days_to_rebuild == ["2023-01-25"]

    again = call(lake, "quarantine_partition", {"table": SILVER, "day": "2023-01-25", "reason": "again"}, call_id="call-2")
    assert not again.changed and again.rows_quarantined == 0 and again.snapshot_after == moved.snapshot_after
    assert len(held(lake, manual=True)) == 48

    released = call(lake, "release_partition", {"table": SILVER, "day": "2023-01-25"}, call_id="call-3")
    assert released.changed and released.status == "released" and released.failing == []
    assert released.rows_released == 48 and released.rows_still_held == 0
    assert rows(lake, SILVER) == before, "row for row as before the quarantine"
    assert held(lake) == pipeline_holds, "only the manual rows left quarantine"

    twice = call(lake, "release_partition", {"table": SILVER, "day": "2023-01-25"}, call_id="call-4")
    assert not twice.changed and twice.status == "nothing_to_release" and twice.rows_released == 0
    assert rows(lake, SILVER) == before

    for name in (SILVER, HELD):
        table = load_table(lake.catalog, name)
        ours = [p for p in map(properties, table.metadata.snapshots) if p.get("run_id", "").startswith("tool-")]
        assert ours, name
        assert all(p["dataops.partition"] == "2023-01-25" for p in ours)
        assert list(table.metadata.refs) == ["main"], "audit branches are published and removed"


def test_release_judges_the_day_as_the_promotion_did(lake: PlatformContext) -> None:
    before = rows(lake, SILVER, day="2023-01-26")
    assert len(before) == 43 and len(held(lake, manual=False)) == 5

    call(lake, "quarantine_partition", {"table": SILVER, "day": "2023-01-26", "reason": "check the evening peak"})
    # The 43 slots alone would fail day_has_48_slots; with the 5 slots the promotion held beside them, the day is whole.
    released = call(lake, "release_partition", {"table": SILVER, "day": "2023-01-26"}, call_id="call-2")
    assert released.status == "released" and released.rows_released == 43 and released.rows_still_held == 5
    assert rows(lake, SILVER, day="2023-01-26") == before

    # The promotion's own holds still fail (no actual, hours overdue): they stay, and the result says why.
    again = call(lake, "release_partition", {"table": SILVER, "day": "2023-01-26", "include_pipeline_holds": True}, call_id="call-3")
    assert not again.changed and again.status == "validation_failed" and again.rows_still_held == 5
    assert [(f.name, f.rows) for f in again.failing] == [("actual_reported_after_slot", 5)]
    assert again.failing[0].sample[0] == "2023-01-26T13:30:00+00:00"
    assert rows(lake, SILVER, day="2023-01-26") == before and len(held(lake)) == 5


def test_release_of_rows_failing_validation_changes_nothing(ctx: PlatformContext) -> None:
    # At 06:05 the slots of the day ahead carry forecasts only; they pass while their actual is not yet due.
    run_pipeline(ctx, "carbon_intensity", window((2024, 1, 12), (2024, 1, 13)), as_of=utc(2024, 1, 12, 6, 5))
    before = rows(ctx, SILVER)
    assert before and all(r["actual"] is None for r in before)
    moved = call(ctx, "quarantine_partition", {"table": SILVER, "day": "2024-01-12", "reason": "forecast run looks stale"})
    quarantined = held(ctx)

    late = call(ctx, "release_partition", {"table": SILVER, "day": "2024-01-12"}, call_id="call-2", now=utc(2024, 1, 13))
    assert not late.changed and late.status == "validation_failed" and late.rows_released == 0
    failing = {f.name: f for f in late.failing}
    assert failing["actual_reported_after_slot"].rows == len(before)
    assert "within the hour" in failing["actual_reported_after_slot"].why
    assert failing["day_has_48_slots"].scope == "partition"
    assert late.snapshot_after == late.snapshot_before == moved.snapshot_after
    assert rows(ctx, SILVER) == [] and held(ctx) == quarantined, "nothing changed"

    early = call(ctx, "release_partition", {"table": SILVER, "day": "2024-01-12"}, call_id="call-3", now=utc(2024, 1, 12, 8))
    assert early.status == "released" and rows(ctx, SILVER) == before and held(ctx) == []


def test_a_crash_between_the_two_commits_loses_nothing_and_a_rerun_completes(
    lake: PlatformContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = rows(lake, SILVER)
    real_publish, real_clear = remediation.publish_day, release._clear

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise OSError("killed")

    monkeypatch.setattr(remediation, "publish_day", crash)
    with pytest.raises(OSError):
        call(lake, "quarantine_partition", {"table": SILVER, "day": "2023-01-25", "reason": "bad day"})
    assert rows(lake, SILVER) == before and len(held(lake, manual=True)) == 48, "in both places, never in neither"
    monkeypatch.setattr(remediation, "publish_day", real_publish)
    done = call(lake, "quarantine_partition", {"table": SILVER, "day": "2023-01-25", "reason": "bad day"})
    assert done.changed and done.rows_already_held == 48
    assert rows(lake, SILVER, day="2023-01-25") == [] and len(held(lake, manual=True)) == 48

    monkeypatch.setattr(release, "_clear", crash)
    with pytest.raises(OSError):
        call(lake, "release_partition", {"table": SILVER, "day": "2023-01-25"}, call_id="call-2")
    assert rows(lake, SILVER) == before and len(held(lake, manual=True)) == 48
    monkeypatch.setattr(release, "_clear", real_clear)
    finished = call(lake, "release_partition", {"table": SILVER, "day": "2023-01-25"}, call_id="call-2")
    assert finished.changed and finished.rows_released == 0 and finished.rows_cleared == 48
    assert rows(lake, SILVER) == before, "no row twice in the table"
    assert held(lake, manual=True) == []


def test_gold_mart_quarantine_and_release(lake: PlatformContext) -> None:
    mart = "gold.carbon_intensity_hourly"
    before = rows(lake, mart)
    moved = call(lake, "quarantine_partition", {"table": mart, "day": "2023-01-25", "reason": "hourly means off"})
    assert moved.rows_quarantined == 24 and moved.quarantine_table == HELD and moved.downstream == []
    assert rows(lake, mart, day="2023-01-25") == [] and len(held(lake, mart)) == 24
    released = call(lake, "release_partition", {"table": mart, "day": "2023-01-25"}, call_id="call-2")
    assert released.rows_released == 24 and rows(lake, mart) == before and held(lake, mart) == []


def test_delete_then_rollback_restores_the_rows(lake: PlatformContext) -> None:
    before = rows(lake, SILVER)
    deleted = call(lake, "delete_partition", {"table": SILVER, "day": "2023-01-25", "reason": "duplicated load"})
    assert deleted.changed and deleted.rows_deleted == 48 and deleted.snapshot_before != deleted.snapshot_after
    assert rows(lake, SILVER, day="2023-01-25") == [] and held(lake, manual=True) == []
    replay = call(lake, "delete_partition", {"table": SILVER, "day": "2023-01-25", "reason": "duplicated load"})
    assert not replay.changed and replay.snapshot_before == deleted.snapshot_before, "a replayed call reports the same undo point"

    back = call(
        lake, "rollback_table", {"table": SILVER, "snapshot_id": deleted.snapshot_before, "reason": "delete was wrong"}, call_id="call-2"
    )
    assert back.changed and back.snapshot_after == deleted.snapshot_before
    assert (back.rows_before, back.rows_after) == (len(before) - 48, len(before))
    assert [u.snapshot_id for u in back.undone] == [deleted.snapshot_after]
    assert back.undone[0].run_id == "tool-delete_partition-call-1" and back.undone[0].operation == "delete_partition"
    assert rows(lake, SILVER) == before
    recorded = json.loads(load_table(lake.catalog, SILVER).properties[remediation.ROLLBACK_PROPERTY])
    assert recorded["run_id"] == "tool-rollback_table-call-2" and recorded["from"] == deleted.snapshot_after

    noop = call(lake, "rollback_table", {"table": SILVER, "snapshot_id": deleted.snapshot_before, "reason": "again"}, call_id="call-3")
    assert not noop.changed and noop.rows_before == noop.rows_after == len(before)


def test_rollback_refuses_snapshots_outside_mains_history(lake: PlatformContext) -> None:
    table = load_table(lake.catalog, SILVER)
    main = table.current_snapshot()
    assert main is not None
    run_id = properties(main)["run_id"]
    with pytest.raises(ToolError) as refused:
        call(lake, "rollback_table", {"table": SILVER, "snapshot_id": 12345, "reason": "oops"})
    message = str(refused.value)
    assert message.startswith(f"snapshot 12345 is not in the history of main of {SILVER}")
    assert f"{main.snapshot_id} (run_id {run_id}, " in message
    # The promotion's first audit write (before it took the held rows out) was never on main.
    orphans = {s.snapshot_id for s in table.metadata.snapshots} - {h.snapshot_id for h in remediation.main_history(table)}
    assert orphans
    with pytest.raises(ToolError, match="not in the history of main"):
        call(lake, "rollback_table", {"table": SILVER, "snapshot_id": orphans.pop(), "reason": "oops"})
    assert load_table(lake.catalog, SILVER).metadata.current_snapshot_id == main.snapshot_id


def test_bronze_quarantine_and_unknown_tables_are_refused(ctx: PlatformContext) -> None:
    known = "gold.carbon_intensity_forecast, gold.carbon_intensity_hourly, gold.generation_share_daily, gold.intensity_vs_temperature_daily, silver.carbon_intensity"
    with pytest.raises(ToolError, match=re.escape(f"unknown table 'silver.carbon'; known silver and gold tables: {known}")):
        call(ctx, "quarantine_partition", {"table": "silver.carbon", "day": "2023-01-25", "reason": "x"})
    with pytest.raises(ToolError, match=r"bronze\.carbon_intensity is a bronze table: raw records as received"):
        call(ctx, "quarantine_partition", {"table": "bronze.carbon_intensity", "day": "2023-01-25", "reason": "x"})
    with pytest.raises(ToolError, match=r"quarantine\.carbon_intensity is a quarantine table"):
        call(ctx, "release_partition", {"table": HELD, "day": "2023-01-25"})
    with pytest.raises(ToolError, match="is a bronze table"):
        call(ctx, "delete_partition", {"table": "bronze.weather", "day": "2023-01-25", "reason": "x"})
    with pytest.raises(ToolError, match="is a bronze table"):
        call(ctx, "rollback_table", {"table": "bronze.weather", "snapshot_id": 1, "reason": "x"})
    spec = REGISTRY["quarantine_partition"]
    args = spec.parse({"table": "bronze.carbon_intensity", "day": "2023-01-25", "reason": "x"})
    with pytest.raises(ToolError, match="is a bronze table"):
        spec.target(ToolContext(platform=ctx), args)


def test_invalid_arguments_are_refused_by_parse() -> None:
    spec = REGISTRY["quarantine_partition"]
    with pytest.raises(ToolError, match=r"invalid arguments for quarantine_partition: day: .*Its fields: table, day, reason"):
        spec.parse({"table": SILVER, "day": "2023-02-30", "reason": "x"})
    with pytest.raises(ToolError, match=r"force: Extra inputs are not permitted"):
        spec.parse({"table": SILVER, "day": "2023-01-25", "reason": "x", "force": True})
    with pytest.raises(ToolError, match=r"reason: "):
        spec.parse({"table": SILVER, "day": "2023-01-25", "reason": ""})
    with pytest.raises(ToolError, match=r"snapshot_id: "):
        REGISTRY["rollback_table"].parse({"table": SILVER, "snapshot_id": "latest", "reason": "x"})


def test_targets_and_effects_for_the_policy_engine(ctx: PlatformContext) -> None:
    effects = {name: REGISTRY[name].effect for name in ("quarantine_partition", "release_partition", "delete_partition", "rollback_table")}
    assert effects == {
        "quarantine_partition": "write",
        "release_partition": "write",
        "delete_partition": "destructive",
        "rollback_table": "write",
    }
    tc = ToolContext(platform=ctx)
    spec = REGISTRY["delete_partition"]
    target = spec.target(tc, spec.parse({"table": "gold.carbon_intensity_hourly", "day": "2023-01-25", "reason": "x"}))
    assert target == Target(
        layer="gold", table="gold.carbon_intensity_hourly", pipeline="carbon_intensity", partition="2023-01-25", span_days=1.0
    )
    rollback = REGISTRY["rollback_table"]
    with pytest.raises(ToolError, match="not in the history"):  # refused before anyone is asked to approve it
        rollback.target(tc, rollback.parse({"table": SILVER, "snapshot_id": 1, "reason": "x"}))
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 25)))
    head = load_table(ctx.catalog, SILVER).current_snapshot()
    assert head is not None
    assert rollback.target(tc, rollback.parse({"table": SILVER, "snapshot_id": head.snapshot_id, "reason": "x"})) == Target(
        layer="silver", table=SILVER, pipeline="carbon_intensity"
    )
    for name in effects:
        fields = REGISTRY[name].input.model_fields
        assert REGISTRY[name].description and all(f.description for f in fields.values()), name


def test_pipeline_holds_are_released_only_on_request_and_once_they_pass(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 25)))
    [hold] = held(ctx)
    assert hold["expectation"] == "forecast_tracks_actual" and len(rows(ctx, SILVER)) == 47
    args = {"table": SILVER, "day": "2023-01-24"}
    assert call(ctx, "release_partition", args).status == "nothing_to_release", "by default only manual quarantines are released"
    refused = call(ctx, "release_partition", {**args, "include_pipeline_holds": True})
    assert refused.status == "validation_failed" and [f.name for f in refused.failing] == ["forecast_tracks_actual"]

    # After review the bound is widened: the held slot's original values pass now.
    suite = ctx.inventory.suites["carbon_intensity"]
    widened = tuple(
        e.model_copy(update={"kwargs": {**e.kwargs, "max_value": 400}}) if e.name == "forecast_tracks_actual" else e
        for e in suite.expectations
    )
    suites = {**ctx.inventory.suites, "carbon_intensity": suite.model_copy(update={"expectations": widened})}
    ctx.inventory = ctx.inventory.model_copy(update={"suites": suites})
    released = call(ctx, "release_partition", {**args, "include_pipeline_holds": True}, call_id="call-2")
    assert released.status == "released" and released.rows_released == 1 and released.rows_still_held == 0
    assert json.loads(hold["original"]) in [
        {**r, "ts": r["ts"].isoformat(), "fetched_at": r["fetched_at"].isoformat()} for r in rows(ctx, SILVER)
    ]
    assert len(rows(ctx, SILVER)) == 48 and held(ctx) == []
