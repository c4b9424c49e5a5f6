"""Chat about how far the forecast missed, and about the dirtiest window: read as what was asked, not as its neighbour."""

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
    ("text", "aggregate"),
    [
        ("what was the max forecast error yesterday?", "max"),
        ("average forecast error last week", "avg"),
        ("how far off was the forecast yesterday?", "avg"),
        ("how accurate was the forecast last week", "avg"),
    ],
)
def test_forecast_error_questions_measure_the_miss_not_the_forecast(text: str, aggregate: str) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.kind, intent.metric, intent.aggregate) == ("aggregate", "forecast_error", aggregate)
    [call] = _plan(text).calls
    assert call.name == tool.QUERY_LAKE and "abs(actual - forecast) AS v FROM silver.carbon_intensity" in call.arguments["sql"]
    assert read_intent("highest forecast yesterday", now=NOW, names=NAMES).metric == "forecast", "the forecast itself stays"


def test_the_dirtiest_window_is_the_highest_mean_and_says_so() -> None:
    question = "what's the dirtiest hour yesterday?"
    intent = read_intent(question, now=NOW, names=NAMES)
    assert (intent.kind, intent.dirtiest) == ("greenest", True)
    [call] = _plan(question).calls
    assert "ORDER BY mean_v DESC, ts LIMIT 1" in call.arguments["sql"]
    assert "ORDER BY mean_v, ts LIMIT 1" in _plan("greenest hour yesterday").calls[0].arguments["sql"]
    row = {"ts": "2023-03-03T21:00:00+00:00", "mean_v": 261.5, "period_mean": 249.3, "n": 48, "first_ts": None, "last_ts": None}
    result = {"columns": list(row), "rows": [list(row.values())]}
    message = _plan(question, [Turn(call=call, decision="allow", status="ok", result=result)]).message
    assert message.startswith("[runbook planner] The dirtiest 1-hour window on 2023-03-03 ran from 2023-03-03 21:00 UTC to 22:00 UTC")


def test_the_dirtiest_window_ahead_is_not_searched_as_the_greenest() -> None:
    step = _plan("when will the grid be dirtiest tomorrow?")
    assert not step.calls and "greenest window only" in step.message


def test_a_held_check_s_reason_ends_its_sentence_once() -> None:
    from datetime import date

    from agent.chat import answers

    contents = [
        {"part": "published", "slots": 42, "n_rows": 42},
        {"part": "quarantined", "slots": 6, "n_rows": 6, "expectation": "actual_reported_after_slot", "reason": "a gap, not a forecast."},
    ]
    text = answers.why_missing("silver.carbon_intensity", date(2023, 3, 2), 48, contents, {})
    assert "by actual_reported_after_slot: a gap, not a forecast." in text and ".." not in text


@pytest.mark.parametrize(
    "text", ["did the forecast overestimate or underestimate last week?", "forecast bias yesterday", "was the forecast too high yesterday"]
)
def test_which_way_the_forecast_missed_is_the_signed_bias(text: str) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.kind, intent.metric) == ("aggregate", "forecast_bias")
    [call] = _plan(text).calls
    assert "forecast - actual AS v FROM silver.carbon_intensity" in call.arguments["sql"]


def test_the_bias_answer_says_over_or_under() -> None:
    text = "did the forecast overestimate or underestimate last week?"
    [call] = _plan(text).calls
    row = {"n": 336, "mean": -3.2, "low": -40.0, "low_at": None, "high": 25.0, "high_at": None, "first_ts": None, "last_ts": None}
    turn = answered(call, list(row), [list(row.values())])
    message = _plan(text, [turn]).message
    assert message.endswith("On average the forecast underestimated the measured intensity by 3.2 gCO2/kWh.")
