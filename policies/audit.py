"""The audit log: every tool call the agent proposed, the policy decision and rule, who approved, the result.

One row per tool call id. The row is written when the call is judged and updated when it runs, so a
crash mid-tool leaves a `running` row behind (visible in `dataops audit`), and a finished row makes a
second execution of the same call id return the recorded result instead of acting twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from pipelines.ledger import Base, Ledger, _aware

FINISHED = ("ok", "error")


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
    status: str
    result: dict[str, Any] | None
    error: str | None
    duration_ms: float | None
    tokens: int

    @classmethod
    def of(cls, row: AuditRow) -> AuditEntry:
        fields = {name: getattr(row, name) for name in cls.model_fields}
        fields["at"] = _aware(row.at)
        return cls.model_validate(fields)


class AuditLog:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        # The ledger creates the pipelines' tables; this layer's table is created here, once per process.
        Base.metadata.create_all(ledger.engine, tables=[AuditRow.__table__])  # type: ignore[list-item]

    def judged(self, *, call_id: str, **fields: Any) -> AuditEntry:
        """Record (or update) the judgement of a call: decision, rule, reason, status."""
        with self._ledger.session() as s, s.begin():
            row = s.scalars(select(AuditRow).where(AuditRow.call_id == call_id)).first()
            if row is None:
                row = AuditRow(call_id=call_id, at=datetime.now(UTC), **fields)
                s.add(row)
            else:
                for name, value in fields.items():
                    setattr(row, name, value)
            s.flush()
            return AuditEntry.of(row)

    def update(self, call_id: str, **fields: Any) -> None:
        with self._ledger.session() as s, s.begin():
            row = s.scalars(select(AuditRow).where(AuditRow.call_id == call_id)).first()
            if row is None:
                raise KeyError(call_id)
            for name, value in fields.items():
                setattr(row, name, value)

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
