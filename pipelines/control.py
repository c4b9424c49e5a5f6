"""Operational control of pipelines: pause and resume, watermarks, and one run at a time.

Pause state and watermarks live in the ops database, so the CLI, the service and (later) the agent all
see the same switch. "One run of a pipeline at a time" is an exclusive file lock in `$DATAOPS_HOME/locks`,
held by the running process: it works across processes and is released by the OS if the process dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Boolean, DateTime, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from config.errors import PipelineError
from pipelines.ledger import Base, Ledger, _aware


class PipelineStateRow(Base):
    __tablename__ = "pipeline_state"

    pipeline: Mapped[str] = mapped_column(String(80), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    changed_by: Mapped[str] = mapped_column(String(120), default="")
    changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


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
            return _aware(row.watermark) if row else None

    def set_watermark(self, pipeline: str, value: datetime) -> None:
        with self._ledger.session() as s, s.begin():
            self._row(s, pipeline).watermark = value

    @contextmanager
    def table_lock(self, table: str) -> Iterator[None]:
        """Serialise writers of one table across threads and processes (gold marts have several feeders).

        Write-audit-publish would detect the conflict anyway and re-plan; the lock saves the wasted work.
        """
        self._locks.mkdir(parents=True, exist_ok=True)
        with (self._locks / f"table-{table}.lock").open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def exclusive(self, pipeline: str) -> Iterator[None]:
        """Hold the pipeline's run lock; raises PipelineBusyError at once if another process holds it."""
        self._locks.mkdir(parents=True, exist_ok=True)
        path = self._locks / f"{pipeline}.lock"
        handle = path.open("a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise PipelineBusyError(f"pipeline {pipeline} is already running ({holder}); wait for it or pause it") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
            yield
        finally:
            handle.close()
