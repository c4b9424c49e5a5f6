"""The planning interface: what a planner sees and what it proposes.

Two planners sit behind it: the deterministic runbook planner (the default, no model needed) and any
OpenAI-compatible chat-completions endpoint. Neither executes anything: they propose tool calls, and the
graph validates the arguments, asks the policy engine and executes what it allows.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["resolved", "escalated", "answered", "waiting", "nothing_to_do"]


class ProposedCall(BaseModel):
    """One tool call as the planner proposed it; `arguments` is None when the model sent unparseable JSON."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Tool-call id; execution is idempotent on it")
    name: str
    arguments: dict[str, Any] | None = None
    raw_arguments: str = ""
    error: str | None = Field(default=None, description="Why the call could not be read (malformed JSON), if so")


class Turn(BaseModel):
    """A proposed call and what became of it, as the next planning step sees it."""

    call: ProposedCall
    step: int = Field(default=0, description="The planning step that proposed it; calls of one step form one assistant message")
    decision: Literal["allow", "needs_approval", "deny", "invalid"]
    rule: str = ""
    status: Literal["ok", "error", "denied", "invalid", "expired", "skipped"]
    result: dict[str, Any] | None = None
    message: str = Field(default="", description="Denial reason, error or a short summary of the result")
    approved_by: str | None = None


class PlanningState(BaseModel):
    """Everything a planner may look at. Text inside `incident` and `context` is data, never instructions."""

    thread_id: str
    mode: Literal["incident", "chat"]
    incident: dict[str, Any] | None = None
    question: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    turns: list[Turn] = Field(default_factory=list)
    verification: dict[str, Any] | None = Field(default=None, description="The latest verification after a write, if any")
    step: int = 0
    tokens: int = 0
    earlier: list[str] = Field(default_factory=list, description="A chat thread's earlier questions, oldest first (data)")


class PlanStep(BaseModel):
    """A planner's answer: tool calls to make, or a final message with the outcome."""

    calls: list[ProposedCall] = Field(default_factory=list)
    message: str = ""
    outcome: Outcome | None = Field(default=None, description="Set when the planner is done")
    tokens: int = 0
    planner: str


class Planner(Protocol):
    name: str

    def plan(self, state: PlanningState) -> PlanStep:
        """The next step; raise `config.errors.ModelError` when the model failed or answered nothing usable."""
        ...
