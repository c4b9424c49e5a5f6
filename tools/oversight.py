"""Oversight reads: the approval requests waiting on people, and the actions taken so far (the audit log).

Both live in the policy layer's tables, and a tool never imports the policy layer (a tool must not be able to
approve itself). The agent hands each call a reader of them instead (`ToolContext.oversight`, an `Oversight`),
so "any approvals pending?" and "what have you changed today?" are answered from the same records
`dataops approvals` and `dataops audit` print.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from config.errors import ToolError
from tools import names
from tools.base import ToolContext, ToolInput, ToolSpec
from tools.oversight_views import ActionView, ApprovalStatus, ApprovalView, Oversight


class ListApprovalsInput(ToolInput):
    status: ApprovalStatus | None = Field(default="pending", description="Only requests with this status; null for all.")
    limit: int = Field(default=20, ge=1, le=100, description="At most this many, newest first.")


class ListApprovalsResult(BaseModel):
    approvals: list[ApprovalView]


class ListActionsInput(ToolInput):
    writes_only: bool = Field(default=True, description="Only calls that change something (re-runs, quarantines, rollbacks, ...).")
    limit: int = Field(default=20, ge=1, le=200, description="At most this many, newest first.")


class ListActionsResult(BaseModel):
    actions: list[ActionView]


def _reader(ctx: ToolContext) -> Oversight:
    if ctx.oversight is None:
        raise ToolError("approvals and the audit log are read through the agent; from a shell use `dataops approvals` or `dataops audit`")
    return ctx.oversight


def list_approvals(ctx: ToolContext, args: ListApprovalsInput) -> ListApprovalsResult:
    return ListApprovalsResult(approvals=_reader(ctx).approvals(args.status, args.limit))


def list_actions(ctx: ToolContext, args: ListActionsInput) -> ListActionsResult:
    return ListActionsResult(actions=_reader(ctx).actions(args.limit, args.writes_only))


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.LIST_APPROVALS,
        description="Approval requests (pending by default): the call, why it needs a person, who may decide, when it expires.",
        input=ListApprovalsInput,
        result=ListApprovalsResult,
        effect="read",
        run=list_approvals,
    ),
    ToolSpec(
        name=names.LIST_ACTIONS,
        description="The audit log's latest calls (writes by default): who, what, the policy decision, the approver and the outcome.",
        input=ListActionsInput,
        result=ListActionsResult,
        effect="read",
        run=list_actions,
    ),
]
