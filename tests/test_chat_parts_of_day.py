"""Parts of the day in chat: "yesterday morning" is answered for 06:00-12:00 UTC, never for the whole day.

Read in agent/chat/dates.py, carried by the intent (agent/chat/intents.py), filtered in the SQL (agent/chat/queries.py)
and named in the answer (agent/chat/answers.py); actions keep their whole days and say the hours were not used.
"""

from __future__ import annotations

from datetime import date, time
from itertools import pairwise
from typing import Any

import pytest

from agent.chat.dates import read_when
from agent.chat.day_hours import PARTS_OF_DAY
from agent.chat.intents import read_intent
from agent.chat.names import names_of
from agent.chat_intents import plan_chat
from agent.planner import PlanningState, ProposedCall, Turn
from config.settings import load_settings
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import run_pipeline
from tests.conftest import operator, utc, window
from tools import names as tool

NOW = utc(2023, 3, 4, 1)  # a Saturday, 01:00 UTC: yesterday is 2023-03-03, last week 2023-02-20..26
YESTERDAY = (date(2023, 3, 3), date(2023, 3, 4))
TODAY = (date(2023, 3, 4), date(2023, 3, 5))


def _plan(text: str, turns: list[Turn] | None = None, now: Any = NOW) -> Any:
    state = PlanningState(
        thread_id="chat-h", mode="chat", question=text, context={"now": now.isoformat(), "turn_id": "x"}, turns=turns or []
    )
    return plan_chat(state, planner="runbook planner")


def _turn(call: ProposedCall, result: dict[str, Any]) -> Turn:
    return Turn(call=call, decision="allow", status="ok", result=result)


# -- reading ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "days", "hours"),
    [
        ("average intensity yesterday morning", YESTERDAY, (6, 12)),
        ("yesterday afternoon", YESTERDAY, (12, 18)),
        ("on 3 March in the evening", YESTERDAY, (18, 24)),
        ("yesterday at night", YESTERDAY, (0, 6)),
        ("overnight yesterday", YESTERDAY, (0, 6)),
        ("yesterday during business hours", YESTERDAY, (9, 17)),
        ("yesterday in working hours", YESTERDAY, (9, 17)),
        ("office hours yesterday", YESTERDAY, (9, 17)),
        ("this morning", TODAY, (6, 12)),
        ("this afternoon", TODAY, (12, 18)),
        ("this evening", TODAY, (18, 24)),
        ("tonight", TODAY, (18, 24)),
        ("last night", TODAY, (0, 6)),  # the night that ended this morning: today 00-06 UTC
        ("mean intensity last week during business hours", (date(2023, 2, 20), date(2023, 2, 27)), (9, 17)),
        ("mornings in March", (date(2023, 3, 1), date(2023, 4, 1)), (6, 12)),
        ("average intensity between 9 and 17 yesterday", YESTERDAY, (9, 17)),
        ("yesterday from 14:00 to 18:00", YESTERDAY, (14, 18)),
        ("yesterday 9am-5pm", YESTERDAY, (9, 17)),
        ("yesterday between 9am and 5pm", YESTERDAY, (9, 17)),
        ("yesterday 14:00–18:00", YESTERDAY, (14, 18)),
        ("yesterday from 6pm to midnight", YESTERDAY, (18, 24)),
        ("yesterday from 18:00 to 00:00", YESTERDAY, (18, 24)),
    ],
)
def test_parts_of_the_day_narrow_the_days_to_whole_utc_hours(text: str, days: tuple[date, date], hours: tuple[int, int]) -> None:
    when = read_when(text, NOW)
    assert ((when.start, when.end), when.hours, when.problem, when.hours_problem, when.at) == (days, hours, None, None, None)


def test_each_word_of_the_table_is_read() -> None:
    for word, hours in PARTS_OF_DAY.items():
        assert read_when(f"average intensity yesterday {word}", NOW).hours == hours, word


@pytest.mark.parametrize(
    ("text", "days", "hours", "at"),
    [
        ("between 9 and 17 March", (date(2022, 3, 9), date(2022, 3, 18)), None, None),  # days of a month, not hours
        ("from 9 to 17 march 2023", (date(2023, 3, 9), date(2023, 3, 18)), None, None),
        ("between 1 and 3 March", (date(2023, 3, 1), date(2023, 3, 4)), None, None),
        ("between 9 and 17", (None, None), (9, 17), None),  # no month: hours, on no day in particular
        ("at 9", TODAY, None, time(9, 0)),  # a single time stays a time
        ("yesterday at 18:00", YESTERDAY, None, time(18, 0)),
        ("March 1 to 3pm", (date(2023, 3, 1), date(2023, 3, 2)), None, time(15, 0)),  # one end unmarked: no range
        ("from 2023-03-01 to 2023-03-03", (date(2023, 3, 1), date(2023, 3, 4)), None, None),
        ("between 5 and 10 degrees yesterday", YESTERDAY, None, None),  # a quantity, not hours
        ("good morning! average intensity yesterday", YESTERDAY, None, None),  # a greeting
        ("at 7 in the evening yesterday", YESTERDAY, (18, 24), time(19, 0)),  # the part of the day places the time
    ],
)
def test_ranges_of_hours_are_told_from_days_and_single_times(
    text: str, days: tuple[date | None, date | None], hours: tuple[int, int] | None, at: time | None
) -> None:
    when = read_when(text, NOW)
    assert ((when.start, when.end), when.hours, when.at) == (days, hours, at)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("yesterday from 9 to 5", "the hours end (05:00) before they start (09:00); a window across midnight is two questions"),
        ("yesterday between 22 and 6", "the hours end (06:00) before they start (22:00)"),
        ("yesterday from 9:30 to 17:00", "windows of the day are whole hours and 09:30 is not on the hour"),
    ],
)
def test_hours_that_cannot_be_used_are_a_problem_not_a_guess(text: str, problem: str) -> None:
    when = read_when(text, NOW)
    assert when.hours is None and when.hours_problem is not None and when.hours_problem.startswith(problem)
    assert (when.start, when.end) == YESTERDAY


def test_a_second_part_of_the_day_is_kept_so_the_answer_can_say_it_covers_one() -> None:
    when = read_when("yesterday morning and evening", NOW)
    assert (when.hours, when.other_hours) == ((6, 12), ("18:00–24:00 UTC",))
    assert when.describe() == "2023-03-03 06:00–12:00 UTC"
    assert read_when("last week during business hours", NOW).describe() == "2023-02-20 to 2023-02-26, 09:00–17:00 UTC each day"


# -- intents -----------------------------------------------------------------------------------------------------
def test_the_intent_carries_the_hours_only_where_they_narrow_the_answer() -> None:
    names = names_of(load_settings().config_dir)
    asked = read_intent("what was the average carbon intensity yesterday morning?", now=NOW, names=names)
    assert (asked.kind, asked.day_hours, asked.unused_hours, asked.slots()["day_hours"]) == ("aggregate", (6, 12), None, "06:00-12:00")
    rerun = read_intent("rerun weather yesterday morning", now=NOW, names=names)
    assert (rerun.kind, rerun.start, rerun.end, rerun.day_hours, rerun.unused_hours) == ("rerun", *YESTERDAY, None, (6, 12))
    timed = read_intent("what was the carbon intensity at 7 in the evening yesterday", now=NOW, names=names)
    assert (timed.kind, timed.at, timed.day_hours) == ("value_at", time(19, 0), None)


def test_a_range_of_hours_is_not_the_length_of_a_greenest_window() -> None:
    names = names_of(load_settings().config_dir)
    intent = read_intent("greenest 3 hour window yesterday from 14h to 18h", now=NOW, names=names)
    assert (intent.kind, intent.hours, intent.day_hours) == ("greenest", 3, (14, 18))
    assert read_intent("greenest hour yesterday from 14h to 18h", now=NOW, names=names).hours == 1


def test_today_s_hours_decide_between_measured_and_forecast() -> None:
    names = names_of(load_settings().config_dir)
    assert read_intent("cleanest hour tonight", now=utc(2023, 3, 4, 13), names=names).kind == "greenest_ahead"
    assert read_intent("greenest hour this morning", now=utc(2023, 3, 4, 13), names=names).kind == "greenest"
    # The same words, before and after the afternoon: the clock alone decides
    assert read_intent("cleanest hour this afternoon", now=utc(2023, 3, 4, 10), names=names).kind == "greenest_ahead"
    assert read_intent("cleanest hour this afternoon", now=utc(2023, 3, 4, 19), names=names).kind == "greenest"


# -- the planner's queries and answers -----------------------------------------------------------------------------
_HOUR = "hour(timezone('UTC', ts))"


def test_an_aggregate_of_yesterday_morning_filters_the_hours_and_names_them() -> None:
    question = "what was the average carbon intensity yesterday morning?"
    [call] = _plan(question).calls
    sql = call.arguments["sql"]
    assert f"{_HOUR} >= 6 AND {_HOUR} < 12" in sql and "TIMESTAMPTZ '2023-03-03T00:00:00+00:00'" in sql
    result = {
        "columns": ["n", "mean", "low", "low_at", "high", "high_at", "first_ts", "last_ts"],
        "rows": [[12, 201.5, 180, "2023-03-03T06:00:00+00:00", 230, "2023-03-03T11:30:00+00:00", None, None]],
    }
    message = _plan(question, [_turn(call, result)]).message
    assert message.startswith("[runbook planner] The average carbon intensity on 2023-03-03, 06:00–12:00 UTC was 201.5 gCO2/kWh")


def test_a_greenest_window_is_searched_inside_the_hours() -> None:
    [call] = _plan("greenest 2 hour window yesterday afternoon").calls
    assert f"{_HOUR} >= 12 AND {_HOUR} < 18" in call.arguments["sql"]
    too_long = _plan("greenest 8 hour window yesterday morning")
    assert not too_long.calls and "A 8-hour window does not fit in 06:00–12:00 UTC" in too_long.message


def test_quarantined_rows_are_filtered_by_the_hours() -> None:
    question = "which rows were quarantined yesterday afternoon"
    [call] = _plan(question).calls
    assert f"{_HOUR} >= 12 AND {_HOUR} < 18" in call.arguments["sql"]
    columns = ["target_table", "expectation", "scope", "n_rows", "days", "first_ts", "last_ts", "reason"]
    none = _plan(question, [_turn(call, {"columns": columns, "rows": []})]).message
    assert none.endswith("No row is held in quarantine on 2023-03-03, 12:00–18:00 UTC."), "the period reads as a sentence"


def test_a_greenest_window_ahead_is_searched_inside_the_hours() -> None:
    [call] = _plan("when should I run a 2-hour job tomorrow morning?").calls
    assert (call.name, call.arguments) == (
        tool.FIND_GREENEST_WINDOW,
        {"hours": 2, "within_hours": 35.0, "not_before": "2023-03-05T06:00:00+00:00"},
    )


def test_an_action_keeps_its_whole_days_and_says_the_hours_were_not_used() -> None:
    question = "please rerun weather for yesterday morning"
    [call] = _plan(question).calls
    assert (call.name, call.arguments) == (tool.RERUN_WINDOW, {"pipeline": "weather", "start": "2023-03-03", "end": "2023-03-04"})
    result = {"pipeline": "weather", "status": "succeeded", "runs": [{"rows_out": 24, "rows_quarantined": 0, "held_days": []}]}
    message = _plan(question, [_turn(call, result)]).message
    assert message.endswith("The hours 06:00–12:00 UTC were not used: re-run a pipeline over a few days works on whole days.")


def test_hours_that_cannot_be_used_are_refused_in_one_line() -> None:
    step = _plan("average carbon intensity yesterday from 9 to 5")
    assert not step.calls and step.message.startswith("[runbook planner] cannot use those hours: the hours end (05:00) before")


# -- against a real lake ------------------------------------------------------------------------------------------
def test_chat_answers_for_the_part_of_the_day_on_a_real_lake(ctx: PlatformContext) -> None:
    from agent.report import ConsoleReporter
    from agent.runtime import Agent

    now = utc(2023, 1, 28, 9)
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 26), (2023, 1, 28)), as_of=now)
    rows = load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow().to_pylist()
    day = sorted((r["ts"], r["actual"] if r["actual"] is not None else r["forecast"]) for r in rows if r["ts"].date() == date(2023, 1, 27))
    morning = [v for ts, v in day if 6 <= ts.hour < 12]
    whole = [v for _, v in day]
    assert len(morning) == 12 and round(sum(morning) / 12, 1) != round(sum(whole) / len(whole), 1), "the data must tell them apart"
    afternoon = [(ts, v) for ts, v in day if 12 <= ts.hour < 18]
    greenest_start = min((a[1] + b[1], a[0]) for a, b in pairwise(afternoon))[1]
    assert min((a[1] + b[1], a[0]) for a, b in pairwise(day))[1] != greenest_start, "the whole day's greenest hour lies elsewhere"
    lines: list[str] = []
    agent = Agent(ctx, clock=lambda: now, reporter=ConsoleReporter(lines.append))
    try:
        said = agent.chat("chat-hours", "what was the average carbon intensity yesterday morning?", user=operator())
        mean = round(sum(morning) / len(morning), 1)
        shown = str(int(mean)) if mean == int(mean) else f"{mean:.1f}"
        assert said.outcome == "answered", said.message
        assert f"The average carbon intensity on 2023-01-27, 06:00–12:00 UTC was {shown} gCO2/kWh, over 12 readings" in said.message
        greenest = agent.chat("chat-hours-2", "greenest hour yesterday afternoon", user=operator())
        assert f"The greenest 1-hour window on 2023-01-27, 12:00–18:00 UTC ran from {greenest_start:%Y-%m-%d %H:%M} UTC" in greenest.message
    finally:
        agent.close()


@pytest.mark.parametrize(
    ("text", "hours"),
    [
        ("average between 1 and 3 pm yesterday", (13, 15)),  # am/pm on one end reads for both
        ("from 8 to 11pm yesterday", (20, 23)),
        ("from 9am to 5 yesterday", (9, 17)),  # 5am would end before 9am: the other half of the day
        ("from 10 to 2pm yesterday", (10, 14)),
        ("average 2-4pm yesterday", (14, 16)),  # a bare start before a marked end
        ("between 9pm and 11 yesterday", (21, 23)),
    ],
)
def test_am_or_pm_written_on_one_end_reads_for_the_window(text: str, hours: tuple[int, int]) -> None:
    when = read_when(text, NOW)
    assert when.hours == hours and when.start == date(2023, 3, 3), when


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("wind share between 5 and 10% last week", None),  # a percentage, not hours
        ("between 5 and 10 °C last week", None),
        ("between 5 and 10 celsius last week", None),
        ("Morning! what was the average carbon intensity yesterday?", (date(2023, 3, 3), date(2023, 3, 4))),  # a greeting
        ("march 1 to 3pm", (date(2023, 3, 1), date(2023, 3, 2))),  # a day and a time
        ("average between 1 and 7 in march", (date(2023, 3, 1), date(2023, 3, 8))),  # days of March, not hours
        ("from 5 to 10 in march 2023", (date(2023, 3, 5), date(2023, 3, 11))),
    ],
)
def test_numbers_and_words_that_are_not_hours_stay_what_they_are(text: str, days: tuple[date, date] | None) -> None:
    when = read_when(text, NOW)
    assert when.hours is None, when
    if days is not None:
        assert (when.start, when.end) == days


def test_a_greenest_job_ahead_goes_to_the_next_day_whose_hours_still_hold_it() -> None:
    late = utc(2023, 3, 4, 22, 30)  # the evening has 1.5 hours left: a 3-hour job waits for tomorrow evening
    [call] = _plan("when should I run a 3-hour job in the evening?", now=late).calls
    assert call.arguments == {"hours": 3, "within_hours": 25.5, "not_before": "2023-03-05T18:00:00+00:00"}
    [short] = _plan("when should I run a 1-hour job in the evening?", now=late).calls
    assert short.arguments == {"hours": 1, "within_hours": 1.5}, "an hour still fits tonight"
    today = _plan("when should I run a 3-hour job this evening?", now=late)
    assert not today.calls and today.message.startswith(
        "[runbook planner] No 18:00–24:00 UTC on 2023-03-04 still holds a 3-hour window before the forecast ends"
    ), "asked for today, it says today has no room rather than moving the day"


def test_a_range_inside_the_named_part_of_the_day_is_the_window_and_no_second_one() -> None:
    for text in ("carbon intensity between 6 and 9 this morning", "this morning between 6 and 9, the carbon intensity"):
        when = read_when(text, NOW)
        assert (when.hours, when.other_hours) == ((6, 9), ()), text
    assert read_when("between 13 and 20 this morning", NOW).other_hours == ("06:00–12:00 UTC",), "a range outside it is a second window"
