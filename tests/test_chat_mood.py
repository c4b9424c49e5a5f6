"""A chat message acts only when it asks to act: questions about an action are answered, never run (agent/chat/mood.py)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.chat.mood import is_request
from agent.planner import ProposedCall, Turn
from tests.chat_planning import plan
from tests.conftest import utc
from tools import names as tool

NOW = utc(2023, 2, 5, 1)
WRITES = {
    tool.QUARANTINE_PARTITION, tool.RELEASE_PARTITION, tool.DELETE_PARTITION, tool.EXPIRE_SNAPSHOTS, tool.COMPACT_TABLE,
    tool.ROLLBACK_TABLE, tool.PAUSE_PIPELINE, tool.RESUME_PIPELINE, tool.RERUN_WINDOW, tool.BACKFILL_RANGE,
}  # fmt: skip

# The QA tester's questions (each of which used to run or file a write), then new ones of the same forms.
QUESTIONS = [
    "what's the total number of rows in silver weather on 2023-01-29?",
    "would quarantining silver.weather on 2023-01-27 help anything?",
    "is it safe to pause the weather pipeline?",
    "should we rerun carbon intensity for 2023-01-26, or is it fine?",
    "is the 31st of January 2023 ok in carbon intensity?",
    "I only want to know whether weather from 2023-01-21 to 2023-01-22 needs a backfill, don't start one",
    "show me silver.carbon_intensity on 2023-01-30 before I delete it",
    "explain what expire snapshots on silver.weather would do",
    "how do I release silver.carbon_intensity 2023-01-26?",
    "what would happen if I paused the generation_mix pipeline?",
    "would a backfill of weather from 2023-01-10 to 2023-01-12 fix the gaps?",
    "do we need to quarantine silver.carbon_intensity on 2023-01-26?",
    "can you tell me whether compacting bronze.weather is worth it?",
    "do not rerun weather for 2023-01-25, just tell me if that day is complete",
    "why would anyone delete silver.weather 2023-01-28?",
    "is resuming carbon_intensity risky?",
    "describe what rolling back silver.weather to snapshot 42 does",
    "can we release silver.weather 2023-01-27?",
    # a review's: inflected verbs, openers that look like verbs, and a question about the request before it
    "deleted silver.weather 2023-01-28?",
    "restarted weather for 2023-01-25?",
    "hold on, should I rerun weather for 2023-01-25?",
    "let me know if I should rerun weather for 2023-01-25",
    "time to rerun weather for 2023-01-25?",
    "rerun weather for 2023-01-25 - is that safe?",
    "rerun of weather for 2023-01-25: would that fix it?",
    "rerun weather for 2023-01-25, or wait for the schedule?",
]
# Requests: every chat action scenario's wording (evals/scenarios/*chat*), then new ones of the same forms.
REQUESTS = [
    ("quarantine silver.carbon_intensity 2023-02-02", tool.QUARANTINE_PARTITION),
    ("release silver.carbon_intensity 2023-02-02", tool.RELEASE_PARTITION),
    ("backfill carbon_intensity from 2023-01-01 to 2023-01-10", tool.BACKFILL_RANGE),
    ("delete silver.carbon_intensity 2023-02-02", tool.DELETE_PARTITION),
    ("expire snapshots of silver.carbon_intensity", tool.EXPIRE_SNAPSHOTS),
    ("pause carbon_intensity", tool.PAUSE_PIPELINE),
    ("resume carbon_intensity", tool.RESUME_PIPELINE),
    ("rerun carbon_intensity 2023-02-02", tool.RERUN_WINDOW),
    ("compact bronze.carbon_intensity", tool.COMPACT_TABLE),
    ("please backfill carbon intensity for all of January", tool.BACKFILL_RANGE),
    ("yesterday looks broken in the carbon table, please quarantine it", tool.QUARANTINE_PARTITION),
    ("pause the weather pipeline for now", tool.PAUSE_PIPELINE),
    ("the weather source is fixed, resume weather", tool.RESUME_PIPELINE),
    ("quarentine silver.carbon_intensty on feb 2nd", tool.QUARANTINE_PARTITION),
    ("quarantine gold carbon hourly on 2023-02-02", tool.QUARANTINE_PARTITION),
    ("please clean up the old snapshots on the raw carbon table", tool.EXPIRE_SNAPSHOTS),
    ("could you backfill the carbon intensity data from January 1st to January 20th?", tool.BACKFILL_RANGE),
    ("ok, then just backfill carbon intensity from jan 1 to jan 5", tool.BACKFILL_RANGE),
    ("hey, can you rerun carbon intensity for last tuesday", tool.RERUN_WINDOW),
    ("re-run the weather pipeline for last tusday pls", tool.RERUN_WINDOW),
    ("go ahead and delete silver.weather 2023-01-28", tool.DELETE_PARTITION),
    ("would you release silver.weather 2023-01-27?", tool.RELEASE_PARTITION),
    ("yesterday's weather needs a rerun", tool.RERUN_WINDOW),
    ("actually release silver.weather 2023-01-27 again, false alarm", tool.RELEASE_PARTITION),
    ("oops, sorry: resume weather", tool.RESUME_PIPELINE),
]


def _plan(text: str, turns: list[Turn] | None = None) -> Any:
    return plan(text, NOW, turns)


@pytest.mark.parametrize("text", QUESTIONS)
def test_a_question_about_an_action_is_not_a_request(text: str) -> None:
    assert not is_request(text)


@pytest.mark.parametrize("text", QUESTIONS)
def test_a_question_about_an_action_proposes_no_write(text: str) -> None:
    step = _plan(text)
    assert not {c.name for c in step.calls} & WRITES, step.calls


@pytest.mark.parametrize(("text", "name"), REQUESTS)
def test_a_request_to_act_proposes_the_action(text: str, name: str) -> None:
    assert is_request(text)
    assert [c.name for c in _plan(text).calls] == [name]


def test_a_question_about_days_is_answered_by_a_read_and_says_how_to_ask() -> None:
    text = "should we rerun carbon intensity for 2023-01-26, or is it fine?"
    [call] = _plan(text).calls
    assert call.name == tool.QUERY_LAKE and "silver.carbon_intensity" in call.arguments["sql"]
    result = {"columns": ["day", "slots", "n_rows", "held"], "rows": [["2023-01-26", 43, 43, 5]]}
    step = _plan(text, [Turn(call=ProposedCall(**call.model_dump()), decision="allow", status="ok", result=result)])
    assert "2023-01-26: INCOMPLETE; 43 of 48 slots, 43 rows published, 5 held in quarantine" in step.message
    assert 'Say "rerun carbon_intensity 2023-01-26" to do it.' in step.message and "Nothing ran" in step.message


def test_a_question_about_an_action_without_days_explains_it() -> None:
    step = _plan("is it safe to pause the weather pipeline?")
    assert step.calls == []
    assert step.message.endswith('Say "pause weather" to do it.') and "stops the schedule of weather" in step.message


@pytest.mark.parametrize(
    "text",
    [
        "I'd like you to rerun weather for 2023-01-25",
        "please can you rerun weather for 2023-01-25",
        "weather 2023-01-25: please rerun",
        "can you rerun weather for yesterday?",
        "rerun weather for yesterday please?",
        "quarantine silver.weather 2023-01-27, thanks",
    ],
)
def test_polite_requests_are_requests(text: str) -> None:
    assert is_request(text)
