"""The agent's read tools, called through the registry on tables filled by the real pipeline on bundled 2023 data."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from config.errors import ToolError
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import run_pipeline
from pipelines.sources import neso, replay
from tests.conftest import utc, window
from tools.base import ToolContext
from tools.registry import REGISTRY

NOW = utc(2024, 1, 1)
SILVER = "silver.carbon_intensity"


def call(ctx: PlatformContext, name: str, now: datetime = NOW, **arguments: Any) -> Any:
    spec = REGISTRY[name]
    return spec.invoke(ToolContext(platform=ctx, now=now, call_id="c1"), spec.parse(arguments))


def day_rows(ctx: PlatformContext, name: str, day: datetime) -> pa.Table:
    return wap.read_days(load_table(ctx.catalog, name), [day])


def overwrite_day(ctx: PlatformContext, name: str, day: datetime, data: pa.Table, *, branch: str = wap.MAIN) -> None:
    """Replace a day by hand, the way an operator (or a bug) would."""
    table = load_table(ctx.catalog, name)
    wap.overwrite_days(table, data, [day], branch=branch, properties={"run_id": "by-hand"})


def heads(ctx: PlatformContext) -> dict[str, int | None]:
    return {t: wap.branch_head(load_table(ctx.catalog, t), wap.MAIN) for t in ("bronze.carbon_intensity", SILVER)}


# -- query_lake ------------------------------------------------------------------------------------------


def test_query_lake_limits_rows_and_renders_json(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 18), (2023, 10, 20)))
    result = call(ctx, "query_lake", sql=f"SELECT ts, actual, index FROM {SILVER} ORDER BY ts", limit=10)
    assert result.columns == ["ts", "actual", "index"]
    assert result.row_count == 10 and result.truncated is True and result.tables == [SILVER]
    assert result.rows[0][0] == "2023-10-18T00:00:00+00:00"
    json.dumps(result.model_dump())  # plain JSON all the way down
    assert call(ctx, "query_lake", sql="SELECT count(*) AS n FROM silver.carbon_intensity").rows == [[96]]
    assert call(ctx, "query_lake", sql=f"SELECT ts FROM {SILVER}").row_count == 50, "the default limit"
    with pytest.raises(ToolError, match="limit: Input should be less than or equal to 200"):
        call(ctx, "query_lake", sql=f"SELECT * FROM {SILVER}", limit=500)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (f"DELETE FROM {SILVER}", "this is a DELETE statement"),
        (f"COPY {SILVER} TO '/tmp/out.csv'", "this is a COPY statement"),
        ("ATTACH '/tmp/other.db' AS other", "this is an ATTACH statement"),
        ("CREATE TABLE t AS SELECT 1", "this is a CREATE statement"),
        ("SELECT 1; SELECT 2", "one statement at a time, got 2"),
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
    ],
)
def test_query_lake_refuses_anything_but_a_read(ctx: PlatformContext, sql: str, reason: str) -> None:
    with pytest.raises(ToolError, match=reason) as refused:
        call(ctx, "query_lake", sql=sql)
    if "statement" in reason:
        assert "to change data use rerun_window or backfill_range" in str(refused.value)


def test_query_lake_names_the_tables_when_one_is_unknown(ctx: PlatformContext) -> None:
    with pytest.raises(ToolError, match=r"known: .*silver\.carbon_intensity"):
        call(ctx, "query_lake", sql="SELECT * FROM silver.carbon")


# -- profile_partition ---------------------------------------------------------------------------------


def test_profile_partition_matches_a_direct_scan(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)))
    day = utc(2023, 1, 26)
    direct = day_rows(ctx, SILVER, day)
    profile = call(ctx, "profile_partition", table=SILVER, day="2023-01-26")

    assert profile.rows == direct.num_rows == 48 - 5, "five slots of 26 Jan were quarantined"
    assert profile.snapshot_id == load_table(ctx.catalog, SILVER).current_snapshot().snapshot_id
    by_name = {c.name: c for c in profile.columns}
    for name in direct.column_names:
        assert by_name[name].nulls == direct.column(name).null_count, name
        assert by_name[name].distinct == pc.count_distinct(direct.column(name)).as_py(), name
    actual = direct.column("actual")
    assert (by_name["actual"].min, by_name["actual"].max) == (pc.min(actual).as_py(), pc.max(actual).as_py())
    assert by_name["actual"].mean == pytest.approx(pc.mean(actual).as_py())
    assert by_name["index"].mean is None
    assert profile.first_ts == "2023-01-26T00:00:00+00:00" and profile.last_ts == "2023-01-26T23:30:00+00:00"
    assert profile.key == ["ts"] and profile.duplicate_keys == 0

    overwrite_day(ctx, SILVER, day, pa.concat_tables([direct, direct.slice(0, 1)]))
    doubled = call(ctx, "profile_partition", table=SILVER, day="2023-01-26")
    assert doubled.rows == 44 and doubled.duplicate_keys == 1 and doubled.duplicate_rows == 1
    assert doubled.duplicate_sample == [{"ts": "2023-01-26T00:00:00+00:00", "count_all": 2}]


def test_profile_partition_of_an_empty_day_and_an_unknown_table(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 25)))
    empty = call(ctx, "profile_partition", table=SILVER, day="2023-03-01")
    assert empty.rows == 0 and empty.first_ts is None and empty.duplicate_keys == 0
    with pytest.raises(ToolError, match=r"unknown table 'silver\.carbon'; known: .*silver\.carbon_intensity"):
        call(ctx, "profile_partition", table="silver.carbon", day="2023-01-24")


# -- table_history ------------------------------------------------------------------------------------------


def test_table_history_lists_the_runs_snapshots_and_the_branches(ctx: PlatformContext) -> None:
    first = run_pipeline(ctx, "carbon_intensity", window((2023, 10, 18), (2023, 10, 19)))
    second = run_pipeline(ctx, "carbon_intensity", window((2023, 10, 19), (2023, 10, 20)))
    history = call(ctx, "table_history", table=SILVER)

    assert history.current_snapshot_id == history.snapshots[0].snapshot_id and history.snapshots[0].refs == ["main"]
    assert history.snapshots[0].run_id == second.run_id
    assert {s.run_id for s in history.snapshots} == {first.run_id, second.run_id}
    assert [s.committed_at for s in history.snapshots] == sorted((s.committed_at for s in history.snapshots), reverse=True)
    assert sum(s.added_records for s in history.snapshots) == 96 and history.snapshots[0].total_records == 96
    assert history.branches == [] and history.older_snapshots == 0

    table = load_table(ctx.catalog, SILVER)
    wap.open_audit_branch(table, "audit-kept", run_id="kept")
    overwrite_day(ctx, SILVER, utc(2023, 10, 18), day_rows(ctx, SILVER, utc(2023, 10, 18)).slice(0, 40), branch="audit-kept")
    history = call(ctx, "table_history", table=SILVER, limit=1)
    assert len(history.snapshots) == 1 and history.older_snapshots > 0
    (branch,) = history.branches
    assert branch.name == "audit-kept" and branch.type == "branch" and branch.run_id == "by-hand"
    assert branch.forked_from == history.current_snapshot_id

    # The branch's own change, diffed against the main snapshot it forked from.
    diff = call(ctx, "diff_snapshots", table=SILVER, to_snapshot_id=branch.snapshot_id)
    assert diff.from_snapshot_id == history.current_snapshot_id
    assert (diff.only_before, diff.only_after, diff.changed) == (8, 0, 0)


# -- diff_snapshots ------------------------------------------------------------------------------------------


def test_diff_snapshots_shows_what_a_later_revision_changed(ctx: PlatformContext) -> None:
    w = window((2024, 1, 12), (2024, 1, 13))
    run_pipeline(ctx, "carbon_intensity", w, as_of=utc(2024, 1, 12, 6, 5))
    early_head = load_table(ctx.catalog, SILVER).current_snapshot().snapshot_id
    late = run_pipeline(ctx, "carbon_intensity", w, as_of=utc(2024, 1, 12, 8, 35))

    diff = call(ctx, "diff_snapshots", table=SILVER)
    assert diff.from_snapshot_id == early_head, "the default compares with the state before the last run"
    assert diff.rows_before == 8 and diff.rows_after == 13 and diff.only_after == 5 and diff.only_before == 0
    assert diff.changed_columns["forecast"] == diff.changed > 0
    slot = next(c for c in diff.sample_changed if c.key == {"ts": "2024-01-12T08:30:00+00:00"})
    assert (slot.before["forecast"], slot.after["forecast"]) == (305, 295)
    assert slot.after["run_id"] == late.run_id

    backwards = call(ctx, "diff_snapshots", table=SILVER, from_snapshot_id=diff.to_snapshot_id, to_snapshot_id=early_head, limit=2)
    assert backwards.only_before == 5 and backwards.changed == diff.changed and len(backwards.sample_only_before) == 2
    one_day = call(ctx, "diff_snapshots", table=SILVER, from_snapshot_id=early_head, day="2024-01-11")
    assert one_day.rows_before == one_day.rows_after == 0


def test_diff_snapshots_names_valid_snapshots_for_an_unknown_one(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 18), (2023, 10, 19)))
    head = load_table(ctx.catalog, SILVER).current_snapshot().snapshot_id
    with pytest.raises(ToolError, match=rf"has no snapshot 123 .*main's newest: {head}.*table_history"):
        call(ctx, "diff_snapshots", table=SILVER, from_snapshot_id=123)


# -- refetch_and_diff ------------------------------------------------------------------------------------------


def test_refetch_and_diff_says_the_source_still_lacks_the_outage_day(ctx: PlatformContext) -> None:
    # The bundled NESO series has no data from 2023-10-20 22:00 to 2023-10-22 19:00.
    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 20), (2023, 10, 24)))
    before = heads(ctx)
    lacking = call(ctx, "refetch_and_diff", pipeline="carbon_intensity", day="2023-10-21")

    assert (lacking.source_slots, lacking.silver_slots, lacking.expected_slots) == (0, 0, 48)
    assert lacking.verdict.startswith("the source still lacks 2023-10-21")
    assert "escalate" in lacking.verdict
    partial = call(ctx, "refetch_and_diff", pipeline="carbon_intensity", day="2023-10-22")
    assert (partial.source_slots, partial.silver_slots, partial.missing_in_silver_count, partial.quarantined) == (9, 0, 9, 9)
    assert partial.verdict.startswith("the source still lacks 39 of 48 slots of 2023-10-22")
    assert heads(ctx) == before, "refetching writes nothing"


def test_refetch_and_diff_says_a_rerun_would_fill_a_thinned_day(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 18), (2023, 10, 20)))
    day = utc(2023, 10, 18)
    overwrite_day(ctx, SILVER, day, day_rows(ctx, SILVER, day).slice(0, 9))

    thinned = call(ctx, "refetch_and_diff", pipeline="carbon_intensity", day="2023-10-18")
    assert (thinned.source_slots, thinned.silver_slots, thinned.missing_in_silver_count) == (48, 9, 39)
    assert thinned.verdict == "the source now has 48 slots; silver has 9: a re-run would fill it"
    assert thinned.missing_in_silver[0] == "2023-10-18T04:30:00+00:00" and thinned.missing_at_source_count == 0

    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 18), (2023, 10, 19)))
    filled = call(ctx, "refetch_and_diff", pipeline="carbon_intensity", day="2023-10-18")
    assert filled.verdict == "silver matches the source for 2023-10-18 (48 slots): nothing to re-run"


def test_refetch_and_diff_reports_revised_values_and_partial_days(ctx: PlatformContext) -> None:
    w = window((2024, 1, 12), (2024, 1, 13))
    run_pipeline(ctx, "carbon_intensity", w, as_of=utc(2024, 1, 12, 6, 5))
    revised = call(ctx, "refetch_and_diff", now=utc(2024, 1, 12, 8, 35), pipeline="carbon_intensity", day="2024-01-12")
    assert (revised.expected_slots, revised.lacking_slots, revised.source_slots) == (17, 12, 13), "the bundled revisions start at 06:00"
    assert revised.differing > 0 and revised.sample_differences[0].before.keys() == {"forecast"}
    assert "a re-run could add 5 missing row(s) and update" in revised.verdict


def test_refetch_and_diff_turns_source_failures_into_tool_errors(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    original = replay.intensity_body

    def renamed(*args: Any) -> dict[str, Any]:
        body = original(*args)
        return {"data": [{("carbon_intensity" if k == "intensity" else k): v for k, v in r.items()} for r in body["data"]]}

    monkeypatch.setitem(neso._REPLAY, "carbon_intensity", renamed)
    with pytest.raises(ToolError, match=r"the carbon_intensity source failed for 2023-10-18: SchemaDriftError: .*intensity\.forecast"):
        call(ctx, "refetch_and_diff", pipeline="carbon_intensity", day="2023-10-18")
    with pytest.raises(ToolError, match=r"unknown pipeline 'carbon'; known: carbon_intensity, country_intensity"):
        call(ctx, "refetch_and_diff", pipeline="carbon", day="2023-10-18")
    with pytest.raises(ToolError, match="has not started by"):
        call(ctx, "refetch_and_diff", now=utc(2023, 10, 17), pipeline="carbon_intensity", day="2023-10-18")


def test_refetch_and_diff_outside_the_replay_data_says_so(ctx: PlatformContext) -> None:
    outside = call(ctx, "refetch_and_diff", pipeline="carbon_intensity", day="2022-06-01")
    assert outside.source_slots == 0 and "replay mode: the bundled data covers only 2023-01-01..2024-01-01" in outside.verdict


def test_every_read_tool_is_declared_read(ctx: PlatformContext) -> None:
    for name in ("query_lake", "profile_partition", "table_history", "diff_snapshots", "refetch_and_diff"):
        spec = REGISTRY[name]
        assert spec.effect == "read" and spec.description
        assert all(field.description for field in spec.input.model_fields.values()), name
    target = REGISTRY["refetch_and_diff"].target(
        ToolContext(platform=ctx), REGISTRY["refetch_and_diff"].parse({"pipeline": "weather", "day": "2023-01-02"})
    )
    assert (target.layer, target.table, target.partition) == ("source", "silver.weather", "2023-01-02")
