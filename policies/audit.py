"""The audit log: every tool call the agent proposed, the policy decision and rule, who approved, the result.

One row per tool call id. The row is written when the call is judged and then moves only by named
transitions, each refused (`AuditTransitionError`) unless the row's status allows it::

    judged            ─► invalid | denied | allowed | pending_approval
    pending_approval  ─approval_requested─► pending_approval   (the request's id recorded)
                      ─approved──────────► pending_approval   (the approver recorded)
                      ─refused───────────► denied
                      ─expired───────────► expired
    allowed, approved pending_approval, running
                      ─started───────────► running ─succeeded─► ok
                                                   └─failed────► error
                      ─skipped_repeat────► ok   (the same write already ran in the thread)

A crash mid-tool leaves a `running` row behind (visible in `dataops audit`) that may start again, and a
finished row makes a second execution of the same call id return the recorded result instead of acting
twice. A review that runs again after a resume repeats its transitions with the same values, so
`approved`, `refused` and `expired` may follow themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import PolicyError
from pipelines.ledger import Base, Ledger, add_missing_columns, as_utc, ensure_tables

FINISHED = ("ok", "error")
Verdict = Literal["allow", "needs_approval", "deny", "invalid"]
STATUS_OF: dict[str, str] = {"allow": "allowed", "needs_approval": "pending_approval", "deny": "denied", "invalid": "invalid"}
JUDGED = frozenset(STATUS_OF.values())
RUNNABLE = ("allowed", "pending_approval", "running")  # pending_approval only once approved: see `_runnable`


class AuditTransitionError(PolicyError):
    """A transition the call's audit row cannot take from its status: a bug in the caller, never in the data."""


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(120), unique=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    thread_id: Mapped[str] = mapped_column(String(120), index=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    actor: Mapped[str] = mapped_column(String(120))
    planner: Mapped[str] = mapped_column(String(120), default="")
    tool: Mapped[str] = mapped_column(String(80), index=True)
    effect: Mapped[str] = mapped_column(String(20), default="")
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    decision: Mapped[str] = mapped_column(String(20))
    rule: Mapped[str] = mapped_column(String(80), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    approval_id: Mapped[str | None] = mapped_column(String(20), nullable=True)
    approver: Mapped[str | None] = mapped_column(String(120), nullable=True)
    approver_via: Mapped[str | None] = mapped_column(String(20), nullable=True, doc="channel of the decision: cli, slack, api")
    status: Mapped[str] = mapped_column(String(20), index=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    idem_key: Mapped[str | None] = mapped_column(String(120), nullable=True, index=True, doc="tool + hash of its arguments")


class AuditEntry(BaseModel):
    id: int
    call_id: str
    at: datetime
    thread_id: str
    incident_id: int | None
    actor: str
    planner: str
    tool: str
    effect: str
    arguments: dict[str, Any]
    target: dict[str, Any]
    decision: str
    rule: str
    reason: str
    approval_id: str | None
    approver: str | None
    approver_via: str | None = None
    status: str
    result: dict[str, Any] | None
    error: str | None
    duration_ms: float | None
    tokens: int

    @classmethod
    def of(cls, row: AuditRow) -> AuditEntry:
        fields = {name: getattr(row, name) for name in cls.model_fields}
        fields["at"] = as_utc(row.at)
        return cls.model_validate(fields)


class DiagnosisRow(Base):
    """The cause the agent named before planning an incident's thread (agent/diagnose.py), as it stood then."""

    __tablename__ = "audit_diagnoses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    thread_id: Mapped[str] = mapped_column(String(120), index=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    cause: Mapped[str] = mapped_column(String(40))
    confidence: Mapped[float] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[Any]] = mapped_column(JSON, default=list)


class DiagnosisEntry(BaseModel):
    at: datetime
    thread_id: str
    incident_id: int | None
    cause: str
    confidence: float
    summary: str
    evidence: list[str]


class AuditLog:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        # The ledger creates the pipelines' tables; this layer's tables are created here, once per process.
        ensure_tables(ledger.engine, [AuditRow.__table__, DiagnosisRow.__table__])  # type: ignore[list-item]
        add_missing_columns(ledger.engine)  # approver_via, on databases made before it existed

    def diagnosed(
        self, *, thread_id: str, incident_id: int | None, cause: str, confidence: float, summary: str, evidence: list[str]
    ) -> None:
        """Journal the diagnosis a thread starts from (a thread run again journals what it found then)."""
        with self._ledger.session() as s, s.begin():
            s.add(
                DiagnosisRow(
                    at=datetime.now(UTC), thread_id=thread_id, incident_id=incident_id, cause=cause, confidence=confidence,
                    summary=summary, evidence=list(evidence),
                )
            )  # fmt: skip

    def diagnoses(self, *, incident_id: int | None = None, limit: int = 100) -> list[DiagnosisEntry]:
        with self._ledger.session() as s:
            query = select(DiagnosisRow).order_by(DiagnosisRow.id).limit(limit)
            if incident_id is not None:
                query = query.where(DiagnosisRow.incident_id == incident_id)
            return [
                DiagnosisEntry(
                    at=as_utc(r.at) or r.at, thread_id=r.thread_id, incident_id=r.incident_id, cause=r.cause, confidence=r.confidence,
                    summary=r.summary, evidence=[str(e) for e in r.evidence or []],
                )
                for r in s.scalars(query)
            ]  # fmt: skip

    def judged(
        self,
        *,
        call_id: str,
        thread_id: str,
        incident_id: int | None,
        actor: str,
        planner: str,
        tokens: int,
        tool: str,
        arguments: dict[str, Any],
        decision: Verdict,
        reason: str,
        effect: str = "",
        target: dict[str, Any] | None = None,
        rule: str = "",
    ) -> AuditEntry:
        """Record the judgement of a call; its status follows from the decision. A call not yet started may be judged again."""
        fields: dict[str, Any] = {
            "thread_id": thread_id,
            "incident_id": incident_id,
            "actor": actor,
            "planner": planner,
            "tokens": tokens,
            "tool": tool,
            "effect": effect,
            "arguments": arguments,
            "target": target or {},
            "decision": decision,
            "rule": rule,
            "reason": reason,
            "status": STATUS_OF[decision],
        }
        with self._ledger.session() as s, s.begin():
            row = s.scalars(select(AuditRow).where(AuditRow.call_id == call_id)).first()
            if row is None:
                row = AuditRow(call_id=call_id, at=datetime.now(UTC), **fields)
                s.add(row)
            elif row.status not in JUDGED:
                raise AuditTransitionError(
                    f"call {call_id} cannot be judged again: its status is {row.status!r}; only {_listed(JUDGED)} may"
                )
            else:
                for name, value in fields.items():
                    setattr(row, name, value)
            s.flush()
            return AuditEntry.of(row)

    def approval_requested(self, call_id: str, approval_id: str) -> AuditEntry:
        """A human was asked: the request's id goes on the row."""
        return self._move(call_id, "approval_requested", after=("pending_approval",), approval_id=approval_id)

    def approved(self, call_id: str, *, by: str | None, via: str | None = None) -> AuditEntry:
        """A person approved (through channel `via`); the status stays pending_approval until the call starts."""
        return self._move(call_id, "approved", after=("pending_approval",), approver=by, approver_via=via)

    def refused(self, call_id: str, *, by: str | None, via: str | None = None) -> AuditEntry:
        """A person denied the request (through channel `via`)."""
        return self._move(call_id, "refused", after=("pending_approval", "denied"), status="denied", approver=by, approver_via=via)

    def expired(self, call_id: str, *, by: str | None) -> AuditEntry:
        """Nobody decided before the request expired."""
        return self._move(call_id, "expired", after=("pending_approval", "expired"), status="expired", approver=by)

    def started(self, call_id: str, *, idem_key: str) -> AuditEntry:
        """The tool is about to run (again, after a crash mid-tool)."""
        return self._move(call_id, "started", after=RUNNABLE, status="running", idem_key=idem_key)

    def skipped_repeat(self, call_id: str, *, idem_key: str, original: AuditEntry, note: str) -> AuditEntry:
        """Not run: the same write with the same arguments already succeeded in this thread; its result stands."""
        return self._move(
            call_id, "skipped_repeat", after=RUNNABLE, status="ok", result=original.result, error=note, idem_key=idem_key, duration_ms=0.0
        )

    def succeeded(self, call_id: str, *, result: dict[str, Any], duration_ms: float) -> AuditEntry:
        return self._move(call_id, "succeeded", after=("running",), status="ok", result=result, duration_ms=duration_ms)

    def failed(self, call_id: str, *, error: str, duration_ms: float) -> AuditEntry:
        return self._move(call_id, "failed", after=("running",), status="error", error=error, duration_ms=duration_ms)

    def _move(self, call_id: str, transition: str, *, after: tuple[str, ...], **fields: Any) -> AuditEntry:
        with self._ledger.session() as s, s.begin():
            row = s.scalars(select(AuditRow).where(AuditRow.call_id == call_id)).first()
            if row is None:
                raise AuditTransitionError(f"call {call_id} has no audit row to record {transition!r} on; a call is judged first")
            if row.status not in after or (after is RUNNABLE and not _runnable(row)):
                raise AuditTransitionError(
                    f"call {call_id} ({row.tool}) cannot take {transition!r} from status {row.status!r}"
                    + (" without an approver" if row.status == "pending_approval" else "")
                    + f"; {transition!r} follows {_listed(after)}"
                )
            for name, value in fields.items():
                setattr(row, name, value)
            s.flush()
            return AuditEntry.of(row)

    def get(self, call_id: str) -> AuditEntry | None:
        with self._ledger.session() as s:
            row = s.scalars(select(AuditRow).where(AuditRow.call_id == call_id)).first()
            return AuditEntry.of(row) if row else None

    def finished(self, call_id: str) -> AuditEntry | None:
        entry = self.get(call_id)
        return entry if entry is not None and entry.status in FINISHED else None

    def done_with_key(self, thread_id: str, key: str, *, other_than: str) -> AuditEntry | None:
        """A finished, successful call of this thread with the same idempotency key (same tool, same arguments)."""
        with self._ledger.session() as s:
            row = s.scalars(
                select(AuditRow).where(
                    AuditRow.thread_id == thread_id, AuditRow.idem_key == key, AuditRow.status == "ok", AuditRow.call_id != other_than
                )
            ).first()
            return AuditEntry.of(row) if row else None

    def entries(self, *, incident_id: int | None = None, thread_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        with self._ledger.session() as s:
            query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
            if incident_id is not None:
                query = query.where(AuditRow.incident_id == incident_id)
            if thread_id is not None:
                query = query.where(AuditRow.thread_id == thread_id)
            return [AuditEntry.of(r) for r in s.scalars(query)][::-1]

    def executions_since(self, tools: tuple[str, ...], pipeline: str, since: datetime) -> int:
        """How many of `tools` ran (or started) on `pipeline` since `since`: the re-run rate limit's count."""
        with self._ledger.session() as s:
            rows = s.scalars(
                select(AuditRow).where(AuditRow.tool.in_(tools), AuditRow.at >= since, AuditRow.status.in_(("running", "ok", "error")))
            ).all()
            return sum(1 for r in rows if (r.target or {}).get("pipeline") == pipeline)

    def tokens_of(self, thread_id: str) -> int:
        with self._ledger.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(AuditRow.tokens), 0)).where(AuditRow.thread_id == thread_id)) or 0)


def _runnable(row: AuditRow) -> bool:
    # A call waiting for approval runs only once someone approved it.
    return row.status != "pending_approval" or row.approver is not None


def _listed(statuses: tuple[str, ...] | frozenset[str]) -> str:
    return ", ".join(sorted(statuses))
