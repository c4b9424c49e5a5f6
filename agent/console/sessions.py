"""Console sign-in sessions, kept in the ops database so signing out (or removing a person) ends them everywhere.

The browser holds only a random session secret in an HttpOnly, SameSite=Strict cookie; the database keeps its
SHA-256, never the secret, with the person, how they signed in, and the session's CSRF token. Every form of
the console carries that CSRF token and every POST compares it (in constant time) with the session's: a page
of another site can neither read it nor, with SameSite=Strict, send the cookie at all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import DateTime, String, delete
from sqlalchemy.orm import Mapped, mapped_column

from pipelines.ledger import Base, Ledger, as_utc, ensure_tables

SESSION_LIFETIME = timedelta(hours=12)
SignedInBy = Literal["password", "token"]


class SessionRow(Base):
    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True, doc="SHA-256 of the cookie's secret")
    person: Mapped[str] = mapped_column(String(64), index=True)
    signed_in_by: Mapped[str] = mapped_column(String(20))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, kw_only=True)
class ConsoleSession:
    person: str
    signed_in_by: SignedInBy
    csrf: str
    expires_at: datetime

    def csrf_matches(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf.encode(), (sent or "").encode())


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class SessionStore:
    def __init__(self, ledger: Ledger, *, lifetime: timedelta = SESSION_LIFETIME) -> None:
        self._ledger = ledger
        self.lifetime = lifetime
        ensure_tables(ledger.engine, [SessionRow.__table__])  # type: ignore[list-item]

    def open(self, person: str, *, signed_in_by: SignedInBy) -> tuple[str, ConsoleSession]:
        """A new session; returns the secret for the cookie (the only copy) and the session."""
        secret, now = secrets.token_urlsafe(32), datetime.now(UTC)
        row = SessionRow(
            id=_key(secret),
            person=person,
            signed_in_by=signed_in_by,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.lifetime,
        )
        with self._ledger.session() as s, s.begin():
            s.execute(delete(SessionRow).where(SessionRow.expires_at <= now))  # tidy as we go: no timer needed
            s.add(row)
        return secret, self._of(row)

    def get(self, secret: str | None) -> ConsoleSession | None:
        """The live session of a cookie's secret, or None (unknown, expired, or signed out)."""
        if not secret:
            return None
        with self._ledger.session() as s:
            row = s.get(SessionRow, _key(secret))
            if row is None or (as_utc(row.expires_at) or datetime.min.replace(tzinfo=UTC)) <= datetime.now(UTC):
                return None
            return self._of(row)

    def close(self, secret: str | None) -> None:
        if secret:
            with self._ledger.session() as s, s.begin():
                s.execute(delete(SessionRow).where(SessionRow.id == _key(secret)))

    def close_all(self, person: str) -> int:
        """End every session of a person (a new password, a removal); returns how many there were."""
        with self._ledger.session() as s, s.begin():
            return int(getattr(s.execute(delete(SessionRow).where(SessionRow.person == person)), "rowcount", 0))

    @staticmethod
    def _of(row: SessionRow) -> ConsoleSession:
        expires = as_utc(row.expires_at)
        assert expires is not None
        return ConsoleSession(person=row.person, signed_in_by=row.signed_in_by, csrf=row.csrf, expires_at=expires)  # type: ignore[arg-type]
