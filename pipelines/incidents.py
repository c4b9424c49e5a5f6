"""Incidents in the ops database: what was noticed, where, the evidence, and where it stands.

Status moves open → acknowledged → remediating → resolved, or to escalated. The same cause on the same
table while an incident is still unresolved and was seen within the grouping window (a week when it is
acknowledged or escalated: someone owns it), updates that incident (occurrences, last seen, evidence) instead of opening
another: one cause, one incident, one alert.

People move incidents too (`dataops incident ack|resolve|expected`, the Slack buttons); each such note
names the person and the channel, and pipelines/monitors/feedback.py keeps the label it implies.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import JSON, DateTime, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import DataOpsError
from pipelines.extent import Extent
from pipelines.ledger import Base, Ledger, as_utc

Severity = Literal["info", "warning", "critical"]
Status = Literal["open", "acknowledged", "remediating", "resolved", "escalated"]
STATUSES: tuple[str, ...] = ("open", "acknowledged", "remediating", "resolved", "escalated")
UNRESOLVED: tuple[str, ...] = ("open", "acknowledged", "remediating", "escalated")
_TRANSITIONS = {
    "open": {"acknowledged", "remediating", "resolved", "escalated"},
    "acknowledged": {"remediating", "resolved", "escalated"},
    "remediating": {"resolved", "escalated", "acknowledged"},
    "escalated": {"acknowledged", "remediating", "resolved"},
    "resolved": {"open"},
}
GROUPING_WINDOW = timedelta(hours=24)
HELD: tuple[str, ...] = ("acknowledged", "escalated")
HELD_WINDOW = timedelta(days=7)
_MAX_EVIDENCE = 20


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    severity: Mapped[str] = mapped_column(String(20))
    table_name: Mapped[str] = mapped_column(String(120), index=True)
    partition: Mapped[str | None] = mapped_column(String(40), nullable=True)
    cause_key: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), index=True)
    evidence: Mapped[list[Any]] = mapped_column(JSON, default=list)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    detected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    opened_wall_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    notes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    extent: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Finding(BaseModel):
    """Something a monitor or a run noticed; becomes or updates an incident."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="freshness, volume, schema_drift, value_anomaly, validation, completeness, source_failure")
    severity: Severity
    table: str
    cause_key: str = Field(description="What makes two findings the same cause, e.g. the expectation or monitor name")
    title: str
    partition: str | None = None
    occurred_at: datetime | None = Field(default=None, description="Data time of the defect (slot or day), for time-to-detect")
    evidence: dict[str, Any] = Field(default_factory=dict)
    extent: Extent | None = Field(default=None, description="The slots and days this finding affects, where it knows them")
    run_id: str | None = None
    tally: int | None = Field(
        default=None, description="A count the title states (rows quarantined); occurrences folded into one incident add up"
    )
    tally_title: str | None = Field(
        default=None, description="The title with '{total}' where the tally goes: rewritten with the sum when an occurrence folds in"
    )


class Incident(BaseModel):
    id: int
    kind: str
    severity: str
    table: str
    partition: str | None
    cause_key: str
    title: str
    status: str
    occurrences: int
    occurred_at: datetime | None
    detected_at: datetime
    last_seen_at: datetime
    time_to_detect_s: float | None
    evidence: list[Any]
    notes: list[Any]
    run_id: str | None
    extent: Extent | None = None

    @classmethod
    def of(cls, row: IncidentRow) -> Incident:
        occurred = as_utc(row.occurred_at)
        detected = as_utc(row.detected_at)
        assert detected is not None
        return cls(
            id=row.id, kind=row.kind, severity=row.severity, table=row.table_name, partition=row.partition,
            cause_key=row.cause_key, title=row.title, status=row.status, occurrences=row.occurrences,
            occurred_at=occurred, detected_at=detected, last_seen_at=as_utc(row.last_seen_at) or detected,
            time_to_detect_s=(detected - occurred).total_seconds() if occurred else None,
            evidence=row.evidence, notes=row.notes, run_id=row.run_id,
            extent=Extent.model_validate(row.extent) if row.extent else None,
        )  # fmt: skip


class IncidentError(DataOpsError):
    """An incident operation was refused (unknown id, impossible transition)."""


class IncidentStore:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def report(self, finding: Finding, *, now: datetime) -> tuple[Incident, bool]:
        """Open an incident for the finding, or update the open one of the same cause; returns (incident, opened)."""
        with self._ledger.session() as s, s.begin():
            # A bad publish is one defect of one day of a table, whichever monitor proves it: the published-data
            # audit and the reconciliation both see a negated day, and the agent should roll it back once.
            same_cause = (
                IncidentRow.partition == finding.partition
                if finding.kind == "bad_publish" and finding.partition
                else IncidentRow.cause_key == finding.cause_key
            )
            candidates = s.scalars(
                select(IncidentRow).where(
                    IncidentRow.kind == finding.kind,
                    IncidentRow.table_name == finding.table,
                    same_cause,
                    IncidentRow.status.in_(UNRESOLVED),
                )
            ).all()
            # A person (or the agent's escalation) owns an acknowledged or escalated incident: the same cause
            # folds into it for a week since it was last seen, instead of paging again every day.
            # A bad day stays one defect however long it waits: it folds into its unresolved incident at any age.
            one_day = finding.kind == "bad_publish" and bool(finding.partition)
            current = next(
                (
                    c
                    for c in candidates
                    if one_day or now - (as_utc(c.last_seen_at) or now) <= (HELD_WINDOW if c.status in HELD else GROUPING_WINDOW)
                ),
                None,
            )
            entry = {"at": now.isoformat(), "partition": finding.partition, **finding.evidence}
            if current is not None:
                if finding.extent is not None:
                    known = Extent.model_validate(current.extent) if current.extent else Extent()
                    entry["added_days"] = known.added_by(finding.extent)  # what this occurrence adds to the extent
                    current.extent = known.merge(finding.extent).model_dump(mode="json")
                current.occurrences += 1
                current.last_seen_at = now
                current.updated_at = datetime.now(UTC)
                if finding.tally is not None and finding.tally_title is not None:
                    # The running sum rides on the newest evidence entry, so it survives the evidence being trimmed.
                    before = (current.evidence or [{}])[-1]
                    # An incident opened before titles were tallied has no running sum: its occurrences' rows are it.
                    so_far = before.get("tally_total")
                    if so_far is None:
                        so_far = sum(int(e.get("rows") or 0) for e in current.evidence or [])
                    entry["tally_total"] = int(so_far) + finding.tally
                    current.title = finding.tally_title.replace("{total}", str(entry["tally_total"]))
                current.evidence = [*current.evidence, entry][-_MAX_EVIDENCE:]
                if _rank(finding.severity) > _rank(current.severity):
                    current.severity = finding.severity
                s.flush()
                return Incident.of(current), False
            if finding.tally is not None:
                entry["tally_total"] = finding.tally
            row = IncidentRow(
                kind=finding.kind, severity=finding.severity, table_name=finding.table, partition=finding.partition,
                cause_key=finding.cause_key, title=finding.title, status="open", evidence=[entry], occurrences=1,
                occurred_at=finding.occurred_at, detected_at=now, last_seen_at=now, opened_wall_at=datetime.now(UTC),
                updated_at=datetime.now(UTC), run_id=finding.run_id, notes=[],
                extent=finding.extent.model_dump(mode="json") if finding.extent else None,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return Incident.of(row), True

    def transition(self, incident_id: int, status: str, *, note: str = "", actor: str = "system", channel: str | None = None) -> Incident:
        """Move an incident to `status`, with a note naming who (and through which channel, when a person did it)."""
        with self._ledger.session() as s, s.begin():
            row = s.get(IncidentRow, incident_id)
            if row is None:
                raise IncidentError(unknown_incident(incident_id))
            move(row, status, note=note, actor=actor, channel=channel)
            s.flush()
            return Incident.of(row)

    def annotate(self, incident_id: int, note: str, *, actor: str = "system", channel: str | None = None) -> Incident:
        """Add a note without changing the status."""
        with self._ledger.session() as s, s.begin():
            row = s.get(IncidentRow, incident_id)
            if row is None:
                raise IncidentError(unknown_incident(incident_id))
            add_note(row, note, actor=actor, channel=channel)
            s.flush()
            return Incident.of(row)

    def get(self, incident_id: int) -> Incident:
        with self._ledger.session() as s:
            row = s.get(IncidentRow, incident_id)
            if row is None:
                raise IncidentError(unknown_incident(incident_id))
            return Incident.of(row)

    def list(self, *, status: str | None = None, limit: int = 200) -> list[Incident]:
        with self._ledger.session() as s:
            query = select(IncidentRow).order_by(IncidentRow.id.desc()).limit(limit)
            if status == "unresolved":
                query = query.where(IncidentRow.status.in_(UNRESOLVED))
            elif status is not None:
                query = query.where(IncidentRow.status == status)
            return [Incident.of(r) for r in s.scalars(query)]

    def open_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(("info", "warning", "critical"), 0)
        for incident in self.list(status="unresolved", limit=10_000):
            counts[incident.severity] = counts.get(incident.severity, 0) + 1
        return counts


def unknown_incident(incident_id: int) -> str:
    return f"no incident {incident_id}; `dataops incidents` lists them"


def move(row: IncidentRow, status: str, *, note: str, actor: str, channel: str | None = None) -> None:
    """Change the status of a row inside the caller's transaction, or raise IncidentError naming where it can go."""
    if status not in STATUSES:
        raise IncidentError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
    if status not in _TRANSITIONS[row.status]:
        raise IncidentError(
            f"incident {row.id} is {row.status}; it can move to {', '.join(sorted(_TRANSITIONS[row.status]))}, not {status}"
        )
    now = datetime.now(UTC)
    row.status = status
    if status == "acknowledged":
        row.acknowledged_at = now
    elif status == "resolved":
        row.resolved_at = now
    elif status == "escalated":
        row.escalated_at = now
    add_note(row, note, actor=actor, channel=channel, at=now)


def add_note(row: IncidentRow, note: str, *, actor: str, channel: str | None = None, at: datetime | None = None) -> None:
    """Append a note (with the status it was written in, and the channel a person used) and touch the row."""
    at = at or datetime.now(UTC)
    row.updated_at = at
    entry = {"at": at.isoformat(), "actor": actor, "status": row.status, "note": note}
    if channel is not None:
        entry["channel"] = channel
    row.notes = [*row.notes, entry]


def _rank(severity: str) -> int:
    return {"info": 0, "warning": 1, "critical": 2}.get(severity, 0)
