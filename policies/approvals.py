"""Durable approval requests in the ops database.

A request is created (idempotently, per tool call) before the agent's graph pauses on `interrupt()`, with
its approvers frozen into it from the people registry (policies/people.py) of the process that asks. A
decision is taken atomically: the first one wins (`UPDATE ... WHERE status = 'pending'`), and it counts only
from an authenticated person (or member of a Slack group) who is in the frozen list *and* still holds the
approver role, who did not cause the request under any of their names; expired requests cannot be decided. The decision is recorded here *before* the
graph resumes, so a crash between the two loses nothing: at start-up the agent resumes every decided
request whose resume was never completed.

    pending ──approve──► approved ─┐
       │ ────deny─────► denied   ──┼──► resumed (the graph ran on)
       └──ttl passes──► expired  ──┘
"""

from __future__ import annotations

import builtins
import os
import secrets
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import JSON, DateTime, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import ApprovalError
from pipelines.ledger import Base, Ledger, add_missing_columns, as_utc, ensure_tables, pid_alive
from policies.people import Actor

ApprovalStatus = Literal["pending", "approved", "denied", "expired"]


class ApprovalRow(Base):
    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(120), unique=True)
    thread_id: Mapped[str] = mapped_column(String(120), index=True)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tool: Mapped[str] = mapped_column(String(80))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(String(80))
    approvers: Mapped[list[str]] = mapped_column(JSON, default=list)
    requested_by: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), index=True)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    decided_via: Mapped[str | None] = mapped_column(String(20), nullable=True, doc="channel of the decision: cli, slack, api")
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True, doc="host:pid resuming the thread")
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    channels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Approval(BaseModel):
    id: str
    call_id: str
    thread_id: str
    incident_id: int | None
    tool: str
    arguments: dict[str, Any]
    target: dict[str, Any]
    reason: str
    rule: str
    approvers: list[str]
    requested_by: str
    status: str
    requested_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str
    decided_via: str | None = None
    resumed_at: datetime | None
    channels: dict[str, Any]

    @classmethod
    def of(cls, row: ApprovalRow) -> Approval:
        fields = {name: getattr(row, name) for name in cls.model_fields}
        for name in ("requested_at", "expires_at", "decided_at", "resumed_at"):
            fields[name] = as_utc(fields[name])
        return cls.model_validate(fields)


class ApprovalStore:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        # The ledger creates the pipelines' tables; this layer's table is created here, once per process.
        ensure_tables(ledger.engine, [ApprovalRow.__table__])  # type: ignore[list-item]
        add_missing_columns(ledger.engine)  # decided_via, on databases made before it existed

    def request(
        self,
        *,
        call_id: str,
        thread_id: str,
        tool: str,
        arguments: dict[str, Any],
        target: dict[str, Any],
        reason: str,
        rule: str,
        approvers: list[str],
        requested_by: str,
        ttl: timedelta,
        incident_id: int | None = None,
    ) -> tuple[Approval, bool]:
        """The request for this tool call, created if new; returns (approval, created)."""
        with self._ledger.session() as s, s.begin():
            row = s.scalars(select(ApprovalRow).where(ApprovalRow.call_id == call_id)).first()
            if row is not None:
                return Approval.of(row), False
            now = datetime.now(UTC)
            row = ApprovalRow(
                id=f"A-{secrets.token_hex(3)}", call_id=call_id, thread_id=thread_id, incident_id=incident_id, tool=tool,
                arguments=arguments, target=target, reason=reason, rule=rule, approvers=list(approvers), requested_by=requested_by,
                status="pending", requested_at=now, expires_at=now + ttl, decision_reason="", channels={},
            )  # fmt: skip
            s.add(row)
            s.flush()
            return Approval.of(row), True

    def get(self, approval_id: str) -> Approval:
        with self._ledger.session() as s:
            row = s.get(ApprovalRow, approval_id)
            if row is None:
                raise ApprovalError(f"no approval request {approval_id!r}; `dataops approvals` lists them")
            return Approval.of(row)

    def for_call(self, call_id: str) -> Approval | None:
        with self._ledger.session() as s:
            row = s.scalars(select(ApprovalRow).where(ApprovalRow.call_id == call_id)).first()
            return Approval.of(row) if row else None

    def list(self, *, status: str | None = None, thread_id: str | None = None, limit: int = 100) -> list[Approval]:
        with self._ledger.session() as s:
            query = select(ApprovalRow).order_by(ApprovalRow.requested_at.desc()).limit(limit)
            if status:
                query = query.where(ApprovalRow.status == status)
            if thread_id:
                query = query.where(ApprovalRow.thread_id == thread_id)
            return [Approval.of(r) for r in s.scalars(query)]

    def decide(self, approval_id: str, *, approve: bool, by: Actor, reason: str = "") -> Approval:
        """Record a decision; the first valid one wins. Raises ApprovalError saying why a decision did not count."""
        current = self.get(approval_id)
        if current.requested_by in by.aliases | {by.id}:
            others = deciders(current, besides=by.aliases | {by.id})
            who = f"another approver must ({', '.join(others)})" if others else "no other approver is named on it, so it will expire"
            raise ApprovalError(f"{by.id} asked for {approval_id} (as {current.requested_by}) and may not decide it too; {who}")
        named = by.id in current.approvers or bool(set(by.groups) & set(current.approvers))
        if not named:
            raise ApprovalError(
                f"{by.id} may not decide {approval_id}; approvers: {_listed(deciders(current))} "
                "(frozen when the agent asked; people with role approver)"
            )
        if not by.may("approver"):
            raise ApprovalError(
                f"{by.id} may not decide {approval_id}: no longer an approver (role {by.role or 'none'} in config/people.yaml "
                f"or `dataops users list`); approvers: {_listed(deciders(current, besides=by.aliases | {by.id}))}"
            )
        now = datetime.now(UTC)
        if current.status == "pending" and current.expires_at <= now:
            self.expire_due(now)
            current = self.get(approval_id)
        with self._ledger.session() as s, s.begin():
            changed = s.execute(
                update(ApprovalRow)
                .where(ApprovalRow.id == approval_id, ApprovalRow.status == "pending")
                .values(
                    status="approved" if approve else "denied",
                    decided_by=by.id,
                    decided_via=by.channel,
                    decided_at=now,
                    decision_reason=reason,
                )
            )
            won = getattr(changed, "rowcount", 0) == 1
        decided = self.get(approval_id)
        if not won:
            if decided.status == "expired":
                raise ApprovalError(f"{approval_id} expired at {decided.expires_at.isoformat()} unanswered; the agent escalated instead")
            raise ApprovalError(f"{approval_id} was already {decided.status} by {decided.decided_by} at {_when(decided.decided_at)}")
        return decided

    def expire_due(self, now: datetime | None = None) -> builtins.list[Approval]:
        """Mark pending requests past their expiry as expired; returns them."""
        now = now or datetime.now(UTC)
        with self._ledger.session() as s, s.begin():
            due = s.scalars(select(ApprovalRow).where(ApprovalRow.status == "pending", ApprovalRow.expires_at <= now)).all()
            expired = []
            for row in due:
                row.status, row.decided_by, row.decided_at, row.decision_reason = "expired", "system", now, "no decision before expiry"
                expired.append(Approval.of(row))
            return expired

    def unresumed(self) -> builtins.list[Approval]:
        """Decided requests whose graph has not run on yet: resumed at start-up and after each decision."""
        with self._ledger.session() as s:
            rows = s.scalars(
                select(ApprovalRow)
                .where(ApprovalRow.status != "pending", ApprovalRow.resumed_at.is_(None))
                .order_by(ApprovalRow.decided_at)
            )
            return [Approval.of(r) for r in rows]

    def claim(self, approval_id: str, *, stale_after: timedelta = timedelta(minutes=30)) -> bool:
        """Take the right to resume a decided request's thread: one process resumes it, even when several try.

        A claim by a dead process on this host, or older than `stale_after`, is taken over: that is the
        start-up replay of a decision whose resume was interrupted.
        """
        me = f"{socket.gethostname()}:{os.getpid()}"
        now = datetime.now(UTC)
        with self._ledger.session() as s, s.begin():
            row = s.get(ApprovalRow, approval_id)
            if row is None or row.resumed_at is not None or row.status == "pending":
                return False
            holder, since = row.claimed_by, as_utc(row.claimed_at)
            if holder and holder != me and not claim_dead(holder) and since is not None and now - since < stale_after:
                return False
            changed = s.execute(
                update(ApprovalRow)
                .where(ApprovalRow.id == approval_id, ApprovalRow.resumed_at.is_(None), _same_claim(holder))
                .values(claimed_by=me, claimed_at=now)
            )
            return getattr(changed, "rowcount", 0) == 1

    def mark_resumed(self, approval_id: str) -> None:
        with self._ledger.session() as s, s.begin():
            s.execute(update(ApprovalRow).where(ApprovalRow.id == approval_id).values(resumed_at=datetime.now(UTC)))

    def set_channel(self, approval_id: str, channel: str, ref: dict[str, Any]) -> None:
        """Remember where a request was posted (e.g. a Slack message), so the post can be updated later."""
        with self._ledger.session() as s, s.begin():
            row = s.get(ApprovalRow, approval_id)
            if row is not None:
                row.channels = {**row.channels, channel: ref}


def deciders(approval: Approval, *, besides: Iterable[str] = ()) -> list[str]:
    """The names of the request's frozen approvers who may decide it: never its requester (under their name or
    `person:` alias), nor `besides` (a refused decider's names). Whether each still holds the approver role is the
    people registry's to say when they decide."""
    excluded = {approval.requested_by, *besides}
    return [name for name in approval.approvers if name not in excluded and f"person:{name}" not in excluded]


def _listed(names: list[str]) -> str:
    return ", ".join(names) or "none who may decide it"


def _same_claim(holder: str | None) -> Any:
    return ApprovalRow.claimed_by.is_(None) if holder is None else ApprovalRow.claimed_by == holder


def claim_dead(holder: str) -> bool:
    """The process named `host:pid` holding a claim is gone (only decidable on this host)."""
    host, _, pid = holder.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def _when(at: datetime | None) -> str:
    return at.isoformat() if at else "an unknown time"
