"""The agent's email voice: approval requests, queued by the email notifier (pipelines/email_notifier.py).

Only requests: incidents opened and escalated reach email from the notifier itself, and the agent's
steps and reports are for Slack and the console. It also lends the notifier the pending requests for the
daily digest. A failure to queue is logged and never reaches the agent.
"""

from __future__ import annotations

import logging

from pipelines.email_notifier import ApprovalNotice, EmailNotifier
from policies.approvals import Approval, ApprovalStore

log = logging.getLogger(__name__)


def notice(approval: Approval) -> ApprovalNotice:
    return ApprovalNotice(
        id=approval.id, tool=approval.tool, arguments=approval.arguments, reason=approval.reason, rule=approval.rule,
        approvers=tuple(approval.approvers), expires_at=approval.expires_at, incident_id=approval.incident_id,
    )  # fmt: skip


class EmailReporter:
    """A `Reporter` that emails approval requests and says nothing else."""

    def __init__(self, notifier: EmailNotifier, approvals: ApprovalStore) -> None:
        self.notifier = notifier
        notifier.pending_approvals = lambda: [notice(a) for a in approvals.list(status="pending", limit=200)]

    def step(self, thread_id: str, text: str) -> None:
        return None

    def approval_requested(self, approval: Approval) -> None:
        try:
            self.notifier.approval_needed(notice(approval))
        except Exception:  # email must never stop the agent
            log.exception("cannot queue the email of approval %s", approval.id)

    def approval_decided(self, approval: Approval) -> None:
        return None

    def final(self, thread_id: str, text: str, *, outcome: str, incident_id: int | None) -> None:
        return None
