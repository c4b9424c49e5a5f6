"""The outbox: everything the platform sends to a neighbour is a row in the ops database first.

A neighbour that is down (Slack, the OpenLineage endpoint, a mail server) delays messages; it never loses
them, sends them twice, or stops the service. One queue per channel, delivered in the order enqueued::

    enqueue(channel, key, payload) ─► pending ─drain claims the head─► sending ─send answered─► sent (answer kept)
                                         ▲                               │
                                         └── DeliveryError(transient) ◄──┤  wait: the one backoff rule (pipelines/retry.py)
                                             `uncertain` if it may have  │  with jitter; Retry-After honoured
                                             arrived (a timeout)         └─ DeliveryError(permanent) ─► failed (error kept)

    A `sending` row whose process is gone (a crash) or whose lease ran out (10 minutes) is taken over as
    `uncertain`; an uncertain message is reconciled before it is sent again.

The API other modules rely on (keep it stable):

    outbox = Outbox(ledger)
    outbox.enqueue(channel, key, payload, *, group=None) -> OutboxMessage
        Idempotent on `key`: enqueueing a key already queued (or sent) returns the existing message and
        queues nothing. `payload` is JSON; `group` names a conversation (a Slack thread) for `latest()`.
    outbox.drain(channel, send, *, now=None, reconcile=None, backoff=None, block=True) -> DrainResult
        Deliver the channel's due messages, oldest first, until the queue is empty or one fails (the
        queue waits behind it, so an update never overtakes the message it updates).
        `send(message) -> dict` delivers one message and returns the neighbour's answer (kept in `result`);
        it raises `DeliveryError` (or anything else, taken as transient with an unknown outcome).
        `reconcile(message) -> dict | None` is asked before re-sending a message whose earlier attempt may
        have arrived: the answer if it did, None if it did not; it raises `DeliveryError` if it cannot tell.
    OutboxWorker(outbox, channel, send, *, reconcile=None, backoff=None)   (pipelines/outbox_worker.py)
        A daemon thread that drains the channel whenever `kick()`ed and when the next retry is due.

Exactly once: a message is claimed (`sending`, committed) before `send`, and marked `sent` after it. A
crash or a failed mark in between leaves it `sending`; once its process is gone or its lease is over, the
next drain asks `reconcile` (Slack: the message's outbox key is in its metadata, searched in the channel's
history) and re-sends only if nothing arrived. A channel without `reconcile` accepts one duplicate in that
window (logged as such); updates that are idempotent by nature (Slack's chat.update) need none. Two
drains never send the same row at once: the claim is a conditional UPDATE, and a row in flight (its
process alive, its lease running) is left alone.

Errors::

    DataOpsError
    └── DeliveryError     a message was not delivered: `transient` (retry later, `retry_after_s`) or permanent;
                          `maybe_delivered` when the neighbour may have received it anyway (a timeout)

Metrics: `dataops_notifier_up{channel}` (1 after a delivery the neighbour answered, 0 while it fails) and
`dataops_outbox_pending{channel}` (messages not yet delivered).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import DataOpsError
from pipelines import metrics
from pipelines.ledger import Base, Ledger, ensure_tables
from pipelines.outbox_backoff import DEFAULT_BACKOFF
from pipelines.retry import Backoff

log = logging.getLogger(__name__)
Status = Literal["pending", "sending", "sent", "failed"]
WAITING: tuple[Status, ...] = ("pending", "sending")
LEASE = timedelta(minutes=10)  # a claim older than this is taken over: far longer than any send may take


class DeliveryError(DataOpsError):
    """A message was not delivered; `transient` ones are retried, permanent ones marked failed so the queue moves on."""

    def __init__(self, message: str, *, transient: bool = True, retry_after_s: float | None = None, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after_s = retry_after_s
        self.maybe_delivered = maybe_delivered


class OutboxRow(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True, doc="delivery order within a channel")
    channel: Mapped[str] = mapped_column(String(40), index=True)
    key: Mapped[str] = mapped_column(String(255), unique=True, doc="idempotency key: one message per key, ever")
    group: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True, doc="conversation, e.g. a Slack thread key")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True, doc="the neighbour's answer, e.g. Slack's ts")
    owner: Mapped[str | None] = mapped_column(String(120), nullable=True, doc="host:pid of the process that claimed it")
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    uncertain: Mapped[bool] = mapped_column(Boolean, default=False, doc="an earlier attempt may have arrived: reconcile first")


class OutboxMessage(BaseModel):
    """One queued message as `send` and `reconcile` see it."""

    model_config = ConfigDict(frozen=True)

    id: int
    channel: str
    key: str
    group: str | None
    payload: dict[str, Any]
    status: Status
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None = None
    last_error: str | None = None
    result: dict[str, Any] | None = None
    uncertain: bool = False

    @classmethod
    def of(cls, row: OutboxRow) -> OutboxMessage:
        return cls(
            id=row.id, channel=row.channel, key=row.key, group=row.group, payload=row.payload, status=row.status,  # type: ignore[arg-type]
            attempts=row.attempts, next_attempt_at=as_utc(row.next_attempt_at), created_at=as_utc(row.created_at),
            sent_at=as_utc(row.sent_at) if row.sent_at else None, last_error=row.last_error, result=row.result,
            uncertain=bool(row.uncertain),
        )  # fmt: skip


class DrainResult(BaseModel):
    """What one `drain` did: messages sent and failed for good, what still waits, and when to try again."""

    sent: int = 0
    failed: int = 0
    pending: int = 0
    next_attempt_at: datetime | None = None
    busy: bool = False


Send = Callable[[OutboxMessage], dict[str, Any]]
Reconcile = Callable[[OutboxMessage], dict[str, Any] | None]


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _live(owner: str | None) -> bool:
    """Whether the process that claimed a message may still be sending it (another host's: assumed so, until the lease ends)."""
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Outbox:
    """The queues of every channel in the ops database; see the module docstring."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        ensure_tables(ledger.engine, [OutboxRow.__table__])  # type: ignore[list-item]
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- queueing ----------------------------------------------------------------------------------------
    def enqueue(self, channel: str, key: str, payload: dict[str, Any], *, group: str | None = None) -> OutboxMessage:
        """Queue `payload` for `channel` under `key`; a key seen before returns its message and queues nothing."""
        existing = self.get(key)
        if existing is not None:
            return existing
        now = datetime.now(UTC)
        row = OutboxRow(
            channel=channel, key=key, group=group, payload=payload, status="pending", attempts=0, next_attempt_at=now, created_at=now
        )
        try:
            with self._ledger.session() as s, s.begin():
                s.add(row)
        except IntegrityError:  # another thread or process queued the same key first
            found = self.get(key)
            assert found is not None, key
            return found
        self._gauge(channel)
        return OutboxMessage.of(row)

    def get(self, key: str) -> OutboxMessage | None:
        with self._ledger.session() as s:
            row = s.scalar(select(OutboxRow).where(OutboxRow.key == key))
            return OutboxMessage.of(row) if row else None

    def latest(self, channel: str, group: str) -> OutboxMessage | None:
        """The last message queued in `group` (any status): callers skip queueing an identical one."""
        with self._ledger.session() as s:
            row = s.scalar(
                select(OutboxRow).where(OutboxRow.channel == channel, OutboxRow.group == group).order_by(OutboxRow.id.desc()).limit(1)
            )
            return OutboxMessage.of(row) if row else None

    def messages(self, channel: str, *, status: Status | None = None) -> list[OutboxMessage]:
        """The channel's messages in delivery order, of one status if given."""
        with self._ledger.session() as s:
            query = select(OutboxRow).where(OutboxRow.channel == channel).order_by(OutboxRow.id)
            if status is not None:
                query = query.where(OutboxRow.status == status)
            return [OutboxMessage.of(r) for r in s.scalars(query)]

    def pending(self, channel: str) -> int:
        """Messages of `channel` not yet delivered (pending, or sending with an unknown outcome)."""
        with self._ledger.session() as s:
            return int(s.scalar(select(func.count()).where(OutboxRow.channel == channel, OutboxRow.status.in_(WAITING))) or 0)

    # -- delivering --------------------------------------------------------------------------------------
    def drain(
        self,
        channel: str,
        send: Send,
        *,
        now: datetime | None = None,
        reconcile: Reconcile | None = None,
        backoff: Backoff | None = None,
        block: bool = True,
    ) -> DrainResult:
        """Deliver `channel`'s due messages in order; stop at the first that fails and schedule its retry.

        `block=False` returns at once (`busy`) when another thread of this process is draining the channel:
        that drain delivers what was queued meanwhile.
        """
        lock = self._lock(channel)
        if not lock.acquire(blocking=block):
            return DrainResult(busy=True, pending=self.pending(channel))
        try:
            return self._drain(channel, send, now=now, reconcile=reconcile, backoff=backoff or DEFAULT_BACKOFF)
        finally:
            lock.release()
            self._gauge(channel)

    def _drain(self, channel: str, send: Send, *, now: datetime | None, reconcile: Reconcile | None, backoff: Backoff) -> DrainResult:
        done = DrainResult()
        while True:
            at = now or datetime.now(UTC)
            head = self._head(channel)
            if head is None:
                return done
            if head.status == "pending" and head.next_attempt_at > at:
                return done.model_copy(update={"pending": self.pending(channel), "next_attempt_at": head.next_attempt_at})
            claimed = self._claim(head, at=at)
            if claimed is None:  # in flight in another process (or another Outbox of this one)
                return done.model_copy(update={"pending": self.pending(channel), "busy": True})
            checked = [False]
            try:
                answer = self._deliver(claimed, send, reconcile, checked)
            except Exception as exc:
                if not isinstance(exc, DeliveryError):  # an unexpected error of the channel: its outcome is unknown
                    log.warning("%s: sending %s failed unexpectedly: %r", channel, claimed.key, exc)
                    exc = DeliveryError(repr(exc), maybe_delivered=True)
                # Still uncertain if an earlier attempt may have arrived and the check did not say it had not.
                uncertain = exc.maybe_delivered or (claimed.uncertain and not checked[0])
                if self._failed(claimed, exc, at=at, backoff=backoff, uncertain=uncertain):
                    done = done.model_copy(update={"failed": done.failed + 1})
                    continue
                return done.model_copy(update={"pending": self.pending(channel), "next_attempt_at": self._due(claimed.key)})
            metrics.NOTIFIER_UP.labels(channel).set(1)
            self._mark_sent(claimed, answer)
            done = done.model_copy(update={"sent": done.sent + 1})

    def _deliver(self, message: OutboxMessage, send: Send, reconcile: Reconcile | None, checked: list[bool]) -> dict[str, Any]:
        if message.uncertain:  # an earlier attempt may have arrived
            if reconcile is not None:
                found = reconcile(message)
                checked[0] = True
                if found is not None:
                    log.info("%s: %s had arrived before; not sending it again", message.channel, message.key)
                    return found
            else:
                log.warning("%s: %s may have arrived already and this channel cannot check; sending it again", message.channel, message.key)
        return send(message)

    def _head(self, channel: str) -> OutboxMessage | None:
        """The oldest undelivered message of `channel`."""
        with self._ledger.session() as s:
            row = s.scalar(
                select(OutboxRow).where(OutboxRow.channel == channel, OutboxRow.status.in_(WAITING)).order_by(OutboxRow.id).limit(1)
            )
            return OutboxMessage.of(row) if row else None

    def _claim(self, message: OutboxMessage, *, at: datetime) -> OutboxMessage | None:
        """Mark the message `sending` (committed) before it is sent; None if it is in flight elsewhere.

        A `sending` message is in flight unless the process that claimed it is gone or its lease ran out (a
        crash, or a delivery whose mark failed): then it is taken over as uncertain, to be reconciled first.
        """
        with self._ledger.session() as s, s.begin():
            row = s.get(OutboxRow, message.id)
            if row is None or row.status not in WAITING:
                return None
            found = OutboxMessage.of(row)
            taken_over = found.status == "sending"
            if taken_over and _live(row.owner) and row.claimed_at is not None and as_utc(row.claimed_at) + LEASE > at:
                return None
            claim = {"status": "sending", "attempts": found.attempts + 1, "uncertain": found.uncertain or taken_over}
            claimed = s.execute(
                update(OutboxRow)
                .where(OutboxRow.id == found.id, OutboxRow.status == found.status, OutboxRow.attempts == found.attempts)
                .values(owner=_me(), claimed_at=at, **claim)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return found.model_copy(update=claim)

    def _failed(self, message: OutboxMessage, exc: DeliveryError, *, at: datetime, backoff: Backoff, uncertain: bool) -> bool:
        """Record a failed attempt; True when the message failed for good (the queue moves on)."""
        metrics.NOTIFIER_UP.labels(message.channel).set(0 if exc.transient else 1)
        values: dict[str, Any] = {"last_error": str(exc)[:2000]}
        if exc.transient:
            wait = backoff.wait(message.attempts, retry_after_s=exc.retry_after_s, seed=message.key)
            values |= {"status": "pending", "uncertain": uncertain, "next_attempt_at": at + timedelta(seconds=wait)}
            log.warning(
                "%s: %s not delivered (attempt %d: %s); next try in %.1f s", message.channel, message.key, message.attempts, exc, wait
            )
        else:
            values |= {"status": "failed"}
            log.error("%s: %s cannot be delivered and is dropped from the queue: %s", message.channel, message.key, exc)
        with self._ledger.session() as s, s.begin():
            s.execute(update(OutboxRow).where(OutboxRow.id == message.id).values(**values))
        return not exc.transient

    def _mark_sent(self, message: OutboxMessage, answer: dict[str, Any]) -> None:
        try:
            with self._ledger.session() as s, s.begin():
                s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == message.id)
                    .values(status="sent", sent_at=datetime.now(UTC), result=answer, last_error=None, uncertain=False)
                )
        except SQLAlchemyError:
            # Left `sending`: the next drain reconciles it instead of sending it blindly.
            log.exception("%s: %s was delivered but could not be marked sent; it will be reconciled", message.channel, message.key)
            raise

    def _due(self, key: str) -> datetime | None:
        found = self.get(key)
        return found.next_attempt_at if found else None

    def _lock(self, channel: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(channel, threading.Lock())

    def _gauge(self, channel: str) -> None:
        try:
            metrics.OUTBOX_PENDING.labels(channel).set(self.pending(channel))
        except SQLAlchemyError:
            log.debug("outbox gauge of %s not updated", channel, exc_info=True)
