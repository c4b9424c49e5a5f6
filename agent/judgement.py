"""People's judgement on incidents, the same from the CLI and from Slack: who may judge, and what is kept.

A person acknowledges an incident, resolves it, or marks it expected (a false alarm):
pipelines/monitors/feedback.py records the status change, the label and, for "expected", the suppression
of its pattern in one transaction, with a note naming the person and the channel. Only people with role operator
or approver may act (policies/people.py): the channel authenticates the person, the registry gives the role. "Expected" is also written to the
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
from policies.people import Actor

log = logging.getLogger(__name__)


class JudgementOutcome(BaseModel):
    """What an action did, and whether the incident memory took the "expected" record."""

    judgement: Judgement
    remembered: str | None = None
    memory_error: str | None = None


def check_judge(actor: Actor) -> None:
    """Raise PolicyError unless the actor (as a person, or through a Slack group) is an operator or an approver."""
    if actor.may("operator"):
        return
    raise PolicyError(
        f"{actor.id} may not act on incidents: role {actor.role or 'none'}, operator or approver needed "
        "(config/people.yaml, or `dataops users add NAME --role operator`)"
    )


def act_on_incident(
    ctx: PlatformContext,
    incident_id: int,
    action: str,
    *,
    actor: Actor,
    reason: str,
    now: datetime,
    memory: Callable[[], IncidentMemory],
    days: float = feedback.DEFAULT_DAYS,
) -> JudgementOutcome:
    """ack, resolve or expected, by an authenticated actor through their channel, at `now` on the platform clock."""
    check_judge(actor)
    judgement = feedback.judge(ctx, incident_id, action, actor=actor.id, channel=actor.channel, reason=reason, now=now, days=days)
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


def lift_suppression(ctx: PlatformContext, suppression_id: int, *, actor: Actor, now: datetime) -> Suppression:
    """Lift a suppression early; the same people who may mark an incident expected may lift it."""
    check_judge(actor)
    return feedback.unsuppress(ctx, suppression_id, actor=actor.id, channel=actor.channel, now=now)


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
