"""Compaction rewrites small files per day into one, keeps every row, and goes through write-audit-publish."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.lakehouse.compaction import compact_table, files_per_day
from pipelines.promotion import run_pipeline
from pipelines.query import run_query
from pipelines.sources.base import Window
from tools.base import ToolContext
from tools.registry import REGISTRY

BRONZE = "bronze.carbon_intensity"
DAY = datetime(2023, 1, 2, tzinfo=UTC)


def _fill(ctx: PlatformContext) -> None:
    for hour in range(2, 26, 4):  # six scheduled runs as the day goes by: six small bronze appends
        run_pipeline(ctx, "carbon_intensity", Window(start=DAY, end=DAY + timedelta(days=1)), as_of=DAY + timedelta(hours=hour))


def _fingerprint(ctx: PlatformContext) -> list[list[object]]:
    return run_query(ctx, f"SELECT count(*), sum(hash(record_key, payload_hash)) FROM {BRONZE}").rows


def test_compaction_keeps_every_row_in_one_file_per_day(ctx: PlatformContext) -> None:
    _fill(ctx)
    assert files_per_day(ctx, BRONZE) == {DAY.date(): 6}
    before = _fingerprint(ctx)
    result = compact_table(ctx, BRONZE, run_id="compact-1", min_files=4)
    assert (result.days_compacted, result.files_before, result.files_after) == (["2023-01-02"], 6, 1)
    assert _fingerprint(ctx) == before
    head = load_table(ctx.catalog, BRONZE).current_snapshot()
    assert head is not None and head.summary is not None
    assert head.summary.additional_properties["dataops.operation"] == "compaction"
    assert compact_table(ctx, BRONZE, run_id="compact-2", min_files=4).days_compacted == [], "nothing left to compact"
    assert [b for b in load_table(ctx.catalog, BRONZE).metadata.refs if b.startswith("audit-")] == []


def test_days_below_the_threshold_are_left_alone(ctx: PlatformContext) -> None:
    _fill(ctx)
    result = compact_table(ctx, BRONZE, run_id="compact-3", min_files=7)
    assert result.days_compacted == [] and result.snapshot_id is None
    assert files_per_day(ctx, BRONZE) == {DAY.date(): 6}


def test_the_tool_compacts_and_the_policy_sees_a_write(ctx: PlatformContext) -> None:
    _fill(ctx)
    spec = REGISTRY["compact_table"]
    args = spec.parse({"table": BRONZE})
    assert spec.effect == "write" and spec.target(ToolContext(platform=ctx), args).layer == "bronze"
    result = spec.invoke(ToolContext(platform=ctx, call_id="c1"), args)
    assert result.files_after == 1
    with pytest.raises(Exception, match="unknown table"):
        spec.invoke(ToolContext(platform=ctx), spec.parse({"table": "bronze.nope"}))


def test_upkeep_compacts_then_expires_every_table_and_reports(ctx: PlatformContext) -> None:
    from pipelines.lakehouse.upkeep import upkeep

    _fill(ctx)
    ctx.settings = ctx.settings.model_copy(update={"snapshot_retention_hours": 0.0, "snapshot_retain_last": 1, "compaction_min_files": 4})
    before = _fingerprint(ctx)
    snapshots_before = len(load_table(ctx.catalog, BRONZE).metadata.snapshots)
    results = {r.table: r for r in upkeep(ctx)}
    assert set(results) == set(ctx.inventory.tables) and not any(r.error for r in results.values())
    bronze = results[BRONZE]
    assert bronze.compaction is not None and bronze.compaction.files_after == 1
    assert bronze.expiry is not None and bronze.expiry.snapshots_expired >= 1
    assert len(load_table(ctx.catalog, BRONZE).metadata.snapshots) < snapshots_before
    assert _fingerprint(ctx) == before, "upkeep changes files, never rows"
    dry = {r.table: r for r in upkeep(ctx, tables=[BRONZE], dry_run=True)}
    assert dry[BRONZE].compaction is None and dry[BRONZE].expiry is not None and dry[BRONZE].expiry.dry_run


def test_dataops_maintain_runs_upkeep_and_refuses_unknown_tables(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from evals.cli import app

    _fill(ctx)
    monkeypatch.setenv("DATAOPS_HOME", str(ctx.settings.home))
    runner = CliRunner()
    done = runner.invoke(app, ["maintain", BRONZE, "--json"])
    assert done.exit_code == 0, done.output
    [result] = json.loads(done.output)
    assert result["table"] == BRONZE and result["compaction"]["files_after"] == 1 and result["error"] is None
    refused = runner.invoke(app, ["maintain", "bronze.nope"])
    assert refused.exit_code == 2 and "unknown table 'bronze.nope'" in refused.output
