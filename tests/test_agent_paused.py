"""A paused pipeline is not re-run or backfilled by the agent, and no one is asked to approve that it should be.

An operator pauses a pipeline (`dataops pause PIPELINE --reason R`) for a reason the agent cannot see into; a
re-run or backfill would bypass the pause and fails at once. So the agent never asks a person to approve one:
whatever planner proposed it, the call ends before the policy engine with a message naming who paused the
pipeline, why, and that `dataops resume PIPELINE` resumes it; the runbook planner does not propose it at all
and escalates the incident with the same words. A pipeline that is not paused is asked about as before.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.report import ConsoleReporter
from agent.runtime import Agent
from config.settings import load_settings
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from policies.audit import AuditLog
from tests.conftest import operator, utc, window
from tests.test_agent_guardrails import NOW, ScriptedPlanner, _runs, home, nulls_incident, prepared

__all__ = ["home", "nulls_incident", "prepared"]  # the guardrail tests' fixtures, used here too
NINE_DAYS = {"pipeline": "carbon_intensity", "start": "2023-01-10", "end": "2023-01-19"}
PAUSED = "carbon_intensity is paused by alice: vendor migration; `dataops resume carbon_intensity` resumes it"


def _agent(home: Path, lines: list[str], planner: ScriptedPlanner | None = None) -> Agent:
    ctx = PlatformContext.open(load_settings(home=home))
    return Agent(ctx, planner=planner, reporter=ConsoleReporter(lines.append), clock=lambda: NOW)


def _pause(home: Path) -> None:
    PlatformContext.open(load_settings(home=home)).control.set_paused("carbon_intensity", True, reason="vendor migration", actor="alice")


def test_a_backfill_of_a_paused_pipeline_is_not_put_to_an_approver(home: Path, nulls_incident: int) -> None:
    _pause(home)
    lines: list[str] = []
    agent = _agent(home, lines, ScriptedPlanner([("b", "backfill_range", NINE_DAYS)]))
    try:
        runs = _runs(agent)
        outcome = agent.handle_incident(nulls_incident)
        assert outcome.status != "waiting" and outcome.approval_id is None
        assert agent.approvals.list() == [], "no one is asked to approve what cannot run"
        [entry] = [e for e in agent.audit.entries(incident_id=nulls_incident) if e.tool == "backfill_range"]
        assert (entry.decision, entry.status) == ("invalid", "invalid") and PAUSED in entry.reason
        assert _runs(agent) == runs, "nothing ran"
        assert any(PAUSED in line for line in lines), "the report names the pause"
    finally:
        agent.close()


def test_a_backfill_of_a_pipeline_that_is_not_paused_still_waits_for_approval(home: Path, nulls_incident: int) -> None:
    lines: list[str] = []
    agent = _agent(home, lines, ScriptedPlanner([("b", "backfill_range", NINE_DAYS)]))
    try:
        outcome = agent.handle_incident(nulls_incident)
        assert outcome.status == "waiting" and outcome.approval_id is not None
        assert [(a.tool, a.rule) for a in agent.approvals.list()] == [("backfill_range", "backfill_approval")]
    finally:
        agent.close()


def test_a_backfill_asked_for_in_chat_on_a_paused_pipeline_says_why_instead_of_asking(home: Path) -> None:
    _pause(home)
    lines: list[str] = []
    agent = _agent(home, lines)
    try:
        answer = agent.chat("chat-p", "backfill carbon_intensity from 2023-01-01 to 2023-01-10", user=operator("bob"))
        assert answer.status == "done" and answer.approval_id is None
        assert agent.approvals.list() == []
        assert PAUSED in answer.message
    finally:
        agent.close()


@pytest.fixture
def transient_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[PlatformContext, int]:
    for key in [k for k in os.environ if k.startswith("DATAOPS_")]:
        monkeypatch.delenv(key)
    ctx = PlatformContext.open(load_settings(home=tmp_path / "home"))
    ctx.faults.inject(faults.SourceFault(kind="transient_error", source="carbon_intensity", times=1))
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 1, 3)), as_of=utc(2023, 1, 3, 1))
    [finding] = [f for f in findings_from_run(result, silver="silver.carbon_intensity") if f.kind == "source_failure"]
    incident, _ = ctx.incidents.report(finding, now=utc(2023, 1, 3, 1))
    return ctx, incident.id


def test_the_runbook_planner_escalates_instead_of_re_running_a_paused_pipeline(transient_failure: tuple[PlatformContext, int]) -> None:
    ctx, incident_id = transient_failure
    ctx.control.set_paused("carbon_intensity", True, reason="vendor migration", actor="alice")
    agent = Agent(ctx, clock=lambda: utc(2023, 1, 3, 1), reporter=ConsoleReporter(lambda _line: None))
    try:
        outcome = agent.handle_incident(incident_id)
    finally:
        agent.close()
    assert outcome.outcome == "escalated" and outcome.approval_id is None
    assert PAUSED in outcome.message and "runbook planner" in outcome.message
    tools = [e.tool for e in AuditLog(ctx.ledger).entries(incident_id=incident_id)]
    assert "rerun_window" not in tools, "a re-run of a paused pipeline is not even proposed"
    assert ctx.incidents.get(incident_id).status == "escalated"
    assert ctx.control.is_paused("carbon_intensity"), "the agent leaves the pause to whoever set it"


def test_the_runbook_planner_re_runs_the_same_failure_when_the_pipeline_is_not_paused(
    transient_failure: tuple[PlatformContext, int],
) -> None:
    ctx, incident_id = transient_failure
    agent = Agent(ctx, clock=lambda: utc(2023, 1, 3, 1), reporter=ConsoleReporter(lambda _line: None))
    try:
        outcome = agent.handle_incident(incident_id)
    finally:
        agent.close()
    assert outcome.outcome == "resolved", outcome.message
    assert "rerun_window" in [e.tool for e in AuditLog(ctx.ledger).entries(incident_id=incident_id)]
