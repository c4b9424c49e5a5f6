"""What the agent lets a tool read of approvals and the audit log: the reader's protocol and the views it returns.

Kept apart from the tools (`tools/oversight.py`) so `tools/base.py` can name the reader without importing a tool.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

ApprovalStatus = Literal["pending", "approved", "denied", "expired"]


class ApprovalView(BaseModel):
    """One approval request as a person reads it."""

    id: str
    tool: str
    arguments: dict[str, Any]
    reason: str = Field(description="Why the call needs a person, in the policy's words")
    rule: str
    status: ApprovalStatus
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    approvers: list[str] = Field(description="Who may decide it (people or roles)")
    decided_by: str | None = None
    incident_id: int | None = None


class ActionView(BaseModel):
    """One tool call of the audit log: who asked, what, what the policy decided, how it ended."""

    at: datetime
    actor: str
    tool: str
    arguments: dict[str, Any]
    decision: str = Field(description="allow, needs_approval or deny")
    rule: str
    status: str = Field(description="ok, error, refused, pending_approval, ...")
    approver: str | None = None
    error: str | None = None
    incident_id: int | None = None


class Oversight(Protocol):
    """What the agent layer lets a tool read of approvals and the audit log."""

    def approvals(self, status: ApprovalStatus | None, limit: int) -> list[ApprovalView]:
        """Approval requests, newest first; pending ones past their expiry are expired first."""
        ...

    def actions(self, limit: int, writes_only: bool) -> list[ActionView]:
        """The latest audit entries, newest first."""
        ...
