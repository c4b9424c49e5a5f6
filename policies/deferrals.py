"""Durable waits for the greenest window: a large backfill the agent may run is deferred to when the grid is cleanest.

The agent's review (agent/review.py) plans the deferral once per tool call, from the carbon-intensity forecast
(pipelines/forecast/deferral.py), records it here and pauses the graph with `interrupt()`. The thread runs on when
the platform clock reaches `run_at` (and the wall clock `wake_at`, the real instant that is: a CLI process,
whose clock is the wall's, must not wake a thread the replaying service deferred), or when a person releases it early (`dataops deferred release CALL_ID`):
the agent's `resume_decided()` (every service tick, at start-up, after a release) resumes every due deferral
whose thread still waits on it. One process resumes a thread (claimed like approvals). When the call has run,
the intensity it ran at is kept here beside what the forecast expected and what running at once would have cost.

    waiting ──clock reaches run_at──► resumed (the call ran; ran_at, ran_intensity recorded)
       └────released by a person────┘
"""

from __future__ import annotations

import builtins
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import JSON, DateTime, Float, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import ApprovalError
from pipelines.ledger import Base, Ledger, as_utc, ensure_tables
from policies.approvals import claim_dead

DeferralStatus = Literal["waiting", "released", "resumed"]


class DeferralRow(Base):
    __tablename__ = "deferrals"

    call_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(120), index=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tool: Mapped[str] = mapped_column(String(80))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), index=True)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    wake_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), doc="run_at on the wall clock")
    expected_intensity: Mapped[float | None] = mapped_column(Float, nullable=True)
    now_intensity: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    released_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    released_reason: Mapped[str] = mapped_column(Text, default="")
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True, doc="host:pid resuming the thread")
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ran_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ran_intensity: Mapped[float | None] = mapped_column(Float, nullable=True)
    ran_intensity_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)


class DeferredCall(BaseModel):
    """A tool call waiting for (or run at) the greenest window; times are the platform clock's."""

    call_id: str
    thread_id: str
    incident_id: int | None
    tool: str
    arguments: dict[str, Any]
    status: DeferralStatus
    due_at: datetime = Field(description="When the call was ready to run")
    run_at: datetime = Field(description="The start of the greenest window it waits for")
    wake_at: datetime = Field(description="run_at on the wall clock (the same instant unless the platform replays data)")
    expected_intensity: float | None = Field(description="Forecast mean over the window, gCO2/kWh")
    now_intensity: float | None = Field(description="Forecast mean had it run when due, gCO2/kWh")
    reason: str
    released_by: str | None = None
    released_reason: str = ""
    ran_at: datetime | None = None
    ran_intensity: float | None = Field(default=None, description="The intensity of the slot it ran in, gCO2/kWh")
    ran_intensity_kind: str | None = Field(default=None, description="actual (measured), forecast or unknown")

    @classmethod
    def of(cls, row: DeferralRow) -> DeferredCall:
        fields = {name: getattr(row, name) for name in cls.model_fields}
        for name in ("due_at", "run_at", "wake_at", "ran_at"):
            fields[name] = as_utc(fields[name])
        return cls.model_validate(fields)

    def due(self, now: datetime, wall_now: datetime | None = None) -> bool:
        """The thread may run on: the window has come on both clocks, or a person released the call."""
        came = self.run_at <= now and self.wake_at <= (wall_now or datetime.now(UTC))
        return self.status == "released" or (self.status == "waiting" and came)


class DeferralStore:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        ensure_tables(ledger.engine, [DeferralRow.__table__])  # type: ignore[list-item]

    def defer(
        self,
        *,
        call_id: str,
        thread_id: str,
        incident_id: int | None,
        tool: str,
        arguments: dict[str, Any],
        due_at: datetime,
        run_at: datetime,
        wake_at: datetime,
        expected_intensity: float | None,
        now_intensity: float | None,
        reason: str,
    ) -> tuple[DeferredCall, bool]:
        """The deferral of this call, recorded if new (a resumed review finds the first one); returns (deferral, created)."""
        with self._ledger.session() as s, s.begin():
            row = s.get(DeferralRow, call_id)
            if row is not None:
                return DeferredCall.of(row), False
            row = DeferralRow(
                call_id=call_id, thread_id=thread_id, incident_id=incident_id, tool=tool, arguments=arguments, status="waiting",
                due_at=due_at, run_at=run_at, wake_at=wake_at, expected_intensity=expected_intensity, now_intensity=now_intensity, reason=reason,
                released_reason="",
            )  # fmt: skip
            s.add(row)
            s.flush()
            return DeferredCall.of(row), True

    def for_call(self, call_id: str) -> DeferredCall | None:
        with self._ledger.session() as s:
            row = s.get(DeferralRow, call_id)
            return DeferredCall.of(row) if row is not None else None

    def get(self, call_id: str) -> DeferredCall:
        deferral = self.for_call(call_id)
        if deferral is None:
            raise ApprovalError(f"no deferred call {call_id!r}; `dataops deferred list` shows them")
        return deferral

    def list(self, *, status: str | None = None, limit: int = 100) -> builtins.list[DeferredCall]:
        with self._ledger.session() as s:
            query = select(DeferralRow).order_by(DeferralRow.due_at.desc()).limit(limit)
            if status:
                query = query.where(DeferralRow.status == status)
            return [DeferredCall.of(r) for r in s.scalars(query)]

    def release(self, call_id: str, *, by: str, reason: str = "") -> DeferredCall:
        """Let a waiting call run now instead of at its window. Raises ApprovalError when it is not waiting."""
        with self._ledger.session() as s, s.begin():
            changed = s.execute(
                update(DeferralRow)
                .where(DeferralRow.call_id == call_id, DeferralRow.status == "waiting")
                .values(status="released", released_by=by, released_reason=reason)
            )
            won = getattr(changed, "rowcount", 0) == 1
        current = self.get(call_id)
        if not won:
            raise ApprovalError(f"{call_id} is not waiting any more ({current.status}); nothing to release")
        return current

    def due(self, now: datetime, wall_now: datetime | None = None) -> builtins.list[DeferredCall]:
        """Deferrals whose thread should run on now (`DeferredCall.due`, the one rule), oldest window first."""
        with self._ledger.session() as s:
            rows = s.scalars(
                select(DeferralRow)
                .where(DeferralRow.resumed_at.is_(None), DeferralRow.status.in_(("waiting", "released")))
                .order_by(DeferralRow.run_at)
            )
            return [d for d in map(DeferredCall.of, rows) if d.due(now, wall_now)]

    def claim(self, call_id: str, *, stale_after: timedelta = timedelta(minutes=30)) -> bool:
        """Take the right to resume the call's thread: one process does, even when several try (as for approvals)."""
        me = f"{socket.gethostname()}:{os.getpid()}"
        now = datetime.now(UTC)
        with self._ledger.session() as s, s.begin():
            row = s.get(DeferralRow, call_id)
            if row is None or row.resumed_at is not None:
                return False
            holder, since = row.claimed_by, as_utc(row.claimed_at)
            if holder and holder != me and not claim_dead(holder) and since is not None and now - since < stale_after:
                return False
            held = DeferralRow.claimed_by.is_(None) if holder is None else DeferralRow.claimed_by == holder
            changed = s.execute(
                update(DeferralRow)
                .where(DeferralRow.call_id == call_id, DeferralRow.resumed_at.is_(None), held)
                .values(claimed_by=me, claimed_at=now)
            )
            return getattr(changed, "rowcount", 0) == 1

    def mark_resumed(self, call_id: str) -> None:
        with self._ledger.session() as s, s.begin():
            s.execute(update(DeferralRow).where(DeferralRow.call_id == call_id).values(status="resumed", resumed_at=datetime.now(UTC)))

    def ran(self, call_id: str, *, at: datetime, intensity: float | None, kind: str) -> None:
        """Keep the intensity of the slot the deferred call ran in."""
        with self._ledger.session() as s, s.begin():
            s.execute(
                update(DeferralRow)
                .where(DeferralRow.call_id == call_id)
                .values(ran_at=at, ran_intensity=intensity, ran_intensity_kind=kind)
            )
