"""The agent's reader of approvals and the audit log, handed to tools as `ToolContext.oversight`."""

from __future__ import annotations

from dataclasses import dataclass

from policies.approvals import ApprovalStore
from policies.audit import AuditLog
from tools.oversight_views import ActionView, ApprovalStatus, ApprovalView

# How many audit rows are read to find `limit` writes among the reads around them.
_SCAN_FACTOR = 10


@dataclass(frozen=True)
class StoreOversight:
    """`tools.oversight.Oversight` over the policy layer's stores."""

    approvals_store: ApprovalStore
    audit: AuditLog

    def approvals(self, status: ApprovalStatus | None, limit: int) -> list[ApprovalView]:
        self.approvals_store.expire_due()  # a request past its expiry is no longer pending, whoever asks
        fields = set(ApprovalView.model_fields)
        return [ApprovalView.model_validate(a.model_dump(include=fields)) for a in self.approvals_store.list(status=status, limit=limit)]

    def actions(self, limit: int, writes_only: bool) -> list[ActionView]:
        entries = self.audit.entries(limit=limit * _SCAN_FACTOR if writes_only else limit)[::-1]  # newest first
        fields = set(ActionView.model_fields)
        return [ActionView.model_validate(e.model_dump(include=fields)) for e in entries if not writes_only or e.effect != "read"][:limit]
