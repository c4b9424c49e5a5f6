"""Read-only SQL over the lake with DuckDB; tables are addressed as `silver.carbon_intensity`.

Only a single SELECT (or WITH ... SELECT, or EXPLAIN of one) is accepted. The referenced tables are scanned
with pyiceberg into Arrow and exposed as views; then DuckDB's external access is switched off and the
configuration locked, so the statement cannot read or write files, attach databases or change settings.

Every statement is bounded: DuckDB's `memory_limit` is set to DATAOPS_QUERY_MEMORY_LIMIT, and a watchdog thread
interrupts the connection once DATAOPS_QUERY_TIMEOUT_S has passed (and keeps interrupting until the statement
returns, so an interrupt that lands between two phases of the statement is not lost).
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from pydantic import BaseModel
from pyiceberg.table import Table

from config.errors import QueryError, QueryLimitError, QueryRefusedError
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table

_ALLOWED = {"SELECT", "EXPLAIN"}


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    elapsed_ms: float
    tables: list[str]


def _statement_kind(sql: str) -> str:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"the SQL does not parse: {exc}") from None
    if len(statements) != 1:
        raise QueryRefusedError(f"one statement at a time, got {len(statements)}; run them separately")
    return str(statements[0].type).split(".")[-1].upper()


def referenced_tables(ctx: PlatformContext, sql: str) -> list[str]:
    names = []
    for name in sorted(ctx.inventory.tables):
        if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", sql, flags=re.IGNORECASE):
            names.append(name)
    return names


_SCANS: dict[tuple[str, str, int], pa.Table] = {}
_SCAN_CACHE_SIZE = 16


def _scan(ctx: PlatformContext, name: str) -> pa.Table:
    """The table's current rows; cached per snapshot, since a snapshot never changes."""
    table = load_table(ctx.catalog, name)
    snapshot = table.current_snapshot()
    if snapshot is None:
        return table.schema().as_arrow().empty_table()
    key = (ctx.settings.catalog_url, name, snapshot.snapshot_id)
    if key not in _SCANS:
        if len(_SCANS) >= _SCAN_CACHE_SIZE:
            _SCANS.pop(next(iter(_SCANS)))
        _SCANS[key] = _read_current(table).combine_chunks()  # one file per day leaves thousands of chunks
    return _SCANS[key]


def _read_current(table: Table) -> pa.Table:
    """All rows of main. Local tables with one schema and no delete files are read in one multi-threaded
    Arrow dataset pass over the planned files (about 5x faster than pyiceberg's per-file reads with a file
    per day); anything else goes through pyiceberg's scan, which resolves fields by id and applies deletes."""
    scan = table.scan()
    tasks = list(scan.plan_files())
    local = all(t.file.file_path.startswith("file://") and not t.delete_files for t in tasks)
    if not tasks or not local or len(table.metadata.schemas) != 1:
        return scan.to_arrow()
    schema = table.schema().as_arrow()
    paths = [unquote(t.file.file_path.removeprefix("file://")) for t in tasks]
    return ds.dataset(paths, format="parquet").to_table().select(schema.names).cast(schema)


class _Watchdog:
    """Interrupts a DuckDB connection once `timeout_s` has passed, until `stop()`; `fired` tells whether it did."""

    def __init__(self, con: duckdb.DuckDBPyConnection, timeout_s: float) -> None:
        self._con, self._timeout_s = con, timeout_s
        self._done = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._watch, name="query-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        if self._done.wait(self._timeout_s):
            return
        self.fired = True
        while True:
            self._con.interrupt()
            if self._done.wait(0.1):
                return


def run_query(
    ctx: PlatformContext,
    sql: str,
    *,
    limit: int | None = 10_000,
    timeout_s: float | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> QueryResult:
    """Run a read-only statement under a time and memory limit (default: the query_timeout_s and query_memory_limit settings).

    Raises QueryRefusedError for anything but a read, QueryLimitError when a limit stopped it, QueryError when it fails.
    """
    timeout_s = ctx.settings.query_timeout_s if timeout_s is None else timeout_s
    memory_limit = memory_limit or ctx.settings.query_memory_limit
    kind = _statement_kind(sql)
    if kind not in _ALLOWED:
        raise QueryRefusedError(
            f"only reads are allowed: this is a {kind} statement. `dataops query` runs SELECT over "
            "bronze/silver/gold/quarantine tables; change data with `dataops run` or `dataops backfill`."
        )
    tables = referenced_tables(ctx, sql)
    started = time.perf_counter()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for namespace in sorted({t.split(".")[0] for t in tables}):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {namespace}")
        for name in tables:
            data = _scan(ctx, name)
            alias = "__" + name.replace(".", "__")
            con.register(alias, data)
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM {alias}")
        con.execute("SET enable_external_access = false")
        con.execute("SET memory_limit = ?", [memory_limit])
        if threads is not None:  # a caller that must stay responsive (the agent) also bounds threads
            con.execute(f"SET threads = {int(threads)}")
        con.execute("SET lock_configuration = true")
        watchdog = _Watchdog(con, timeout_s)
        try:
            with watchdog:
                cursor = con.execute(sql)
                columns = [d[0] for d in cursor.description or []]
                fetched = cursor.fetchmany(limit + 1) if limit is not None else cursor.fetchall()
        except duckdb.InterruptException:
            raise QueryLimitError(
                f"query interrupted after {timeout_s:g} s (DATAOPS_QUERY_TIMEOUT_S); narrow it (a WHERE on ts, fewer joins) "
                "or raise the setting",
                setting="DATAOPS_QUERY_TIMEOUT_S",
            ) from None
        except duckdb.OutOfMemoryException:
            raise QueryLimitError(
                f"query stopped at the memory limit {memory_limit} (DATAOPS_QUERY_MEMORY_LIMIT); aggregate or filter more, "
                "or raise the setting",
                setting="DATAOPS_QUERY_MEMORY_LIMIT",
            ) from None
        except duckdb.CatalogException as exc:
            hint = ""
            if "Table with name" in str(exc):
                hint = f". Tables are addressed as layer.name; known: {', '.join(sorted(ctx.inventory.tables))}"
            raise QueryError(f"{exc}{hint}") from None
        except duckdb.Error as exc:
            if watchdog.fired:  # an interrupt can surface as another error class, depending on the operator it hit
                raise QueryLimitError(
                    f"query interrupted after {timeout_s:g} s (DATAOPS_QUERY_TIMEOUT_S); narrow it or raise the setting",
                    setting="DATAOPS_QUERY_TIMEOUT_S",
                ) from None
            raise QueryError(f"the query failed: {exc}") from None
    finally:
        con.close()
    truncated = limit is not None and len(fetched) > limit
    rows = [list(r) for r in fetched[: limit if limit is not None else None]]
    return QueryResult(
        columns=columns,
        rows=rows,
        row_count=len(rows),
        truncated=truncated,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 2),
        tables=tables,
    )
