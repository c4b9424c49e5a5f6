"""Conflicting duplicates (issue 14, item 5): the same key twice with different values is quarantined, both copies.

Before, one copy was published (the tie broke on the payload hash) and the other stayed in bronze with no
quarantine row and no warning. Exact repeats are still absorbed silently.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.diagnose import diagnose
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import RunResult, run_pipeline
from pipelines.sources.base import SourceRecord, Window, find_conflicts
from tests.conftest import utc, window

DAY, NEXT = utc(2023, 1, 10), utc(2023, 1, 11)
START, END = utc(2023, 1, 10, 12), utc(2023, 1, 10, 15)  # six half-hour slots


def run(ctx: PlatformContext) -> RunResult:
    return run_pipeline(ctx, "carbon_intensity", Window(start=DAY, end=NEXT), as_of=NEXT + timedelta(hours=1))


def held(ctx: PlatformContext, name: str = "quarantine.carbon_intensity") -> list[dict[str, Any]]:
    table = load_table(ctx.catalog, name)
    return [] if table.current_snapshot() is None else table.scan().to_arrow().to_pylist()


def silver_slots(ctx: PlatformContext) -> dict[str, float | None]:
    rows = wap.read_days(load_table(ctx.catalog, "silver.carbon_intensity"), [DAY]).to_pylist()
    return {r["ts"].strftime("%H:%M"): r["actual"] for r in rows}


def test_conflicting_duplicates_are_both_quarantined_and_neither_published(ctx: PlatformContext) -> None:
    ctx.faults.inject(
        faults.SourceFault(kind="duplicates", source="carbon_intensity", field="intensity.actual", value=500, start=START, end=END)
    )
    result = run(ctx)
    assert (result.records_fetched, result.bronze_new) == (54, 54), "bronze keeps every copy as received"
    conflicting = [q for q in held(ctx) if q["expectation"] == "conflicting_duplicate"]
    assert len(conflicting) == 12, "both copies of each of the six slots"
    slots = sorted({q["ts"].strftime("%H:%M") for q in conflicting})
    assert slots == ["12:00", "12:30", "13:00", "13:30", "14:00", "14:30"]
    first = conflicting[0]
    assert "arrived in one fetch with different values (intensity.actual: " in first["reason"]
    assert first["reason"].endswith("none is published: fix the source or drop a file with one value per key")
    actuals = sorted(json.loads(q["original"])["intensity"]["actual"] for q in conflicting if q["ts"].strftime("%H:%M") == "12:00")
    assert actuals[1] - actuals[0] == 500, "each copy keeps its own values"
    assert not set(slots) & set(silver_slots(ctx)), "neither copy is published"
    group = next(g for g in result.quarantine if g.expectation == "conflicting_duplicate")
    assert (group.scope, group.rows) == ("row", 12)

    again = run(ctx)
    assert again.bronze_new == 0 and not set(slots) & set(silver_slots(ctx)), "a re-run publishes neither copy either"


def test_the_agent_still_diagnoses_changed_duplicates(ctx: PlatformContext) -> None:
    ctx.faults.inject(
        faults.SourceFault(kind="duplicates", source="carbon_intensity", field="intensity.actual", value=500, start=START, end=END)
    )
    result = run(ctx)
    (finding,) = [f for f in findings_from_run(result, silver="silver.carbon_intensity") if f.cause_key == "conflicting_duplicate"]
    incident, _ = ctx.incidents.report(finding, now=datetime.now(UTC))
    found = diagnose(ctx, incident, NEXT + timedelta(hours=1))
    assert found.cause == "duplicates_changed"
    assert "6 record(s) twice with different values" in found.summary


def test_exact_duplicates_are_absorbed_silently(ctx: PlatformContext) -> None:
    ctx.faults.inject(faults.SourceFault(kind="duplicates", source="carbon_intensity", start=START, end=END))
    result = run(ctx)
    assert (result.status, result.records_fetched, result.rows_out, result.quarantine) == ("succeeded", 48, 48, [])


def test_a_dropped_file_with_two_values_for_one_key_publishes_neither(ctx: PlatformContext) -> None:
    drop = ctx.settings.drop_folder / "country_intensity"
    drop.mkdir(parents=True)
    (drop / "twice.csv").write_text(
        "country_code,country_or_region,year,emissions_intensity_gco2_per_kwh\n"
        "TWC,Twiceland,2022,100\nTWC,Twiceland,2022,180\nONC,Onceland,2022,50\nONC,Onceland,2022,50\n"
    )
    run_pipeline(ctx, "country_intensity", window((2023, 1, 1), (2023, 1, 2)))
    silver = held(ctx, "silver.country_intensity")
    assert [r["intensity_gco2_per_kwh"] for r in silver if r["country_or_region"] == "Onceland"] == [50.0], "an exact repeat lands once"
    assert not [r for r in silver if r["country_or_region"] == "Twiceland"]
    twice = [q for q in held(ctx, "quarantine.country_intensity") if q["record_key"] == "Twiceland"]
    assert {q["expectation"] for q in twice} == {"conflicting_duplicate"} and len(twice) == 2
    assert '(emissions_intensity_gco2_per_kwh: "100" vs "180")' in twice[0]["reason"]


def record(payload: dict[str, Any]) -> SourceRecord:
    return SourceRecord(ts=DAY, record_key="k", payload=payload, source_uri="test://")


def test_a_conflict_names_every_field_that_differs() -> None:
    a = record({"intensity": {"actual": 1, "forecast": 2}, "from": "x"})
    b = record({"intensity": {"actual": 3, "forecast": 2}, "from": "x", "extra": True})
    (conflict,) = find_conflicts([a, b, a])
    assert conflict.fields == ["extra", "intensity.actual"]
    assert [p.check for p in conflict.problems()] == ["conflicting_duplicate"] * 2
    assert find_conflicts([a, a]) == [], "an exact repeat is not a conflict"
