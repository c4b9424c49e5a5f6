"""A message that refers back takes what it leaves open from the thread's earlier questions (agent/chat/follow_up.py)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.chat_intents import plan_chat
from agent.planner import PlanningState
from tests.conftest import utc
from tools import names as tool

NOW = utc(2023, 3, 10, 12)


def _plan(text: str, earlier: list[str]) -> Any:
    state = PlanningState(thread_id="chat-t", mode="chat", question=text, context={"now": NOW.isoformat(), "turn_id": "x"}, earlier=earlier)
    return plan_chat(state, planner="runbook planner")


@pytest.mark.parametrize(
    ("earlier", "text", "name", "arguments"),
    [
        (["pause carbon_intensity"], "ok unpause it", tool.RESUME_PIPELINE, {"pipeline": "carbon_intensity"}),
        (
            ["quarantine silver.weather on 2023-03-07"],
            "release it again",
            tool.RELEASE_PARTITION,
            {"table": "silver.weather", "day": "2023-03-07"},
        ),
        (["history of silver.weather", "what is open?"], "how many rows does it have?", tool.QUERY_LAKE, {}),
    ],
)
def test_it_and_again_take_the_table_pipeline_and_day_of_an_earlier_question(
    earlier: list[str], text: str, name: str, arguments: dict[str, str]
) -> None:
    [call] = _plan(text, earlier).calls
    assert call.name == name and arguments.items() <= call.arguments.items()
    if name == tool.QUERY_LAKE:
        assert "FROM silver.weather" in call.arguments["sql"]


def test_the_same_measure_carries_when_the_message_names_none() -> None:
    [call] = _plan("and what was the average on that day?", ["what was the warmest hour on 2023-03-02?"]).calls
    assert "FROM silver.weather" in call.arguments["sql"] and "2023-03-02T00:00:00" in call.arguments["sql"]
    [own] = _plan("what was the average carbon intensity on that day?", ["what was the warmest hour on 2023-03-02?"]).calls
    assert "FROM silver.carbon_intensity" in own.arguments["sql"], "a measure the message names is its own"


def test_a_message_that_names_its_own_target_or_does_not_refer_back_is_left_alone() -> None:
    [own] = _plan("resume weather", ["pause carbon_intensity"]).calls
    assert own.arguments["pipeline"] == "weather"
    assert "Which pipeline?" in _plan("resume", ["pause carbon_intensity"]).message, "no 'it': nothing is borrowed"
    assert "Which pipeline?" in _plan("ok unpause it", []).message, "a first message has nothing to refer back to"
