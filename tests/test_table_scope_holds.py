"""A table-scope check holds a whole delivery back, names it in an incident, and works on large (sliced) files too.

The country file is annual gCO2/kWh per country; a file delivered in kgCO2/kWh (every value /1000) passes every
row check, so only a check on the delivery as a whole (`delivered_in_grams`: at least half the rows >= 5 g) can
catch it. Large dropped files are validated a slice (and a part) at a time: the table-scope verdict is taken on
the summed counts, so the sliced outcome equals the whole batch's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from config.inventory import ExpectationSpec, SuiteSpec
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import RunResult, run_pipeline
from pipelines.sources import drop_staging, replay
from pipelines.validation.slices import sliceable, validate_in_slices
from pipelines.validation.suite import validate
from tests.conftest import window

AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
COLUMN = "intensity_gco2_per_kwh"


def _check(name: str, expectation: str, scope: str, **kwargs: Any) -> ExpectationSpec:
    return ExpectationSpec(name=name, expectation=expectation, kwargs={"column": COLUMN, **kwargs}, scope=scope, why=f"{name} test")  # type: ignore[arg-type]


GRAMS = _check("in_grams", "expect_column_values_to_be_between", "table", min_value=5, mostly=0.5)
SUITE = SuiteSpec(
    name="unit_test",
    table="silver.country_intensity",
    expectations=(
        _check("physical", "expect_column_values_to_be_between", "row", min_value=0, max_value=1300),
        GRAMS,
        _check("present", "expect_column_values_to_not_be_null", "table", mostly=0.8),
    ),
)


def batch(values: list[float | None]) -> pa.Table:
    ts = [datetime(2000 + i % 5, 1, 1, tzinfo=UTC) for i in range(len(values))]
    return pa.table({"ts": pa.array(ts, type=pa.timestamp("us", tz="UTC")), COLUMN: pa.array(values, type=pa.float64())})


# 12 rows: a null, a row over 1300 (row check), and the small values bunched so that some slices of 3 alone fail
# the table check while the batch passes it (5 of 11 considered below 5 g) or fails it (7 of 11).
PASSING = [1.0, 2.0, 3.0, 400.0, None, 1500.0, 300.0, 2.5, 250.0, 600.0, 0.5, 700.0]
FAILING = [1.0, 2.0, 3.0, 400.0, None, 1500.0, 1.5, 2.5, 250.0, 3.5, 0.5, 700.0]


@pytest.mark.parametrize(("values", "held"), [(PASSING, []), (FAILING, ["in_grams"])])
def test_a_table_scope_mostly_check_sliced_gives_the_whole_batch_outcome(values: list[float | None], held: list[str]) -> None:
    whole = validate(SUITE, batch(values), as_of=AS_OF)
    assert whole.table_failures == held, "the batch itself passes or fails the check"
    assert whole.failing_rows == {5: ["physical"]}
    first_slice = validate(SUITE, batch(values[:3]), as_of=AS_OF)
    assert first_slice.table_failures == ["in_grams"], "a slice alone would fail: the verdict must wait for the totals"
    for rows in (1, 3, 5, 11):
        sliced = validate_in_slices(SUITE, batch(values), as_of=AS_OF, slice_rows=rows)
        assert sliced.model_dump() == whole.model_dump(), f"slices of {rows} row(s)"


def test_aggregates_derived_columns_and_row_scope_mostly_still_need_the_whole_batch() -> None:
    assert sliceable(SUITE)
    median = ExpectationSpec(
        name="median_in_grams",
        expectation="expect_column_median_to_be_between",
        kwargs={"column": COLUMN, "min_value": 5},
        scope="table",
        why="w",
    )
    unique = _check("unique", "expect_column_values_to_be_unique", "table")
    row_mostly = _check("mostly_rows", "expect_column_values_to_be_between", "row", min_value=5, mostly=0.5)
    for check in (median, unique, row_mostly):
        suite = SUITE.model_copy(update={"expectations": (*SUITE.expectations, check)})
        assert not sliceable(suite), check.name
        with pytest.raises(ValueError, match="must see the whole batch"):
            validate_in_slices(suite, batch(PASSING), as_of=AS_OF)
    assert not sliceable(SUITE.model_copy(update={"derived": {"x": "1"}}))


# -- the country file in kg ---------------------------------------------------------------------------------------
def kg_file(source: Path) -> str:
    """The bundled file with every intensity in kgCO2/kWh."""
    rows = json.loads(source.read_text())
    for row in rows.values():
        row["emissions_intensity_gco2_per_kwh"] = row["emissions_intensity_gco2_per_kwh"] / 1000
    return json.dumps(rows)


def run(ctx: PlatformContext) -> RunResult:
    return run_pipeline(ctx, "country_intensity", window((2023, 1, 1), (2023, 1, 2)))


def rows(ctx: PlatformContext, name: str) -> list[dict[str, Any]]:
    t = load_table(ctx.catalog, name)
    return [] if t.current_snapshot() is None else t.scan().to_arrow().to_pylist()


def drop(ctx: PlatformContext, name: str, text: str) -> None:
    folder = ctx.settings.drop_folder / "country_intensity"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_a_country_file_in_kg_is_held_whole_with_an_incident_naming_the_check(ctx: PlatformContext) -> None:
    first = run(ctx)  # the bundled file, in grams
    assert first.status == "succeeded", first.error
    published = rows(ctx, "silver.country_intensity")
    assert len(published) > 200 and not [g for g in first.quarantine if g.scope == "table"], "the bundled file publishes"
    assert not [f for f in findings_from_run(first, silver="silver.country_intensity") if f.severity == "critical"]

    drop(ctx, "ember_kg.json", kg_file(replay.ember_file()))
    result = run(ctx)
    assert result.status == "quarantined" and result.rows_out == 0
    after = rows(ctx, "silver.country_intensity")
    assert sorted(r["payload_hash"] for r in after) == sorted(r["payload_hash"] for r in published), "silver unchanged"
    held = [q for q in rows(ctx, "quarantine.country_intensity") if q["run_id"] == result.run_id]
    assert len(held) == 222 and {(q["scope"], q["expectation"]) for q in held} == {("table", "delivered_in_grams")}
    (group,) = result.quarantine
    assert (group.scope, group.expectation, group.rows) == ("table", "delivered_in_grams", 222)

    (finding,) = findings_from_run(result, silver="silver.country_intensity")
    assert (finding.kind, finding.severity, finding.cause_key) == ("validation", "critical", "delivered_in_grams")
    assert finding.title == (
        "silver.country_intensity: whole batch of 222 row(s) dated 2022-01-01 to 2024-01-01 held back by delivered_in_grams; none published"
    )
    assert finding.evidence["scope"] == "table" and finding.evidence["run_id"] == result.run_id
    assert "correct the file and drop it again" in finding.evidence["next_step"]
    incident, opened = ctx.incidents.report(finding, now=datetime.now(UTC))
    assert opened and incident.kind == "validation" and incident.severity == "critical"


def test_a_new_years_file_in_kg_is_held_and_its_corrected_delivery_publishes(ctx: PlatformContext) -> None:
    """What the incident tells a person to do works: the file corrected and dropped again lands."""
    grams = {k: {**r, "year": 2025} for k, r in json.loads(replay.ember_file().read_text()).items()}
    kg = {k: {**r, "emissions_intensity_gco2_per_kwh": r["emissions_intensity_gco2_per_kwh"] / 1000} for k, r in grams.items()}
    assert run(ctx).status == "succeeded"
    drop(ctx, "ember_2025.json", json.dumps(kg))
    held = run(ctx)
    assert (held.status, held.rows_out) == ("quarantined", 0)
    assert not [r for r in rows(ctx, "silver.country_intensity") if r["year"] == 2025]
    drop(ctx, "ember_2025_in_grams.json", json.dumps(grams))
    corrected = run(ctx)
    assert corrected.status == "succeeded", corrected.error
    published = {r["country_or_region"]: r["intensity_gco2_per_kwh"] for r in rows(ctx, "silver.country_intensity") if r["year"] == 2025}
    assert len(published) == 221 and published["France"] == grams["FRA"]["emissions_intensity_gco2_per_kwh"]  # 1 row > 1300 g


def big_kg_file() -> str:
    """20 countries x 10 years in kg, and one row the row check refuses on its own (5000 > 1300)."""
    lines = [f"C{chr(65 + n)}X,Country {n},{year},{(10 + n + year % 7) / 1000}\n" for year in range(2000, 2010) for n in range(20)]
    lines.insert(101, "HOT,Hotland,2005,5000\n")
    return "country_code,country_or_region,year,emissions_intensity_gco2_per_kwh\n" + "".join(lines)


def test_a_large_kg_file_worked_in_parts_and_slices_is_held_whole(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(ctx).status == "succeeded"  # the bundled file first: its years are not the big file's
    monkeypatch.setattr(drop_staging, "GROUP_ROWS", 8)  # every year (20 rows) is split into key buckets of ~8
    monkeypatch.setattr(drop_staging, "FLUSH_ROWS", 7)
    sliced: list[int] = []
    real = validate

    def counting(suite: SuiteSpec, data: pa.Table, **kwargs: Any) -> Any:
        sliced.append(data.num_rows)
        return real(suite, data, **kwargs)

    monkeypatch.setattr("pipelines.validation.slices.validate", counting)
    monkeypatch.setattr("pipelines.validation.slices.SLICE_ROWS", 4)
    drop(ctx, "big_kg.csv", big_kg_file())
    result = run(ctx)
    assert len(sliced) > 40 and max(sliced) <= 4, f"validated a part and a slice at a time: {sliced}"
    assert result.status == "quarantined"
    assert not [r for r in rows(ctx, "silver.country_intensity") if r["year"] < 2010], "nothing of the file published"
    held = {(q["record_key"].split("|")[1], q["scope"], q["expectation"]) for q in rows(ctx, "quarantine.country_intensity")}
    assert ("Hotland", "row", "intensity_physical") in held, "a row failing a row check is held for it"
    assert {(f"Country {n}", "table", "delivered_in_grams") for n in range(20)} <= held
    groups = {(g.scope, g.expectation): g.rows for g in result.quarantine}
    assert groups == {("row", "intensity_physical"): 1, ("table", "delivered_in_grams"): 200}
    (outcome,) = [t for t in result.tables if t.table == "silver.country_intensity"]
    assert (outcome.rows_written, outcome.rows_quarantined, outcome.snapshot_id) == (0, 201, None)
    (finding,) = [f for f in findings_from_run(result, silver="silver.country_intensity") if f.severity == "critical"]
    assert finding.cause_key == "delivered_in_grams" and "whole batch of 200 row(s)" in finding.title


def test_a_kg_file_held_on_the_whole_batch_path_quarantines_the_run_too(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without staging (a suite that needs the whole batch, or any non-file source) the run reports the hold as well."""
    monkeypatch.setattr("pipelines.promotion.sliceable", lambda _suite: False)
    assert run(ctx).status == "succeeded"
    drop(ctx, "ember_kg.json", kg_file(replay.ember_file()))
    result = run(ctx)
    assert result.status == "quarantined" and result.rows_out == 0
    (group,) = result.quarantine
    assert (group.scope, group.expectation, group.rows) == ("table", "delivered_in_grams", 222)


def test_the_agent_escalates_a_kg_delivery_as_a_unit_change_nothing_published(ctx: PlatformContext) -> None:
    """Not 'contained': a delivery held whole is missing data, so the runbook escalates with what a person must do."""
    from agent.report import ConsoleReporter
    from agent.runtime import Agent

    assert run(ctx).status == "succeeded"
    drop(ctx, "ember_kg.json", kg_file(replay.ember_file()))
    now = datetime.now(UTC)
    (finding,) = findings_from_run(run(ctx), silver="silver.country_intensity")
    incident, _ = ctx.incidents.report(finding, now=now)
    lines: list[str] = []
    agent = Agent(ctx, clock=lambda: now, reporter=ConsoleReporter(lines.append))
    try:
        outcome = agent.handle_incident(incident.id)
    finally:
        agent.close()
    assert outcome.outcome == "escalated" and ctx.incidents.get(incident.id).status == "escalated"
    assert "The whole batch of 222 row(s) of run " in outcome.message and "nothing of it was published" in outcome.message
    assert "correct the file and drop it again" in outcome.message
    assert (
        "Cause: unit change (90%): intensity_gco2_per_kwh arrives at about 1/1,000 the level silver.country_intensity publishes"
        in outcome.message
    )


def test_rows_of_one_defect_failing_different_checks_open_one_incident(ctx: PlatformContext) -> None:
    """Three hours at 95 °C fail temperature_physical and temperature_changes_smoothly: one finding naming both, and
    the hour after the burst, judged against the last possible reading and not against 95, stays published."""
    from pipelines import faults

    ctx.faults.inject(
        faults.SourceFault(kind="impossible_values", source="weather", field="temperature_2m", value=95,
                           start=datetime(2023, 7, 10, 12, tzinfo=UTC), end=datetime(2023, 7, 10, 15, tzinfo=UTC))
    )  # fmt: skip
    result = run_pipeline(ctx, "weather", window((2023, 7, 9), (2023, 7, 12)), as_of=datetime(2023, 7, 12, 6, tzinfo=UTC))
    assert {(g.expectation, g.rows) for g in result.quarantine} == {("temperature_physical,temperature_changes_smoothly", 3)}
    (finding,) = findings_from_run(result, silver="silver.weather")
    assert (finding.kind, finding.cause_key, finding.tally) == ("validation", "temperature_physical", 3)
    assert finding.title == "silver.weather: 3 row(s) quarantined by temperature_physical and temperature_changes_smoothly"
    assert (finding.evidence["first"], finding.evidence["last"]) == ("2023-07-10T12:00:00+00:00", "2023-07-10T14:00:00+00:00")


def test_groups_sharing_a_check_are_one_finding_and_others_stay_apart() -> None:
    from pipelines.run_result import QuarantineGroup

    def group(table: str, checks: str, rows: int, hour: int) -> QuarantineGroup:
        at = datetime(2023, 7, 10, hour, tzinfo=UTC)
        return QuarantineGroup(target_table=table, expectation=checks, scope="row", rows=rows, first_ts=at, last_ts=at, sample=[checks])

    result = RunResult(
        run_id="r", pipeline="weather", status="quarantined", window_start=AS_OF, window_end=AS_OF, as_of=AS_OF,
        quarantine=[
            group("silver.weather", "temperature_physical,temperature_changes_smoothly", 1, 12),
            group("silver.weather", "temperature_physical", 2, 13),
            group("silver.weather", "temperature_changes_smoothly", 1, 15),
            group("silver.weather", "temperature_present", 4, 20),
            group("gold.other", "temperature_physical", 5, 9),
        ],
    )  # fmt: skip
    found = {f.title: f for f in findings_from_run(result, silver="silver.weather")}
    assert sorted(found) == [
        "gold.other: 5 row(s) quarantined by temperature_physical",
        "silver.weather: 4 row(s) quarantined by temperature_physical and temperature_changes_smoothly",
        "silver.weather: 4 row(s) quarantined by temperature_present",
    ]
    merged = found["silver.weather: 4 row(s) quarantined by temperature_physical and temperature_changes_smoothly"]
    tied = [group("silver.weather", "temperature_changes_smoothly", 1, 15), group("silver.weather", "temperature_physical", 1, 13),
            group("silver.weather", "temperature_physical,temperature_changes_smoothly", 1, 12)]  # fmt: skip
    for order in (tied, tied[::-1]):
        (finding,) = findings_from_run(result.model_copy(update={"quarantine": order}), silver="silver.weather")
        assert finding.cause_key == "temperature_physical", "a tie goes to the check rows name first, whatever the groups' order"
    assert merged.cause_key == "temperature_physical" and merged.evidence["checks"] == {
        "temperature_physical": 3,
        "temperature_changes_smoothly": 2,
    }
    assert (merged.evidence["first"], merged.evidence["last"]) == ("2023-07-10T12:00:00+00:00", "2023-07-10T15:00:00+00:00")
