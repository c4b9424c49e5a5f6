"""Dates and times in chat read as people mean them: "many" is no month, "7.30pm" keeps its minutes (agent/chat/dates.py)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from agent.chat.dates import read_time, read_when
from tests.conftest import utc

NOW = utc(2023, 2, 5, 1)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("how many rows are in quarantine right now, and what tripped them?", None),
        ("how many readings did we get on 2023-01-26?", date(2023, 1, 26)),
        ("so many gaps on the 24th of January", date(2023, 1, 24)),
        ("mat or jule or mayo", None),
        ("in May", date(2022, 5, 1)),
        ("july 2022", date(2022, 7, 1)),
        ("febuary 2023", date(2023, 2, 1)),  # a typo of a long month name is still forgiven
        ("in septmber", date(2022, 9, 1)),
    ],
)
def test_common_words_are_never_months_and_long_month_typos_still_are(text: str, start: date | None) -> None:
    assert read_when(text, NOW).start == start


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("intensity at 7.30pm on 2023-01-24", time(19, 30)),
        ("at 18.30", time(18, 30)),
        ("18.30 on 2023-01-24", time(18, 30)),
        ("6.45am", time(6, 45)),
        ("18:30", time(18, 30)),
        ("7.5 hours", None),
        ("a 2.50 hours job", None),
        ("2.5h", None),
        ("a value of 18.30 gCO2/kWh", None),
    ],
)
def test_a_dot_between_hour_and_minutes_is_a_time_and_a_decimal_with_a_unit_is_not(text: str, at: time | None) -> None:
    assert read_time(text.lower())[0] == at


def test_a_dotted_time_does_not_become_a_day() -> None:
    when = read_when("intensity at 7.30pm on 2023-01-24", NOW)
    assert (when.start, when.at) == (date(2023, 1, 24), time(19, 30))


@pytest.mark.parametrize(
    "text", ["the week of 23 January 2023", "in the week starting 2023-01-23", "w/c 23 jan", "the week beginning the 23rd"]
)
def test_the_week_of_a_day_is_seven_days_from_it(text: str) -> None:
    when = read_when(text, NOW)
    assert (when.start, when.end) == (date(2023, 1, 23), date(2023, 1, 30))


def test_a_second_period_is_kept_so_the_answer_can_say_it_covers_one() -> None:
    assert read_when("compare intensity on 2023-01-28 with 2023-02-01", NOW).others == ("2023-02-01",)
    assert read_when("from 2023-01-20 to 2023-01-22, and then 2023-01-25", NOW).others == ("2023-01-25",)
    assert read_when("between the 1st and the 3rd at 6pm", NOW).others == ()


def test_an_answer_about_one_of_two_periods_says_so() -> None:
    """Averages compare every period (tests/test_chat_compare.py); a greenest window is searched in the first one only."""
    from agent.chat_intents import plan_chat
    from agent.planner import PlanningState, Turn

    text = "greenest hour on 2023-01-28 and on 2023-02-01"
    state = PlanningState(thread_id="chat-t", mode="chat", question=text, context={"now": NOW.isoformat(), "turn_id": "x"})
    [call] = plan_chat(state, planner="runbook planner").calls
    row = {"ts": "2023-01-28T13:00:00+00:00", "mean_v": 150.5, "period_mean": 180.0, "n": 48, "first_ts": None, "last_ts": None}
    turn = Turn(call=call, decision="allow", status="ok", result={"columns": list(row), "rows": [list(row.values())]})
    message = plan_chat(state.model_copy(update={"turns": [turn]}), planner="runbook planner").message
    assert message.endswith("This answers 2023-01-28 only; ask again for 2023-02-01.")


@pytest.mark.parametrize(
    ("now", "text", "start"),
    [
        (utc(2023, 3, 8, 1), "average intensity over the weekend", date(2023, 3, 4)),  # a Wednesday: the weekend just past
        (utc(2023, 3, 8, 1), "last weekend", date(2023, 3, 4)),
        (utc(2023, 3, 8, 1), "this weekend", date(2023, 3, 11)),
        (utc(2023, 3, 8, 1), "the weekend before last", date(2023, 2, 25)),
        (utc(2023, 3, 4, 1), "over the weekend", date(2023, 3, 4)),  # a Saturday: the weekend that has begun
        (utc(2023, 3, 4, 1), "last weekend", date(2023, 2, 25)),
    ],
)
def test_a_weekend_is_a_saturday_and_a_sunday(now: datetime, text: str, start: date) -> None:
    when = read_when(text, now)
    assert (when.start, when.end) == (start, start + timedelta(days=2))


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("next week", date(2023, 2, 6), date(2023, 2, 13)),  # NOW is Sunday 2023-02-05: the calendar week after this one
        ("next month", date(2023, 3, 1), date(2023, 4, 1)),
        ("in the coming week", date(2023, 2, 5), date(2023, 2, 12)),  # the seven days from today
        ("the day after tomorrow", date(2023, 2, 7), date(2023, 2, 8)),
    ],
)
def test_periods_ahead_are_read_forward(text: str, start: date, end: date) -> None:
    when = read_when(text, NOW)
    assert (when.start, when.end) == (start, end)
