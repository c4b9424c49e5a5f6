"""Operational control of pipelines: pause and resume, watermarks, and one run at a time.

Pause state and watermarks live in the ops database, so the CLI, the service and (later) the agent all
see the same switch. "One run of a pipeline at a time" is an exclusive file lock in `$DATAOPS_HOME/locks`
(`filelock`, on flock(2)), held by the running process: it works across threads and processes and is
released by the OS if the process dies. No soft-lock fallback: a lock that outlives a killed holder would
stop the pipeline until someone removed it by hand.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout
from sqlalchemy import Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import PipelineError
from pipelines.ledger import Base, Ledger, as_utc


class PipelineStateRow(Base):
    __tablename__ = "pipeline_state"

    pipeline: Mapped[str] = mapped_column(String(80), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    changed_by: Mapped[str] = mapped_column(String(120), default="")
    changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def pause_note(pipeline: str, by: str | None, reason: str | None) -> str:
    """A paused pipeline in one sentence, who paused it, why and how to resume it: `dataops status` and the agent say it alike."""
    return f"{pipeline} is paused by {by or '?'}: {reason or '(no reason given)'}; `dataops resume {pipeline}` resumes it"


class PipelineBusyError(PipelineError):
    """Another process is running this pipeline."""


class PipelineControl:
    def __init__(self, ledger: Ledger, home: Path) -> None:
        self._ledger = ledger
        self._locks = home / "locks"

    def _row(self, s: object, pipeline: str) -> PipelineStateRow:
        from sqlalchemy.orm import Session

        assert isinstance(s, Session)
        row = s.get(PipelineStateRow, pipeline)
        if row is None:
            row = PipelineStateRow(pipeline=pipeline, paused=False, reason="", changed_by="")
            s.add(row)
        return row

    def set_paused(self, pipeline: str, paused: bool, *, reason: str = "", actor: str = "cli") -> None:
        with self._ledger.session() as s, s.begin():
            row = self._row(s, pipeline)
            row.paused, row.reason, row.changed_by, row.changed_at = paused, reason, actor, datetime.now(UTC)

    def is_paused(self, pipeline: str) -> bool:
        with self._ledger.session() as s:
            row = s.get(PipelineStateRow, pipeline)
            return bool(row and row.paused)

    def states(self) -> dict[str, PipelineStateRow]:
        with self._ledger.session() as s:
            return {r.pipeline: r for r in s.query(PipelineStateRow).all()}

    def watermark(self, pipeline: str) -> datetime | None:
        with self._ledger.session() as s:
            row = s.get(PipelineStateRow, pipeline)
            return as_utc(row.watermark) if row else None

    def set_watermark(self, pipeline: str, value: datetime) -> None:
        with self._ledger.session() as s, s.begin():
            self._row(s, pipeline).watermark = value

    @contextmanager
    def table_lock(self, table: str) -> Iterator[None]:
        """Serialise writers of one table across threads and processes (gold marts have several feeders).

        Write-audit-publish would detect the conflict anyway and re-plan; the lock saves the wasted work.
        """
        self._locks.mkdir(parents=True, exist_ok=True)
        with FileLock(self._locks / f"table-{table}.lock", fallback_to_soft=False):
            yield

    @contextmanager
    def exclusive(self, pipeline: str) -> Iterator[None]:
        """Hold the pipeline's run lock; raises PipelineBusyError at once if another process holds it."""
        self._locks.mkdir(parents=True, exist_ok=True)
        path = self._locks / f"{pipeline}.lock"
        lock = FileLock(path, fallback_to_soft=False, on_acquired=_write_holder)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            holder = _read_holder(path) or "another process"
            raise PipelineBusyError(f"pipeline {pipeline} is already running ({holder}); wait for it or pause it") from None
        try:
            yield
        finally:
            lock.release()


def _write_holder(fd: int) -> None:
    """Say who holds the lock, in the lock file itself (filelock hands over its descriptor once it holds it)."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)


def _read_holder(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
