"""Where Slack things live in the ops database: the thread of each incident or chat, and seen event ids.

A thread root is remembered so status changes update it in place and the agent's steps go into it, and
so a restarted app keeps using the same threads. Event ids are remembered so Slack's retries of an event
(it retries when we answer slowly) reach the agent once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import DateTime, String, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from pipelines.ledger import Base, Ledger, ensure_tables

EVENT_MEMORY = timedelta(days=2)


class SlackThreadRow(Base):
    __tablename__ = "slack_threads"

    key: Mapped[str] = mapped_column(String(200), primary_key=True, doc="agent thread id: incident-12 or slack-C1-1700.0001")
    channel: Mapped[str] = mapped_column(String(40))
    ts: Mapped[str] = mapped_column(String(40), doc="ts of the thread's root message")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SlackEventRow(Base):
    __tablename__ = "slack_events"

    event_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SlackThread(BaseModel):
    key: str
    channel: str
    ts: str


class SlackStore:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        ensure_tables(ledger.engine, [SlackThreadRow.__table__, SlackEventRow.__table__])  # type: ignore[list-item]

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def thread(self, key: str) -> SlackThread | None:
        with self._ledger.session() as s:
            row = s.get(SlackThreadRow, key)
            return SlackThread(key=row.key, channel=row.channel, ts=row.ts) if row else None

    def remember_thread(self, key: str, channel: str, ts: str) -> SlackThread:
        """Remember a thread root; if another poster won the race, theirs is kept and returned."""
        try:
            with self._ledger.session() as s, s.begin():
                s.add(SlackThreadRow(key=key, channel=channel, ts=ts, created_at=datetime.now(UTC)))
        except IntegrityError:
            existing = self.thread(key)
            assert existing is not None
            return existing
        return SlackThread(key=key, channel=channel, ts=ts)

    def first_sight(self, event_id: str) -> bool:
        """True the first time an event id is seen; Slack's retries of it get False."""
        now = datetime.now(UTC)
        try:
            with self._ledger.session() as s, s.begin():
                s.execute(delete(SlackEventRow).where(SlackEventRow.seen_at < now - EVENT_MEMORY))
                s.add(SlackEventRow(event_id=event_id, seen_at=now))
        except IntegrityError:
            return False
        return True
