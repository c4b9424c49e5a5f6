"""The inventory tables' current metadata and data files, read without pyiceberg where a plain read is the same read.

`dataops status` and `dataops query` run as fresh processes and need little of a table: its metadata JSON
(snapshots, refs, schema) and, for a query, the data files of the current snapshot. pyiceberg reaches them
through its table model and its PyArrow FileIO, whose import alone (pyarrow.dataset, which imports pandas)
costs more than the rest of the command. With the default setup, a SQL catalog in SQLite and a local
warehouse, the same reads are one row of the catalog's `iceberg_tables` per table, the JSON file it names,
and the Avro manifest list and manifests of the current snapshot (read by pyiceberg-core's manifest reader).

`read_metadata` answers only where that is exactly what pyiceberg would read, and returns None otherwise, so
the caller takes pyiceberg's path: a REST catalog or a catalog on a server, a table or layer that
`ensure_tables` would still create (opening the catalog creates them; this module never writes), metadata
not on the local disk, a format version other than 2. `current_data_files` likewise returns None where
pyiceberg's scan would do more than read the files (delete files, more than one schema, files not on the
local disk). `tests/test_lake_current.py` checks both against pyiceberg.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from config.inventory import LAYERS

if TYPE_CHECKING:
    from config.inventory import Inventory
    from config.settings import DataopsSettings

TableMetadata = dict[str, Any]
"""A table's metadata JSON as the catalog's current metadata file holds it."""

AUDIT_PREFIX = "audit-"
"""Branches named so are write-audit-publish audit branches (pipelines/lakehouse/wap.py)."""

_SQLITE_URL = re.compile(r"sqlite(?:\+pysqlite)?:///(?P<database>[^?]*)")
_TABLE_TYPE = "TABLE"  # pyiceberg's SqlCatalog marks tables so (views have another type); None on rows from before


def read_metadata(settings: DataopsSettings, inventory: Inventory, tables: Iterable[str] | None = None) -> dict[str, TableMetadata] | None:
    """The current metadata of `tables` (default: every inventory table) by name, or None where only pyiceberg's
    catalog gives the same answer."""
    if settings.catalog_type != "sql":
        return None
    database = _sqlite_file(settings.catalog_url)
    if database is None:
        return None
    try:
        con = sqlite3.connect(f"{Path(database).as_uri()}?mode=ro", uri=True)  # never creates or changes the catalog
    except sqlite3.Error:
        return None
    try:
        rows = con.execute(
            "SELECT table_namespace, table_name, metadata_location, iceberg_type FROM iceberg_tables WHERE catalog_name = ?",
            (settings.catalog_name,),
        ).fetchall()
        namespaces = [
            r[0] for r in con.execute("SELECT namespace FROM iceberg_namespace_properties WHERE catalog_name = ?", (settings.catalog_name,))
        ]
    except sqlite3.Error:  # no catalog tables yet, or a schema before pyiceberg's iceberg_type column: pyiceberg decides
        return None
    finally:
        con.close()
    # What `ensure_tables` would find: every layer a namespace, every inventory table a table row.
    top_level = {ns.split(".")[0] for ns in [*(r[0] for r in rows), *namespaces] if ns}
    if not set(LAYERS) <= top_level:
        return None
    locations = {f"{ns}.{name}": location for ns, name, location, kind in rows if kind in (None, _TABLE_TYPE)}
    if not all(locations.get(name) for name in inventory.tables):
        return None
    found: dict[str, TableMetadata] = {}
    for name in inventory.tables if tables is None else tables:
        location = locations.get(name)
        path = local_path(location) if location else None
        if path is None:
            return None
        try:
            metadata = json.loads(Path(path).read_bytes())
        except (OSError, ValueError):
            return None  # pyiceberg reports it in its own words
        if not isinstance(metadata, dict) or metadata.get("format-version") != 2:
            return None
        found[name] = metadata
    return found


def current_snapshot(metadata: TableMetadata) -> dict[str, Any] | None:
    """The snapshot `main` is at, as pyiceberg's `Table.current_snapshot()` finds it (a current-snapshot-id of -1 is none)."""
    snapshot_id = metadata.get("current-snapshot-id")
    if snapshot_id is None or snapshot_id == -1:
        return None
    return next((s for s in metadata.get("snapshots", []) if s.get("snapshot-id") == snapshot_id), None)


def audit_branches(refs: Iterable[str]) -> list[str]:
    """The audit branches among a table's ref names, sorted."""
    return sorted(name for name in refs if name.startswith(AUDIT_PREFIX))


def current_schema(metadata: TableMetadata) -> dict[str, Any] | None:
    return next((s for s in metadata.get("schemas", []) if s.get("schema-id") == metadata.get("current-schema-id")), None)


def current_data_files(metadata: TableMetadata) -> list[str] | None:
    """The data files a full scan of the current snapshot reads, in pyiceberg's planning order, as the
    locations the manifests hold; None where pyiceberg's scan would do more than read them (position or
    equality deletes, more than one schema) or the manifests are not on the local disk."""
    from pyiceberg_core.manifest import read_manifest_entries, read_manifest_list

    if len(metadata.get("schemas", [])) != 1:
        return None
    snapshot = current_snapshot(metadata)
    if snapshot is None:
        return []
    manifest_list = local_path(snapshot.get("manifest-list") or "")
    if manifest_list is None:
        return None
    files: list[str] = []
    try:
        for manifest in read_manifest_list(Path(manifest_list).read_bytes()).entries():
            if manifest.content != 0:  # a delete manifest: pyiceberg matches its files to the data files
                return None
            path = local_path(manifest.manifest_path)
            if path is None:
                return None
            for entry in read_manifest_entries(Path(path).read_bytes()).entries():
                if entry.status == 2:  # DELETED: no longer part of the snapshot
                    continue
                data_file = entry.data_file
                if data_file.content != 0 or data_file.file_format.lower() != "parquet":
                    return None
                if data_file.record_count == 0:  # pyiceberg's scan skips empty files (include_empty_files=false)
                    continue
                files.append(data_file.file_path)
    except BaseException as exc:  # an unreadable manifest: pyiceberg reads it, or fails in its own words
        # pyiceberg-core reports a manifest it cannot read by a Rust panic: pyo3's PanicException, a BaseException.
        if isinstance(exc, Exception) or type(exc).__name__ == "PanicException":
            return None
        raise
    return files


def _sqlite_file(url: str) -> str | None:
    """The SQLite file of a SQLAlchemy URL as pysqlite opens it, or None for anything else (a server, memory, URL options)."""
    match = _SQLITE_URL.fullmatch(url)
    if match is None:
        return None
    database = unquote(match["database"])
    if not database or database == ":memory:":
        return None
    return os.path.abspath(database)


def local_path(location: str) -> str | None:
    """Where pyiceberg's PyArrow FileIO reads a location on the local disk (a file:// URI or a path), or None."""
    parsed = urlparse(location)
    if not parsed.scheme:
        return os.path.abspath(location)
    if parsed.scheme != "file":
        return None
    return f"{parsed.netloc}{parsed.path}"
