"""Guardrails at the edges: several approvals in one step, crashes mid-execution, scope, self-approval, resolving.

A scripted planner (our Planner protocol, proposing fixed calls) drives the real graph, policy engine,
approval store and tools, so each case isolates one guardrail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.planner import PlanningState, PlanStep, ProposedCall
from agent.runtime import Agent
from config.errors import ApprovalError
from config.settings import load_settings
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from tests.conftest import REPO, operator, utc, window

NOW = utc(2023, 1, 28)


class ScriptedPlanner:
    """Proposes the given steps in order, then finishes with `final`."""

    name = "scripted planner"

    def __init__(self, *steps: list[tuple[str, str, dict[str, Any]]], final: str = "escalated") -> None:
        self.steps = list(steps)
        self.final = final

    def plan(self, state: PlanningState) -> PlanStep:
        if state.step < len(self.steps):
            calls = [ProposedCall(id=f"{state.thread_id}-{cid}", name=name, arguments=args) for cid, name, args in self.steps[state.step]]
            return PlanStep(calls=calls, planner=self.name)
        return PlanStep(outcome=self.final, message="done", planner=self.name)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("guardrails") / "home"
    ctx = PlatformContext.open(load_settings(home=home))
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW)
    for finding in findings_from_run(result, silver="silver.carbon_intensity"):
        ctx.incidents.report(finding, now=NOW)
    run_pipeline(ctx, "weather", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW)
    ctx.ledger.engine.dispose()
    return home


@pytest.fixture
def home(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    target = tmp_path / "home"
    shutil.copytree(prepared, target)
    return target


def _agent(home: Path, planner: Any, **overrides: Any) -> Agent:
    return Agent(PlatformContext.open(load_settings(home=home, **overrides)), planner=planner, clock=lambda: NOW)


@pytest.fixture
def nulls_incident(home: Path) -> int:
    ctx = PlatformContext.open(load_settings(home=home))
    return next(i.id for i in ctx.incidents.list(status=None) if i.cause_key == "actual_reported_after_slot")


def _runs(agent: Agent) -> int:
    return len(agent.ctx.ledger.runs(limit=1000))


def test_two_approvals_in_one_step_are_each_waited_for(home: Path, nulls_incident: int) -> None:
    nine = {"pipeline": "carbon_intensity", "start": "2023-01-10", "end": "2023-01-19"}
    other = {"pipeline": "carbon_intensity", "start": "2023-01-01", "end": "2023-01-10"}
    agent = _agent(home, ScriptedPlanner([("a", "backfill_range", nine), ("b", "backfill_range", other)]))
    try:
        first = agent.handle_incident(nulls_incident)
        assert first.status == "waiting"
        requests = {a.call_id.rsplit("-", 1)[-1]: a for a in agent.approvals.list()}
        assert set(requests) == {"a"}, "the second request is made only once the first is answered"
        agent.decide(requests["a"].id, approve=False, user="oncall", reason="not now")
        second = agent.pending_approval(f"incident-{nulls_incident}")
        assert second is not None and second.call_id.endswith("-b"), "the thread waits for the second request"
        assert _runs(agent) == 2, "nothing ran yet"
        agent.decide(second.id, approve=True, user="oncall")
        statuses = {e.call_id.rsplit("-", 1)[-1]: e.status for e in agent.audit.entries(incident_id=nulls_incident)}
        assert statuses == {"a": "denied", "b": "ok"}
        assert _runs(agent) > 2, "the approved backfill ran"
    finally:
        agent.close()


def test_chat_after_an_expired_request_is_not_locked(home: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text((REPO / "config" / "policy.yaml").read_text().replace("approval_ttl_minutes: 1440", "approval_ttl_minutes: 0.0001"))
    agent = _agent(home, None, policy_file=policy)
    try:
        asked = agent.chat("chat-x", "backfill carbon_intensity from 2023-01-01 to 2023-01-20", user=operator())
        assert asked.status == "waiting"
        time.sleep(0.05)
        again = agent.chat("chat-x", "what is open?", user=operator())
        assert again.status == "done" and "unresolved incident(s)" in again.message
        assert agent.approvals.get(asked.approval_id or "").status == "expired"
    finally:
        agent.close()


def test_no_one_approves_their_own_request(home: Path, tmp_path: Path) -> None:
    people = tmp_path / "people.yaml"
    people.write_text("people:\n  - {name: oncall, role: approver}\n  - {name: alice, role: approver, login: alice, slack: U_ALICE}\n")
    agent = _agent(home, None, people_file=people)
    try:
        asked = agent.chat("chat-self", "backfill carbon_intensity from 2023-01-01 to 2023-01-20", user=operator())
        assert asked.approval_id is not None
        assert agent.approvals.get(asked.approval_id).approvers == ["alice", "oncall"], "frozen from the people registry"
        with pytest.raises(ApprovalError, match=r"alice asked for .* may not decide it too"):
            agent.decide(asked.approval_id, approve=True, user="alice")
        slack = agent.people.slack_actor("U_ALICE")
        assert slack is not None and slack.channel == "slack"
        with pytest.raises(ApprovalError, match=r"alice asked for .* may not decide it too"):
            agent.decide(asked.approval_id, approve=True, user=slack)  # the same person through another channel
        assert agent.approvals.get(asked.approval_id).status == "pending"
    finally:
        agent.close()


def test_writes_outside_the_incident_need_approval_even_when_listed(home: Path, nulls_incident: int) -> None:
    """Text in the data may talk a model into acting elsewhere: out-of-scope writes and resumes wait for a human."""
    planner = ScriptedPlanner(
        [("q", "quarantine_partition", {"table": "silver.weather", "day": "2023-01-25", "reason": "the evidence said so"})],
        [("r", "resume_pipeline", {"pipeline": "weather", "reason": "the evidence said so"})],
    )
    agent = _agent(home, planner)
    try:
        weather = load_table(agent.ctx.catalog, "silver.weather")
        before = wap.read_days(weather, [utc(2023, 1, 25)]).num_rows
        waiting = agent.handle_incident(nulls_incident)
        approval = agent.approvals.get(waiting.approval_id or "")
        assert (approval.tool, approval.rule) == ("quarantine_partition", "incident_scope")
        assert wap.read_days(load_table(agent.ctx.catalog, "silver.weather"), [utc(2023, 1, 25)]).num_rows == before
        agent.decide(approval.id, approve=False, user="oncall", reason="unrelated table")
        resume = agent.approvals.list(status="pending")
        assert [(a.tool, a.rule) for a in resume] == [("resume_pipeline", "unlisted_write")]
    finally:
        agent.close()


def test_a_fix_elsewhere_does_not_resolve_an_incident(home: Path, nulls_incident: int) -> None:
    ctx = PlatformContext.open(load_settings(home=home))
    other = next(i.id for i in ctx.incidents.list(status=None) if i.id != nulls_incident)
    planner = ScriptedPlanner(
        [("fix", "rerun_window", {"pipeline": "carbon_intensity", "start": "2023-01-24", "end": "2023-01-25"})],
        [("res", "resolve_incident", {"incident_id": other, "note": "fixed"})],
        final="resolved",
    )
    agent = _agent(home, planner)
    try:
        outcome = agent.handle_incident(nulls_incident)
        entries = {e.tool: e for e in agent.audit.entries(incident_id=nulls_incident)}
        assert (entries["resolve_incident"].decision, entries["resolve_incident"].rule) == ("deny", "resolve_needs_verification")
        assert ctx.incidents.get(other).status != "resolved"
        assert outcome.outcome == "escalated", "re-running another day does not verify this incident's partition"
    finally:
        agent.close()


@pytest.mark.slow
def test_a_crash_while_executing_an_approved_call_is_recovered(home: Path, nulls_incident: int) -> None:
    """The process dies inside the approved tool; after a restart the thread continues and the call completes once."""
    script = f"""
import os
from agent.runtime import Agent
from config.settings import load_settings
from pipelines.context import PlatformContext
from pipelines import promotion
from tests.conftest import operator, utc
import tools.runs
agent = Agent(PlatformContext.open(load_settings(home={str(home)!r})), clock=lambda: utc(2023, 1, 28))
outcome = agent.chat("chat-crash", "backfill carbon_intensity from 2023-01-01 to 2023-01-10", user=operator())
tools.runs.run_pipeline = lambda *a, **k: os._exit(9)  # die inside the approved backfill
agent.decide(outcome.approval_id, approve=True, user="oncall")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")} | {"PYTHONPATH": str(REPO)}
    died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert died.returncode == 9, died.stderr[-2000:]
    agent = _agent(home, None)
    try:
        [entry] = [e for e in agent.audit.entries(thread_id="chat-crash") if e.tool == "backfill_range"]
        assert entry.status == "running", "the crash left the call mid-execution"
        runs_before = _runs(agent)
        recovered = agent.recover()
        assert [o.thread_id for o in recovered] == ["chat-crash"]
        [entry] = [e for e in agent.audit.entries(thread_id="chat-crash") if e.tool == "backfill_range"]
        assert entry.status == "ok" and entry.approver == "oncall"
        assert _runs(agent) > runs_before
        assert agent.recover() == [], "nothing left to recover"
    finally:
        agent.close()
