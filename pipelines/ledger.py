"""The ops database: run ledger, per-expectation validation results, data-quality scores and marts' pending days.

SQLite in `$DATAOPS_HOME/ops.db` by default, any SQLAlchemy URL (Postgres) by `DATAOPS_OPS_DB_URL`.
A run is recorded `running` before it touches a table, so a killed process leaves a trace; the next run of
the same pipeline marks such a run `abandoned` when its process is gone.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, delete, event, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.schema import Table

RUN_STATUSES = ("running", "succeeded", "quarantined", "failed", "abandoned")


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(80), index=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    rows_in: Mapped[int] = mapped_column(Integer, default=0)
    rows_out: Mapped[int] = mapped_column(Integer, default=0)
    rows_quarantined: Mapped[int] = mapped_column(Integer, default=0)
    snapshots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    held_days: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    recovered_by: Mapped[str | None] = mapped_column(String(80), nullable=True, doc="run that re-ran an abandoned run's window")
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)


class ValidationRow(Base):
    __tablename__ = "validation_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    table_name: Mapped[str] = mapped_column(String(120), index=True)
    suite: Mapped[str] = mapped_column(String(80))
    expectation: Mapped[str] = mapped_column(String(120))
    expectation_type: Mapped[str] = mapped_column(String(120))
    scope: Mapped[str] = mapped_column(String(20))
    success: Mapped[bool] = mapped_column()
    element_count: Mapped[int] = mapped_column(Integer)
    unexpected_count: Mapped[int] = mapped_column(Integer)
    observed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sample: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QualityRow(Base):
    __tablename__ = "quality_scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    table_name: Mapped[str] = mapped_column(String(120), index=True)
    score: Mapped[float] = mapped_column(Float)
    rows_checked: Mapped[int] = mapped_column(Integer)
    rows_passed: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MartPendingRow(Base):
    """A day of a mart that an input run changed and no refresh has built since (pipelines/mart_refresh.py)."""

    __tablename__ = "mart_pending"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mart: Mapped[str] = mapped_column(String(80), index=True)
    day: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    marked_by: Mapped[str] = mapped_column(String(80), doc="run that changed an input of the mart on this day")
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True, kw_only=True)
class PendingDays:
    """What a mart refresh claims: the marks (to clear once it published) and the distinct days they name."""

    mart: str
    ids: tuple[int, ...] = ()
    days: tuple[datetime, ...] = ()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # The wait first: switching to WAL takes a write lock, and several processes opening a fresh database at once
    # (on a loaded machine) would otherwise give up on it after the driver's default 5 s ("database is locked").
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def ensure_tables(engine: Engine, tables: list[Table] | None = None) -> None:
    """`create_all` that tolerates another process creating the same tables at the same moment.

    SQLAlchemy checks, then creates: two processes starting on a fresh ops database (four `dataops run` at
    once, found by benchmarks/chaos.py) both see a table missing and the second CREATE fails with
    "already exists". Checking again then finds it, which is all that was wanted.
    """
    attempts = 2 * len(tables if tables is not None else Base.metadata.sorted_tables) + 2  # each race costs a table at most once
    for attempt in range(1, attempts + 1):
        try:
            Base.metadata.create_all(engine, tables=tables)
            return
        except DBAPIError as exc:
            text = str(exc).lower()
            if attempt == attempts or not ("already exists" in text or "duplicate" in text or "unique constraint" in text):
                raise


def add_missing_columns(engine: Engine) -> None:
    """Add the nullable columns a newer release declares to an ops database made by an older one.

    `create_all` makes missing tables only; a column added later (e.g. `incidents.extent`) would otherwise
    fail every query against an existing database. Only nullable columns are ever added this way.
    """
    inspector = inspect(engine)
    existing_tables = set(inspector.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in existing_tables:
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
            except DBAPIError:
                # Another process added it first; anything else is a real error.
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise


def as_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Ledger:
    """Reads and writes the ops database."""

    def __init__(self, url: str) -> None:
        sqlite = url.startswith("sqlite")
        # The driver's own wait on a locked database (5 s by default) covers statements before the pragmas run.
        self.engine: Engine = create_engine(url, future=True, **({"connect_args": {"timeout": 30}} if sqlite else {}))
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        ensure_tables(self.engine)
        add_missing_columns(self.engine)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def start_run(
        self, *, run_id: str, pipeline: str, window_start: datetime, window_end: datetime, as_of: datetime, attempts: int = 1
    ) -> None:
        with self.session() as s, s.begin():
            s.add(
                RunRow(
                    run_id=run_id,
                    pipeline=pipeline,
                    window_start=window_start,
                    window_end=window_end,
                    as_of=as_of,
                    status="running",
                    attempts=attempts,
                    started_at=datetime.now(UTC),
                    snapshots={},
                    timings={},
                    held_days=[],
                    host=socket.gethostname(),
                    pid=os.getpid(),
                )
            )

    def mark_abandoned(self, pipeline: str) -> list[str]:
        """Mark runs of `pipeline` whose process on this host is gone as abandoned; returns their ids."""
        host = socket.gethostname()
        marked = []
        with self.session() as s, s.begin():
            for run in s.scalars(select(RunRow).where(RunRow.pipeline == pipeline, RunRow.status == "running")):
                if run.host == host and not pid_alive(run.pid):
                    run.status = "abandoned"
                    run.finished_at = datetime.now(UTC)
                    run.error = f"process {run.pid} ended before the run finished (killed or crashed); a later run completes the window"
                    marked.append(run.run_id)
        return marked

    def unrecovered(self, pipeline: str) -> list[RunRow]:
        """Abandoned runs of `pipeline` whose window no later run has covered yet, oldest first."""
        with self.session() as s:
            rows = list(
                s.scalars(
                    select(RunRow)
                    .where(RunRow.pipeline == pipeline, RunRow.status == "abandoned", RunRow.recovered_by.is_(None))
                    .order_by(RunRow.started_at)
                )
            )
        for r in rows:
            r.window_start = as_utc(r.window_start)  # type: ignore[assignment]
            r.window_end = as_utc(r.window_end)  # type: ignore[assignment]
        return rows

    def mark_recovered(self, run_ids: list[str], *, by: str) -> None:
        with self.session() as s, s.begin():
            for run_id in run_ids:
                run = s.get(RunRow, run_id)
                if run is not None:
                    run.recovered_by = by

    def finish_run(self, run_id: str, **fields: Any) -> None:
        with self.session() as s, s.begin():
            run = s.get(RunRow, run_id)
            assert run is not None, run_id
            for key, value in fields.items():
                setattr(run, key, value)
            run.finished_at = datetime.now(UTC)

    def record_validation(self, run_id: str, table: str, suite: str, outcomes: list[Any]) -> None:
        now = datetime.now(UTC)
        with self.session() as s, s.begin():
            for o in outcomes:
                s.add(
                    ValidationRow(
                        run_id=run_id,
                        table_name=table,
                        suite=suite,
                        expectation=o.name,
                        expectation_type=o.expectation,
                        scope=o.scope,
                        success=o.success,
                        element_count=o.element_count,
                        unexpected_count=o.unexpected_count,
                        observed=json.loads(json.dumps(o.observed, default=str)),
                        sample=json.loads(json.dumps(o.sample, default=str)),
                        created_at=now,
                    )
                )

    def record_quality(self, run_id: str, table: str, *, checked: int, passed: int) -> float:
        score = 1.0 if checked == 0 else passed / checked
        with self.session() as s, s.begin():
            s.add(
                QualityRow(
                    run_id=run_id, table_name=table, score=score, rows_checked=checked, rows_passed=passed, created_at=datetime.now(UTC)
                )
            )
        return score

    def mark_mart_days(self, marts: Iterable[str], days: Iterable[datetime], *, by: str) -> None:
        """Record that `days` of each mart in `marts` need a refresh (one mark per mart and day, in one transaction)."""
        now, distinct = datetime.now(UTC), sorted(set(days))  # `days` may be an iterator: read it once, for every mart
        with self.session() as s, s.begin():
            for mart in marts:
                s.add_all(MartPendingRow(mart=mart, day=day, marked_by=by, marked_at=now) for day in distinct)

    def pending_mart_days(self, mart: str) -> PendingDays:
        """Every mark of `mart` not yet cleared; marks written after this read keep their own, later ids."""
        with self.session() as s:
            rows = list(s.scalars(select(MartPendingRow).where(MartPendingRow.mart == mart).order_by(MartPendingRow.id)))
        days = sorted({d for r in rows if (d := as_utc(r.day)) is not None})
        return PendingDays(mart=mart, ids=tuple(r.id for r in rows), days=tuple(days))

    def clear_mart_marks(self, ids: Iterable[int]) -> None:
        """Delete exactly the marks a refresh claimed (never by range: on Postgres, ids can commit out of order)."""
        wanted = list(ids)
        with self.session() as s, s.begin():
            for start in range(0, len(wanted), 500):
                s.execute(delete(MartPendingRow).where(MartPendingRow.id.in_(wanted[start : start + 500])))

    def pending_marts(self) -> dict[str, list[datetime]]:
        """Days waiting for a refresh, by mart."""
        with self.session() as s:
            rows = s.execute(select(MartPendingRow.mart, MartPendingRow.day).distinct()).all()
        pending: dict[str, set[datetime]] = {}
        for mart, day in rows:
            pending.setdefault(mart, set()).add(as_utc(day) or day)
        return {mart: sorted(days) for mart, days in sorted(pending.items())}

    def runs(self, *, pipeline: str | None = None, limit: int = 50) -> list[RunRow]:
        with self.session() as s:
            query = select(RunRow).order_by(RunRow.started_at.desc()).limit(limit)
            if pipeline:
                query = query.where(RunRow.pipeline == pipeline)
            rows = list(s.scalars(query))
        for r in rows:
            r.started_at = as_utc(r.started_at)  # type: ignore[assignment]
            r.finished_at = as_utc(r.finished_at)
            r.window_start = as_utc(r.window_start)  # type: ignore[assignment]
            r.window_end = as_utc(r.window_end)  # type: ignore[assignment]
        return rows

    def run(self, run_id: str) -> RunRow | None:
        with self.session() as s:
            return s.get(RunRow, run_id)

    def validations(self, run_id: str) -> list[ValidationRow]:
        with self.session() as s:
            return list(s.scalars(select(ValidationRow).where(ValidationRow.run_id == run_id).order_by(ValidationRow.id)))

    def latest_quality(self) -> dict[str, float]:
        with self.session() as s:
            rows = s.scalars(select(QualityRow).order_by(QualityRow.id))
            return {r.table_name: r.score for r in rows}
