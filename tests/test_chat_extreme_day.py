"""Chat: "which day had the lowest ...", "the greenest day", "the windiest day" are answered with daily means.

Before, "which day last week had the lowest carbon intensity?" gave the lowest half-hour, "the greenest day" the
greenest hour, "the windiest day" the carbon intensity, and "how much gas was on the grid" was not understood.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.chat.intents import read_intent
from agent.chat.names import names_of
from agent.planner import Turn
from config.settings import load_settings
from tests.chat_planning import answered, plan
from tests.conftest import utc
from tools import names as tool

NOW = utc(2023, 3, 4, 12)
NAMES = names_of(load_settings().config_dir)


def _plan(text: str, turns: list[Turn] | None = None) -> Any:
    return plan(text, NOW, turns)


@pytest.mark.parametrize(
    ("text", "metric", "fuel", "aggregate"),
    [
        ("which day last week had the lowest carbon intensity?", "intensity", None, "min"),
        ("greenest day last week", "intensity", None, "min"),
        ("dirtiest day this week", "intensity", None, "max"),
        ("what was the coldest day in February", "temperature", None, "min"),
        ("windiest day in april 2019", "share", "wind", "max"),
        ("which day had the most wind in april 2019", "share", "wind", "max"),
    ],
)
def test_a_question_about_a_day_compares_daily_means(text: str, metric: str, fuel: str | None, aggregate: str) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.kind, intent.metric, intent.fuel, intent.aggregate, intent.by_day) == ("aggregate", metric, fuel, aggregate, True)
    [call] = _plan(text).calls
    assert call.name == tool.QUERY_LAKE
    sql = call.arguments["sql"]
    assert "GROUP BY 1" in sql and f"ORDER BY mean {'DESC' if aggregate == 'max' else 'ASC'}, day LIMIT 1" in sql


def test_the_answer_names_the_day_its_mean_and_the_days_compared() -> None:
    text = "which day last week had the lowest carbon intensity?"
    [call] = _plan(text).calls
    row = {"day": "2023-02-20T00:00:00+00:00", "mean": 120.46, "n": 48, "days": 7, "mean_of_days": 162.2}
    turn = answered(call, list(row), [list(row.values())])
    assert _plan(text, [turn]).message == (
        "[runbook planner] The day with the lowest average carbon intensity from 2023-02-20 to 2023-02-26 was 2023-02-20: "
        "120.5 gCO2/kWh over 48 readings (the 7 day(s) averaged 162.2)."
    )


def test_one_day_or_an_hour_stays_what_it_was_and_a_fuel_named_alone_is_its_share() -> None:
    assert read_intent("greenest hour yesterday", now=NOW, names=NAMES).kind == "greenest"
    assert not read_intent("lowest intensity last week", now=NOW, names=NAMES).by_day
    gas = read_intent("how much gas was on the grid on 2019-04-05?", now=NOW, names=NAMES)
    assert (gas.kind, gas.metric, gas.fuel, gas.table) == ("aggregate", "share", "gas", "silver.generation_mix")
    assert read_intent("carbon intensity when wind was low yesterday", now=NOW, names=NAMES).metric == "intensity"


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("which fuel had the biggest share on 2019-04-03?", None),
        ("what was the generation mix on 2019-04-03", None),
        ("generation mix at 18:00 on 2019-04-03", (18, 19)),
    ],
)
def test_the_mix_lists_every_fuel_largest_first(text: str, hours: tuple[int, int] | None) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.kind, intent.metric, intent.day_hours, intent.unsure) == ("aggregate", "mix", hours, False)
    [call] = _plan(text).calls
    assert "GROUP BY fuel ORDER BY mean DESC, fuel" in call.arguments["sql"]
    rows = [["gas", 38.14, 48], ["nuclear", 20.3, 48], ["wind", 15.4, 48]]
    turn = answered(call, ["fuel", "mean", "n"], rows)
    message = _plan(text, [turn]).message
    assert "gas 38.1 %, nuclear 20.3 %, wind 15.4 %. The largest was gas." in message
    assert read_intent("what was the wind share in the generation mix on 2019-04-03", now=NOW, names=NAMES).metric == "share"
