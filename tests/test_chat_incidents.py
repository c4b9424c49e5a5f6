"""Incident questions in chat: one incident by number, a status, or all of them (agent/chat/incidents.py)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.planner import Turn
from tests.chat_planning import plan
from tests.conftest import utc
from tools import names as tool

NOW = utc(2023, 2, 5, 1)
SEVEN = {
    "incident": {"id": 7, "kind": "freshness", "severity": "critical", "table": "silver.weather", "partition": "2023-01-30",
                 "status": "escalated", "title": "silver.weather is stale", "occurrences": 3, "detected_at": "2023-01-30T06:00:00+00:00"},
    "cause_key": "freshness:silver.weather", "occurred_at": None, "run_id": "r-9",
    "evidence": [{"at": "2023-01-30T08:00:00+00:00", "lag_minutes": 240, "limit_minutes": 120}],
    "notes": [{"at": "2023-01-30T07:00:00+00:00", "actor": "agent", "status": "remediating", "note": "reran weather; still stale"},
              {"at": "2023-01-30T08:00:00+00:00", "actor": "agent", "status": "escalated", "note": "the source has no new data"}],
}  # fmt: skip


def _plan(text: str, turns: list[Turn] | None = None) -> Any:
    return plan(text, NOW, turns)


def _summary(number: int, status: str) -> dict[str, Any]:
    return SEVEN["incident"] | {"id": number, "status": status}


@pytest.mark.parametrize(
    ("text", "number"),
    [("tell me about incident #6", 6), ("what did you do about incident 3?", 3), ("why did incident 7 get escalated?", 7),
     ("anything new on incident no. 12?", 12)],
)  # fmt: skip
def test_a_question_naming_an_incident_gets_that_incident(text: str, number: int) -> None:
    [call] = _plan(text).calls
    assert (call.name, call.arguments) == (tool.GET_INCIDENT, {"incident_id": number})


def test_one_incident_is_told_with_status_cause_and_what_was_done() -> None:
    text = "why did incident 7 get escalated?"
    [call] = _plan(text).calls
    message = _plan(text, [Turn(call=call, decision="allow", status="ok", result=SEVEN)]).message
    assert "Incident #7 [critical] is escalated: silver.weather is stale" in message
    assert "Cause: freshness:silver.weather." in message and "lag_minutes 240" in message
    assert "agent (escalated): the source has no new data" in message


@pytest.mark.parametrize(
    ("text", "status"),
    [("list the resolved incidents", "resolved"), ("how many incidents did we have in total?", "all"),
     ("show me the escalated incidents", "escalated"), ("what is open?", "unresolved")],
)  # fmt: skip
def test_a_list_question_asks_for_the_status_it_names(text: str, status: str) -> None:
    [call] = _plan(text).calls
    assert call.name == tool.LIST_INCIDENTS and call.arguments["status"] == status


def test_the_total_counts_every_incident_by_status() -> None:
    text = "how many incidents did we have in total?"
    [call] = _plan(text).calls
    result = {"incidents": [_summary(1, "resolved"), _summary(2, "resolved"), _summary(3, "open")]}
    message = _plan(text, [Turn(call=call, decision="allow", status="ok", result=result)]).message
    assert "3 incident(s) in total (1 open, 2 resolved)" in message


def test_what_was_done_about_a_table_tells_its_newest_incident_and_lists_the_earlier_ones() -> None:
    text = "what did you do about the weather outage?"
    [listing] = _plan(text).calls
    assert (listing.name, listing.arguments) == (tool.LIST_INCIDENTS, {"status": "all", "table": "silver.weather", "limit": 10})
    found = {"incidents": [_summary(7, "escalated"), _summary(4, "resolved")]}
    first = Turn(call=listing, decision="allow", status="ok", result=found)
    [get] = _plan(text, [first]).calls
    assert (get.name, get.arguments) == (tool.GET_INCIDENT, {"incident_id": 7})
    message = _plan(text, [first, Turn(call=get, decision="allow", status="ok", result=SEVEN)]).message
    assert "Incident #7 [critical] is escalated: silver.weather is stale" in message
    assert "agent (escalated): the source has no new data." in message and ".." not in message
    assert message.endswith("Earlier on silver.weather: #4 resolved: silver.weather is stale.")
    nothing = _plan(text, [Turn(call=listing, decision="allow", status="ok", result={"incidents": []})])
    assert not nothing.calls and nothing.message.endswith("No incident is recorded on silver.weather.")


def test_incidents_of_a_period_are_the_ones_detected_in_it_whatever_became_of_them() -> None:
    [listed] = _plan("what incidents came up yesterday?").calls
    assert (listed.name, listed.arguments) == (tool.LIST_INCIDENTS, {"status": "all", "limit": 200})
    found = [
        _summary(1, "resolved") | {"title": "3 rows held", "detected_at": "2023-02-04T01:00:00+00:00", "severity": "warning"},
        _summary(2, "escalated") | {"title": "12 slots missing", "detected_at": "2023-02-03T01:00:00+00:00", "partition": "2023-02-02"},
    ]

    def told(text: str) -> str:
        return str(_plan(text, [Turn(call=listed, decision="allow", status="ok", result={"incidents": found})]).message)

    assert "1 incident about or detected on 2023-02-04:\n#1 [warning] resolved, detected 2023-02-04 01:00 UTC: 3 rows held" in told(
        "what incidents came up yesterday?"
    )
    assert "#2" not in told("what incidents came up yesterday?")
    assert "No incident is about or was detected on 2023-02-01." in told("any incidents on 2023-02-01?")
    # about the day even when raised later: #1's partition is 2023-01-30 (SEVEN's), #2 was detected on 02-03
    assert "#1" in told("any incidents on 2023-01-30?") and "#2" not in told("any incidents on 2023-01-30?")
