"""What the agent's graph carries from node to node, and what its nodes use from outside it.

`AgentState` is checkpointed after every node (LangGraph's SQLite checkpointer, msgpack). Calls and turns
are typed here (`ProposedCall`, `TurnRecord`, `ReviewedCall`) but travel through the checkpoint as plain
JSON dicts: the checkpointer's msgpack would rebuild a pydantic model only for allow-listed modules (it
warns now and will refuse later), and the reporters and the verification read the dicts. Nodes convert at
their boundary with `load` and `dump`, and nowhere else build a turn by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agent.facts import retry_spent
from agent.oversight import StoreOversight
from agent.planner import Planner, ProposedCall, Turn
from agent.report import Reporter
from memory.store import IncidentMemory
from pipelines.context import PlatformContext
from pipelines.retry import RetryBudget
from policies.approvals import ApprovalStore
from policies.audit import AuditLog
from policies.deferrals import DeferralStore
from policies.model import PolicySpec
from tools.base import Effect, Target, ToolContext, ToolSpec

M = TypeVar("M", bound=BaseModel)


class AgentState(TypedDict, total=False):
    thread_id: str
    mode: str
    incident_id: int | None
    question: str | None
    turn_id: str
    actor: str
    actor_role: str | None  # the asking person's role (chat); None for a caller who is no person
    context: dict[str, Any]
    proposed: list[dict[str, Any]]  # ProposedCall
    reviewed: list[dict[str, Any]]  # ReviewedCall
    turns: list[dict[str, Any]]  # TurnRecord
    step: int
    tokens: int
    step_tokens: int
    verification: dict[str, Any] | None
    outcome: str | None
    message: str
    planner: str
    wrote: bool
    earlier: list[str]  # a chat thread's earlier questions, oldest first: what "it" and "that" may refer to


class TurnRecord(Turn):
    """A turn as the graph records it: what the planner sees, plus the effect the tool declares (None when invalid)."""

    model_config = ConfigDict(frozen=True)

    effect: Effect | None = None


class ReviewedCall(BaseModel):
    """A call after review: either ready to execute (with what the policy decided) or already ended as `turn`."""

    model_config = ConfigDict(frozen=True)

    call: ProposedCall
    decision: Literal["allow", "needs_approval", "deny", "invalid"]
    rule: str = ""
    effect: Effect | None = None
    target: Target = Field(default_factory=Target)
    approved_by: str | None = None
    turn: TurnRecord | None = Field(default=None, description="Set when the review ended the call: invalid, denied, refused, expired")

    @property
    def executable(self) -> bool:
        return self.turn is None

    @classmethod
    def ended(cls, turn: TurnRecord) -> ReviewedCall:
        return cls(call=turn.call, decision=turn.decision, rule=turn.rule, effect=turn.effect, turn=turn)


def load(model: type[M], items: Iterable[dict[str, Any]] | None) -> list[M]:
    """Checkpointed dicts → typed models (the only way nodes read calls and turns from the state)."""
    return [model.model_validate(item) for item in items or []]


def dump(items: Sequence[BaseModel]) -> list[dict[str, Any]]:
    """Typed models → the JSON dicts the checkpoint stores."""
    return [item.model_dump(mode="json") for item in items]


def planned_step(state: AgentState) -> int:
    """The planning step whose calls are being reviewed or executed (`plan` has already counted it)."""
    return state.get("step", 1) - 1


@dataclass(kw_only=True)
class Runtime:
    """What the nodes use; held outside the checkpointed state."""

    ctx: PlatformContext
    planner: Planner
    policy: PolicySpec
    tools: dict[str, ToolSpec[Any, Any]]
    approvals: ApprovalStore
    audit: AuditLog
    reporter: Reporter
    memory: Callable[[], IncidentMemory]
    deferrals: DeferralStore
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Real seconds that pass while the clock advances by a span (the wall clock's own; a replay's is shorter).
    real_seconds: Callable[[timedelta], float] = field(default=lambda span: span.total_seconds())
    max_steps: int = 12

    def tool_context(self, state: AgentState, call_id: str) -> ToolContext:
        incident_id = state.get("incident_id")
        return ToolContext(
            platform=self.ctx,
            now=self.clock(),
            actor=state.get("actor") or "agent",
            incident_id=int(incident_id) if incident_id is not None else None,
            call_id=call_id,
            memory_factory=self.memory,
            retry_budget=self.retry_budget_left(incident_id),
            oversight=StoreOversight(self.approvals, self.audit),
        )

    def retry_budget_left(self, incident_id: Any) -> RetryBudget:
        """The policy's retry budget less what this incident's re-runs spent; one attempt when nothing is left
        (the policy refuses another re-run then, so this is reached only by a call judged before the budget ran out)."""
        if incident_id is None:
            return self.policy.retry_budget
        attempts, waited = retry_spent(self.audit, int(incident_id))
        left = self.policy.retry_budget.left(attempts=attempts, waited_s=waited)
        return left or self.policy.retry_budget.model_copy(update={"max_attempts": 1})
