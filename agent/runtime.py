"""The agent as the rest of the platform uses it: handle an incident, chat, decide an approval, resume.

One `Agent` per process. Graph threads are checkpointed in `$DATAOPS_HOME/checkpoints.db` (LangGraph's
SQLite checkpointer, `durability="sync"`), so a thread paused for approval survives a restart. A decision
is recorded in the ops database first, then the thread resumes; `resume_decided()` (called at start-up
and on every service tick) resumes any decided request whose thread is still paused, e.g. because the
process died between the two, or the decision came from another process (the CLI, Slack).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command
from pydantic import BaseModel, Field

from agent.graph import build_graph
from agent.planner import Planner
from agent.report import ConsoleReporter, Reporter
from agent.runbook import RunbookPlanner, RunbookSpec, load_runbooks
from agent.state import Runtime
from config.errors import ApprovalError, DataOpsError
from memory.store import IncidentMemory, MemoryRecord
from pipelines.context import PlatformContext
from policies.approvals import Approval, ApprovalStore
from policies.audit import AuditLog
from policies.deferrals import DeferralStore, DeferredCall
from policies.people import Actor, Channel, People
from tools.registry import REGISTRY

log = logging.getLogger(__name__)


class ThreadOutcome(BaseModel):
    thread_id: str
    status: str  # done | waiting | busy
    outcome: str | None = None
    message: str = ""
    approval_id: str | None = None
    deferred_call: str | None = Field(default=None, description="The call the thread waits to run at the greenest window")
    steps: int = 0
    tokens: int = 0


def runbook_records(runbooks: dict[str, RunbookSpec]) -> list[MemoryRecord]:
    """Runbooks as memory records, so a search for symptoms finds the runbook as well as past incidents."""
    now = datetime.now(UTC)
    return [
        MemoryRecord(
            id=f"runbook-{book.name}",
            kind="runbook",
            title=f"runbook {book.name}: {', '.join(book.kinds)}",
            symptoms=f"{' '.join(book.kinds)} incidents. {book.doc}",
            actions=[s.tool or f"finish {s.finish}" for s in book.steps],
            outcome="the runbook planner's plan for these incidents",
            incident_kind=book.kinds[0],
            recorded_at=now,
        )
        for book in runbooks.values()
    ]


def make_planner(ctx: PlatformContext) -> Planner:
    """The OpenAI-compatible planner when a model is configured, else the runbook planner."""
    if ctx.settings.llm_configured:
        from agent.llm import OpenAIPlanner

        return OpenAIPlanner(ctx.settings)
    return RunbookPlanner(load_runbooks(ctx.settings.runbooks_path, tools=set(REGISTRY)))


class Agent:
    def __init__(
        self,
        ctx: PlatformContext,
        *,
        planner: Planner | None = None,
        reporter: Reporter | None = None,
        clock: Callable[[], datetime] | None = None,
        real_seconds: Callable[[timedelta], float] | None = None,
    ) -> None:
        self.ctx = ctx
        self.people = People.load(ctx.settings, ctx.ledger)
        self.policy = self.people.policy(ctx.settings.policy_path)
        self.approvals = ApprovalStore(ctx.ledger)
        self.audit = AuditLog(ctx.ledger)
        self.reporter: Reporter = reporter or ConsoleReporter()
        self._memory: IncidentMemory | None = None
        self.runtime = Runtime(
            ctx=ctx, planner=planner or make_planner(ctx), policy=self.policy, tools=REGISTRY, approvals=self.approvals, audit=self.audit,
            reporter=self.reporter, memory=self.memory, deferrals=DeferralStore(ctx.ledger), clock=clock or (lambda: datetime.now(UTC)), max_steps=ctx.settings.agent_max_steps,
            real_seconds=real_seconds or (lambda span: span.total_seconds()),
        )  # fmt: skip
        self._conn = sqlite3.connect(str(ctx.settings.home / "checkpoints.db"), check_same_thread=False)
        saver = SqliteSaver(self._conn)
        saver.setup()  # create the checkpoint tables now: recover() reads them before the first thread runs
        self.graph = build_graph(self.runtime).compile(checkpointer=saver)
        self._lock = threading.RLock()  # one graph step at a time per process: threads share the ops database and the lake

    @property
    def planner_name(self) -> str:
        return self.runtime.planner.name

    def memory(self) -> IncidentMemory:
        """The incident memory, with the runbooks stored in it (refreshed when the store is first opened)."""
        if self._memory is None:
            memory = IncidentMemory.open(self.ctx.settings)
            memory.remember_many(runbook_records(load_runbooks(self.ctx.settings.runbooks_path, tools=set(REGISTRY))))
            self._memory = memory
        return self._memory

    def close(self) -> None:
        self._conn.close()

    def refresh_people(self, *, strict: bool = True) -> People:
        """Read the people registry and the policy again, so a request freezes the approvers of now, not of start-up.

        Not strict (before working an incident or a chat turn): a people file broken since start-up is logged and the
        registry read last stays, so incidents are still worked. Decisions always read it strictly."""
        try:
            self.people = People.load(self.ctx.settings, self.ctx.ledger)
            self.policy = self.runtime.policy = self.people.policy(self.ctx.settings.policy_path)
        except DataOpsError as exc:
            if strict:
                raise
            log.error("people or policy file unreadable, keeping the registry read before: %s", exc)
        return self.people

    # -- threads -----------------------------------------------------------------------------------
    def _config(self, thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}}

    def _run(self, thread_id: str, payload: Any) -> ThreadOutcome:
        with self._lock:
            result = self.graph.invoke(payload, self._config(thread_id), durability="sync")  # type: ignore[call-overload]
        return self._outcome(thread_id, result)

    def _outcome(self, thread_id: str, result: dict[str, Any]) -> ThreadOutcome:
        interrupts = result.get("__interrupt__") or []
        steps, tokens = int(result.get("step") or 0), int(result.get("tokens") or 0)
        if interrupts:
            value = interrupts[0].value if hasattr(interrupts[0], "value") else {}
            return ThreadOutcome(
                thread_id=thread_id, status="waiting", approval_id=value.get("approval_id"), deferred_call=value.get("deferred_call"),
                steps=steps, tokens=tokens,
            )  # fmt: skip
        return ThreadOutcome(
            thread_id=thread_id,
            status="done",
            outcome=result.get("outcome"),
            message=result.get("message") or "",
            steps=steps,
            tokens=tokens,
        )

    def _waiting_on(self, thread_id: str, key: str = "approval_id") -> list[str]:
        """What the thread's interrupts wait on (approval ids, or with key="deferred_call" deferred call ids), whatever
        their status in the ops database."""
        state = self.graph.get_state(self._config(thread_id))
        return [i.value[key] for t in state.tasks for i in t.interrupts if isinstance(i.value, dict) and i.value.get(key)]

    def pending_deferral(self, thread_id: str) -> DeferredCall | None:
        """The call the thread waits to run at the greenest window, if any."""
        for call_id in self._waiting_on(thread_id, "deferred_call"):
            deferral = self.runtime.deferrals.for_call(call_id)
            if deferral is not None and deferral.status != "resumed":
                return deferral
        return None

    def pending_approval(self, thread_id: str) -> Approval | None:
        """The undecided request the thread waits on, if any."""
        for approval_id in self._waiting_on(thread_id):
            approval = self.approvals.get(approval_id)
            if approval.status == "pending":
                return approval
        return None

    def thread_finished(self, thread_id: str) -> bool:
        state = self.graph.get_state(self._config(thread_id))
        return bool(state.values) and not state.next

    def _stranded(self, thread_id: str) -> bool:
        """A thread stopped between nodes with no interrupt: the process died (or a node crashed) mid-step."""
        state = self.graph.get_state(self._config(thread_id))
        return bool(state.next) and not any(task.interrupts for task in state.tasks)

    def _continue(self, thread_id: str) -> ThreadOutcome:
        log.warning("thread %s stopped mid-step (a crash?); continuing it from its last checkpoint", thread_id)
        return self._run(thread_id, None)

    def recover(self) -> list[ThreadOutcome]:
        """Continue every thread a crash left between nodes (e.g. killed while executing an approved call)."""
        rows = self._conn.execute("SELECT DISTINCT thread_id FROM checkpoints").fetchall()
        return [self._continue(thread_id) for (thread_id,) in rows if self._stranded(thread_id)]

    def handle_incident(self, incident_id: int) -> ThreadOutcome:
        """Work an incident; a thread already finished or waiting for approval is not started again."""
        thread_id = f"incident-{incident_id}"
        self.refresh_people(strict=False)
        self.resume_decided()
        pending = self.pending_approval(thread_id)
        if pending is not None:
            return ThreadOutcome(thread_id=thread_id, status="waiting", approval_id=pending.id)
        deferred = self.pending_deferral(thread_id)
        if deferred is not None:
            return ThreadOutcome(thread_id=thread_id, status="waiting", deferred_call=deferred.call_id)
        if self._stranded(thread_id):
            return self._continue(thread_id)
        if self.thread_finished(thread_id):
            values = self.graph.get_state(self._config(thread_id)).values
            return ThreadOutcome(thread_id=thread_id, status="done", outcome=values.get("outcome"), message=values.get("message") or "")
        return self._run(thread_id, {"thread_id": thread_id, "mode": "incident", "incident_id": incident_id, "actor": "agent"})

    def chat(self, thread_id: str, text: str, *, user: str | Actor) -> ThreadOutcome:
        """One chat turn by `user`: an actor a channel authenticated, or a person's name (or how the channel knows an
        unknown caller) resolved against the people registry. Refused while an approval is pending in the thread.
        The actor is the requester of any approval the turn asks for, and their role decides whether the agent may
        act on a write they ask for (policy `writes_asked_by_people_need`)."""
        people = self.refresh_people(strict=False)
        actor = user if isinstance(user, Actor) else people.actor(user, channel="api")
        self.resume_decided()  # an expired or decided request must not keep the thread locked
        if self._stranded(thread_id):
            self._continue(thread_id)
        pending = self.pending_approval(thread_id)
        if pending is not None:
            return ThreadOutcome(
                thread_id=thread_id, status="busy", approval_id=pending.id,
                message=f"approval {pending.id} ({pending.tool}) is pending in this thread; decide it first: dataops approve|deny {pending.id}",
            )  # fmt: skip
        # A new turn starts a fresh plan on the same thread id; the checkpoint keeps the history of earlier turns.
        payload: dict[str, Any] = {"thread_id": thread_id, "mode": "chat", "question": text, "turn_id": secrets.token_hex(3), "actor": actor.id, "actor_role": actor.role, "incident_id": None, "turns": [], "step": 0,
                   "outcome": None, "message": "", "verification": None, "proposed": [], "reviewed": []}  # fmt: skip
        return self._run(thread_id, payload)

    # -- approvals -----------------------------------------------------------------------------------
    def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        user: str | Actor,
        reason: str = "",
        groups: tuple[str, ...] = (),
        channel: Channel = "api",
    ) -> Approval:
        """Record a decision (first wins, approvers only), then resume the paused thread.

        `user` is an actor a channel authenticated (the CLI, Slack), or the name of a person for in-process callers
        (the eval runner, tests), resolved against the people registry as it stands now."""
        actor = user if isinstance(user, Actor) else self.refresh_people().actor(user, channel=channel, groups=groups)
        approval = self.approvals.decide(approval_id, approve=approve, by=actor, reason=reason)
        self.reporter.approval_decided(approval)
        self.resume_decided()
        return self.approvals.get(approval_id)

    def resume_decided(self) -> list[ThreadOutcome]:
        """Expire overdue requests, then resume every decided request whose thread still waits on it."""
        for expired in self.approvals.expire_due():
            log.warning("approval %s expired unanswered", expired.id)
            self.reporter.approval_decided(expired)
        outcomes = []
        for approval in self.approvals.unresumed():
            if not self.approvals.claim(approval.id):
                continue  # another process is resuming it
            with self._lock:
                if approval.id not in self._waiting_on(approval.thread_id):
                    self.approvals.mark_resumed(approval.id)  # resumed elsewhere, or the thread moved on
                    continue
                outcome = self._run(approval.thread_id, Command(resume={"approval_id": approval.id, "status": approval.status}))
                self.approvals.mark_resumed(approval.id)
            outcomes.append(outcome)
        return outcomes + self.resume_due()

    def resume_due(self) -> list[ThreadOutcome]:
        """Resume every thread whose deferred call may run now: its greenest window came, or a person released it."""
        deferrals = self.runtime.deferrals
        outcomes = []
        for deferral in deferrals.due(self.runtime.clock()):
            if not deferrals.claim(deferral.call_id):
                continue  # another process is resuming it
            with self._lock:
                if deferral.call_id not in self._waiting_on(deferral.thread_id, "deferred_call"):
                    deferrals.mark_resumed(deferral.call_id)  # resumed elsewhere, or the thread moved on
                    continue
                outcome = self._run(deferral.thread_id, Command(resume={"deferred_call": deferral.call_id}))
                deferrals.mark_resumed(deferral.call_id)
            outcomes.append(outcome)
        return outcomes

    def release(self, call_id: str, *, user: str | Actor, reason: str = "", channel: Channel = "api") -> DeferredCall:
        """Let a deferred call run now (operators and approvers), then resume its thread."""
        actor = user if isinstance(user, Actor) else self.refresh_people().actor(user, channel=channel)
        if not actor.may("operator"):
            raise ApprovalError(
                f"{actor.id} may not release {call_id}: operators and approvers may (role {actor.role or 'none'} in config/people.yaml)"
            )
        released = self.runtime.deferrals.release(call_id, by=actor.id, reason=reason)
        self.reporter.step(released.thread_id, f"{released.tool} released by {actor.id} to run now{f': {reason}' if reason else ''}")
        self.resume_due()
        return self.runtime.deferrals.get(call_id)

    def decide_or_explain(self, approval_id: str, *, approve: bool, user: str | Actor, reason: str = "") -> tuple[Approval | None, str]:
        try:
            return self.decide(approval_id, approve=approve, user=user, reason=reason), ""
        except ApprovalError as exc:
            return None, str(exc)
