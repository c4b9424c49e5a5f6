"""Chat threads of the console, kept in the ops database: one thread per conversation, owned by the person who
started it. Each turn is what the person asked or what the agent answered, with the approval a turn waits on.

The agent keeps its own memory of a thread (LangGraph's checkpoint, under the same thread id); this keeps what
the page shows, so a thread reads the same after a restart and without loading the agent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import DateTime, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from pipelines.ledger import Base, Ledger, as_utc, ensure_tables

Speaker = Literal["person", "agent"]
THREAD_PREFIX = "chat-console-"


class TurnRow(Base):
    __tablename__ = "console_chat_turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(String(64), index=True)
    person: Mapped[str] = mapped_column(String(64), index=True, doc="Who owns the thread (who started it)")
    speaker: Mapped[str] = mapped_column(String(10))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="", doc="The agent's turn: done, waiting or busy")
    approval_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, kw_only=True)
class Turn:
    thread_id: str
    speaker: Speaker
    text: str
    status: str
    approval_id: str | None
    at: datetime


@dataclass(frozen=True, kw_only=True)
class ThreadSummary:
    thread_id: str
    first: str
    turns: int
    last_at: datetime


class ConversationStore:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        ensure_tables(ledger.engine, [TurnRow.__table__])  # type: ignore[list-item]

    @staticmethod
    def new_thread_id() -> str:
        return THREAD_PREFIX + secrets.token_hex(4)

    def add(self, thread_id: str, *, person: str, speaker: Speaker, text: str, status: str = "", approval_id: str | None = None) -> None:
        with self._ledger.session() as s, s.begin():
            s.add(
                TurnRow(
                    thread_id=thread_id, person=person, speaker=speaker, text=text, status=status, approval_id=approval_id,
                    at=datetime.now(UTC),
                )
            )  # fmt: skip

    def owner(self, thread_id: str) -> str | None:
        with self._ledger.session() as s:
            return s.scalars(select(TurnRow.person).where(TurnRow.thread_id == thread_id).limit(1)).first()

    def turns(self, thread_id: str) -> list[Turn]:
        with self._ledger.session() as s:
            rows = s.scalars(select(TurnRow).where(TurnRow.thread_id == thread_id).order_by(TurnRow.id)).all()
            return [
                Turn(
                    thread_id=r.thread_id,
                    speaker="agent" if r.speaker == "agent" else "person",
                    text=r.text,
                    status=r.status,
                    approval_id=r.approval_id,
                    at=as_utc(r.at) or r.at,
                )
                for r in rows
            ]

    def threads(self, person: str) -> list[ThreadSummary]:
        """The person's threads, the latest first."""
        with self._ledger.session() as s:
            stats = s.execute(
                select(TurnRow.thread_id, func.min(TurnRow.id), func.count(), func.max(TurnRow.at))
                .where(TurnRow.person == person)
                .group_by(TurnRow.thread_id)
                .order_by(func.max(TurnRow.id).desc())
            ).all()
            firsts = {r.id: r.text for r in s.scalars(select(TurnRow).where(TurnRow.id.in_([row[1] for row in stats])))}
        return [
            ThreadSummary(thread_id=t, first=firsts.get(first, ""), turns=n, last_at=as_utc(last) or last) for t, first, n, last in stats
        ]
