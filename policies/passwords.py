"""Console passwords of the people of the registry (policies/people.py), stored as argon2id hashes.

A person, whether declared in config/people.yaml or added with `dataops users add`, may have one password
(`dataops users password NAME`); it signs them in to the console and nowhere else (the CLI knows people by
their OS login or token). Its own table, apart from `people`, so people of the file can have one too and
databases made before passwords existed need no migration: `ensure_tables` creates it.

A hash records its own parameters; one made with weaker parameters than the current defaults is replaced the
next time its password is checked (`check` returns True and rehashes).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, String, delete
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import IdentityError
from pipelines.ledger import Base, Ledger, ensure_tables

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 hashes anything, but a megabyte "password" is a denial of service, not a secret
# A hash to check against when the name has no password: the same work either way, so timing does not tell
# a guesser which names exist.
_DUMMY_PASSWORD = "no password is set for this name"


class PasswordRow(Base):
    __tablename__ = "person_passwords"

    person: Mapped[str] = mapped_column(String(64), primary_key=True)
    hash: Mapped[str] = mapped_column(String(255))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def check_strength(password: str, *, name: str) -> None:
    """Raise IdentityError naming what is wrong with a new password."""
    if len(password) < MIN_LENGTH:
        raise IdentityError(f"the password has {len(password)} characters; at least {MIN_LENGTH} are needed")
    if len(password) > MAX_LENGTH:
        raise IdentityError(f"the password has {len(password)} characters; at most {MAX_LENGTH} are allowed")
    if password.strip().lower() == name.lower():
        raise IdentityError("the password is the person's name; choose another")


class PasswordStore:
    """Set, check and remove console passwords; argon2-cffi is imported when one is hashed or checked."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        ensure_tables(ledger.engine, [PasswordRow.__table__])  # type: ignore[list-item]
        self._dummy: str | None = None

    def set(self, name: str, password: str) -> None:
        """Store `password` for `name`, replacing any earlier one; the caller checked that `name` is a person."""
        from argon2 import PasswordHasher

        check_strength(password, name=name)
        self._write(name, PasswordHasher().hash(password))

    def _write(self, name: str, digest: str) -> None:
        with self._ledger.session() as s, s.begin():
            row = s.get(PasswordRow, name) or PasswordRow(person=name)
            row.hash, row.set_at = digest, datetime.now(UTC)
            s.add(row)

    def remove(self, name: str) -> bool:
        with self._ledger.session() as s, s.begin():
            return getattr(s.execute(delete(PasswordRow).where(PasswordRow.person == name)), "rowcount", 0) == 1

    def has(self, name: str) -> bool:
        with self._ledger.session() as s:
            return s.get(PasswordRow, name) is not None

    def check(self, name: str, password: str) -> bool:
        """True if `password` is `name`'s; as slow for a name without a password as for a wrong one."""
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        hasher = PasswordHasher()
        with self._ledger.session() as s:
            row = s.get(PasswordRow, name)
            stored = row.hash if row is not None else None
        if stored is None or len(password) > MAX_LENGTH:
            if self._dummy is None:
                self._dummy = hasher.hash(_DUMMY_PASSWORD)
            try:
                hasher.verify(self._dummy, password[:MAX_LENGTH] + "\0")
            except VerificationError:
                pass
            return False
        try:
            hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        if hasher.check_needs_rehash(stored):
            self._write(name, hasher.hash(password))
        return True
