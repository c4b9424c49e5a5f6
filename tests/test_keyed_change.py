"""The keyed change monitor: a country's intensity against its own earlier value, on the bundled Ember file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from config.inventory import MonitorSpec
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.monitors.checks import evaluate
from pipelines.monitors.state import load_state
from pipelines.sources import replay
from tests.test_table_scope_holds import drop, run

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def spec(ctx: PlatformContext) -> MonitorSpec:
    return ctx.inventory.monitors["country_intensity_change"]


def bundled() -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = json.loads(replay.ember_file().read_text())
    return rows


def look(ctx: PlatformContext) -> list[Finding]:
    return evaluate(ctx, [spec(ctx)], NOW)


@pytest.fixture
def published(ctx: PlatformContext) -> PlatformContext:
    """The bundled file (221 of its 222 countries and regions, one year each; one impossible value is held) published,
    and judged once: nothing to compare with yet."""
    assert run(ctx).status == "succeeded"
    assert look(ctx) == []
    assert len(load_state(ctx, "country_intensity_change")[1]["seen"]) == 221
    return ctx


def test_a_revision_ten_times_what_was_published_is_flagged(published: PlatformContext) -> None:
    rows = bundled()
    # France at 442 g instead of 44: possible for a grid, far under the 1300 g bound, and ten times what was published
    revised = {"FRA": {**rows["FRA"], "emissions_intensity_gco2_per_kwh": rows["FRA"]["emissions_intensity_gco2_per_kwh"] * 10}}
    drop(published, "ember_revised.json", json.dumps(revised))
    assert run(published).status == "succeeded", "each value is possible alone: the row checks pass"
    (finding,) = look(published)
    assert (finding.kind, finding.severity, finding.cause_key) == ("value_anomaly", "warning", "keyed:country_intensity_change")
    (change,) = finding.evidence["changes"]
    assert change["key"] == "France" and change["ratio"] == 10.0 and change["compared_with"] == "published before"
    assert finding.title.startswith("silver.country_intensity: 1 value(s) of intensity_gco2_per_kwh changed 3x or more")
    assert "France 2024-01-01: 441.8 against 44.18 (10x published before)" in finding.title
    assert look(published) == [], "judged once: the same values are not flagged again"


def test_part_of_a_year_redelivered_in_kg_is_flagged_where_the_delivery_check_cannot_see_it(published: PlatformContext) -> None:
    rows = bundled()
    some = dict(list(rows.items())[:50])
    kg = {k: {**r, "emissions_intensity_gco2_per_kwh": r["emissions_intensity_gco2_per_kwh"] / 1000} for k, r in some.items()}
    drop(published, "ember_part_kg.json", json.dumps(kg))
    assert run(published).status == "succeeded", "50 kg rows among the years' grams rows pass delivered_in_grams"
    (finding,) = look(published)
    flagged = finding.evidence["changes"]
    assert finding.evidence["flagged"] >= 40 and all(c["ratio"] == pytest.approx(0.001) for c in flagged)
    assert "and " in finding.title and "more" in finding.title, "the title names ten and counts the rest"


def test_a_new_year_far_from_the_year_before_is_flagged_and_ordinary_moves_are_not(published: PlatformContext) -> None:
    rows = bundled()
    year = rows["DEU"]["year"]
    new = {
        "DEU": {**rows["DEU"], "year": year + 1, "emissions_intensity_gco2_per_kwh": rows["DEU"]["emissions_intensity_gco2_per_kwh"] * 3.5},
        "FRA": {**rows["FRA"], "year": rows["FRA"]["year"] + 1, "emissions_intensity_gco2_per_kwh": rows["FRA"]["emissions_intensity_gco2_per_kwh"] * 1.3},
        "ALB": {**rows["ALB"], "year": rows["ALB"]["year"] + 1, "emissions_intensity_gco2_per_kwh": 9.0},  # 24 g to 9 g: under 50 g apart
    }  # fmt: skip
    drop(published, "ember_next_year.json", json.dumps(new))
    assert run(published).status == "succeeded"
    (finding,) = look(published)
    (change,) = finding.evidence["changes"]
    assert change["key"] == "Germany" and change["ratio"] == 3.5 and change["compared_with"] == f"its value for {year}-01-01"


def test_a_keyed_change_monitor_needs_one_value_column_and_a_series_key() -> None:
    base = {"name": "k", "kind": "keyed_change", "table": "silver.country_intensity"}
    with pytest.raises(ValueError, match="needs one column \\(the value\\) and a series_key"):
        MonitorSpec.model_validate(base | {"columns": ["intensity_gco2_per_kwh"]})
    with pytest.raises(ValueError, match="needs one column"):
        MonitorSpec.model_validate(base | {"columns": ["a", "b"], "series_key": ["country_or_region"]})


def test_the_agent_escalates_it_as_a_delivery_error(published: PlatformContext) -> None:
    from agent.report import ConsoleReporter
    from agent.runtime import Agent

    rows = bundled()
    cents = {"AUS": {**rows["AUS"], "emissions_intensity_gco2_per_kwh": rows["AUS"]["emissions_intensity_gco2_per_kwh"] / 100}}
    drop(published, "ember_decimal.json", json.dumps(cents))
    run(published)
    (finding,) = look(published)
    incident, _ = published.incidents.report(finding, now=NOW)
    agent = Agent(published, clock=lambda: NOW, reporter=ConsoleReporter(lambda _line: None))
    try:
        outcome = agent.handle_incident(incident.id)
    finally:
        agent.close()
    assert outcome.outcome == "escalated" and "unit, decimal or keying error in the delivery" in outcome.message
