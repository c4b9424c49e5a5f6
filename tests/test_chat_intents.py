"""The runbook planner's chat: typed intents and slots, dates on the platform clock, bad input, unsure answers, prose."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

import pytest

from agent.chat import topic
from agent.chat.dates import read_when
from agent.chat.intents import Intent, load_corpus, read_intent
from agent.chat.names import Names, names_of
from agent.chat_intents import plan_chat
from agent.planner import PlanningState, ProposedCall, Turn
from config.settings import load_settings
from tests.conftest import REPO, utc
from tools import names as tool

NOW = utc(2023, 3, 4, 1)  # a Saturday; the machine's calendar is years later


@pytest.fixture(scope="module")
def names() -> Names:
    return names_of(load_settings().config_dir)


def _read(text: str, names: Names, now: datetime = NOW) -> Intent:
    return read_intent(text, now=now, names=names)


def _plan(text: str, turns: list[Turn] | None = None, now: datetime = NOW) -> Any:
    state = PlanningState(
        thread_id="chat-t", mode="chat", question=text, context={"now": now.isoformat(), "turn_id": "x"}, turns=turns or []
    )
    return plan_chat(state, planner="runbook planner")


def _turn(call: ProposedCall, result: dict[str, Any], status: str = "ok", message: str = "") -> Turn:
    return Turn(call=call, decision="allow", status=status, result=result, message=message)  # type: ignore[arg-type]


# -- dates on the platform clock -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "start", "end", "at"),
    [
        ("yesterday at 18:00", "2023-03-03", "2023-03-04", time(18, 0)),
        ("last week", "2023-02-20", "2023-02-27", None),
        ("in March", "2023-03-01", "2023-04-01", None),
        ("March 2022", "2022-03-01", "2022-04-01", None),
        ("2023-03-01 to 2023-03-31", "2023-03-01", "2023-04-01", None),
        ("the 2nd of March", "2023-03-02", "2023-03-03", None),
        ("the 5th of March", "2022-03-05", "2022-03-06", None),  # 2023-03-05 is after the clock: the latest one before it
        ("last 3 days", "2023-03-01", "2023-03-04", None),
        ("between the 1st and the 3rd at 6pm", "2023-03-01", "2023-03-04", time(18, 0)),
        ("febuary 2023", "2023-02-01", "2023-03-01", None),
        ("1-3 March", "2023-03-01", "2023-03-04", None),
        ("between 1 and 3 March", "2023-03-01", "2023-03-04", None),
        ("March 1 to 3", "2023-03-01", "2023-03-04", None),
        ("between 2 and 4 march 2022", "2022-03-02", "2022-03-05", None),
        ("last tuesday", "2023-02-28", "2023-03-01", None),
        ("last tusday", "2023-02-28", "2023-03-01", None),  # a misspelt weekday keeps its first letter
        ("on wendesday", "2023-03-01", "2023-03-02", None),
    ],
)
def test_dates_are_read_on_the_platform_clock(text: str, start: str, end: str, at: time | None) -> None:
    when = read_when(text, NOW)
    assert (when.start, when.end, when.at, when.problem) == (date.fromisoformat(start), date.fromisoformat(end), at, None)


def test_words_ending_in_day_are_not_weekdays_and_and_alone_is_no_range() -> None:
    assert read_when("what happened today", NOW).start == date(2023, 3, 4)
    assert read_when("is a weekday or a holiday special?", NOW).start is None
    assert read_when("march 1 and 3", NOW).start == date(2023, 3, 1) and read_when("march 1 and 3", NOW).end == date(2023, 3, 2)


def test_yesterday_follows_the_platform_clock_not_the_machine() -> None:
    assert read_when("yesterday", utc(2019, 4, 8, 9)).start == date(2019, 4, 7)
    assert read_when("may I ask what is open", NOW).start is None, "'may' is a month only where a date is meant"


def test_an_impossible_range_is_a_problem_not_a_swap() -> None:
    when = read_when("from 2023-03-10 to 2023-03-05", NOW)
    assert when.problem == "the range ends (2023-03-05) before it starts (2023-03-10)"


# -- intents and slots ------------------------------------------------------------------------------------------
def test_a_month_backfill_in_plain_words_is_a_typed_intent(names: Names) -> None:
    intent = _read("please backfill carbon intensity for all of March", names)
    assert (intent.kind, intent.pipeline, intent.start, intent.end, intent.unsure) == (
        "backfill", "carbon_intensity", date(2023, 3, 1), date(2023, 4, 1), False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "kind", "slots"),
    [
        ("quarantine gold carbon hourly on 2023-03-05", "quarantine", {"table": "gold.carbon_intensity_hourly", "start": "2023-03-05"}),
        ("roll back silver.carbon_intensity to snapshot 123", "rollback", {"table": "silver.carbon_intensity", "snapshot_id": 123}),
        ("rerun weather for yesterday", "rerun", {"pipeline": "weather", "start": "2023-03-03", "end": "2023-03-04"}),
        ("average carbon intensity last week", "aggregate", {"aggregate": "avg", "metric": "intensity", "start": "2023-02-20"}),
        ("greenest 3 hour window on 2023-03-02", "greenest", {"hours": 3, "start": "2023-03-02"}),
        ("what was the temperature at 13:00 yesterday", "value_at", {"table": "silver.weather", "at": "13:00", "start": "2023-03-03"}),
        ("why did the last generation_mix run fail?", "run_report", {"pipeline": "generation_mix"}),
        ("how warm did it get between 1 and 3 March", "aggregate", {"aggregate": "max", "metric": "temperature", "end": "2023-03-04"}),
        ("hottest it got last week", "aggregate", {"aggregate": "max", "table": "silver.weather", "start": "2023-02-20"}),
    ],
)
def test_requests_become_intents_with_slots(names: Names, text: str, kind: str, slots: dict[str, Any]) -> None:
    intent = _read(text, names)
    got = intent.slots()
    assert intent.kind == kind and {k: got[k] for k in slots} == slots


@pytest.mark.parametrize(
    ("text", "kind", "table"),
    [
        ("quarentine silver.carbon_intensty on march 2nd", "quarantine", "silver.carbon_intensity"),
        ("histroy of the weather tabel", "history", "silver.weather"),
        ("rolback the carbon table to 31415", "rollback", "silver.carbon_intensity"),
    ],
)
def test_typos_in_words_and_names_are_forgiven(names: Names, text: str, kind: str, table: str) -> None:
    intent = _read(text, names)
    assert (intent.kind, intent.table) == (kind, table)


def test_the_corpus_has_a_held_out_split_never_trained_on() -> None:
    corpus = load_corpus()
    train, test = {c.text for c in corpus.split("train")}, {c.text for c in corpus.split("test")}
    assert len(corpus.cases) >= 150 and len(test) >= 60 and not train & test
    assert all(c.slots for c in corpus.split("test") if c.intent in ("backfill", "rerun", "quarantine", "rollback"))


# -- bad input: one line, nothing runs ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("history of silver.carbon", "unknown table 'silver.carbon'; known: silver.carbon_intensity, "),
        ("rerun solar_farm yesterday", "unknown pipeline 'solar_farm'; known: carbon_intensity, "),
        ("backfill weather from 2023-03-03 to 2023-03-01", "impossible range: the range ends (2023-03-01) before it starts (2023-03-03)"),
        ("why is carbon intensity missing data on 2023-03-10?", "2023-03-10 is after the platform clock (2023-03-04 01:00 UTC)"),
        ("rerun generation mix for yesterday", "2023-03-03 is outside the data: the generation_mix source covers 2019-04-01 to 2019-04-07"),
    ],
)
def test_bad_input_gets_one_line_and_no_call(text: str, line: str) -> None:
    step = _plan(text)
    assert step.calls == [] and step.outcome == "answered"
    assert step.message.startswith("[runbook planner] ") and line in step.message and "\n" not in step.message
    assert "Nothing ran." in step.message


def test_unsure_says_what_it_understood_and_offers_two_closest() -> None:
    step = _plan("can you write me a poem")  # 'write' is a word of the platform's (history): not off topic, just unclear
    assert step.calls == [] and "closest things I can do" in step.message
    assert step.message.count("(e.g. '") == 2 and "DATAOPS_LLM_BASE_URL" in step.message


@pytest.mark.parametrize(
    "text",
    [
        "tell me a joke",
        "what is the capital of France?",
        "is the stock market up today?",
        "how do I cook pasta",
        "what time is it in Tokyo",
    ],
)
def test_a_message_about_something_else_is_said_to_be_outside_the_platform(text: str) -> None:
    step = _plan(text)
    assert step.calls == [] and step.message.startswith("[runbook planner] " + topic.OFF_TOPIC) and "DATAOPS_LLM_BASE_URL" in step.message


@pytest.mark.parametrize(
    "text",
    [
        "what was the temprature yesterday at noon",  # a typo of a platform word
        "how much co2 did the grid emit yesterday",  # domain words the training phrasings lack
        "what was it at 18:00 yesterday?",  # no content word at all: left to the classifier
        "what kinds of things can I ask you?",
        "hello",
    ],
)
def test_a_message_about_the_platform_is_not_off_topic(text: str, names: Names) -> None:
    assert not _read(text, names).off_topic


def test_thanks_and_goodbye_get_a_line_and_no_call() -> None:
    assert _plan("thanks!").message == "[runbook planner] You're welcome."
    assert _plan("bye").calls == [] and "Bye" in _plan("bye").message


@pytest.mark.parametrize(
    "text", ["how warm will it be tomorrow", "what's the temperature tomorrow at noon", "weather forecast for next week"]
)
def test_weather_ahead_says_there_is_no_weather_forecast(text: str) -> None:
    step = _plan(text)
    assert step.calls == [] and "There is no weather forecast here: silver.weather holds measured hourly temperatures" in step.message


def test_a_search_wholly_beyond_the_forecast_says_how_far_it_reaches() -> None:
    step = _plan("greenest time to run a 2 hour job next week")
    assert step.calls == []
    # next week starts on Monday 2023-03-06 00:00; the forecast issued now ends an hour later
    assert "A forecast reaches 48 hours ahead, to 2023-03-06 01:00 UTC" in step.message
    assert "from 2023-03-06 to 2023-03-12 it covers less than the 2-hour job" in step.message
    later = _plan("greenest time to run a 2 hour job next month")
    assert later.calls == [] and "2023-04-01 00:00 UTC is beyond it" in later.message


# -- questions: read calls, then prose ---------------------------------------------------------------------------
def test_a_question_uses_read_tools_and_answers_in_prose_not_json() -> None:
    step = _plan("why did the last generation_mix run fail?")
    [listed] = step.calls
    assert (listed.name, listed.arguments) == (tool.LIST_RUNS, {"pipeline": "generation_mix", "limit": 20})
    runs = [
        {"run_id": "r2", "pipeline": "generation_mix", "status": "succeeded", "rows_quarantined": 0, "held_days": []},
        {"run_id": "r1", "pipeline": "generation_mix", "status": "quarantined", "rows_quarantined": 423, "held_days": ["2019-04-07"]},
    ]
    step = _plan("why did the last generation_mix run fail?", [_turn(listed, {"runs": runs})])
    [got] = step.calls
    assert (got.name, got.arguments) == (tool.GET_RUN, {"run_id": "r1"}), "the run that held a day back, although not 'failed'"
    run = {"run_id": "r1", "pipeline": "generation_mix", "status": "quarantined", "window_start": "2019-04-01T00:00:00+00:00",
           "window_end": "2019-04-08T00:00:00+00:00", "rows_in": 3015, "rows_out": 2592, "rows_quarantined": 423,
           "held_days": ["2019-04-07"], "error": None}  # fmt: skip
    validation = [
        {"table": "silver.generation_mix", "expectation": "day_has_48_slots", "success": False, "checked": 3015, "unexpected": 423}
    ]
    step = _plan(
        "why did the last generation_mix run fail?", [_turn(listed, {"runs": runs}), _turn(got, {"run": run, "validation": validation})]
    )
    assert step.outcome == "answered" and "{" not in step.message
    assert "Its status is not 'failed'" in step.message and "held back 2019-04-07" in step.message and "quarantined 423" in step.message


def test_lineage_is_a_text_tree() -> None:
    [call] = _plan("lineage of silver.carbon_intensity").calls
    result = {"table": "silver.carbon_intensity", "upstream": ["bronze.carbon_intensity", "source:carbon_intensity"],
              "downstream": ["gold.carbon_intensity_hourly", "gold.intensity_vs_temperature_daily"], "pipelines": ["carbon_intensity"]}  # fmt: skip
    message = _plan("lineage of silver.carbon_intensity", [_turn(call, result)]).message
    assert message.splitlines()[1:] == [
        "source:carbon_intensity",
        "└─ bronze.carbon_intensity",
        "   └─ silver.carbon_intensity   ← this table",
        "      ├─ gold.carbon_intensity_hourly",
        "      └─ gold.intensity_vs_temperature_daily   (also built from silver.weather)",
    ]


def test_an_action_is_proposed_for_the_policy_and_a_refusal_is_told() -> None:
    [call] = _plan("please backfill carbon intensity for all of March").calls
    assert (call.name, call.arguments) == (
        tool.BACKFILL_RANGE,
        {"pipeline": "carbon_intensity", "start": "2023-03-01", "end": "2023-04-01"},
    )
    refused = _plan(
        "please backfill carbon intensity for all of March", [_turn(call, {}, status="denied", message="over the 31-day limit")]
    )
    assert refused.message == "[runbook planner] backfill_range was refused: over the 31-day limit"


def test_no_tool_name_is_a_string_literal_in_the_chat_modules() -> None:
    sources = [REPO / "agent" / "chat_intents.py", *(REPO / "agent" / "chat").glob("*.py")]
    for path in sources:
        text = path.read_text()
        quoted = [n for n in tool.ALL if f'"{n}"' in text or f"'{n}'" in text]
        assert not quoted, f"{path.name} names {quoted} as strings; use tools.names"


def test_freshness_counts_only_monitored_pipelines_and_says_which_have_no_monitor() -> None:
    step = _plan("how fresh is the data?")
    [query] = step.calls
    rows = [
        {"table_name": "silver.carbon_intensity", "newest": "2023-03-04T00:00:00+00:00", "n_rows": 100},
        {"table_name": "silver.weather", "newest": "2023-03-03T12:00:00+00:00", "n_rows": 100},
        {"table_name": "silver.country_intensity", "newest": "2023-01-01T00:00:00+00:00", "n_rows": 222},
    ]
    result = {"columns": list(rows[0]), "rows": [list(r.values()) for r in rows]}
    answer = _plan("how fresh is the data?", [_turn(query, result)]).message
    assert "1 of 2 monitored pipeline(s) are fresh" in answer
    assert "carbon_intensity: newest slot 2023-03-04 00:00 UTC, 1.0 h before the platform clock; fresh (its monitor allows 3 h)" in answer
    assert "weather: newest slot 2023-03-03 12:00 UTC, 13.0 h before the platform clock; STALE (its monitor allows 6 h)" in answer
    assert (
        "country_intensity: newest slot 2023-01-01 00:00 UTC, 1489.0 h before the platform clock; no freshness monitor watches it" in answer
    )
    assert not any(line.rstrip().endswith(";") for line in answer.splitlines())


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("take 2023-03-02 out of silver.carbon_intensity", "quarantine"),
        ("get yesterday out of the hourly mart", "quarantine"),
        ("take 2023-03-02 out of quarantine for the carbon table", "release"),
        ("bring the weather day of the 2nd back out of quarantine", "release"),
    ],
)
def test_out_of_a_table_quarantines_and_out_of_quarantine_releases(text: str, kind: str, names: Names) -> None:
    """The words after "out of" say which way the rows move: a quarantine request must never read as a release."""
    assert _read(text, names).kind == kind


def test_a_moment_to_come_is_asked_of_the_forecast(names: Names) -> None:
    tonight = _read("what is the forecast for tonight at 8pm?", names)  # NOW is 01:00: 20:00 is still to come
    assert (tonight.kind, tonight.outlook, tonight.start, tonight.day_hours) == ("greenest_ahead", True, date(2023, 3, 4), (20, 21))
    assert tonight.table == "gold.carbon_intensity_forecast"
    past = _read("what was the intensity at 00:30?", names)
    assert (past.kind, past.at) == ("value_at", time(0, 30))


def test_the_warmest_hour_is_the_temperature_extreme_not_the_greenest_hour(names: Names) -> None:
    warmest = _read("what was the warmest hour on the 2nd?", names)
    assert (warmest.kind, warmest.metric, warmest.aggregate, warmest.table) == ("aggregate", "temperature", "max", "silver.weather")


def test_since_a_day_runs_to_today_and_next_weekday_looks_ahead(names: Names) -> None:
    since = _read("average carbon intensity since monday", names)
    assert (since.start, since.end) == (date(2023, 2, 27), date(2023, 3, 5))
    step = _plan("what will carbon intensity be next wednesday?")
    assert step.calls == [] and "2023-03-08 00:00 UTC is beyond it" in step.message


def test_a_question_about_runs_lists_the_latest_ones() -> None:
    [listed] = _plan("list the last 2 pipeline runs").calls
    runs = [
        {"run_id": f"r{n}", "pipeline": p, "status": s, "window_start": "2023-03-01T00:00:00+00:00", "window_end": "2023-03-04T00:00:00+00:00",
         "rows_in": 144, "rows_out": 144 - q, "rows_quarantined": q, "held_days": h, "error": None, "attempts": 1}
        for n, (p, s, q, h) in enumerate([("weather", "succeeded", 0, []), ("carbon_intensity", "quarantined", 4, ["2023-03-02"]),
                                          ("weather", "succeeded", 0, [])])
    ]  # fmt: skip
    step = _plan("list the last 2 pipeline runs", [_turn(listed, {"runs": runs})])
    assert step.calls == [] and step.message.count("\n- ") == 2
    assert "The latest 2 runs, newest first:\n- weather 2023-03-01 00:00 to 2023-03-04 00:00 UTC: succeeded" in step.message
    assert (
        "carbon_intensity 2023-03-01 00:00 to 2023-03-04 00:00 UTC: quarantined, 140 row(s) published, 4 quarantined, held back 2023-03-02"
        in step.message
    )


@pytest.mark.parametrize(
    ("text", "fuel"),
    [("which day had the highest renewable share last week?", "renewables"), ("average fossil share yesterday", "fossil"),
     ("low-carbon generation share yesterday", "low_carbon"), ("how much wind yesterday", "wind")],
)  # fmt: skip
def test_fuels_asked_about_together_are_a_group(text: str, fuel: str, names: Names) -> None:
    intent = _read(text, names)
    assert (intent.metric, intent.fuel, intent.table) == ("share", fuel, "silver.generation_mix")


def test_the_lowest_carbon_hour_is_no_low_carbon_share(names: Names) -> None:
    assert _read("lowest carbon hour yesterday", names).metric == "intensity"


@pytest.mark.parametrize(
    ("text", "threshold", "above", "days", "metric"),
    [("how many days in february had an average under 100?", 100.0, False, True, "intensity"),
     ("how many hours were above 200 gCO2 last week", 200.0, True, False, "intensity"),
     ("how many hours were above 20 degrees yesterday?", 20.0, True, False, "temperature")],
)  # fmt: skip
def test_how_many_beyond_a_value_counts_readings_or_days(
    text: str, threshold: float, above: bool, days: bool, metric: str, names: Names
) -> None:
    intent = _read(text, names)
    assert (intent.kind, intent.threshold, intent.above, intent.count_days, intent.metric) == ("aggregate", threshold, above, days, metric)
    [call] = _plan(text).calls
    assert "count(*) FILTER (WHERE " + ("mean" if days else "v") + (" > " if above else " < ") + repr(threshold) in call.arguments["sql"]


def test_a_count_beyond_a_value_is_told_with_its_share_and_hours() -> None:
    [call] = _plan("how many hours were above 200 gCO2 last week").calls
    row = {"hits": 76, "n": 336, "first_at": "2023-02-20T06:00:00+00:00", "last_at": "2023-02-26T19:30:00+00:00"}
    step = _plan("how many hours were above 200 gCO2 last week", [_turn(call, {"columns": list(row), "rows": [list(row.values())]})])
    assert (
        "76 of 336 half-hour reading(s) of carbon intensity from 2023-02-20 to 2023-02-26 were above 200 gCO2/kWh (38 hours)"
        in step.message
    )


def test_an_empty_period_inside_the_table_is_said_to_be_held_back() -> None:
    [call] = _plan("average carbon intensity on 2023-03-02").calls
    row = {"n": 0, "mean": None, "low": None, "low_at": None, "high": None, "high_at": None,
           "first_ts": "2023-03-01T00:00:00+00:00", "last_ts": "2023-03-03T23:30:00+00:00"}  # fmt: skip
    step = _plan("average carbon intensity on 2023-03-02", [_turn(call, {"columns": list(row), "rows": [list(row.values())]})])
    assert "That period lies inside it, so its day(s) were held back" in step.message
    assert "'why is carbon intensity missing data on 2023-03-02?'" in step.message


@pytest.mark.parametrize(
    ("text", "per"),
    [("which week of february was the cleanest?", "week"), ("average intensity per week in february please", "week"),
     ("give me the carbon intensity by day last week", "day"), ("daily averages of the temperature last week", "day")],
)  # fmt: skip
def test_a_breakdown_by_day_or_week_is_asked_for(text: str, per: str, names: Names) -> None:
    intent = _read(text, names)
    assert (intent.kind, intent.per, intent.by_day) == ("aggregate", per, False)
    [call] = _plan(text).calls
    assert f"date_trunc('{per}', ts) AS period" in call.arguments["sql"]


def test_a_weekly_breakdown_names_each_week_and_the_extremes() -> None:
    [call] = _plan("which week of february was the cleanest?").calls
    rows = [
        {"period": "2023-01-30T00:00:00+00:00", "first_ts": "2023-02-01T00:00:00+00:00", "last_ts": "2023-02-05T23:30:00+00:00",
         "mean": 150.0, "low": 90, "high": 210, "n": 240},
        {"period": "2023-02-06T00:00:00+00:00", "first_ts": "2023-02-06T00:00:00+00:00", "last_ts": "2023-02-12T23:30:00+00:00",
         "mean": 120.0, "low": 70, "high": 200, "n": 336},
    ]  # fmt: skip
    step = _plan(
        "which week of february was the cleanest?", [_turn(call, {"columns": list(rows[0]), "rows": [list(r.values()) for r in rows]})]
    )
    assert "- week of 2023-01-30 (Wed 01 Feb to Sun 05 Feb): 150 gCO2/kWh" in step.message
    assert "Lowest: the week of 2023-02-06 (Mon 06 Feb to Sun 12 Feb) at 120" in step.message
