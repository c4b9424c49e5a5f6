"""The spine end to end on the bundled real data: bronze, silver and gold with write-audit-publish."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest

from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.ledger import ValidationRow
from pipelines.promotion import run_pipeline
from pipelines.sources import replay
from tests.conftest import REPO, utc, window


def rows(ctx: PlatformContext, name: str, *, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    table = load_table(ctx.catalog, name)
    if table.current_snapshot() is None:
        return []
    data = table.scan().to_arrow()
    data = data.drop_columns([c for c in drop if c in data.column_names])
    return sorted(data.to_pylist(), key=lambda r: json.dumps(r, default=str, sort_keys=True))


def quarantine(ctx: PlatformContext, name: str = "quarantine.carbon_intensity") -> list[dict[str, Any]]:
    return rows(ctx, name)


def test_window_lands_in_every_layer_and_real_defects_are_quarantined(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "weather", window((2023, 1, 20), (2023, 2, 3)))
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 20), (2023, 2, 3)))

    assert result.status == "succeeded"
    assert result.records_fetched == 14 * 48 == result.bronze_new == result.rows_in
    silver = rows(ctx, "silver.carbon_intensity")
    held = quarantine(ctx)
    assert len(silver) + len(held) == 14 * 48, "every bronze slot ends in silver or in quarantine"
    assert result.rows_out == len(silver) and result.rows_quarantined == len(held) == 7
    by_slot = {q["ts"]: q for q in held}
    # The real defects of late January 2023 in the NESO series.
    for minute in (13 * 60 + 30, 14 * 60, 14 * 60 + 30, 15 * 60, 15 * 60 + 30):
        q = by_slot[utc(2023, 1, 26) + timedelta(minutes=minute)]
        assert q["expectation"] == "actual_reported_after_slot" and q["scope"] == "row"
        assert json.loads(q["original"])["actual"] is None
    assert by_slot[utc(2023, 1, 31, 1)]["expectation"] == "actual_positive_and_physical"
    assert json.loads(by_slot[utc(2023, 1, 31, 1)]["original"])["actual"] == 0.0
    assert by_slot[utc(2023, 1, 24, 11)]["expectation"] == "forecast_tracks_actual"
    assert all(q["run_id"] == result.run_id and q["target_table"] == "silver.carbon_intensity" for q in held)
    assert not {q["ts"] for q in held} & {s["ts"] for s in silver}

    hourly = rows(ctx, "gold.carbon_intensity_hourly")
    assert len(hourly) == 14 * 24 - 2, "26 Jan 14:00 and 15:00 lost both slots to quarantine"
    assert {h["slots"] for h in hourly} == {1, 2}  # hours with a quarantined slot keep the other one
    daily = rows(ctx, "gold.intensity_vs_temperature_daily")
    assert len(daily) == 14 and all(d["temperature_hours"] == 24 for d in daily)
    first = next(h for h in hourly if h["ts"] == utc(2023, 1, 20))
    first_slots = [s for s in silver if utc(2023, 1, 20) <= s["ts"] < utc(2023, 1, 20, 1)]
    assert first["actual"] == pytest.approx(sum(s["actual"] for s in first_slots) / 2)


def test_every_commit_carries_its_run_id(ctx: PlatformContext) -> None:
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 26)))
    for name in ("bronze.carbon_intensity", "silver.carbon_intensity", "gold.carbon_intensity_hourly", "quarantine.carbon_intensity"):
        table = load_table(ctx.catalog, name)
        assert table.metadata.snapshots, name
        for snap in table.metadata.snapshots:
            assert snap.summary is not None and snap.summary.additional_properties.get("run_id") == result.run_id, name
        assert list(table.metadata.refs) == ["main"], "published audit branches are removed"


def test_rerunning_a_window_gives_identical_contents(ctx: PlatformContext) -> None:
    w = window((2023, 1, 20), (2023, 2, 3))
    run_pipeline(ctx, "weather", w)
    first = run_pipeline(ctx, "carbon_intensity", w)
    tables = ["bronze.carbon_intensity", "silver.carbon_intensity", "gold.carbon_intensity_hourly", "gold.intensity_vs_temperature_daily"]
    before = {t: rows(ctx, t) for t in tables}
    held_before = rows(ctx, "quarantine.carbon_intensity", drop=("run_id", "quarantined_at"))
    again = run_pipeline(ctx, "carbon_intensity", w)
    assert again.bronze_new == 0 and again.rows_quarantined == 0
    assert first.rows_quarantined > 0 and again.rows_already_held == first.rows_quarantined, "still held, not published"
    assert again.rows_out + again.rows_already_held == first.rows_out + first.rows_quarantined
    assert {t: rows(ctx, t) for t in tables} == before
    assert rows(ctx, "quarantine.carbon_intensity", drop=("run_id", "quarantined_at")) == held_before


def test_late_revisions_update_silver_and_gold(ctx: PlatformContext) -> None:
    w = window((2024, 1, 12), (2024, 1, 13))
    early = run_pipeline(ctx, "carbon_intensity", w, as_of=utc(2024, 1, 12, 6, 5))
    assert early.status == "succeeded"
    slot = utc(2024, 1, 12, 8, 30)
    assert {r["ts"]: r["forecast"] for r in rows(ctx, "silver.carbon_intensity")}[slot] == 305
    late = run_pipeline(ctx, "carbon_intensity", w, as_of=utc(2024, 1, 12, 8, 35))
    assert late.status == "succeeded" and late.bronze_new > 0
    silver = {r["ts"]: r for r in rows(ctx, "silver.carbon_intensity")}
    assert silver[slot]["forecast"] == 295, "the latest revision of a slot wins"
    assert sorted(silver) == [utc(2024, 1, 12, 6) + timedelta(minutes=30 * i) for i in range(13)]  # 06:00..12:00 known by 08:35
    bronze = [r for r in rows(ctx, "bronze.carbon_intensity") if r["ts"] == slot]
    assert len(bronze) == 2 and len({b["payload_hash"] for b in bronze}) == 2, "bronze keeps every revision"
    hourly = {r["ts"]: r for r in rows(ctx, "gold.carbon_intensity_hourly")}
    assert hourly[utc(2024, 1, 12, 8)]["forecast"] == pytest.approx((silver[utc(2024, 1, 12, 8)]["forecast"] + 295) / 2)


def test_a_source_that_goes_back_to_an_earlier_value_is_a_new_revision(ctx: PlatformContext) -> None:
    """A, then B, then A again: bronze lands the third fetch (it differs from the latest revision, B, though bronze
    held A once) and silver publishes A. Before, A was skipped as already seen and silver kept B."""
    w = window((2023, 3, 1), (2023, 3, 2))
    slot = utc(2023, 3, 1, 12)
    run_pipeline(ctx, "carbon_intensity", w)
    original = {r["ts"]: r["actual"] for r in rows(ctx, "silver.carbon_intensity")}[slot]
    ctx.faults.inject(faults.SourceFault(kind="late_revision", source="carbon_intensity", field="intensity.actual", value=7, times=0))
    revised = run_pipeline(ctx, "carbon_intensity", w)
    assert revised.bronze_new == 48 and {r["ts"]: r["actual"] for r in rows(ctx, "silver.carbon_intensity")}[slot] == original + 7
    ctx.faults.clear()
    back = run_pipeline(ctx, "carbon_intensity", w)
    assert back.bronze_new == 48, "the earlier values are the source's latest revision again"
    assert {r["ts"]: r["actual"] for r in rows(ctx, "silver.carbon_intensity")}[slot] == original
    assert run_pipeline(ctx, "carbon_intensity", w).bronze_new == 0, "an unchanged source lands nothing"


def test_incomplete_days_are_held_back_with_main_unchanged(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 18), (2023, 10, 20)))
    silver_table = load_table(ctx.catalog, "silver.carbon_intensity")
    main_before = silver_table.current_snapshot()
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 10, 20), (2023, 10, 24)))

    assert result.status == "quarantined"
    assert result.held_days == ["2023-10-20", "2023-10-21", "2023-10-22"]
    silver = rows(ctx, "silver.carbon_intensity")
    assert {r["ts"].date().isoformat() for r in silver} == {"2023-10-18", "2023-10-19", "2023-10-23"}
    held = [q for q in quarantine(ctx) if q["scope"] == "partition"]
    per_day: dict[str, int] = {}
    for q in held:
        per_day[q["ts"].date().isoformat()] = per_day.get(q["ts"].date().isoformat(), 0) + 1
    assert per_day == {"2023-10-20": 44, "2023-10-22": 9}, "the slots that did arrive are kept in quarantine"
    assert all("held back" in q["reason"] for q in held)
    # The evidence sits in the ledger.
    with ctx.ledger.session() as s:
        results = s.query(ValidationRow).filter_by(run_id=result.run_id, table_name="silver.carbon_intensity").all()
    by_name = {r.expectation: r for r in results}
    assert by_name["window_days_present"].success is False
    assert by_name["window_days_present"].observed == {"empty_days": ["2023-10-21"]}
    assert by_name["day_has_48_slots"].success is False and by_name["day_has_48_slots"].sample
    assert silver_table.refresh().current_snapshot().snapshot_id != main_before.snapshot_id  # 10-23 was published
    assert ctx.ledger.run(result.run_id).status == "quarantined"


def test_schema_drift_holds_the_whole_run(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 1, 2)))
    before = rows(ctx, "silver.carbon_intensity")
    original = replay.intensity_body

    def renamed(*args: Any) -> dict[str, Any]:
        body = original(*args)
        return {"data": [{("carbon_intensity" if k == "intensity" else k): v for k, v in r.items()} for r in body["data"]]}

    monkeypatch.setattr(replay, "intensity_body", renamed)
    monkeypatch.setitem(__import__("pipelines.sources.neso", fromlist=["_REPLAY"])._REPLAY, "carbon_intensity", renamed)
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 2), (2023, 1, 3)))
    assert result.status == "quarantined"
    assert rows(ctx, "silver.carbon_intensity") == before, "main stays as it was"
    drift = [q for q in quarantine(ctx) if q["expectation"] == "schema_contract"]
    assert len(drift) == 1 and drift[0]["scope"] == "table"
    assert "intensity.forecast" in drift[0]["reason"] and "carbon_intensity" in drift[0]["reason"]


def test_messy_dropped_file_is_quarantined_and_the_rest_lands(ctx: PlatformContext) -> None:
    drop = ctx.settings.drop_folder / "country_intensity"
    drop.mkdir(parents=True)
    shutil.copy(REPO / "tests" / "fixtures" / "files" / "unfccc_ifi_grid_factors_2021_messy.csv", drop)
    result = run_pipeline(ctx, "country_intensity", window((2023, 1, 1), (2023, 1, 2)))
    assert result.status == "succeeded"
    silver = rows(ctx, "silver.country_intensity")
    assert len(silver) >= 200 and any(r["country_code"] == "GBR" for r in silver)
    bad = [q for q in quarantine(ctx, "quarantine.country_intensity") if q["expectation"] == "file_format"]
    assert len(bad) == 1
    assert "unfccc_ifi_grid_factors_2021_messy.csv: header (line 1)" in bad[0]["reason"]
    assert "missing required column(s) country_code" in bad[0]["reason"]
    assert bad[0]["original"].startswith(',"Combined Margin Grid Emission')


def test_quarantined_rows_keep_original_values_and_reason(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 6, 7), (2023, 6, 8)))
    held = quarantine(ctx)
    zero = [q for q in held if q["expectation"].startswith("actual_positive_and_physical")]
    assert sorted(q["ts"].strftime("%H:%M") for q in zero) == ["09:30", "10:00", "10:30", "11:00"]
    assert all(json.loads(q["original"])["actual"] == 0.0 for q in zero)
    assert all("never zero" in q["reason"] for q in zero)


def test_generation_shares_land_in_the_daily_mart(ctx: PlatformContext) -> None:
    result = run_pipeline(ctx, "generation_mix", window((2019, 4, 1), (2019, 4, 8)))
    # The recorded response ends at 2019-04-07T23:00Z: the last day has 47 slots and is held back.
    assert result.held_days == ["2019-04-07"]
    daily = rows(ctx, "gold.generation_share_daily")
    assert {d["ts"].date().isoformat() for d in daily} == {f"2019-04-0{i}" for i in range(1, 7)}
    for day in {d["ts"] for d in daily}:
        assert sum(d["share_pct"] for d in daily if d["ts"] == day) == pytest.approx(100, abs=0.5)


def test_empty_table_reads_give_schema(ctx: PlatformContext) -> None:
    from pipelines.lakehouse import wap

    table = load_table(ctx.catalog, "silver.weather")
    empty = wap.read_days(table, [utc(2023, 1, 1)])
    assert isinstance(empty, pa.Table) and empty.num_rows == 0 and "temperature_c" in empty.column_names
