"""Large backfills the agent runs wait for the greenest window of the forecast, then run and record the intensity.

The real graph, policy engine, approval and deferral stores and backfill tool, driven by a scripted planner on
the guardrail tests' home (January 2023 of carbon intensity, with a nulls incident), with a forecast written in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.report import ConsoleReporter
from agent.runtime import Agent
from config.errors import ApprovalError
from config.settings import load_settings
from pipelines.context import PlatformContext
from policies.deferrals import DeferralStore
from policies.people import os_login
from tests.conftest import REPO, operator
from tests.test_agent_guardrails import NOW, ScriptedPlanner, _runs, home, nulls_incident, prepared
from tests.test_forecast_deferral import dip_at, write_issue

__all__ = ["home", "nulls_incident", "prepared"]  # the guardrail tests' fixtures, used here too
NINE_DAYS = {"pipeline": "carbon_intensity", "start": "2023-01-10", "end": "2023-01-19"}


class Clock:
    """The platform clock of the test: moved by hand; no real time passes in a replay (like a stepped clock)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def _agent(home: Path, clock: Clock, lines: list[str], *steps: list[tuple[str, str, dict[str, Any]]], **overrides: Any) -> Agent:
    ctx = PlatformContext.open(load_settings(home=home, **overrides))
    return Agent(
        ctx,
        planner=ScriptedPlanner(*steps) if steps else None,
        reporter=ConsoleReporter(lines.append),
        clock=clock,
        real_seconds=lambda _span: 0.0,
    )


def _approve_backfill(agent: Agent, incident: int) -> str:
    asked = agent.handle_incident(incident)
    assert asked.status == "waiting" and asked.approval_id is not None, "nine days need approval"
    agent.decide(asked.approval_id, approve=True, user="oncall")
    return f"incident-{incident}"


def _with_forecast(home: Path, points: Callable[[], list[float]] = lambda: dip_at(3)) -> None:
    write_issue(PlatformContext.open(load_settings(home=home)), NOW, points())


def test_an_approved_backfill_waits_for_the_cleanest_hour_then_runs_and_records_its_intensity(home: Path, nulls_incident: int) -> None:
    _with_forecast(home)
    clock, lines = Clock(NOW), list[str]()
    agent = _agent(home, clock, lines, [("a", "backfill_range", NINE_DAYS)])
    try:
        runs = _runs(agent)
        thread = _approve_backfill(agent, nulls_incident)
        deferral = agent.pending_deferral(thread)
        assert deferral is not None and deferral.status == "waiting"
        assert (deferral.run_at, deferral.expected_intensity, deferral.now_intensity) == (NOW + timedelta(hours=3), 100.0, 300.0)
        assert _runs(agent) == runs, "approved, but nothing ran yet"
        assert any(
            f"deferred to {NOW + timedelta(hours=3):%Y-%m-%dT%H:%MZ}" in line and "dataops deferred release" in line for line in lines
        )
        again = agent.handle_incident(nulls_incident)
        assert (again.status, again.deferred_call) == ("waiting", deferral.call_id), "a waiting thread is not started over"

        clock.at = NOW + timedelta(hours=2, minutes=59)
        assert agent.resume_decided() == [] and _runs(agent) == runs, "before the window, still waiting"

        clock.at = NOW + timedelta(hours=3)
        [resumed] = agent.resume_decided()
        assert resumed.status == "done" and _runs(agent) > runs, "the backfill ran at its window"
        ran = agent.runtime.deferrals.get(deferral.call_id)
        assert (ran.status, ran.ran_at, ran.ran_intensity, ran.ran_intensity_kind) == ("resumed", clock.at, 100.0, "forecast")
        [entry] = [e for e in agent.audit.entries(incident_id=nulls_incident) if e.tool == "backfill_range"]
        assert (entry.status, entry.approver) == ("ok", "oncall")
        assert any(
            "backfill_range ran at" in line and "100 gCO2/kWh (forecast)" in line and "300 when it was due" in line for line in lines
        )
        assert agent.resume_decided() == [], "resumed once"
    finally:
        agent.close()


def test_a_person_releases_a_deferred_backfill_to_run_now(home: Path, nulls_incident: int, tmp_path: Path) -> None:
    people = tmp_path / "people.yaml"
    people.write_text("people:\n  - {name: oncall, role: approver}\n  - {name: vic, role: viewer}\n  - {name: otto, role: operator}\n")
    _with_forecast(home)
    clock, lines = Clock(NOW), list[str]()
    agent = _agent(home, clock, lines, [("a", "backfill_range", NINE_DAYS)], people_file=people)
    try:
        runs = _runs(agent)
        deferral = agent.pending_deferral(_approve_backfill(agent, nulls_incident))
        assert deferral is not None
        with pytest.raises(ApprovalError, match=r"vic may not release .*: operators and approvers may"):
            agent.release(deferral.call_id, user="vic")
        assert _runs(agent) == runs
        released = agent.release(deferral.call_id, user="otto", reason="the dashboard needs it this morning")
        assert (released.status, released.released_by) == ("resumed", "otto")
        assert _runs(agent) > runs, "it ran at once, before its window"
        with pytest.raises(ApprovalError, match="is not waiting any more"):
            agent.release(deferral.call_id, user="otto")
    finally:
        agent.close()


def _runs_at_once_saying(home: Path, incident: int, says: str) -> None:
    """The approved nine-day backfill ran at once, nothing was deferred, and the thread said why."""
    clock, lines = Clock(NOW), list[str]()
    agent = _agent(home, clock, lines, [("a", "backfill_range", NINE_DAYS)])
    try:
        runs = _runs(agent)
        thread = _approve_backfill(agent, incident)
        assert agent.pending_deferral(thread) is None and _runs(agent) > runs
        assert any(f"backfill_range runs now: {says}" in line for line in lines)
        assert agent.runtime.deferrals.list() == []
    finally:
        agent.close()


def test_without_a_forecast_the_backfill_runs_at_once_and_says_why(home: Path, nulls_incident: int) -> None:
    _runs_at_once_saying(home, nulls_incident, "running when due: no forecast has been published yet")


def test_short_backfills_and_chat_requests_run_at_once(home: Path, nulls_incident: int) -> None:
    _with_forecast(home)
    short = {"pipeline": "carbon_intensity", "start": "2023-01-10", "end": "2023-01-13"}
    clock, lines = Clock(NOW), list[str]()
    agent = _agent(home, clock, lines, [("s", "backfill_range", short)])
    try:
        runs = _runs(agent)
        done = agent.handle_incident(nulls_incident)
        assert done.status == "done" and _runs(agent) > runs, "three days are allowed and below the minimum: run at once"
        asked = agent.chat("chat-g", "backfill carbon_intensity from 2023-01-01 to 2023-01-20", user=operator())
        assert asked.approval_id is not None
        runs = _runs(agent)
        agent.decide(asked.approval_id, approve=True, user="oncall")
        assert _runs(agent) > runs, "a person asked in chat: it runs when approved"
        assert agent.runtime.deferrals.list() == []
    finally:
        agent.close()


def test_a_zero_deadline_turns_deferral_off(home: Path, nulls_incident: int) -> None:
    _with_forecast(home)
    clock, lines = Clock(NOW), list[str]()
    agent = _agent(home, clock, lines, [("z", "backfill_range", NINE_DAYS)], backfill_green_deadline_hours=0)
    try:
        runs = _runs(agent)
        thread = _approve_backfill(agent, nulls_incident)
        assert agent.pending_deferral(thread) is None and agent.runtime.deferrals.list() == []
        assert _runs(agent) > runs
    finally:
        agent.close()


def test_a_deferral_wakes_on_the_wall_clock_too(tmp_path: Path) -> None:
    """A CLI process's clock is the wall's: it must not wake a thread the replaying service deferred for later."""
    store = DeferralStore(PlatformContext.open(load_settings(home=tmp_path / "home")).ledger)
    wall = datetime.now().astimezone()
    deferral, created = store.defer(
        call_id="c1", thread_id="incident-1", incident_id=1, tool="backfill_range", arguments={}, due_at=NOW,
        run_at=NOW + timedelta(hours=3), wake_at=wall + timedelta(minutes=10), expected_intensity=100, now_intensity=300, reason="r",
    )  # fmt: skip
    assert created and store.defer(**{**deferral.model_dump(include={"call_id", "thread_id", "incident_id", "tool", "arguments"}),
                                      "due_at": NOW, "run_at": NOW, "wake_at": wall, "expected_intensity": None,
                                      "now_intensity": None, "reason": "again"})[1] is False  # fmt: skip
    later = NOW + timedelta(days=1000)  # a wall-clock process's "platform time"
    assert store.due(later, wall) == [], "the platform clock passed run_at, the wall clock has not reached wake_at"
    assert store.due(NOW + timedelta(hours=2), wall + timedelta(minutes=11)) == [], "the wall clock passed, the replay has not"
    assert [d.call_id for d in store.due(NOW + timedelta(hours=3), wall + timedelta(minutes=10))] == ["c1"]


@pytest.mark.slow
def test_dataops_deferred_lists_and_releases_as_the_authenticated_person(home: Path, nulls_incident: int, tmp_path: Path) -> None:
    _with_forecast(home)
    clock, lines = Clock(NOW), list[str]()
    agent = _agent(home, clock, lines, [("a", "backfill_range", NINE_DAYS)])
    try:
        deferral = agent.pending_deferral(_approve_backfill(agent, nulls_incident))
        assert deferral is not None
    finally:
        agent.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")} | {"DATAOPS_HOME": str(home), "PYTHONPATH": str(REPO)}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "evals.cli", *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)

    listed = cli("deferred", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["call_id"], row["status"], row["tool"]) == (deferral.call_id, "waiting", "backfill_range")
    human = cli("deferred", "list")
    assert f"{deferral.call_id} waiting, waits until {NOW + timedelta(hours=3):%Y-%m-%d %H:%M} UTC: backfill_range(" in human.stdout
    stranger = cli("deferred", "release", deferral.call_id)
    assert stranger.returncode == 2 and "is not a person of this platform" in stranger.stderr
    people = tmp_path / "people.yaml"
    people.write_text(f"people:\n  - {{name: oncall, role: approver}}\n  - {{name: otto, role: operator, login: {os_login()}}}\n")
    env["DATAOPS_PEOPLE_FILE"] = str(people)
    unknown = cli("deferred", "release", "nope")
    assert unknown.returncode == 2 and "no deferred call 'nope'; `dataops deferred list` shows them" in unknown.stderr
    released = cli("deferred", "release", deferral.call_id, "--reason", "needed now")
    assert released.returncode == 0, released.stderr
    assert f"{deferral.call_id} released by otto; the agent has resumed (resumed)" in released.stdout
    row = DeferralStore(PlatformContext.open(load_settings(home=home)).ledger).get(deferral.call_id)
    assert (row.status, row.released_by, row.released_reason, row.ran_at is not None) == ("resumed", "otto", "needed now", True)


def test_on_a_replay_the_wait_is_the_replay_s_real_time(home: Path, nulls_incident: int) -> None:
    """The service hands the agent its clock's real_seconds: three data hours at 3600x wait three real seconds."""
    from pipelines.clock import ReplayClock

    _with_forecast(home)
    replay = ReplayClock(start=NOW, speed=3600.0)
    ctx = PlatformContext.open(load_settings(home=home))
    agent = Agent(
        ctx, planner=ScriptedPlanner([("a", "backfill_range", NINE_DAYS)]), reporter=ConsoleReporter(list[str]().append),
        clock=lambda: NOW, real_seconds=replay.real_seconds,
    )  # fmt: skip
    try:
        before = datetime.now(UTC)
        deferral = agent.pending_deferral(_approve_backfill(agent, nulls_incident))
        assert deferral is not None and deferral.run_at == NOW + timedelta(hours=3)
        assert timedelta(seconds=3) <= deferral.wake_at - before <= timedelta(seconds=3) + (datetime.now(UTC) - before)
        assert agent.resume_decided() == [], "the platform clock of this agent stands still: not yet"
    finally:
        agent.close()


def test_a_forecast_that_cannot_be_read_never_holds_a_fix_back(home: Path, nulls_incident: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipelines.forecast.deferral as deferral_module

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError("the forecast table's metadata file is gone")

    _with_forecast(home)
    monkeypatch.setattr(deferral_module, "plan_deferral", broken)
    _runs_at_once_saying(home, nulls_incident, "the forecast could not be read (OSError)")
