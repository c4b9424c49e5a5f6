"""pipelines/lakehouse/current.py reads what pyiceberg reads, or declines: `dataops status` and `dataops query` give
the same answers on its plain read of the catalog as through pyiceberg's catalog and scan."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pytest

from config.settings import load_settings
from pipelines import inspection, query
from pipelines.context import PlatformContext
from pipelines.lakehouse import current, wap
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import run_pipeline
from pipelines.query import run_query
from tests.conftest import utc, window


@pytest.fixture
def lake(ctx: PlatformContext) -> PlatformContext:
    """Two days of carbon intensity, one of them held back and then overwritten (files removed from the snapshot, rows in
    quarantine), two days of weather, and an audit branch."""
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 2)))
    late = window((2024, 1, 12), (2024, 1, 13))
    run_pipeline(ctx, "carbon_intensity", late, as_of=utc(2024, 1, 12, 6, 5))
    run_pipeline(ctx, "carbon_intensity", late, as_of=utc(2024, 1, 12, 8, 35))
    run_pipeline(ctx, "weather", window((2023, 1, 1), (2023, 1, 3)), as_of=utc(2023, 2, 1))
    table = load_table(ctx.catalog, "silver.carbon_intensity")
    wap.open_audit_branch(table, wap.audit_branch_name("kept-for-diagnosis"), run_id="kept-for-diagnosis")
    # Overwrite a day of weather: the current snapshot's manifests add the new file and carry the other day's over.
    weather = load_table(ctx.catalog, "silver.weather")
    day = [utc(2023, 1, 1)]
    rows = wap.read_days(weather, day)
    rows = rows.set_column(rows.schema.get_field_index("temperature_c"), "temperature_c", pc.add(rows["temperature_c"], 1.0))
    wap.open_audit_branch(weather, "audit-rewrite", run_id="rewrite")
    wap.overwrite_days(weather, rows, day, branch="audit-rewrite", properties={"run_id": "rewrite"})
    wap.publish(weather, "audit-rewrite")
    return ctx


def test_status_is_the_same_without_pyiceberg(lake: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    assert current.read_metadata(lake.settings, lake.inventory) is not None, "the default setup takes the plain read"
    plain = inspection.lake_status(lake)
    monkeypatch.setattr(current, "read_metadata", lambda *_: None)
    assert inspection.lake_status(lake) == plain
    silver = next(t for t in plain["tables"] if t["table"] == "silver.carbon_intensity")
    assert silver["audit_branches"] == ["audit-kept-for-diagnosis"] and silver["rows"] > 0 and silver["snapshots"] > 2


def test_the_current_data_files_are_pyicebergs_plan(lake: PlatformContext) -> None:
    from pyiceberg_core.manifest import read_manifest_entries, read_manifest_list

    metadata = current.read_metadata(lake.settings, lake.inventory)
    assert metadata is not None
    weather = current.current_snapshot(metadata["silver.weather"])
    assert weather is not None
    statuses = [
        entry.status
        for manifest in read_manifest_list(Path(current.local_path(weather["manifest-list"]) or "").read_bytes()).entries()
        for entry in read_manifest_entries(Path(current.local_path(manifest.manifest_path) or "").read_bytes()).entries()
    ]
    assert statuses.count(1) == 1 and 0 in statuses, "the overwrite's file is added, the other day's carried over (EXISTING)"
    for name in sorted(lake.inventory.tables):
        table = load_table(lake.catalog, name)
        planned = [t.file.file_path for t in table.scan().plan_files()]
        assert current.current_data_files(metadata[name]) == planned, name
        snapshot = table.current_snapshot()
        found = current.current_snapshot(metadata[name])
        assert (found or {}).get("snapshot-id") == (snapshot.snapshot_id if snapshot else None), name


def _through_arrow(ctx: PlatformContext, name: str) -> tuple[list[Any], list[Any]]:
    """What `dataops query` returned before it read the files: pyiceberg's scan, registered with DuckDB as Arrow."""
    table = load_table(ctx.catalog, name)
    data = table.scan().to_arrow() if table.current_snapshot() else table.schema().as_arrow().empty_table()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.register("t", data.cast(table.schema().as_arrow()))
    described = con.execute("DESCRIBE SELECT * FROM t").fetchall()
    return [d[:2] for d in described], [list(r) for r in con.execute("SELECT * FROM t ORDER BY ALL").fetchall()]


def test_query_sees_the_rows_and_types_of_pyicebergs_scan(lake: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in sorted(lake.inventory.tables):
        types, rows = _through_arrow(lake, name)
        result = run_query(lake, f"SELECT * FROM {name} ORDER BY ALL", limit=None)
        assert result.rows == rows, name
        assert [list(t) for t in run_query(lake, f"SELECT column_name, column_type FROM (DESCRIBE {name})", limit=None).rows] == [
            list(t) for t in types
        ], name
    # Tables a plain read cannot give (deletes, an evolved schema, files elsewhere) go through pyiceberg's scan: the same rows.
    monkeypatch.setattr(query, "_current_files", lambda _: None)
    monkeypatch.setattr(query, "_pyiceberg_files", lambda _: None)
    for name in ("silver.carbon_intensity", "silver.weather", "gold.carbon_intensity_hourly", "quarantine.weather"):
        assert run_query(lake, f"SELECT * FROM {name} ORDER BY ALL", limit=None).rows == _through_arrow(lake, name)[1], name


def test_query_can_read_no_other_file(lake: PlatformContext) -> None:
    from config.errors import QueryError

    metadata = current.read_metadata(lake.settings, lake.inventory)
    assert metadata is not None
    files = current.current_data_files(metadata["silver.carbon_intensity"])
    assert files
    other = load_table(lake.catalog, "silver.weather").scan().plan_files()
    outside = next(iter(other)).file.file_path.removeprefix("file://")
    with pytest.raises(QueryError, match="file system operations are disabled"):
        run_query(lake, f"SELECT count(*) FROM read_parquet('{outside}') -- silver.carbon_intensity")


def test_the_plain_read_declines_what_only_pyiceberg_answers(ctx: PlatformContext) -> None:
    assert current.read_metadata(ctx.settings, ctx.inventory) is None, "no catalog yet: opening it creates the tables"
    ctx.catalog  # noqa: B018 (creates the layers and tables)
    assert current.read_metadata(ctx.settings, ctx.inventory) is not None
    ctx.catalog.drop_table("gold.generation_share_daily")
    assert current.read_metadata(ctx.settings, ctx.inventory) is None, "a table ensure_tables would create"
    rest = ctx.settings.model_copy(update={"catalog_type": "rest", "rest_catalog_uri": "http://localhost:1"})
    assert current.read_metadata(rest, ctx.inventory) is None
    assert current._sqlite_file("sqlite:///:memory:") is None and current._sqlite_file("postgresql://h/db") is None
    assert current._sqlite_file("sqlite:///x.db?mode=ro") is None
    assert current.local_path("s3://bucket/warehouse/t/metadata/v1.json") is None
    assert current.local_path("file:///tmp/w/t/metadata/v1.json") == "/tmp/w/t/metadata/v1.json"


def test_query_reads_the_files_where_pyiceberg_wrote_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A home whose URI needs escaping (a space): the data files are where pyiceberg's FileIO put them, not the unescaped path."""
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    ctx = PlatformContext.open(load_settings(home=tmp_path / "a home"))
    try:
        run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 2)))
        scanned = _through_arrow(ctx, "silver.carbon_intensity")[1]
        assert scanned and run_query(ctx, "SELECT * FROM silver.carbon_intensity ORDER BY ALL", limit=None).rows == scanned
    finally:
        ctx.ledger.engine.dispose()


def test_an_unreadable_manifest_is_left_to_pyiceberg(tmp_path: Path) -> None:
    garbage = tmp_path / "snap-1.avro"
    garbage.write_bytes(b"Obj\x01 not a manifest list")
    metadata = {
        "format-version": 2,
        "current-snapshot-id": 1,
        "schemas": [{"schema-id": 0, "type": "struct", "fields": []}],
        "snapshots": [{"snapshot-id": 1, "manifest-list": garbage.as_uri()}],
    }
    assert current.current_data_files(metadata) is None
    garbage.unlink()
    assert current.current_data_files(metadata) is None
