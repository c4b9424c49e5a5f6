"""What a person does from the console, through the same functions as the CLI and Slack.

    incident ack|resolve|expected   agent/judgement.py `act_on_incident` (operator or approver; the note, the
                                    label and any suppression name the person and channel "console")
    approve|deny a request          the agent's `decide` (policies/approvals.py: first decision wins, only a frozen
                                    approver who did not cause the request; the audit records the person and
                                    the channel), then the paused thread resumes

Refusals become `ActionRefused` with the HTTP status a page or the API answers: 404 for an unknown id, 403
when the person may not, 409 when the thing already moved on, 422 for a value the action cannot take.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, Field, field_validator

from config.errors import ApprovalError, DataOpsError, PolicyError
from pipelines.context import PlatformContext
from pipelines.incidents import IncidentError
from pipelines.monitors.feedback import ACTIONS, DEFAULT_DAYS, FeedbackError
from policies.approvals import Approval, ApprovalStore
from policies.people import Actor

if TYPE_CHECKING:
    from agent.judgement import JudgementOutcome
    from agent.runtime import Agent

log = logging.getLogger(__name__)
IncidentAction = Literal["ack", "resolve", "expected"]
INCIDENT_ACTIONS: tuple[str, ...] = tuple(ACTIONS)
DECISIONS = {"approve": True, "deny": False}


class ActionRefused(DataOpsError):
    """An action the console will not take, with the HTTP status that says why."""

    def __init__(self, message: str, *, status: int, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class JudgementInput(BaseModel):
    """The body of POST /api/incidents/{id}/{ack|resolve|expected}, and the incident page's form."""

    reason: str = Field(max_length=2000, description="Why; kept in the incident's notes (required for expected)")
    days: int = Field(default=DEFAULT_DAYS, ge=1, le=365, description="expected: days the pattern stays suppressed")


class DecisionInput(BaseModel):
    """The body of POST /api/approvals/{id}/{approve|deny}, and the approvals page's form."""

    reason: str = Field(max_length=2000, description="Why; kept with the decision and in the audit (required to deny)")

    @field_validator("reason")
    @classmethod
    def _stripped(cls, value: str) -> str:
        return value.strip()


class Decider(Protocol):
    """The agent's `decide`: records a decision, then resumes the thread waiting on it."""

    def __call__(self, approval_id: str, *, approve: bool, actor: Actor, reason: str) -> Approval: ...

    def close(self) -> None: ...


class AgentDecider:
    """Decides through an agent: the service's own when the console runs inside `dataops serve`, else one made on
    first use (as `dataops approve` makes one), so a console without decisions never loads LangGraph."""

    def __init__(self, ctx: PlatformContext, find: Callable[[], Agent | None] = lambda: None) -> None:
        self._ctx = ctx
        self._find = find
        self._own: Agent | None = None
        self._lock = threading.Lock()

    def agent(self) -> Agent:
        """The agent decisions go through; the Chat page talks to the same one."""
        found = self._find()
        if found is not None:
            return found
        with self._lock:
            if self._own is None:
                from agent.report import ConsoleReporter
                from agent.runtime import Agent
                from pipelines.monitors.feedback import saved_replay_clock

                ctx = self._ctx
                # As `dataops chat` and `dataops approve`: the clock `dataops serve` saved for a replay, else the wall clock.
                self._own = Agent(
                    ctx,
                    reporter=ConsoleReporter(lambda text: log.info("%s", text), verbose=False),
                    clock=lambda: saved_replay_clock(ctx) or datetime.now(UTC),
                )
            return self._own

    def __call__(self, approval_id: str, *, approve: bool, actor: Actor, reason: str) -> Approval:
        return self.agent().decide(approval_id, approve=approve, user=actor, reason=reason)

    def close(self) -> None:
        if self._own is not None:
            self._own.close()


def judge_incident(
    ctx: PlatformContext, incident_id: int, action: str, body: JudgementInput, *, actor: Actor, now: datetime
) -> JudgementOutcome:
    """ack, resolve or expected, exactly as `dataops incident ACTION` does it, by `actor` through the console."""
    from agent.judgement import act_on_incident  # imports the incident memory (chromadb): only when someone acts
    from memory.store import IncidentMemory

    if action not in INCIDENT_ACTIONS:
        raise ActionRefused(f"unknown action {action!r}; valid: {', '.join(INCIDENT_ACTIONS)}", status=404)
    try:
        ctx.incidents.get(incident_id)
    except IncidentError as exc:
        raise ActionRefused(str(exc), status=404) from None
    if action == "expected" and not body.reason.strip():
        raise ActionRefused("reason: say why this is expected; it is kept with the suppression", status=422, field="reason")
    try:
        return act_on_incident(
            ctx,
            incident_id,
            action,
            actor=actor,
            reason=body.reason.strip(),
            now=now,
            days=body.days,
            memory=lambda: IncidentMemory.open(ctx.settings),
        )
    except PolicyError as exc:
        raise ActionRefused(str(exc), status=403) from None
    except (IncidentError, FeedbackError) as exc:  # the id exists: an impossible move
        raise ActionRefused(str(exc), status=409) from None


def decide_approval(ctx: PlatformContext, decider: Decider, approval_id: str, verb: str, body: DecisionInput, *, actor: Actor) -> Approval:
    """Approve or deny a request as `actor`, through the same decision as `dataops approve|deny` and Slack."""
    if verb not in DECISIONS:
        raise ActionRefused(f"unknown decision {verb!r}; valid: approve, deny", status=404)
    store = ApprovalStore(ctx.ledger)
    try:
        current = store.get(approval_id)
    except ApprovalError as exc:
        raise ActionRefused(str(exc), status=404) from None
    if current.status != "pending":
        raise ActionRefused(f"{approval_id} was already {current.status} by {current.decided_by or 'nobody'}", status=409)
    if verb == "deny" and not body.reason:
        raise ActionRefused("reason: say why not; the agent reports it and escalates", status=422, field="reason")
    try:
        return decider(approval_id, approve=DECISIONS[verb], actor=actor, reason=body.reason)
    except ApprovalError as exc:
        after = store.get(approval_id)
        # Not pending any more: another decision (or the expiry) came first. Still pending: this person may not.
        raise ActionRefused(str(exc), status=409 if after.status != "pending" else 403) from None


def may_decide(approval: Approval, actor: Actor) -> bool:
    """Whether the page should offer the buttons; the decision itself checks again (policies/approvals.py)."""
    named = actor.id in approval.approvers or bool(set(actor.groups) & set(approval.approvers))
    return approval.status == "pending" and actor.may("approver") and named and approval.requested_by not in actor.aliases
