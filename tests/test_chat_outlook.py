"""Chat: "what will the carbon intensity be tomorrow?" is answered with what the latest forecast expects.

Before, every question about a coming period was read as "when should I run a job" and answered with the greenest
hour, and "average forecast tomorrow" looked for NESO's forecast in silver, which holds no coming day.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.chat.intents import FORECAST_TABLE, read_intent
from agent.chat.names import names_of
from agent.planner import Turn
from config.settings import load_settings
from tests.chat_planning import answered, plan
from tests.conftest import utc
from tools import names as tool

NOW = utc(2023, 3, 4, 1)
NAMES = names_of(load_settings().config_dir)
ROW = {
    "issued_at": "2023-03-04T01:00:00+00:00", "n": 48, "mean": 242.64, "low": 221.3, "low_at": "2023-03-05T23:30:00+00:00",
    "high": 253.8, "high_at": "2023-03-05T21:00:00+00:00", "lo80": 168.7, "hi80": 445.6, "reaches": "2023-03-06T00:30:00+00:00",
}  # fmt: skip


def _plan(text: str, turns: list[Turn] | None = None) -> Any:
    return plan(text, NOW, turns)


@pytest.mark.parametrize(
    ("text", "since", "until"),
    [
        ("what will the carbon intensity be tomorrow?", "2023-03-05T00:00:00+00:00", "2023-03-06T00:00:00+00:00"),
        ("what's the forecast for tomorrow morning?", "2023-03-05T06:00:00+00:00", "2023-03-05T12:00:00+00:00"),
        ("forecast for the next 12 hours", "2023-03-04T01:00:00+00:00", "2023-03-04T13:00:00+00:00"),
        ("average forecast tomorrow", "2023-03-05T00:00:00+00:00", "2023-03-06T00:00:00+00:00"),
    ],
)
def test_a_question_about_a_coming_period_reads_the_latest_issue_over_it(text: str, since: str, until: str) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.kind, intent.outlook) == ("greenest_ahead", True)
    [call] = _plan(text).calls
    sql = call.arguments["sql"]
    assert call.name == tool.QUERY_LAKE and f"FROM {FORECAST_TABLE} WHERE issued_at <= TIMESTAMPTZ '{NOW.isoformat()}'" in sql
    assert f"ts >= TIMESTAMPTZ '{since}' AND ts < TIMESTAMPTZ '{until}'" in sql


def test_when_to_run_stays_the_greenest_window_search() -> None:
    for text in ("when should I run a 3-hour job tomorrow?", "best time to charge my car in the next 12 hours"):
        assert not read_intent(text, now=NOW, names=NAMES).outlook
        assert _plan(text).calls[0].name == tool.FIND_GREENEST_WINDOW


def test_the_answer_gives_the_issue_the_mean_its_band_and_extremes_or_says_why_not() -> None:
    text = "what will the carbon intensity be tomorrow?"
    [call] = _plan(text).calls
    message = _plan(text, [answered(call, list(ROW), [list(ROW.values())])]).message
    assert message == (
        "[runbook planner] The forecast issued 2023-03-04 01:00 UTC expects 242.6 gCO2/kWh on average from 2023-03-05 00:00 to "
        "2023-03-06 00:00 UTC (80 % band 168.7–445.6), lowest 221.3 at 2023-03-05 23:30 UTC, highest 253.8 at 2023-03-05 21:00 UTC, "
        "over 48 half-hours."
    )
    none = dict.fromkeys(ROW) | {"n": 0}
    assert "No forecast has been published yet" in _plan(text, [answered(call, list(none), [list(none.values())])]).message
    beyond = _plan("average forecast on 2023-03-10")
    assert not beyond.calls and "2023-03-10 00:00 UTC is beyond it" in beyond.message
