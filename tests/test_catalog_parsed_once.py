"""The SQL catalog parses each metadata file once, and never serves a stale table: every load reads the catalog
row, and a location it has not parsed (another process's commit) is read from its file."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.serializers import FromInputFile

from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import ParsedOnceSqlCatalog, file_io_properties, load_table
from pipelines.promotion import run_pipeline
from tests.conftest import utc, window

SILVER = "silver.carbon_intensity"


def _plain(ctx: PlatformContext) -> SqlCatalog:
    """pyiceberg's own catalog over the same database and warehouse: another process, as far as caching goes."""
    s = ctx.settings
    return SqlCatalog(s.catalog_name, uri=s.catalog_url, warehouse=s.warehouse_location, **file_io_properties(s))


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The metadata files parsed from now on."""
    seen: list[str] = []
    original = FromInputFile.table_metadata

    def counting(input_file: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(input_file.location)
        return original(input_file, *args, **kwargs)

    monkeypatch.setattr(FromInputFile, "table_metadata", staticmethod(counting))
    return seen


def test_loads_after_runs_equal_a_fresh_parse_and_parse_each_file_once(ctx: PlatformContext, parses: list[str]) -> None:
    assert isinstance(ctx.catalog, ParsedOnceSqlCatalog)
    for day in (1, 2, 3):
        run_pipeline(ctx, "carbon_intensity", window((2023, 1, day), (2023, 1, day + 1)), as_of=utc(2023, 1, day + 1, 1))
    assert len(parses) == len(set(parses)), "a metadata file was parsed twice"
    plain = _plain(ctx)
    for name in (SILVER, "bronze.carbon_intensity", "gold.carbon_intensity_hourly", "quarantine.carbon_intensity"):
        ours, theirs = load_table(ctx.catalog, name), plain.load_table(name)
        assert (ours.metadata_location, ours.metadata) == (theirs.metadata_location, theirs.metadata)
    parses.clear()
    again = load_table(ctx.catalog, SILVER)
    again.refresh()
    assert parses == [], "an unchanged table is not parsed again"
    assert wap.read_days(again, [utc(2023, 1, 2)]).num_rows == 48


def test_another_writer_s_commit_is_seen_at_once(ctx: PlatformContext, parses: list[str]) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 1, 2)), as_of=utc(2023, 1, 2, 1))
    ours = load_table(ctx.catalog, "bronze.carbon_intensity")
    other = _plain(ctx).load_table("bronze.carbon_intensity")
    rows = other.scan().to_arrow().slice(0, 1)
    other.append(rows.cast(other.schema().as_arrow()))  # a commit our catalog did not make
    parses.clear()
    ours.refresh()
    assert ours.metadata_location == other.metadata_location and parses == [other.metadata_location]
    assert ours.metadata == other.metadata
    assert len(ours.scan().to_arrow()) == len(other.scan().to_arrow())
    # Our own commit after it is checked against the new row, and remembered without a re-read.
    ours.append(pa.Table.from_pylist(rows.to_pylist(), schema=ours.schema().as_arrow()))
    parses.clear()
    assert load_table(ctx.catalog, "bronze.carbon_intensity").metadata == ours.metadata and parses == []
