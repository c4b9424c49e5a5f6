"""pipelines/lakehouse/metadata_cache.py: the transaction's metadata computed once per change is the metadata
pyiceberg computes on every look, through every kind of update the platform makes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import GreaterThanOrEqual
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, Transaction
from pyiceberg.table.update import update_table_metadata
from pyiceberg.transforms import DayTransform
from pyiceberg.types import DoubleType, NestedField, TimestamptzType

from pipelines.lakehouse import metadata_cache

SCHEMA = Schema(
    NestedField(1, "ts", TimestamptzType(), required=False),
    NestedField(2, "value", DoubleType(), required=False),
)
DAY0 = datetime(2023, 3, 1, tzinfo=UTC)


def rows(day: int, value: float) -> pa.Table:
    ts = [DAY0 + timedelta(days=day, hours=h) for h in range(24)]
    return pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "value": pa.array([value] * 24, pa.float64())})


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Table]:
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=f"file://{tmp_path}/w")
    catalog.create_namespace("silver")
    spec = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=DayTransform(), name="ts_day"))
    yield catalog.create_table("silver.t", schema=SCHEMA, partition_spec=spec)
    metadata_cache.install()


def history(table: Table) -> list[tuple[Any, ...]]:
    """What the operations left, without the ids and times that differ between two runs."""
    table.refresh()
    snapshots = [
        (s.summary.operation.value if s.summary else None, s.summary.get("added-records") if s.summary else None) for s in table.snapshots()
    ]
    refs = sorted((name, ref.snapshot_ref_type.value) for name, ref in table.metadata.refs.items())
    data = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: (r["ts"], r["value"]))
    return [tuple(snapshots), tuple(refs), tuple((r["ts"], r["value"]) for r in data), tuple(sorted(table.properties.items()))]


def operate(table: Table, check: list[bool]) -> None:
    """Appends, a day overwrite on a branch, a fast-forward, properties and a tag: each read of the transaction's
    metadata is compared with a fresh computation from the same inputs."""

    def looked(txn: Transaction) -> None:
        check.append(txn.table_metadata == update_table_metadata(txn._table.metadata, txn._updates))

    with table.transaction() as txn:
        txn.append(rows(0, 1.0))
        looked(txn)
        txn.set_properties({"dataops.run_id": "r1"})
        looked(txn)
        txn.append(rows(1, 2.0))
        looked(txn)
    table.refresh()
    table.manage_snapshots().create_branch(table.current_snapshot().snapshot_id, "audit_r2").commit()  # type: ignore[union-attr]
    with table.transaction() as txn:
        txn.overwrite(rows(1, 3.0), overwrite_filter=GreaterThanOrEqual("ts", (DAY0 + timedelta(days=1)).isoformat()), branch="audit_r2")
        looked(txn)
    table.refresh()
    audited = table.metadata.refs["audit_r2"].snapshot_id
    table.manage_snapshots().set_current_snapshot(snapshot_id=audited).remove_branch("audit_r2").create_tag(
        audited, "published_r2"
    ).commit()
    table.refresh()
    table.delete(GreaterThanOrEqual("ts", (DAY0 + timedelta(days=1)).isoformat()))


def test_cached_metadata_equals_pyiceberg_on_every_look_and_commits_the_same_history(tmp_path: Path) -> None:
    results = []
    for cached in (False, True):
        (metadata_cache.install if cached else metadata_cache.uninstall)()
        catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/{cached}.db", warehouse=f"file://{tmp_path}/w{cached}")
        catalog.create_namespace("silver")
        spec = PartitionSpec(PartitionField(source_id=1, field_id=1000, transform=DayTransform(), name="ts_day"))
        table = catalog.create_table("silver.t", schema=SCHEMA, partition_spec=spec)
        looks: list[bool] = []
        try:
            operate(table, looks)
        finally:
            metadata_cache.install()
        assert looks and all(looks), looks
        results.append(history(table))
    assert results[0] == results[1]


def test_a_new_update_is_seen_at_once(table: Table) -> None:
    metadata_cache.install()
    txn = table.transaction()
    first = txn.table_metadata
    assert txn.table_metadata is first  # computed once while nothing changed
    txn.set_properties({"k": "v"})
    assert txn.table_metadata.properties["k"] == "v"
    assert txn.table_metadata is not first


def _comparable(metadata: Any) -> dict[str, Any]:
    """The metadata without the instants pyiceberg reads off the clock while computing it (two computations of the
    same commit may fall in different milliseconds): the update time and the snapshot log's entry times."""
    dumped = metadata.model_dump(by_alias=False)
    dumped.pop("last_updated_ms")
    dumped["snapshot_log"] = [entry["snapshot_id"] for entry in dumped["snapshot_log"]]
    return dict(dumped)


def test_every_commit_computes_what_pyiceberg_computes_without_the_deep_copy(table: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog's commit uses `shared_update`: its result equals pyiceberg's own (deep-copied) one for every commit
    the platform's kinds of update make, and shares the unchanged parts with the base instead of copying them."""
    import pyiceberg.catalog

    metadata_cache.install()
    assert pyiceberg.catalog.update_table_metadata is metadata_cache.shared_update  # type: ignore[attr-defined]
    compared: list[tuple[bool, bool]] = []

    def spy(base_metadata: Any, updates: Any, enforce_validation: bool = False, metadata_location: str | None = None) -> Any:
        base = base_metadata
        ours = metadata_cache.shared_update(base, updates, enforce_validation, metadata_location)
        theirs = update_table_metadata(base, updates, enforce_validation, metadata_location)
        same = _comparable(ours) == _comparable(theirs)
        # pyiceberg's result copies every snapshot; ours keeps the base's objects where nothing changed them.
        shared = not base.snapshots or ours.snapshots[0] is base.snapshots[0]
        compared.append((same, shared))
        return ours

    monkeypatch.setattr(pyiceberg.catalog, "update_table_metadata", spy)
    operate(table, [])
    assert len(compared) == 5 and all(same for same, _ in compared), compared  # the five commits of `operate`
    assert all(shared for _, shared in compared), compared
