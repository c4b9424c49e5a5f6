"""Lineage in chat draws every input of a table: a mart joining two silver tables is no chain (agent/chat/answers.py)."""

from __future__ import annotations

from typing import Any

from agent.chat.answers import lineage
from agent.chat.names import names_of
from agent.planner import Turn
from config.inventory import load_inventory
from config.settings import load_settings
from pipelines import lineage as graph
from tests.chat_planning import plan
from tests.conftest import utc

NOW = utc(2023, 3, 4, 1)


def _plan(text: str, turns: list[Turn] | None = None) -> Any:
    return plan(text, NOW, turns)


def _result(table: str) -> dict[str, Any]:
    """What the table_lineage tool returns for `table` on the shipped inventory."""
    inventory = load_inventory(load_settings().config_dir)
    return {
        "table": table,
        "upstream": graph.upstream(inventory, table),
        "downstream": graph.downstream(inventory, table),
        "pipelines": [p.name for p in inventory.pipelines_feeding(table)],
    }


def test_the_parents_of_a_mart_are_all_its_declared_inputs() -> None:
    parents = names_of(load_settings().config_dir).parents
    assert parents["gold.intensity_vs_temperature_daily"] == ("silver.carbon_intensity", "silver.weather")
    assert parents["gold.carbon_intensity_hourly"] == ("silver.carbon_intensity",)
    assert parents["silver.weather"] == ("bronze.weather",)


def test_a_two_input_mart_is_drawn_with_both_inputs_and_their_ancestors() -> None:
    table = "gold.intensity_vs_temperature_daily"
    [call] = _plan(f"lineage of {table}").calls
    message = _plan(f"lineage of {table}", [Turn(call=call, decision="allow", status="ok", result=_result(table))]).message
    assert message.splitlines() == [
        f"[runbook planner] Lineage of {table} (written by carbon_intensity, weather):",
        f"{table}   ← this table, built from 2 inputs:",
        "├─ silver.carbon_intensity",
        "│  └─ bronze.carbon_intensity",
        "│     └─ source:carbon_intensity",
        "└─ silver.weather",
        "   └─ bronze.weather",
        "      └─ source:weather",
    ]
    one = lineage(_result("gold.carbon_intensity_hourly"), names_of(load_settings().config_dir).parents)
    assert one.splitlines()[1:] == [  # a one-input mart stays a chain
        "source:carbon_intensity",
        "└─ bronze.carbon_intensity",
        "   └─ silver.carbon_intensity",
        "      └─ gold.carbon_intensity_hourly   ← this table",
    ]


def test_a_table_feeding_a_join_says_what_else_the_join_reads() -> None:
    names = names_of(load_settings().config_dir)
    assert lineage(_result("silver.weather"), names.parents).splitlines()[1:] == [
        "source:weather",
        "└─ bronze.weather",
        "   └─ silver.weather   ← this table",
        "      └─ gold.intensity_vs_temperature_daily   (also built from silver.carbon_intensity)",
    ]


def test_ancestors_the_parents_cannot_place_are_listed_not_drawn_as_a_chain() -> None:
    table = "gold.intensity_vs_temperature_daily"
    drawn = lineage(_result(table), {})
    assert drawn.splitlines()[1] == (
        f"{table}   ← this table, derived from (nearest first): silver.carbon_intensity, silver.weather, bronze.carbon_intensity, "
        "bronze.weather, source:carbon_intensity, source:weather"
    )
    assert "└─" not in drawn
