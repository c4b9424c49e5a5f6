"""Greenest windows: the cleanest H hours of the latest forecast before a deadline, as a function, a command, a tool and a chat answer."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from typer.testing import CliRunner

from agent.planner import PlanningState, PlanStep, Turn
from config.errors import ToolError
from evals.cli import app
from pipelines.context import PlatformContext
from pipelines.forecast.greenest import (
    GreenestWindow,
    HorizonTooShortError,
    NoForecastError,
    StaleForecastError,
    WindowRequestError,
    describe,
    greenest_window,
    parse_duration,
)
from pipelines.forecast.schema import SLOT, ForecastSlot, IssuedForecast
from pipelines.forecast.store import FORECAST_TABLE, latest_issue
from tests.conftest import operator, utc
from tools import names as tool
from tools.base import ToolContext
from tools.registry import get_tool

ISSUED = utc(2023, 3, 4, 0)  # a Saturday
NOW = utc(2023, 3, 4, 1)


def issue(points: Sequence[float], *, issued_at: datetime = ISSUED, model: str = "gbm", perfect_prognosis: bool = False) -> IssuedForecast:
    """An issue whose slots start at `issued_at`, each with 80 % bounds ±10 and 95 % bounds ±20 around its point."""
    return IssuedForecast(
        issued_at=issued_at,
        model=model,
        model_version="1",
        perfect_prognosis=perfect_prognosis,
        slots=tuple(
            ForecastSlot(ts=issued_at + n * SLOT, horizon_h=(n + 1) / 2, point=p, lo80=p - 10, hi80=p + 10, lo95=p - 20, hi95=p + 20)
            for n, p in enumerate(points)
        ),
    )


def flat(n: int = 96, value: float = 200.0) -> list[float]:
    return [value] * n


# -- the window chosen ----------------------------------------------------------------------------------------
def test_the_clear_minimum_is_chosen_with_its_interval_and_the_saving() -> None:
    points = flat()
    points[10:16] = [100, 90, 80, 80, 90, 100]  # 05:00-08:00 UTC
    got = greenest_window(issue(points), now=NOW, hours=3)
    assert (got.start, got.end) == (utc(2023, 3, 4, 5), utc(2023, 3, 4, 8))
    assert (got.intensity, got.lo80, got.hi80, got.lo95, got.hi95) == (90.0, 80.0, 100.0, 70.0, 110.0)
    assert (got.now_start, got.now_intensity, got.saving, got.saving_pct) == (NOW, 200.0, 110.0, 55.0)
    # 48 slots from 01:00 to the deadline 01:00 tomorrow; windows of 6 slots: 43 of them
    assert (got.candidates, got.deadline, got.issued_at, got.model) == (43, utc(2023, 3, 5, 1), ISSUED, "gbm")


def test_a_tie_goes_to_the_earliest_window() -> None:
    points = flat()
    points[6:8] = [50, 50]  # 03:00-04:00
    points[20:22] = [50, 50]  # 10:00-11:00, as clean
    got = greenest_window(issue(points), now=NOW, hours=1)
    assert got.start == utc(2023, 3, 4, 3)


def test_a_slot_in_progress_is_skipped_and_run_now_starts_at_the_next_boundary() -> None:
    points = flat()
    points[2] = 10  # 01:00-01:30, in progress at 01:10
    got = greenest_window(issue(points), now=NOW + timedelta(minutes=10), hours=0.5)
    assert got.start != utc(2023, 3, 4, 1) and got.now_start == utc(2023, 3, 4, 1, 30)


def test_a_window_partly_beyond_the_horizon_is_not_chosen() -> None:
    points = flat(8)  # 00:00-04:00 only
    points[7] = 1  # the last slot, 03:30-04:00: a 2-hour window through it would run past the horizon
    got = greenest_window(issue(points), now=NOW, hours=2)
    assert (got.start, got.end, got.candidates) == (utc(2023, 3, 4, 2), utc(2023, 3, 4, 4), 3)


def test_the_deadline_is_respected() -> None:
    points = flat()
    points[30:32] = [20, 20]  # 15:00-16:00: cleaner, but after a 12-hour deadline
    points[8:10] = [150, 150]  # 04:00-05:00
    got = greenest_window(issue(points), now=NOW, hours=1, within=timedelta(hours=12))
    assert (got.start, got.deadline) == (utc(2023, 3, 4, 4), utc(2023, 3, 4, 13))
    assert greenest_window(issue(points), now=NOW, hours=1).start == utc(2023, 3, 4, 15)


def test_not_before_moves_the_earliest_start_but_run_now_stays_now() -> None:
    points = flat()
    points[4] = 1  # 02:00, before tomorrow... of the issue: excluded by not_before
    points[60:62] = [90, 90]  # Sunday 06:00-07:00
    got = greenest_window(issue(points), now=NOW, hours=1, within=timedelta(hours=47), not_before=utc(2023, 3, 5))
    assert (got.start, got.now_start, got.now_intensity) == (utc(2023, 3, 5, 6), NOW, 200.0)


# -- errors that say what to do ----------------------------------------------------------------------------------
def test_no_forecast_says_how_to_publish_one() -> None:
    with pytest.raises(NoForecastError) as caught:
        greenest_window(None, now=NOW, hours=3)
    assert str(caught.value) == (
        "no forecast has been published yet; run `dataops run forecast` (or let `dataops serve` issue one after the next "
        "carbon-intensity run), then ask again"
    )


def test_a_stale_forecast_names_its_issue_time_and_last_slot() -> None:
    old = issue(flat(), issued_at=utc(2023, 3, 1, 0))  # ends 2023-03-03 00:00, before now
    with pytest.raises(StaleForecastError) as caught:
        greenest_window(old, now=NOW, hours=3)
    assert str(caught.value) == (
        "the latest forecast is stale (73 h old, older than 48 h): issued at 2023-03-01 00:00 UTC by gbm, its last slot ends at "
        "2023-03-03 00:00 UTC, before a 3-hour window from 2023-03-04 01:00 UTC could end; run `dataops run forecast` (or let "
        "`dataops serve` issue one after the next carbon-intensity run)"
    )
    short = issue(flat(6))  # ends 03:00: no 3 hours left from 01:00
    with pytest.raises(
        StaleForecastError,
        match=r"stale \(it ends too soon\): issued at 2023-03-04 00:00 UTC by gbm, its last slot ends at 2023-03-04 03:00 UTC",
    ):
        greenest_window(short, now=NOW, hours=3)


def test_a_horizon_shorter_than_the_window_says_how_many_hours_there_are() -> None:
    with pytest.raises(HorizonTooShortError) as caught:
        greenest_window(issue(flat()), now=NOW, hours=3, within=timedelta(hours=2.5))
    assert str(caught.value) == (
        "only 2.5 h of forecast lie between 2023-03-04 01:00 UTC and the deadline 2023-03-04 03:30 UTC (forecast issued at "
        "2023-03-04 00:00 UTC, last slot ends 2023-03-06 00:00 UTC), fewer than the 3 h asked for; allow a later deadline "
        "(within) or ask for a shorter window"
    )


@pytest.mark.parametrize("hours", [0, -1, 1.25, 0.1, float("nan")])
def test_a_window_must_be_a_positive_multiple_of_half_an_hour(hours: float) -> None:
    with pytest.raises(WindowRequestError, match=r"cannot be planned: give a positive multiple of 0\.5 hours \(e\.g\. 0\.5, 1, 2\.5\)"):
        greenest_window(issue(flat()), now=NOW, hours=hours)


@pytest.mark.parametrize(("text", "want"), [("24h", timedelta(hours=24)), ("90m", timedelta(minutes=90)), ("2d", timedelta(days=2)),
                                            ("1h30m", timedelta(minutes=90)), ("1.5h", timedelta(minutes=90)), ("12", timedelta(hours=12))])  # fmt: skip
def test_durations_are_read(text: str, want: timedelta) -> None:
    assert parse_duration(text) == want


def test_a_bad_duration_says_how_to_write_one() -> None:
    with pytest.raises(WindowRequestError, match=r"^cannot read the duration 'tomorrow': write it like 24h, 90m, 2d or 1h30m$"):
        parse_duration("tomorrow")


def test_the_sentence_for_a_person() -> None:
    points = flat()
    points[10:16] = [100, 90, 80, 80, 90, 100]
    text = describe(greenest_window(issue(points), now=NOW, hours=3))
    assert text.splitlines() == [
        "Run 05:00–08:00 UTC on Sat 4 Mar: 90 gCO2/kWh expected (80 %: 80–100), 55 % below running now (200).",
        "Forecast issued 2023-03-04 00:00 UTC by gbm 1; 43 windows compared, ending by 2023-03-05 01:00 UTC.",
    ]
    assert re.search(r"now is as clean as it gets", describe(greenest_window(issue(flat()), now=NOW, hours=3)))
    later = flat()
    later[2:8] = [100] * 6  # now (01:00-04:00) is cleaner than anything tomorrow
    tomorrow = greenest_window(issue(later), now=NOW, hours=3, within=timedelta(hours=47), not_before=utc(2023, 3, 5))
    assert ", 100 % above running now (100), which would be cleaner." in describe(tomorrow)


# -- through the lake: the command, the tool, the chat -------------------------------------------------------------
def publish(ctx: PlatformContext, forecast: IssuedForecast) -> None:
    """Append one issue to gold.carbon_intensity_forecast directly, as the forecast pipeline's publish would leave it."""
    import pyarrow as pa

    from pipelines.lakehouse.catalog import arrow_schema, load_table

    rows = [
        {"issued_at": forecast.issued_at, **s.model_dump(), "model": forecast.model, "model_version": forecast.model_version,
         "perfect_prognosis": forecast.perfect_prognosis, "run_id": "test-run"}
        for s in forecast.slots
    ]  # fmt: skip
    schema = arrow_schema(ctx.inventory.table(FORECAST_TABLE))
    load_table(ctx.catalog, FORECAST_TABLE).append(pa.Table.from_pylist(rows, schema=schema))


def dipped() -> IssuedForecast:
    points = flat()
    points[10:16] = [100, 90, 80, 80, 90, 100]  # Saturday 05:00-08:00
    points[56:62] = [60, 60, 60, 60, 60, 60]  # Sunday 04:00-07:00: tomorrow's cleanest
    return issue(points)


@pytest.fixture
def home(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> PlatformContext:
    """The platform with one published issue, and DATAOPS_HOME pointing the CLI at it."""
    publish(ctx, dipped())
    monkeypatch.setenv("DATAOPS_HOME", str(ctx.settings.home))
    return ctx


def test_the_latest_issue_round_trips_through_the_table(home: PlatformContext) -> None:
    assert latest_issue(home, as_of=NOW) == dipped()


def test_greenest_command_json(home: PlatformContext) -> None:
    result = CliRunner().invoke(app, ["greenest", "--hours", "3", "--within", "12h", "--as-of", "2023-03-04T01:00Z", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["start"], payload["end"], payload["intensity"]) == ("2023-03-04T05:00:00Z", "2023-03-04T08:00:00Z", 90.0)
    assert (payload["saving_pct"], payload["candidates"], payload["model"]) == (55.0, 19, "gbm")
    assert GreenestWindow.model_validate(payload).deadline == utc(2023, 3, 4, 13)


def test_greenest_command_prose_and_errors(home: PlatformContext) -> None:
    runner = CliRunner()
    said = runner.invoke(app, ["greenest", "--hours", "3", "--within", "2d", "--as-of", "2023-03-04T01:00Z"])
    assert said.exit_code == 0, said.output
    assert said.stdout.startswith("Run 04:00–07:00 UTC on Sun 5 Mar: 60 gCO2/kWh expected (80 %: 50–70), 70 % below running now (200).")
    short = runner.invoke(app, ["greenest", "--hours", "3", "--within", "90m", "--as-of", "2023-03-04T01:00Z"])
    assert short.exit_code == 2 and "error: only 1.5 h of forecast lie between 2023-03-04 01:00 UTC" in short.output
    before = runner.invoke(app, ["greenest", "--hours", "3", "--as-of", "2023-03-03T23:00Z"])
    assert before.exit_code == 2 and "error: no forecast has been published yet; run `dataops run forecast`" in before.output
    bad = runner.invoke(app, ["greenest", "--hours", "1.2", "--within", "soon"])
    assert bad.exit_code == 2 and "a window of 1.2 hours cannot be planned" in bad.output


def test_the_tool_through_the_registry(home: PlatformContext) -> None:
    spec = get_tool(tool.FIND_GREENEST_WINDOW)
    assert spec.reads_only
    tool_ctx = ToolContext(platform=home, now=NOW)
    got = spec.invoke(tool_ctx, spec.parse({"hours": 3, "within_hours": 47, "not_before": "2023-03-05T00:00:00Z"}))
    assert (got.start, got.intensity, got.now_intensity) == (utc(2023, 3, 5, 4), 60.0, 200.0)
    with pytest.raises(ToolError, match=r"^invalid arguments for find_greenest_window: hours: Input should be a multiple of 0\.5"):
        spec.parse({"hours": 1.2})
    with pytest.raises(ToolError, match=r"^only 1 h of forecast lie between"):
        spec.invoke(tool_ctx, spec.parse({"hours": 3, "within_hours": 1}))


def test_the_policy_lets_the_agent_read_it_without_approval(home: PlatformContext) -> None:
    from policies.engine import decide
    from policies.model import PolicyRequest, load_policy

    spec = get_tool(tool.FIND_GREENEST_WINDOW)
    request = PolicyRequest(tool=spec.name, effect=spec.effect, arguments={"hours": 2}, now=NOW)
    decision = decide(load_policy(home.settings.policy_path), request)
    assert (decision.kind, decision.rule) == ("allow", "read_is_free")


# -- chat, offline -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "slots"),
    [
        ("when should I run a 3-hour job tomorrow?", "greenest_ahead", {"hours": 3, "start": "2023-03-05", "within_hours": None}),
        ("greenest two hours in the next 12 hours", "greenest_ahead", {"hours": 2, "within_hours": 12}),
        ("I have a 90 minute job, when is the grid cleanest today?", "greenest_ahead", {"hours": 1.5, "start": "2023-03-04"}),
        ("when should I run the dishwasher for an hour and a half before 9am", "greenest_ahead", {"hours": 1.5, "within_hours": 8}),
        ("greenest 3 hour window yesterday", "greenest", {"hours": 3, "start": "2023-03-03"}),  # the past stays measured data
    ],
)
def test_chat_reads_the_length_and_the_deadline(text: str, kind: str, slots: dict[str, object]) -> None:
    from agent.chat.intents import read_intent
    from agent.chat.names import names_of
    from config.settings import load_settings

    intent = read_intent(text, now=NOW, names=names_of(load_settings().config_dir))
    got = intent.slots()
    assert (intent.kind, intent.unsure, {k: got[k] for k in slots}) == (kind, False, slots)


def _plan(text: str, turns: list[Turn] | None = None) -> PlanStep:
    from agent.chat_intents import plan_chat

    state = PlanningState(
        thread_id="chat-g", mode="chat", question=text, context={"now": NOW.isoformat(), "turn_id": "x"}, turns=turns or []
    )
    return plan_chat(state, planner="runbook planner")


def test_chat_plans_the_tool_call_and_answers_in_prose() -> None:
    question = "when should I run a 3-hour job tomorrow?"
    [call] = _plan(question).calls
    assert (call.name, call.arguments) == (
        tool.FIND_GREENEST_WINDOW,
        {"hours": 3, "within_hours": 47.0, "not_before": "2023-03-05T00:00:00+00:00"},
    )
    window = greenest_window(dipped(), now=NOW, hours=3, within=timedelta(hours=47), not_before=utc(2023, 3, 5))
    turn = Turn(call=call, decision="allow", status="ok", result=window.model_dump(mode="json"))
    answered = _plan(question, [turn])
    assert answered.outcome == "answered"
    assert answered.message.startswith("[runbook planner] Run 04:00–07:00 UTC on Sun 5 Mar: 60 gCO2/kWh expected (80 %: 50–70)")
    failed = Turn(call=call, decision="allow", status="error", message=str(NoForecastError("no forecast has been published yet")))
    assert _plan(question, [failed]).message == "[runbook planner] find_greenest_window failed: no forecast has been published yet"


def test_chat_answers_end_to_end_offline(home: PlatformContext) -> None:
    from agent.report import ConsoleReporter
    from agent.runtime import Agent

    lines: list[str] = []
    agent = Agent(home, clock=lambda: NOW, reporter=ConsoleReporter(lines.append))
    try:
        said = agent.chat("chat-green", "when should I run a 3-hour job tomorrow?", user=operator())
        assert said.outcome == "answered", said.message
        assert "Run 04:00–07:00 UTC on Sun 5 Mar: 60 gCO2/kWh expected (80 %: 50–70), 70 % below running now (200)." in said.message
    finally:
        agent.close()
