"""Runs one scenario in a fresh `$DATAOPS_HOME` with the real pipelines, monitors, agent, policies and approvals.

    inject source faults → run the windows (transient failures retried as `serve` retries them)
    → findings become incidents → apply lake faults → later runs
    → monitors → remember every table's head → the agent works each incident, a scripted human answers
    its approval requests through `Agent.decide` (the API Slack and the CLI use) → checks on the final state

Models: `runbook` (the deterministic runbook planner), `scripted` (the real `openai` client against the
scripted OpenAI-compatible server, replaying the scenario's `model_script`), `openai` (whatever
DATAOPS_LLM_* points at).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from agent.demo import violations
from agent.report import ConsoleReporter
from agent.runtime import Agent
from config.errors import DataOpsError, DefinitionError
from config.settings import DataopsSettings
from evals.checks import CheckResult, FinalState, run_check
from evals.model_server import ScriptedOpenAI
from evals.scenario import RunSpec, ScenarioSpec
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.forecast.run import run_forecast
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.checks import evaluate
from pipelines.monitors.findings import findings_from_forecast, findings_from_run
from pipelines.promotion import run_pipeline
from pipelines.retry import no_wait, retry, run_failure, scheduler_budget
from pipelines.sources.base import Window
from policies.people import People, Person
from tools.registry import REGISTRY

Model = Literal["runbook", "scripted", "openai"]
# Writes that only settle an incident (note, resolve, escalate) are never "unnecessary".
BOOKKEEPING = frozenset(name for name, spec in REGISTRY.items() if spec.settles_incident)


class ScenarioResult(BaseModel):
    name: str
    difficulty: str
    tags: list[str]
    model: str
    passed: bool
    checks: list[CheckResult]
    policy_violations: list[dict[str, Any]] = Field(default_factory=list)
    unnecessary_writes: list[str] = Field(default_factory=list)
    steps: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    time_to_detect_s: float | None = None
    time_to_remediate_s: float | None = None
    incidents: list[dict[str, Any]] = Field(default_factory=list)
    report: str = Field(default="", description="What the agent reported, per incident and chat answer")
    judge: dict[str, Any] | None = Field(default=None, description="The optional LLM judge's score of the report (never gates)")
    error: str | None = None
    duration_s: float = 0.0


def _declare_chat_users(ctx: PlatformContext, spec: ScenarioSpec) -> None:
    """Each chat message's user with the role the scenario gives them, in the scenario's own ops database (a person the
    people file declares keeps their role there); a user with no role stays unknown to the platform."""
    people = People.load(ctx.settings, ctx.ledger)
    known = {p.name for p in people}
    for message in spec.chat:
        if message.role is not None and message.user not in known and people.store is not None:
            people.store.add(Person(name=message.user, role=message.role, source="database"))
            known.add(message.user)


def _declare_approver(ctx: PlatformContext, spec: ScenarioSpec) -> None:
    """The scenario's human (`approvals.by`) is a person with role approver: the bundled `oncall` of config/people.yaml,
    or declared in the scenario's own ops database. A person of that name with a lesser role is an error, not promoted."""
    people = People.load(ctx.settings, ctx.ledger)
    found = people.get(spec.approvals.by)
    if found is None and people.store is not None:
        people.store.add(Person(name=spec.approvals.by, role="approver", source="database"))
    elif found is not None and found.role != "approver":
        raise DefinitionError(
            f"scenario {spec.name} answers approvals as {spec.approvals.by}, who is a {found.role} in the people registry; "
            "make them an approver or set approvals.by to one"
        )


class _Scenario:
    def __init__(self, spec: ScenarioSpec, settings: DataopsSettings, model: Model, home: Path) -> None:
        self.spec = spec
        self.model = model
        self.server: ScriptedOpenAI | None = None
        update: dict[str, Any] = {"home": home, "source_mode": "replay", "approvers": None}
        if model == "runbook":
            update |= {"llm_base_url": None, "llm_model": None}
        elif model == "scripted":
            if not spec.model_script:
                raise DefinitionError(f"scenario {spec.name} has no model_script; the scripted model needs one")
            self.server = ScriptedOpenAI(*[_reply(r) for r in spec.model_script], when_empty=ScriptedOpenAI.text("Nothing more to do."))
            update |= {"llm_base_url": self.server.base_url, "llm_model": "scripted", "llm_api_key": "sk-eval"}
        self.ctx = PlatformContext.open(settings.model_copy(update=update))
        _declare_approver(self.ctx, spec)
        _declare_chat_users(self.ctx, spec)
        self.now = datetime(2000, 1, 1, tzinfo=UTC)
        self.bad_heads: dict[str, int] = {}
        self.lines: list[str] = []

    def run(self, run: RunSpec) -> None:
        """One scheduled run as `serve` makes it: transient failures retried by the same rule and budget
        (pipelines/retry.py `scheduler_budget`), the waits modelled on the platform clock instead of slept."""
        start, end, as_of = run.bounds()
        if run.pipeline in self.ctx.inventory.forecasts:
            self.forecast(run.pipeline, as_of)
            return
        window = Window(start=start, end=end)
        result, report = retry(
            lambda attempt, _at: run_pipeline(self.ctx, run.pipeline, window, as_of=as_of, attempt=attempt),
            run_failure,
            budget=scheduler_budget(self.ctx.settings),
            start=as_of,
            wait=no_wait,
            seed=f"{run.pipeline}:{window.start.isoformat()}",
        )
        self.now = max(self.now, as_of + timedelta(seconds=report.waited_s))
        for finding in findings_from_run(result, silver=self.ctx.inventory.pipeline(run.pipeline).silver):
            self.ctx.incidents.report(finding, now=as_of)
        self.monitor()

    def forecast(self, name: str, as_of: datetime) -> None:
        """A forecast issue as `dataops run forecast` makes it, at `as_of` (the end of the run's window plus an hour,
        unless the scenario says): from the data before it, published or quarantined whole."""
        result = run_forecast(self.ctx, name, as_of=as_of)
        self.now = max(self.now, as_of)
        for finding in findings_from_forecast(result, table=self.ctx.inventory.forecast(name).table):
            self.ctx.incidents.report(finding, now=as_of)
        self.monitor()

    def monitor(self) -> None:
        """The scenario's monitors, after every run as `serve` evaluates them, so baselines build up as they would."""
        monitors = [self.ctx.inventory.monitors[name] for name in self.spec.monitors]
        if monitors:
            for finding in evaluate(self.ctx, monitors, self.now):
                self.ctx.incidents.report(finding, now=self.now)

    def prepare(self) -> dict[str, int | None]:
        lake_faults = []
        for raw in self.spec.faults:
            fault = faults.load_fault(raw)
            if isinstance(fault, faults.SourceFault):
                self.ctx.faults.inject(fault)  # this scenario's context only: others, in any thread, never see it
            else:
                lake_faults.append(fault)
        for run in self.spec.runs:
            self.run(run)
        for fault in lake_faults:
            self.bad_heads[fault.table] = faults.apply_lake_fault(self.ctx, fault)
        if lake_faults:
            self.monitor()
        for run in self.spec.after:
            self.run(run)
        heads: dict[str, int | None] = {}
        for name in self.ctx.inventory.tables:
            snapshot = load_table(self.ctx.catalog, name).current_snapshot()
            heads[name] = snapshot.snapshot_id if snapshot else None
        return heads

    def remediate(self, agent: Agent) -> tuple[dict[int, str], float | None]:
        messages: dict[int, str] = {}
        durations = []
        for incident in sorted(self.ctx.incidents.list(status="open", limit=1000), key=lambda i: i.id):
            started = time.perf_counter()
            outcome = self._answer(agent, agent.handle_incident(incident.id), partial(agent.handle_incident, incident.id))
            settled = self.ctx.incidents.get(incident.id)
            if settled.status in ("resolved", "escalated"):
                durations.append(time.perf_counter() - started)
            messages[incident.id] = outcome.message
        for n, message in enumerate(self.spec.chat, start=1):
            thread = f"chat-{message.thread}"
            outcome = self._answer(agent, agent.chat(thread, message.text, user=message.user), partial(self._chat_outcome, agent, thread))
            messages[-n] = outcome.message  # chat answers are keyed -1, -2, ...; incidents by their id
        return messages, (sum(durations) / len(durations) if durations else None)

    def _answer(self, agent: Agent, outcome: Any, current: Callable[[], Any]) -> Any:
        """Answer the thread's approval requests as the scenario's human would, through `Agent.decide`."""
        while outcome.status == "waiting" and outcome.approval_id:
            approval = agent.approvals.get(outcome.approval_id)
            decision = self.spec.approvals.decision_for(approval.tool)
            if decision == "ignore":
                break  # the human never answers: the request stays pending
            agent.decide(approval.id, approve=decision == "approve", user=self.spec.approvals.by, reason=f"eval: {decision}")
            outcome = current()
        return outcome

    @staticmethod
    def _chat_outcome(agent: Agent, thread: str) -> Any:
        from agent.runtime import ThreadOutcome

        pending = agent.pending_approval(thread)
        if pending is not None:
            return ThreadOutcome(thread_id=thread, status="waiting", approval_id=pending.id)
        values = agent.graph.get_state({"configurable": {"thread_id": thread}}).values
        return ThreadOutcome(thread_id=thread, status="done", outcome=values.get("outcome"), message=values.get("message") or "")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.ctx.ledger.engine.dispose()


def _reply(raw: dict[str, Any]) -> Any:
    if "tool" in raw:
        return ScriptedOpenAI.tool_call(raw["tool"], raw.get("args") or {})
    return ScriptedOpenAI.text(str(raw.get("text", "")))


def run_scenario(spec: ScenarioSpec, settings: DataopsSettings, *, model: Model = "runbook") -> ScenarioResult:
    """Run one scenario end to end in a throw-away state folder and grade the final state."""
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix=f"dataops-eval-{spec.name[:40]}-"))
    base = ScenarioResult(name=spec.name, difficulty=spec.difficulty, tags=list(spec.tags), model=model, passed=False, checks=[])
    scenario: _Scenario | None = None
    try:
        scenario = _Scenario(spec, settings, model, home)
        heads = scenario.prepare()
        agent = Agent(scenario.ctx, reporter=ConsoleReporter(scenario.lines.append, verbose=False), clock=lambda: scenario.now)  # type: ignore[union-attr]
        try:
            messages, ttr = scenario.remediate(agent)
            entries = agent.audit.entries(limit=100_000)
            state = FinalState(ctx=scenario.ctx, audit=entries, heads_before_agent=heads, bad_heads=scenario.bad_heads, messages=messages)
            checks = [run_check(state, c) for c in spec.expect] + _trajectory(spec, entries)
            threads = [agent.graph.get_state({"configurable": {"thread_id": f"incident-{i}"}}).values for i in messages]
        finally:
            agent.close()
        incidents = scenario.ctx.incidents.list(status=None, limit=1000)
        detect = [i.time_to_detect_s for i in incidents if i.time_to_detect_s is not None]
        allowed = set(spec.trajectory.allowed_writes if spec.trajectory.allowed_writes is not None else spec.trajectory.must_call)
        unnecessary = [
            e.tool for e in entries if e.status == "ok" and e.effect in ("write", "destructive") and e.tool not in allowed | BOOKKEEPING
        ]
        found_violations = violations(entries)
        return base.model_copy(
            update={
                "passed": all(c.passed for c in checks) and not found_violations,
                "checks": checks,
                "policy_violations": found_violations,
                "unnecessary_writes": unnecessary,
                "steps": sum(int(t.get("step") or 0) for t in threads),
                "tokens": sum(e.tokens for e in entries),
                "time_to_detect_s": round(sum(detect) / len(detect), 1) if detect else None,
                "time_to_remediate_s": round(ttr, 3) if ttr is not None else None,
                "incidents": [{"id": i.id, "kind": i.kind, "status": i.status} for i in incidents],
                "report": "\n\n".join(m for m in messages.values() if m),
                "duration_s": round(time.perf_counter() - started, 2),
            }
        )
    except DataOpsError as exc:
        return base.model_copy(update={"error": f"{type(exc).__name__}: {exc}", "duration_s": round(time.perf_counter() - started, 2)})
    finally:
        if scenario is not None:
            scenario.close()
        shutil.rmtree(home, ignore_errors=True)


def _trajectory(spec: ScenarioSpec, entries: list[Any]) -> list[CheckResult]:
    t = spec.trajectory
    called = {e.tool for e in entries if e.status in ("ok", "error", "running")}
    proposed = {e.tool for e in entries}
    out = [
        CheckResult(check=f"must_call({tool})", passed=tool in called, detail="called" if tool in called else "not called")
        for tool in t.must_call
    ]
    out += [
        CheckResult(check=f"must_not_call({tool})", passed=tool not in called, detail="called" if tool in called else "not called"
                    + (" (proposed, refused)" if tool in proposed else ""))
        for tool in t.must_not_call
    ]  # fmt: skip
    tokens = sum(e.tokens for e in entries)
    if t.max_tokens is not None:
        out.append(CheckResult(check=f"max_tokens({t.max_tokens})", passed=tokens <= t.max_tokens, detail=f"{tokens} tokens"))
    if t.max_steps is not None:
        steps = len({(e.thread_id, e.call_id) for e in entries})
        out.append(CheckResult(check=f"max_steps({t.max_steps})", passed=steps <= t.max_steps, detail=f"{steps} tool calls"))
    return out
