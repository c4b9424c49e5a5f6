"""Read-only SQL over the lake with DuckDB; tables are addressed as `silver.carbon_intensity`.

Only a single SELECT (or WITH ... SELECT, or EXPLAIN of one) is accepted. Each referenced table is exposed as a
view of its current snapshot: over the snapshot's Parquet data files when they are on the local disk and a
plain read of them is the whole scan (one schema, no delete files), else over pyiceberg's scan of it into
Arrow. Then DuckDB's external access is switched off, except for exactly those data files, and the
configuration locked, so the statement cannot read or write any other file, attach databases or change settings.

The current snapshot and its files come from the catalog's metadata without pyiceberg where that is the same
read (pipelines/lakehouse/current.py), so `dataops query` does not pay for pyiceberg's and pyarrow's imports.

Every statement is bounded: DuckDB's `memory_limit` is set to DATAOPS_QUERY_MEMORY_LIMIT, and a watchdog thread
interrupts the connection once DATAOPS_QUERY_TIMEOUT_S has passed (and keeps interrupting until the statement
returns, so an interrupt that lands between two phases of the statement is not lost).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
from pydantic import BaseModel

from config.errors import QueryArgumentError, QueryError, QueryLimitError, QueryRefusedError, QuerySqlError
from pipelines.lakehouse import current

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

    from pipelines.context import PlatformContext

_ALLOWED = {"SELECT", "EXPLAIN"}


class QueryResult(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    elapsed_ms: float
    tables: list[str]


def _statement_kind(sql: str) -> tuple[str, str]:
    """(DuckDB's type of the one statement, the name a person would call it by); refuses none or several."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QuerySqlError(f"the SQL does not parse: {exc}") from None
    if not statements:
        raise QuerySqlError('the query is empty: give one SELECT, e.g. `dataops query "SELECT count(*) FROM silver.carbon_intensity"`')
    if len(statements) != 1:
        raise QueryRefusedError(f"one statement at a time, got {len(statements)}; run them separately")
    kind = str(statements[0].type).split(".")[-1].upper()
    return kind, _statement_name(statements[0].query, kind)


# The statement's leading keyword, after comments and white space; FORCE is named with the keyword it forces.
_LEADING_KEYWORD = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*((?:FORCE\s+)?[A-Z]+)\b", re.IGNORECASE | re.DOTALL)


def _statement_name(text: str, kind: str) -> str:
    """What the statement is called in SQL: its leading keyword (DuckDB files INSTALL under LOAD, USE and RESET under
    SET, CHECKPOINT under CALL, ANALYZE under VACUUM), or DuckDB's type when a WITH clause leads."""
    found = _LEADING_KEYWORD.match(text)
    if found is None or found.group(1).upper() == "WITH":
        return kind
    return " ".join(found.group(1).upper().split())


def _article(word: str) -> str:
    """'an' before a vowel sound as the keyword is read aloud (an INSERT, an UPDATE), 'a' otherwise (a USE)."""
    return "an" if word[:1] in "AEIOU" and not word.startswith("US") else "a"


def referenced_tables(ctx: PlatformContext, sql: str) -> list[str]:
    names = []
    for name in sorted(ctx.inventory.tables):
        if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", sql, flags=re.IGNORECASE):
            names.append(name)
    return names


# DuckDB's type of each Iceberg primitive, as it reads both the Parquet column and pyiceberg's Arrow type for it.
_DUCKDB_TYPES = {
    "boolean": "BOOLEAN",
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "string": "VARCHAR",
}
_GLOB = re.compile(r"[*?\[\]{}]")  # DuckDB would expand these in a file name


@dataclass(frozen=True)
class _Files:
    """A table's current rows as a plain read of local Parquet files: the columns (name, DuckDB type) and the files."""

    columns: list[tuple[str, str]]
    paths: list[str]

    def view_sql(self, name: str) -> str:
        if not self.paths:  # no data file: the table's columns, no row
            empty = ", ".join(f"CAST(NULL AS {t}) AS {_quote(c)}" for c, t in self.columns)
            return f"CREATE VIEW {name} AS SELECT {empty} WHERE false"
        select = ", ".join(f"CAST({_quote(c)} AS {t}) AS {_quote(c)}" for c, t in self.columns)
        files = ", ".join(_literal(p) for p in self.paths)
        return f"CREATE VIEW {name} AS SELECT {select} FROM read_parquet([{files}], hive_partitioning = false)"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _plain_read(columns: Sequence[tuple[str, Any]], locations: Sequence[str] | None) -> _Files | None:
    """The files as local paths, read as the table's columns; None unless that is a plain read of the table."""
    if locations is None or any(not isinstance(t, str) or t not in _DUCKDB_TYPES for _, t in columns):
        return None
    if not all(location.startswith("file://") for location in locations):
        return None
    paths = [current.local_path(location) or "" for location in locations]  # where pyiceberg's FileIO reads them
    if any(not p.startswith("/") or _GLOB.search(p) for p in paths):
        return None
    return _Files(columns=[(c, _DUCKDB_TYPES[t]) for c, t in columns], paths=paths)


def _current_files(metadata: current.TableMetadata) -> _Files | None:
    """The current rows of a table from its metadata JSON (read without pyiceberg), as a plain read of its files, or None."""
    schema = current.current_schema(metadata)
    if schema is None:
        return None
    return _plain_read([(f["name"], f["type"]) for f in schema.get("fields", [])], current.current_data_files(metadata))


def _pyiceberg_files(table: Table) -> _Files | None:
    """The same from pyiceberg's table and plan, or None: local tables with one schema and no delete files only."""
    if len(table.metadata.schemas) != 1:
        return None
    columns = [(f.name, str(f.field_type)) for f in table.schema().fields]
    if table.current_snapshot() is None:
        return _plain_read(columns, [])
    tasks = list(table.scan().plan_files())
    if any(t.delete_files or t.file.file_format.name != "PARQUET" for t in tasks):
        return None
    return _plain_read(columns, [t.file.file_path for t in tasks])


_SCANS: dict[tuple[str, str, int], pa.Table] = {}
_SCAN_CACHE_SIZE = 16


def _scan(ctx: PlatformContext, table: Table, name: str) -> pa.Table:
    """The table's current rows through pyiceberg's scan (which resolves fields by id and applies deletes); cached per
    snapshot, since a snapshot never changes. For the tables a plain read of their files cannot give."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return table.schema().as_arrow().empty_table()
    key = (ctx.settings.catalog_url, name, snapshot.snapshot_id)
    if key not in _SCANS:
        if len(_SCANS) >= _SCAN_CACHE_SIZE:
            _SCANS.pop(next(iter(_SCANS)))
        _SCANS[key] = table.scan().to_arrow().combine_chunks()  # one file per day leaves thousands of chunks
    return _SCANS[key]


def _expose(con: duckdb.DuckDBPyConnection, ctx: PlatformContext, tables: list[str]) -> list[str]:
    """Create a view of each table's current rows on `con`; returns the data files the views read."""
    metadata = current.read_metadata(ctx.settings, ctx.inventory, tables) if tables else None
    allowed: list[str] = []
    for name in tables:
        files = _current_files(metadata[name]) if metadata is not None else None
        table = None
        if files is None:
            from pipelines.lakehouse.catalog import load_table

            table = load_table(ctx.catalog, name)
            files = _pyiceberg_files(table)
        if files is not None:
            con.execute(files.view_sql(name))
            allowed.extend(files.paths)
            continue
        assert table is not None
        alias = "__" + name.replace(".", "__")
        con.register(alias, _scan(ctx, table, name))
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM {alias}")
    return allowed


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

    Raises QueryRefusedError for anything but a read, QuerySqlError for empty or wrong SQL, QueryArgumentError for a
    negative `limit`, QueryLimitError when a limit stopped it, QueryError when it fails.
    """
    if limit is not None and limit < 0:
        raise QueryArgumentError(f"--limit {limit} is negative: give the most rows to print, 0 or more (default 10000)")
    timeout_s = ctx.settings.query_timeout_s if timeout_s is None else timeout_s
    memory_limit = memory_limit or ctx.settings.query_memory_limit
    kind, name = _statement_kind(sql)
    if kind not in _ALLOWED:
        raise QueryRefusedError(
            f"only reads are allowed: this is {_article(name)} {name} statement. `dataops query` runs SELECT over "
            "bronze/silver/gold/quarantine tables; change data with `dataops run` or `dataops backfill`."
        )
    tables = referenced_tables(ctx, sql)
    started = time.perf_counter()
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for namespace in sorted({t.split(".")[0] for t in tables}):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {namespace}")
        allowed = _expose(con, ctx, tables)
        if allowed:  # the views' own files, and nothing else
            con.execute("SET allowed_paths = ?", [allowed])
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
            raise QuerySqlError(f"{exc}{hint}") from None
        except duckdb.PermissionException as exc:  # a file or setting outside the tables' own files
            raise QueryRefusedError(f"{exc}; the query reads the lake's tables only (layer.name)") from None
        except (duckdb.BinderException, duckdb.ParserException, duckdb.ConversionException) as exc:
            raise QuerySqlError(f"{exc}") from None
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
