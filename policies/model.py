"""What the policy engine reads and answers: the policy file, a request, and a three-way decision."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from config.errors import PolicyError
from pipelines.retry import RetryBudget

RequesterRole = Literal["agent", "viewer", "operator", "approver"]
"""Who asked for a call: 'agent' for the platform itself (an incident), else the asking person's role."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackfillLimits(_Spec):
    approval_over_days: float = Field(default=7, ge=0)
    deny_over_days: float = Field(default=31, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> BackfillLimits:
        if self.deny_over_days < self.approval_over_days:
            raise ValueError(f"backfill.deny_over_days ({self.deny_over_days}) must be >= approval_over_days ({self.approval_over_days})")
        return self


class EscalationLimits(_Spec):
    max_related_open_incidents: int = Field(default=3, ge=0)
    recurrences_per_week: int = Field(default=3, ge=1)


class FreezeWindow(_Spec):
    start: datetime
    end: datetime
    reason: str = "change freeze"

    @model_validator(mode="after")
    def _aware(self) -> FreezeWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("freeze window bounds need a timezone, e.g. 2026-12-24T00:00:00Z")
        if self.end <= self.start:
            raise ValueError(f"freeze window ends ({self.end}) before it starts ({self.start})")
        return self


class PolicySpec(_Spec):
    """The policy file (config/policy.yaml): every limit the engine enforces."""

    # Not read from the file: filled from the people registry (policies/people.py `People.policy`).
    approvers: tuple[str, ...] = Field(default=(), description="People and Slack groups with role approver; named on every request")
    operators: tuple[str, ...] = Field(
        default=(), description="People and Slack groups with role operator: they may act on incidents, besides the approvers"
    )
    approval_ttl_minutes: float = Field(default=1440, gt=0)
    allow_without_approval: tuple[str, ...] = ()
    safe_writes: tuple[str, ...] = ()
    approval_layers: tuple[str, ...] = ("gold",)
    backfill: BackfillLimits = BackfillLimits()
    max_reruns_per_pipeline_per_hour: int = Field(default=3, ge=0)
    escalation: EscalationLimits = EscalationLimits()
    token_budget_per_incident: int = Field(default=60_000, ge=0)
    retry_budget: RetryBudget = Field(
        default=RetryBudget(), description="How far re-runs retry a transient source failure, per incident, before escalating"
    )
    freeze_windows: tuple[FreezeWindow, ...] = ()
    writes_asked_by_people_need: Literal["viewer", "operator", "approver"] = Field(
        default="operator",
        description="The role a person needs for the agent to act on a write they asked for (chat, Slack, the console); "
        "viewer lets every person of the platform ask; a caller who is no person never",
    )


def load_policy(path: Path, *, approvers: list[str] | None = None, operators: list[str] | None = None) -> PolicySpec:
    """Read and validate a policy file; `approvers` and `operators` come from the people registry, never the file."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} does not exist; set DATAOPS_POLICY_FILE or restore config/policy.yaml") from None
    except OSError as exc:
        raise PolicyError(f"policy file {path} cannot be read: {exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PolicyError(f"policy file {path} is invalid: it must be a mapping of settings, got {type(raw).__name__}")
    moved = sorted(key for key in ("approvers", "operators") if key in raw)
    if moved:
        raise PolicyError(
            f"policy file {path}: {' and '.join(moved)} moved to config/people.yaml: declare each person with "
            f"`role: approver` or `role: operator` (Slack user groups under `slack_groups:`), or `dataops users add NAME --role ROLE`"
        )
    if approvers is not None:
        raw["approvers"] = approvers
    if operators is not None:
        raw["operators"] = operators
    try:
        return PolicySpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"policy file {path} is invalid: {problems}") from None


class CallHistory(BaseModel):
    """Facts about the past the engine needs; the agent computes them from the audit log and incidents."""

    model_config = ConfigDict(frozen=True)

    reruns_last_hour: int = Field(default=0, description="Re-runs and backfills of the target pipeline in the last hour")
    related_open_incidents: int = Field(default=0, description="Unresolved incidents on the target table or its lineage")
    recurrences_last_week: int = Field(default=0, description="Incidents of the same cause in the last seven days")
    tokens_used: int = Field(default=0, description="Model tokens already spent on this incident or chat thread")
    verified: bool = Field(default=False, description="A verification in this thread showed the problem of this very incident gone")
    in_scope: bool | None = Field(
        default=None, description="The target is the incident's table or in its lineage; None outside an incident (chat)"
    )
    window_failed: bool | None = Field(
        default=None, description="Re-runs: some run of the window failed, held days back or quarantined rows; None when unknown"
    )
    retry_attempts: int | None = Field(
        default=None,
        ge=0,
        description="Re-runs: attempts this incident's re-runs already made; None for other calls or outside an incident",
    )
    retry_waited_s: float = Field(
        default=0.0, ge=0, description="Re-runs: platform seconds this incident's re-runs waited between attempts"
    )


class PolicyRequest(BaseModel):
    """One proposed tool call as the engine judges it: the tool's declared effect and traits, never its name, pick the rules."""

    model_config = ConfigDict(frozen=True)

    tool: str = Field(description="Named in the decision's words only")
    effect: str
    runs_pipeline: bool = Field(default=False, description="The tool re-runs a pipeline over a window (re-run, backfill)")
    needs_verification: bool = Field(default=False, description="The tool is allowed only after a verification in the thread")
    restores_snapshot: bool = Field(default=False, description="The tool moves a table back to an earlier snapshot")
    actor: str = "agent"
    requester_role: RequesterRole | None = Field(
        default="agent",
        description="Who asked: 'agent' for the platform itself (an incident), a person's role, None for a caller who is no person",
    )
    layer: str | None = None
    table: str | None = None
    pipeline: str | None = None
    partition: str | None = None
    span_days: float | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    history: CallHistory = CallHistory()
    now: datetime

    @model_validator(mode="after")
    def _aware_now(self) -> PolicyRequest:
        if self.now.tzinfo is None:
            raise ValueError("now needs a timezone; freeze windows are instants")
        return self


class Allow(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["allow"] = "allow"
    rule: str
    reason: str


class NeedsApproval(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["needs_approval"] = "needs_approval"
    rule: str
    reason: str
    approvers: tuple[str, ...]


class Deny(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["deny"] = "deny"
    rule: str
    message: str = Field(description="Shown to the model: why, and what to do instead")


Decision = Allow | NeedsApproval | Deny
