"""People's judgement on incidents, the same from the CLI and from Slack: who may judge, and what is kept.

A person acknowledges an incident, resolves it, or marks it expected (a false alarm):
pipelines/monitors/feedback.py records the status change, the label and, for "expected", the suppression
of its pattern in one transaction, with a note naming the person and the channel. Only the policy's
approvers and operators may act (config/policy.yaml `approvers` / `operators`, DATAOPS_APPROVERS), and the
list is the acting process's policy, never something a request carries. "Expected" is also written to the
incident memory, so the agent recognises the pattern as a known false alarm the next time it searches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel

from config.errors import MemoryStoreError, PolicyError
from memory.store import IncidentMemory, MemoryRecord
from pipelines.context import PlatformContext
from pipelines.monitors import feedback
from pipelines.monitors.feedback import Judgement, Suppression
from policies.model import PolicySpec

log = logging.getLogger(__name__)


class JudgementOutcome(BaseModel):
    """What an action did, and whether the incident memory took the "expected" record."""

    judgement: Judgement
    remembered: str | None = None
    memory_error: str | None = None


def check_judge(policy: PolicySpec, user: str, groups: tuple[str, ...] = ()) -> None:
    """Raise PolicyError unless `user` (or one of their Slack user groups) is an approver or operator."""
    allowed = {*policy.approvers, *policy.operators}
    if user in allowed or allowed & set(groups):
        return
    raise PolicyError(
        f"{user} may not act on incidents; approvers: {', '.join(policy.approvers) or 'none'}; "
        f"operators: {', '.join(policy.operators) or 'none'} (config/policy.yaml approvers / operators, DATAOPS_APPROVERS)"
    )


def act_on_incident(
    ctx: PlatformContext,
    policy: PolicySpec,
    incident_id: int,
    action: str,
    *,
    actor: str,
    channel: str,
    reason: str,
    now: datetime,
    memory: Callable[[], IncidentMemory],
    days: float = feedback.DEFAULT_DAYS,
    groups: tuple[str, ...] = (),
) -> JudgementOutcome:
    """ack, resolve or expected, by `actor` through `channel`, at `now` on the platform clock."""
    check_judge(policy, actor, groups)
    judgement = feedback.judge(ctx, incident_id, action, actor=actor, channel=channel, reason=reason, now=now, days=days)
    outcome = JudgementOutcome(judgement=judgement)
    if judgement.suppression is not None:
        record = expected_record(judgement, judgement.suppression)
        try:
            memory().remember(record)
            outcome.remembered = record.id
        except MemoryStoreError as exc:  # the judgement stands; only the agent's recall of it is missing
            log.warning("could not remember that incident %d is expected: %s", incident_id, exc)
            outcome.memory_error = str(exc)
    return outcome


def lift_suppression(
    ctx: PlatformContext, policy: PolicySpec, suppression_id: int, *, actor: str, channel: str, now: datetime, groups: tuple[str, ...] = ()
) -> Suppression:
    """Lift a suppression early; the same people who may mark an incident expected may lift it."""
    check_judge(policy, actor, groups)
    return feedback.unsuppress(ctx, suppression_id, actor=actor, channel=channel, now=now)


def expected_record(judgement: Judgement, suppression: Suppression) -> MemoryRecord:
    """The memory of a false alarm: found by a search for the same symptoms, it says people judged them expected."""
    incident = judgement.incident
    return MemoryRecord(
        id=f"expected-{incident.id}",
        kind="incident",
        title=f"expected, not a defect: {incident.title}",
        table=incident.table,
        incident_kind=incident.kind,
        symptoms=f"{incident.kind} on {incident.table} from {incident.cause_key}: {incident.title}",
        root_cause=f"judged expected (a false alarm) by {suppression.actor} via {suppression.channel}: {suppression.reason}",
        actions=[f"suppress {suppression.pattern} until {suppression.expires_at:%Y-%m-%d %H:%M} UTC (suppression #{suppression.id})"],
        outcome=f"expected: no fix needed; findings of this pattern are suppressed until {suppression.expires_at:%Y-%m-%d}",
        recorded_at=judgement.label.at,
    )
