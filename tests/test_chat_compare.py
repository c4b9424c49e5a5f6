"""Chat comparisons: every period a question names is measured the same way and set against the first.

Before, "compare yesterday with the day before" answered yesterday alone ("the day before" was not read as a
period), "January vs February" answered January and asked to be asked again, and "was February greener than
January?" went looking for February's greenest hour.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from agent.chat.intents import read_intent
from agent.chat.names import names_of
from agent.planner import Turn
from config.settings import load_settings
from tests.chat_planning import plan
from tests.conftest import utc
from tools import names as tool

NOW = utc(2023, 3, 4, 12)
NAMES = names_of(load_settings().config_dir)


def _plan(text: str, turns: list[Turn] | None = None) -> Any:
    return plan(text, NOW, turns)


def _result(mean: float | None, n: int) -> dict[str, Any]:
    row = {"mean": mean, "low": mean, "high": mean, "n": n, "low_at": None, "high_at": None, "first_ts": None, "last_ts": None}
    return {"columns": list(row), "rows": [list(row.values())]}


@pytest.mark.parametrize(
    ("text", "first", "other"),
    [
        ("compare yesterday's intensity with the day before", (date(2023, 3, 3), date(2023, 3, 4)), (date(2023, 3, 2), date(2023, 3, 3))),
        ("average intensity last week vs the week before", (date(2023, 2, 20), date(2023, 2, 27)), (date(2023, 2, 13), date(2023, 2, 20))),
        (
            "average intensity in February versus the previous month",
            (date(2023, 2, 1), date(2023, 3, 1)),
            (date(2023, 1, 1), date(2023, 2, 1)),
        ),
        (
            "compare average carbon intensity in January with February",
            (date(2023, 1, 1), date(2023, 2, 1)),
            (date(2023, 2, 1), date(2023, 3, 1)),
        ),
        ("was February greener than January?", (date(2023, 2, 1), date(2023, 3, 1)), (date(2023, 1, 1), date(2023, 2, 1))),
    ],
)
def test_each_period_is_read_and_queried_alike(text: str, first: tuple[date, date], other: tuple[date, date]) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.kind, intent.metric) == ("aggregate", "intensity")
    assert ((intent.start, intent.end), intent.other_ranges) == (first, (other,))
    calls = _plan(text).calls
    assert [c.name for c in calls] == [tool.QUERY_LAKE, tool.QUERY_LAKE]
    assert len({c.id for c in calls}) == 2, "each query its own call id"
    assert f"'{first[0].isoformat()}" in calls[0].arguments["sql"] and f"'{other[0].isoformat()}" in calls[1].arguments["sql"]


def test_the_answer_gives_each_period_and_the_difference_with_its_direction() -> None:
    text = "was February greener than January?"
    calls = _plan(text).calls
    turns = [
        Turn(call=c, decision="allow", status="ok", result=r)
        for c, r in zip(calls, [_result(165.9, 1344), _result(181.0, 1488)], strict=True)
    ]
    message = _plan(text, turns).message
    assert "- from 2023-02-01 to 2023-02-28: 165.9 gCO2/kWh over 1344 readings" in message
    assert "2023-02-01 to 2023-02-28 is 15.1 gCO2/kWh lower (greener) than 2023-01-01 to 2023-01-31, 8% lower." in message
    assert "ask again" not in message, "both periods are answered"


def test_a_period_without_readings_is_not_compared_and_a_temperature_gets_no_percentage() -> None:
    text = "average temperature on 1 March and 2 March"
    calls = _plan(text).calls
    empty = [
        Turn(call=c, decision="allow", status="ok", result=r) for c, r in zip(calls, [_result(6.2, 24), _result(None, 0)], strict=True)
    ]
    message = _plan(text, empty).message
    assert "- on 2023-03-02: no readings" in message and "not comparable, one of them has no readings" in message
    both = [Turn(call=c, decision="allow", status="ok", result=r) for c, r in zip(calls, [_result(6.2, 24), _result(5.6, 24)], strict=True)]
    assert "2023-03-01 is 0.6 °C higher than 2023-03-02." in _plan(text, both).message


def test_one_period_stays_one_query_and_a_lone_greenest_question_stays_greenest() -> None:
    assert len(_plan("average intensity yesterday").calls) == 1
    assert read_intent("greenest hour in February", now=NOW, names=NAMES).kind == "greenest"


@pytest.mark.parametrize(
    ("text", "metric", "first"),
    [
        ("was yesterday greener than average?", "intensity", (date(2023, 3, 3), date(2023, 3, 4))),
        ("was it colder than normal yesterday?", "temperature", (date(2023, 3, 3), date(2023, 3, 4))),
        ("was last week dirtier than usual", "intensity", (date(2023, 2, 20), date(2023, 2, 27))),
    ],
)
def test_than_usual_is_the_28_days_before(text: str, metric: str, first: tuple[date, date]) -> None:
    intent = read_intent(text, now=NOW, names=NAMES)
    assert (intent.kind, intent.metric, (intent.start, intent.end)) == ("aggregate", metric, first)
    assert intent.other_ranges == ((first[0] - timedelta(days=28), first[0]),)
    assert len(_plan(text).calls) == 2


def test_a_period_whose_query_returned_nothing_reads_as_no_readings() -> None:
    from agent.chat import compare
    from agent.chat.queries import metric_column

    intent = read_intent("compare yesterday's intensity with the day before", now=NOW, names=NAMES)
    text = compare.answer(intent, metric_column("intensity"), [{"n": 48, "mean": 200.0, "low": 1, "high": 2}], compare.periods(intent))
    assert "- on 2023-03-02: no readings" in text and "not comparable, one of them has no readings" in text
