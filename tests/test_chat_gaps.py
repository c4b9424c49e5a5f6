"""Chat: "is anything missing this week?" and "how many slots were missing in February?" count the gaps of a range.

Before, a range got "Which day?" and the February question was read as an average of the intensity.
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

NOW = utc(2023, 3, 4, 1)
NAMES = names_of(load_settings().config_dir)
COLUMNS = ["day", "slots", "n_rows", "held"]


def _plan(text: str, turns: list[Turn] | None = None) -> Any:
    return plan(text, NOW, turns)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("how many slots were missing in february?", "2023-02-01", "2023-03-01"),
        ("is there any missing data this week?", "2023-02-27", "2023-03-04"),
    ],
)
def test_a_range_counts_each_day_up_to_the_clock(text: str, start: str, end: str) -> None:
    assert read_intent(text, now=NOW, names=NAMES).kind == "why_missing"
    [call] = _plan(text).calls
    assert call.name == tool.QUERY_LAKE and f"ts >= TIMESTAMPTZ '{start}T00:00:00+00:00'" in call.arguments["sql"]
    assert f"ts < TIMESTAMPTZ '{end}T00:00:00+00:00'" in call.arguments["sql"], "a day still in progress is not counted"


def test_the_answer_names_the_incomplete_days_and_the_slots_they_lack() -> None:
    text = "is there any missing data this week?"
    [call] = _plan(text).calls
    rows = [["2023-02-27", 48, 48, 0], ["2023-02-28", 40, 40, 8], ["2023-03-01", 48, 48, 0], ["2023-03-02", 48, 48, 0]]
    message = _plan(text, [answered(call, COLUMNS, rows)]).message
    assert message.startswith(
        "[runbook planner] silver.carbon_intensity from 2023-02-27 to 2023-03-03: 3 of 5 days complete; 56 slot(s) missing in all. "
        "Incomplete: 2023-02-28 (40 of 48 slots, 8 missing, 8 held in quarantine); 2023-03-03 (empty)."
    )
    january = _plan("any gaps in the carbon data in january?")
    [query] = january.calls
    loaded_late = [[f"2023-01-{d:02d}", 48, 48, 0] for d in range(20, 32) if d != 26] + [["2023-01-26", 43, 43, 5]]
    told = _plan("any gaps in the carbon data in january?", [answered(query, COLUMNS, loaded_late)]).message
    assert "11 of 31 days complete" in told and "Incomplete: 2023-01-01 to 2023-01-19 (empty, 19 days); 2023-01-26 (43 of 48 slots" in told
    complete = [[f"2023-02-{d}", 48, 48, 0] for d in (27, 28)] + [[f"2023-03-0{d}", 48, 48, 0] for d in (1, 2, 3)]
    assert "5 of 5 days complete; no slot is missing (240 slots)." in _plan(text, [answered(call, COLUMNS, complete)]).message


def test_a_range_that_has_not_ended_or_is_too_long_is_refused_with_why() -> None:
    ahead = _plan("is any data missing from 2023-03-04 to 2023-03-10?")
    assert not ahead.calls and "has not ended yet on the platform clock (2023-03-04 01:00 UTC)" in ahead.message
    assert "ask about at most 200 days at a time" in _plan("was any data missing between 2022-01-01 and 2023-03-01?").message
