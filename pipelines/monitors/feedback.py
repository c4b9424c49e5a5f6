"""People's judgement on incidents: labels (real / expected) and the suppressions an "expected" label creates.

A person acknowledges or resolves an incident (label "real": the monitor was right), or marks it expected
(label "expected": a false alarm), from the CLI or Slack. "Expected" also resolves the incident and
suppresses its pattern until an expiry on the platform clock::

    pattern = finding kind + cause_key (for monitors, the monitor name) + table
              + direction        when the incident's evidence has one ("high" / "low")
              + score ceiling    when it has scores: the strongest labelled score × 1.25

`filter_findings` drops a new finding only when all of these match and the suppression is active: a
stronger deviation, the other direction, another monitor or another table still alerts. A finding without
a score is never covered by a pattern that has a ceiling. `labelled_points` hands the labelled points to
calibration, which treats expected ones as normal and real ones as defects. The latest label of an
incident is the one that counts (acknowledged as real, later marked expected: expected).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from config.errors import DataOpsError
from pipelines import metrics
from pipelines.incidents import Finding, Incident, IncidentError, IncidentRow, add_note, move, unknown_incident
from pipelines.ledger import as_utc
from pipelines.monitors.state import CLOCK_STATE
from pipelines.monitors.tables import LabelRow, MonitorStateRow, SuppressionRow

if TYPE_CHECKING:
    from pipelines.context import PlatformContext

log = logging.getLogger(__name__)

Verdict = Literal["real", "expected"]
Action = Literal["ack", "resolve", "expected"]
# What each action does: the status it moves the incident to, and the label it records.
ACTIONS: dict[str, tuple[str, Verdict]] = {
    "ack": ("acknowledged", "real"),
    "resolve": ("resolved", "real"),
    "expected": ("resolved", "expected"),
}
DEFAULT_DAYS = 30
SCORE_MARGIN = 1.25  # a deviation this much stronger than the one people judged expected alerts again


class FeedbackError(DataOpsError):
    """A judgement or suppression operation was refused (unknown suppression, already lifted, bad expiry)."""


class Suppression(BaseModel):
    """A pattern of findings people judged expected, silenced until `expires_at` on the platform clock."""

    model_config = ConfigDict(frozen=True)

    id: int
    incident_id: int
    kind: str
    cause_key: str
    table: str
    direction: str | None
    score: float | None
    max_score: float | None
    pattern: str
    reason: str
    actor: str
    channel: str
    created_at: datetime
    expires_at: datetime
    hits: int
    last_hit_at: datetime | None
    lifted_at: datetime | None
    lifted_by: str | None

    @classmethod
    def of(cls, row: SuppressionRow) -> Suppression:
        created, expires = as_utc(row.created_at), as_utc(row.expires_at)
        assert created is not None and expires is not None
        return cls(
            id=row.id,
            incident_id=row.incident_id,
            kind=row.kind,
            cause_key=row.cause_key,
            table=row.table_name,
            direction=row.direction,
            score=row.score,
            max_score=row.max_score,
            pattern=describe_pattern(row.kind, row.cause_key, row.table_name, row.direction, row.max_score),
            reason=row.reason,
            actor=row.actor,
            channel=row.channel,
            created_at=created,
            expires_at=expires,
            hits=row.hits,
            last_hit_at=as_utc(row.last_hit_at),
            lifted_at=as_utc(row.lifted_at),
            lifted_by=row.lifted_by,
        )

    def active(self, now: datetime) -> bool:
        return self.lifted_at is None and now < self.expires_at

    def covers(self, finding: Finding, now: datetime) -> bool:
        """Whether this suppression, active at `now`, silences `finding`."""
        if not self.active(now) or (finding.kind, finding.cause_key, finding.table) != (self.kind, self.cause_key, self.table):
            return False
        if self.direction is not None and finding.evidence.get("direction") != self.direction:
            return False
        if self.max_score is not None:
            score = evidence_score(finding.evidence)
            return score is not None and score <= self.max_score
        return True


class Label(BaseModel):
    """A person's verdict on an incident: real (the monitor was right) or expected (a false alarm)."""

    model_config = ConfigDict(frozen=True)

    id: int
    incident_id: int
    verdict: Verdict
    kind: str
    cause_key: str
    table: str
    actor: str
    channel: str
    reason: str
    at: datetime

    @classmethod
    def of(cls, row: LabelRow) -> Label:
        at = as_utc(row.at)
        assert at is not None
        verdict: Verdict = "expected" if row.verdict == "expected" else "real"
        return cls(
            id=row.id,
            incident_id=row.incident_id,
            verdict=verdict,
            kind=row.kind,
            cause_key=row.cause_key,
            table=row.table_name,
            actor=row.actor,
            channel=row.channel,
            reason=row.reason,
            at=at,
        )


class Judgement(BaseModel):
    """What one action of a person did: the incident as it is now, the label, and the suppression of "expected"."""

    incident: Incident
    label: Label
    suppression: Suppression | None = None


# -- the pattern of an incident ------------------------------------------------------------------------------------
def evidence_score(evidence: dict[str, Any]) -> float | None:
    """The score of a finding's evidence: `score` (-log10 tail probability of the worst point), else its points' best."""
    score = evidence.get("score")
    if isinstance(score, int | float) and not isinstance(score, bool):
        return float(score)
    points = evidence.get("points")
    scores = (
        [float(p["score"]) for p in points if isinstance(p, dict) and isinstance(p.get("score"), int | float)]
        if isinstance(points, list)
        else []
    )
    return max(scores) if scores else None


def pattern_of(entries: list[Any]) -> tuple[str | None, float | None]:
    """(direction, strongest score) of an incident's evidence entries; direction None when absent or mixed."""
    dicts = [e for e in entries if isinstance(e, dict)]
    directions = {str(e["direction"]) for e in dicts if e.get("direction")}
    scores = [s for s in (evidence_score(e) for e in dicts) if s is not None]
    return (next(iter(directions)) if len(directions) == 1 else None), (max(scores) if scores else None)


def describe_pattern(kind: str, cause_key: str, table_name: str, direction: str | None, max_score: float | None) -> str:
    parts = [f"{kind} {cause_key} on {table_name}"]
    if direction is not None:
        parts.append(f"direction {direction}")
    if max_score is not None:
        parts.append(f"score ≤ {max_score:.2f}")
    return ", ".join(parts)


# -- acting on an incident -----------------------------------------------------------------------------------------
def judge(
    ctx: PlatformContext,
    incident_id: int,
    action: str,
    *,
    actor: str,
    channel: str,
    reason: str = "",
    now: datetime,
    days: float = DEFAULT_DAYS,
) -> Judgement:
    """Record a person's action on an incident in one transaction: the status change, the label, and for
    "expected" the suppression of its pattern for `days` from `now` on the platform clock.

    "expected" also applies to an incident already resolved (say, by the agent): it stays resolved and the
    label and suppression are recorded. Raises IncidentError (unknown id, impossible move) or FeedbackError.
    """
    if action not in ACTIONS:
        raise FeedbackError(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}")
    if days <= 0:
        raise FeedbackError(f"a suppression must last a positive number of days, got {days:g}")
    status, verdict = ACTIONS[action]
    with ctx.ledger.session() as s, s.begin():
        row = s.get(IncidentRow, incident_id)
        if row is None:
            raise IncidentError(unknown_incident(incident_id))
        suppression = _suppress(s, row, actor=actor, channel=channel, reason=reason, now=now, days=days) if action == "expected" else None
        if suppression is not None:
            expiry = f"{as_utc(suppression.expires_at):%Y-%m-%d %H:%M} UTC"
            pattern = describe_pattern(
                suppression.kind, suppression.cause_key, suppression.table_name, suppression.direction, suppression.max_score
            )
            note = f"marked expected: {reason}; suppression #{suppression.id} of {pattern} until {expiry} (platform clock)"
        else:
            note = f"{status} as real" + (f": {reason}" if reason else "")
        if suppression is not None and row.status == "resolved":
            add_note(row, note, actor=actor, channel=channel)
        else:
            move(row, status, note=note, actor=actor, channel=channel)
        label = LabelRow(
            incident_id=row.id,
            verdict=verdict,
            kind=row.kind,
            cause_key=row.cause_key,
            table_name=row.table_name,
            actor=actor,
            channel=channel,
            reason=reason,
            at=now,
            recorded_at=datetime.now(UTC),
        )
        s.add(label)
        s.flush()
        return Judgement(
            incident=Incident.of(row), label=Label.of(label), suppression=Suppression.of(suppression) if suppression is not None else None
        )


def _suppress(s: Session, row: IncidentRow, *, actor: str, channel: str, reason: str, now: datetime, days: float) -> SuppressionRow:
    for existing in s.scalars(select(SuppressionRow).where(SuppressionRow.incident_id == row.id, SuppressionRow.lifted_at.is_(None))):
        expires = as_utc(existing.expires_at)
        if expires is not None and now < expires:
            raise FeedbackError(
                f"incident {row.id} is already marked expected: suppression #{existing.id} until {expires:%Y-%m-%d %H:%M} UTC; "
                f"`dataops monitors unsuppress {existing.id}` lifts it"
            )
    direction, score = pattern_of(row.evidence)
    suppression = SuppressionRow(
        incident_id=row.id,
        kind=row.kind,
        cause_key=row.cause_key,
        table_name=row.table_name,
        direction=direction,
        score=score,
        max_score=None if score is None else round(score * SCORE_MARGIN, 3),
        reason=reason,
        actor=actor,
        channel=channel,
        created_at=now,
        expires_at=now + timedelta(days=days),
        recorded_at=datetime.now(UTC),
        hits=0,
    )
    s.add(suppression)
    s.flush()
    return suppression


def unsuppress(ctx: PlatformContext, suppression_id: int, *, actor: str, channel: str, now: datetime) -> Suppression:
    """Lift a suppression before it expires (findings of its pattern alert again); noted on its incident."""
    with ctx.ledger.session() as s, s.begin():
        row = s.get(SuppressionRow, suppression_id)
        if row is None:
            raise FeedbackError(f"no suppression {suppression_id}; `dataops monitors` lists the active ones")
        current = Suppression.of(row)
        if current.lifted_at is not None:
            raise FeedbackError(
                f"suppression {suppression_id} was already lifted by {current.lifted_by} at {current.lifted_at:%Y-%m-%d %H:%M} UTC"
            )
        if not current.active(now):
            raise FeedbackError(
                f"suppression {suppression_id} expired at {current.expires_at:%Y-%m-%d %H:%M} UTC; there is nothing to lift"
            )
        row.lifted_at, row.lifted_by = datetime.now(UTC), actor
        incident = s.get(IncidentRow, row.incident_id)
        if incident is not None:
            add_note(incident, f"suppression #{row.id} lifted: {current.pattern} alerts again", actor=actor, channel=channel)
        s.flush()
        return Suppression.of(row)


# -- reading -------------------------------------------------------------------------------------------------------
def suppressions(ctx: PlatformContext, *, active_at: datetime | None = None) -> list[Suppression]:
    """Every suppression, newest first; with `active_at`, only those active at that instant of the platform clock."""
    with ctx.ledger.session() as s:
        found = [Suppression.of(r) for r in s.scalars(select(SuppressionRow).order_by(SuppressionRow.id.desc()))]
    return found if active_at is None else [x for x in found if x.active(active_at)]


def labels(ctx: PlatformContext, *, incident_id: int | None = None) -> list[Label]:
    """Labels people gave, oldest first; of one incident when given."""
    with ctx.ledger.session() as s:
        query = select(LabelRow).order_by(LabelRow.id)
        if incident_id is not None:
            query = query.where(LabelRow.incident_id == incident_id)
        return [Label.of(r) for r in s.scalars(query)]


def platform_now(ctx: PlatformContext) -> datetime:
    """The platform clock for a command outside `dataops serve`: with live sources the wall clock; under replay
    the replay clock as the service last saved it (its start instant before the service first ran)."""
    if ctx.settings.source_mode != "replay":
        return datetime.now(UTC)
    return saved_replay_clock(ctx) or ctx.settings.replay_start


def saved_replay_clock(ctx: PlatformContext) -> datetime | None:
    """Under replay, the replay clock as `dataops serve` last saved it for the current replay start; None when the
    service has not run on it (or the sources are live)."""
    if ctx.settings.source_mode != "replay":
        return None
    with ctx.ledger.session() as s:
        row = s.get(MonitorStateRow, CLOCK_STATE)
        saved = dict(row.state or {}) if row is not None else {}
    if saved.get("start") == ctx.settings.replay_start.isoformat() and saved.get("now"):
        return datetime.fromisoformat(str(saved["now"]))
    return None


# -- what the monitors call ------------------------------------------------------------------------------------------
def filter_findings(ctx: PlatformContext, findings: list[Finding], now: datetime) -> list[Finding]:
    """The findings no active suppression covers; each covered one counts a hit on its suppression and is logged."""
    if not findings:
        return findings
    kept: list[Finding] = []
    with ctx.ledger.session() as s, s.begin():
        rows = [r for r in s.scalars(select(SuppressionRow).where(SuppressionRow.lifted_at.is_(None)).order_by(SuppressionRow.id))]
        active = [(r, Suppression.of(r)) for r in rows]
        active = [(r, x) for r, x in active if x.active(now)]
        for finding in findings:
            hit = next((r for r, x in active if x.covers(finding, now)), None)
            if hit is None:
                kept.append(finding)
                continue
            hit.hits += 1
            hit.last_hit_at = now
            log.info("finding %s/%s on %s suppressed by #%d (%s)", finding.kind, finding.cause_key, finding.table, hit.id, hit.reason)
            metrics.FINDINGS_SUPPRESSED.labels(str(finding.evidence.get("monitor") or finding.cause_key)).inc()
    return kept


def labelled_points(ctx: PlatformContext, monitor: str) -> dict[str, list[str]]:
    """{"expected": [ISO ts...], "real": [ISO ts...]}: the points (`points[].ts` of the evidence) of incidents
    of `monitor` (cause_key `monitor` or `monitor:<rule>`) people labelled, by each incident's latest label."""
    with ctx.ledger.session() as s:
        query = (
            select(LabelRow)
            .where(or_(LabelRow.cause_key == monitor, LabelRow.cause_key.startswith(monitor + ":", autoescape=True)))
            .order_by(LabelRow.id)
        )
        latest = {r.incident_id: r.verdict for r in s.scalars(query)}
        incidents = list(s.scalars(select(IncidentRow).where(IncidentRow.id.in_(latest)))) if latest else []
    points: dict[str, set[str]] = {"expected": set(), "real": set()}
    for incident in incidents:
        bucket = points["expected" if latest[incident.id] == "expected" else "real"]
        for entry in incident.evidence:
            for point in entry.get("points") or [] if isinstance(entry, dict) else []:
                if isinstance(point, dict) and point.get("ts"):
                    bucket.add(str(point["ts"]))
    return {verdict: sorted(found) for verdict, found in points.items()}
