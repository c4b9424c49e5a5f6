"""Chat: "how many rows does a table have" is answered with the count and the time it covers, not with its lineage."""

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

NOW = utc(2023, 3, 4, 1)
NAMES = names_of(load_settings().config_dir)


def _plan(text: str, turns: list[Turn] | None = None) -> Any:
    return plan(text, NOW, turns)


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("how many rows does gold.carbon_intensity_hourly have?", "gold.carbon_intensity_hourly"),
        ("how big is silver.weather", "silver.weather"),
        ("row count of bronze.carbon_intensity", "bronze.carbon_intensity"),
    ],
)
def test_a_row_count_question_counts_the_table_over_its_time_column(text: str, table: str) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.kind, intent.table) == ("rows", table)
    [call] = _plan(text).calls
    assert call.name == tool.QUERY_LAKE
    assert call.arguments["sql"] == f"SELECT count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts FROM {table}"


def test_the_answer_gives_the_count_and_the_span_and_an_empty_table_says_so() -> None:
    text = "how many rows does gold.carbon_intensity_hourly have?"
    [call] = _plan(text).calls
    row = {"n": 744, "first_ts": "2023-02-01T00:00:00+00:00", "last_ts": "2023-03-03T23:00:00+00:00"}
    full = answered(call, list(row), [list(row.values())])
    assert _plan(text, [full]).message == (
        "[runbook planner] gold.carbon_intensity_hourly holds 744 rows on main, from 2023-02-01 00:00 UTC to 2023-03-03 23:00 UTC."
    )
    empty = answered(call, ["n", "first_ts", "last_ts"], [[0, None, None]])
    assert _plan(text, [empty]).message.endswith("gold.carbon_intensity_hourly holds no rows yet.")


def test_without_a_table_it_asks_which() -> None:
    message = _plan("how many rows are in the table?").message
    assert message.startswith("[runbook planner] Which table? Known: silver.carbon_intensity")


@pytest.mark.parametrize("text", ["how many rows in the daily mart", "history of the daily mart", "compact the daily mart"])
def test_a_name_two_tables_fit_alike_is_asked_about_not_guessed(text: str) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert intent.table is None
    assert set(intent.ambiguous_tables) == {"gold.generation_share_daily", "gold.intensity_vs_temperature_daily"}
    step = _plan(text)
    assert not step.calls
    assert step.message.startswith("[runbook planner] Which table: gold.generation_share_daily or gold.intensity_vs_temperature_daily?")


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ("history of the carbon intensity table", "silver.carbon_intensity"),
        ("lineage of the hourly mart", "gold.carbon_intensity_hourly"),
        ("rows in the share mart", "gold.generation_share_daily"),
        ("history of the weather table", "silver.weather"),
    ],
)
def test_a_name_that_spells_out_one_table_or_fits_one_best_is_not_ambiguous(text: str, table: str) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.table, intent.ambiguous_tables) == (table, ())
