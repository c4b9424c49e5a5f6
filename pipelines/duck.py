"""One in-process DuckDB database for the platform's own SQL: validation's derived columns, marts, value monitors.

Opening a DuckDB database costs about 18 ms, a cursor on an open one about 10 µs, and a run used to open
several. Each use now takes a cursor: its own connection to the process's shared in-memory database, with its
own registered relations, temporary views and settings (TimeZone UTC), closed after use. Nothing persistent is
ever created in the shared database, so uses on different threads cannot see each other. A forked child opens
its own. The SQL people type (`dataops query`, the agent's `query_lake`) keeps its own locked-down connection
(pipelines/query.py).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

_lock = threading.Lock()
_db: tuple[int, duckdb.DuckDBPyConnection] | None = None


@contextmanager
def cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh connection to the process's DuckDB database, in UTC; closed (with what it registered) on exit."""
    global _db
    with _lock:
        if _db is None or _db[0] != os.getpid():
            _db = (os.getpid(), duckdb.connect())
        con = _db[1].cursor()
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()
