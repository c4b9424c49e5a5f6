"""The manifest of dropped files already ingested, by content hash, in the ops database.

A file is ingested once: a run skips a file whose content (SHA-256) a finished run already landed or
quarantined, whatever its name now is. A file whose content changed is a new version and is read again; its
records are then later revisions of the same keys, so the latest wins in silver. A file is recorded only
after the run that read it has put its rows in bronze and quarantine (`record` is called at the end of the
run), so a run killed before that reads the file again next time and loses nothing.

The file's name, size, modification time and inode are kept as a fingerprint: a file whose fingerprint a
manifest row matches is skipped without being hashed again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, String, select
from sqlalchemy.orm import Mapped, mapped_column

from pipelines.ledger import Base, Ledger, ensure_tables
from pipelines.sources.base import DropFile


class DropFileRow(Base):
    __tablename__ = "drop_files"

    source: Mapped[str] = mapped_column(String(80), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[str] = mapped_column(String(80))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DropManifest:
    """Reads and writes the `drop_files` table of the ops database."""

    def __init__(self, ledger: Ledger) -> None:
        self._engine = ledger.engine
        ensure_tables(self._engine, [DropFileRow.__table__])  # type: ignore[list-item]

    def known_fingerprint(self, *, source: str, name: str, size: int, mtime_ns: int, inode: int) -> str | None:
        """The content hash of a recorded file with exactly this name, size, mtime and inode, if any."""
        query = select(DropFileRow.sha256).where(
            DropFileRow.source == source,
            DropFileRow.name == name,
            DropFileRow.size == size,
            DropFileRow.mtime_ns == mtime_ns,
            DropFileRow.inode == inode,
        )
        with self._engine.connect() as conn:
            return conn.execute(query.limit(1)).scalar()

    def ingested_as(self, *, source: str, sha256: str) -> str | None:
        """The name under which a finished run ingested this content, if any."""
        query = select(DropFileRow.name).where(DropFileRow.source == source, DropFileRow.sha256 == sha256)
        with self._engine.connect() as conn:
            return conn.execute(query.limit(1)).scalar()

    def record(self, files: list[DropFile], *, run_id: str) -> None:
        """Remember files whose rows `run_id` has put in bronze or quarantine."""
        if not files:
            return
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            for f in files:
                key = {"source": f.source, "sha256": f.sha256, "name": f.name}
                values = {"size": f.size, "mtime_ns": f.mtime_ns, "inode": f.inode, "outcome": f.outcome}
                row = {**key, **values, "run_id": run_id, "recorded_at": now}
                exists = select(DropFileRow.name).where(*(getattr(DropFileRow, k) == v for k, v in key.items()))
                if conn.execute(exists).first() is None:
                    conn.execute(DropFileRow.__table__.insert().values(**row))  # type: ignore[attr-defined]
                else:
                    update = DropFileRow.__table__.update().where(*(getattr(DropFileRow, k) == v for k, v in key.items()))  # type: ignore[attr-defined]
                    conn.execute(update.values(**values, run_id=run_id, recorded_at=now))
