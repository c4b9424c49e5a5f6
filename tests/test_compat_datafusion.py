"""Tables we write are readable by an independent Iceberg implementation, with the same contents.

pyiceberg-core's DataFusion provider (iceberg-rust) reads each table from its metadata file alone: no
pyiceberg code is involved, so a manifest, partition, delete or type the Rust reader interprets
differently shows up here as a different count, sum or row. Pinned: datafusion 53 beside
pyiceberg-core 0.10 (`register_table` segfaults with datafusion 55).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from datafusion import SessionContext
from pyiceberg.table import Table
from pyiceberg_core.datafusion import IcebergDataFusionTable

from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import run_pipeline
from tests.conftest import utc, window

WINDOW = window((2023, 1, 5), (2023, 1, 27))
# NESO never published the actual for 2023-01-26 13:30-15:30; seen at 16:00 those slots are not overdue
# yet, so silver and gold hold real nulls for the readers to agree on.
AS_OF = utc(2023, 1, 26, 16)
# table -> (sort key, numeric columns whose sums must agree)
TABLES: dict[str, tuple[list[str], list[str]]] = {
    "bronze.carbon_intensity": (["ts", "record_key", "fetched_at"], []),
    "silver.carbon_intensity": (["ts"], ["actual", "forecast"]),
    "gold.carbon_intensity_hourly": (["ts"], ["actual", "forecast", "slots"]),
    "gold.intensity_vs_temperature_daily": (["ts"], ["mean_intensity", "mean_temperature_c", "intensity_slots"]),
}


@pytest.fixture
def lake(ctx: PlatformContext) -> PlatformContext:
    """Three weeks of carbon intensity and weather up to `AS_OF`, the intensity window promoted twice.

    The second run overwrites the same day partitions again, so silver and gold hold replaced files
    that a reader must skip.
    """
    for pipeline in ("carbon_intensity", "weather", "carbon_intensity"):
        result = run_pipeline(ctx, pipeline, WINDOW, as_of=AS_OF)
        assert result.status == "succeeded", result
    return ctx


def _datafusion_read(table: Table, name: str) -> pa.Table:
    session = SessionContext()
    provider = IcebergDataFusionTable(
        identifier=name.split("."),
        metadata_location=table.metadata_location,
        file_io_properties=dict(table.io.properties),
    )
    session.register_table("t", provider)
    return session.sql("SELECT * FROM t").to_arrow_table()


def _summary(data: pa.Table, numeric: list[str]) -> dict[str, Any]:
    return {
        "rows": data.num_rows,
        "nulls": {c: data.column(c).null_count for c in data.column_names},
        "sums": {c: pc.sum(data.column(c)).as_py() for c in numeric},
        "ts_range": (pc.min(data.column("ts")).as_py(), pc.max(data.column("ts")).as_py()),
    }


def _sorted_rows(data: pa.Table, key: list[str]) -> list[dict[str, Any]]:
    return data.sort_by([(k, "ascending") for k in key]).to_pylist()


def test_datafusion_reads_what_pyiceberg_reads(lake: PlatformContext) -> None:
    slots = int((AS_OF - WINDOW.start).total_seconds() // 1800)
    # 2023-01-24 11:00 is quarantined by forecast_tracks_actual (NESO's forecast missed by more than 120).
    expected_rows = {
        "silver.carbon_intensity": slots - 1,
        "gold.carbon_intensity_hourly": slots // 2,
        "gold.intensity_vs_temperature_daily": 22,
    }
    for name, (key, numeric) in TABLES.items():
        table = load_table(lake.catalog, name)
        ours = table.scan().to_arrow()
        theirs = _datafusion_read(table, name)

        # Guards the comparison against passing on empty or partial tables.
        assert ours.num_rows == expected_rows.get(name, ours.num_rows) and ours.num_rows > 0, f"{name}: {ours.num_rows} rows"
        if name == "silver.carbon_intensity":
            assert ours.column("actual").null_count == 5, "the fixture should hold the five unpublished actuals"
        assert sorted(theirs.column_names) == sorted(ours.column_names), name
        theirs = theirs.select(ours.column_names)
        expected, actual = _summary(ours, numeric), _summary(theirs, numeric)
        for column, total in expected.pop("sums").items():
            assert actual["sums"][column] == pytest.approx(total, rel=1e-12), f"{name}.{column}: sums differ"
        actual.pop("sums")
        assert actual == expected, f"{name}: datafusion and pyiceberg disagree"
        # Row for row: values, nulls and UTC instants (timestamps compare as instants, whatever the zone name).
        assert _sorted_rows(theirs, key) == _sorted_rows(ours, key), f"{name}: rows differ"
