"""Read-only diagnosis of the lake: profile a day, list a table's history, diff two snapshots. Comparing
a day of silver with what its source serves now (`refetch_and_diff`) lives in `pipelines.refetch`.

Nothing here writes.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata

from config.errors import LakehouseError
from pipelines import inspection
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.lakehouse.maintenance import ancestry, main_ancestry

SAMPLE = 5


def json_safe(value: Any) -> Any:
    """`value` as plain JSON: instants and dates in ISO 8601, non-finite numbers as null, bytes in base64."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | Decimal):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    return str(value)  # UUID, intervals and whatever else DuckDB returns: their text form


def render_key(values: tuple[Any, ...]) -> str:
    """A record key as the promotion writes it to quarantine: 2023-10-21T00:00:00+00:00|wind."""
    return "|".join(v.isoformat() if isinstance(v, datetime) else str(v) for v in values)


def day_start(day: date) -> datetime:
    """The first instant of a UTC day, the partition a diagnosis reads."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# -- profile -------------------------------------------------------------------------------------------


class ColumnProfile(BaseModel):
    name: str
    type: str
    nulls: int
    distinct: int = Field(description="Distinct non-null values")
    min: Any = None
    max: Any = None
    mean: float | None = None


class PartitionProfile(BaseModel):
    table: str
    day: str
    snapshot_id: int | None = Field(description="main's snapshot the profile was read from")
    rows: int
    first_ts: str | None
    last_ts: str | None
    key: list[str] = Field(description="The table's key columns; a key seen more than once is a duplicate")
    duplicate_keys: int = Field(description="Keys that occur more than once")
    duplicate_rows: int = Field(description="Rows beyond the first of each duplicated key")
    duplicate_sample: list[dict[str, Any]]
    columns: list[ColumnProfile]


def profile_partition(ctx: PlatformContext, table_name: str, day: date) -> PartitionProfile:
    """Rows, nulls, ranges, distinct values and duplicate keys of one UTC day of `table_name` on main."""
    spec = ctx.inventory.table(table_name)
    table = load_table(ctx.catalog, table_name)
    data = wap.read_days(table, [day_start(day)])
    columns = []
    for name in data.column_names:
        column = data.column(name)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        profile = ColumnProfile(name=name, type=str(column.type), nulls=column.null_count, distinct=pc.count_distinct(column).as_py())
        if numeric and column.null_count < len(column):
            bounds = pc.min_max(column).as_py()
            profile.min, profile.max = json_safe(bounds["min"]), json_safe(bounds["max"])
            profile.mean = json_safe(pc.mean(column).as_py())
        columns.append(profile)
    key = list(spec.key)
    counts = data.group_by(key).aggregate([([], "count_all")]) if data.num_rows else pa.table({"count_all": pa.array([], pa.int64())})
    duplicates = counts.filter(pc.greater(counts.column("count_all"), 1))
    ts = data.column("ts")
    snapshot = table.current_snapshot()
    return PartitionProfile(
        table=table_name, day=day.isoformat(), snapshot_id=snapshot.snapshot_id if snapshot else None, rows=data.num_rows,
        first_ts=json_safe(pc.min(ts).as_py()), last_ts=json_safe(pc.max(ts).as_py()), key=key, duplicate_keys=duplicates.num_rows,
        duplicate_rows=sum(c - 1 for c in duplicates.column("count_all").to_pylist()),
        duplicate_sample=json_safe(duplicates.slice(0, SAMPLE).to_pylist()), columns=columns,
    )  # fmt: skip


# -- history -------------------------------------------------------------------------------------------


class SnapshotEntry(BaseModel):
    snapshot_id: int
    parent_snapshot_id: int | None
    committed_at: str
    operation: str
    run_id: str | None
    added_records: int
    deleted_records: int
    total_records: int
    refs: list[str]


class BranchEntry(BaseModel):
    name: str
    type: str = Field(description="branch or tag")
    snapshot_id: int
    committed_at: str | None
    run_id: str | None = Field(description="The run whose commit the ref points at (audit-<run_id> branches are kept for diagnosis)")
    forked_from: int | None = Field(description="The newest snapshot of main this branch descends from")


class TableHistory(BaseModel):
    table: str
    current_snapshot_id: int | None
    snapshots: list[SnapshotEntry] = Field(description="main's history, newest first")
    older_snapshots: int = Field(description="main's snapshots not listed because of the limit")
    branches: list[BranchEntry] = Field(description="Every ref other than main")


def table_history(ctx: PlatformContext, table_name: str, *, limit: int = 20) -> TableHistory:
    """main's snapshots newest first with their run ids and record counts, and the other branches and tags."""
    table = load_table(ctx.catalog, table_name)
    entries = {e["snapshot_id"]: e for e in inspection.history_of(ctx, table_name)}  # read after `table`: a superset of it
    main = [s for s in main_ancestry(table.metadata) if s in entries]
    branches = []
    for name, ref in sorted(table.metadata.refs.items()):
        if name != wap.MAIN:
            head = entries.get(ref.snapshot_id, {})
            forked = next((s for s in ancestry(table.metadata, ref.snapshot_id) if s in set(main)), None)
            entry = BranchEntry(
                name=name, type=str(ref.snapshot_ref_type.value), snapshot_id=ref.snapshot_id, committed_at=head.get("committed_at"),
                run_id=head.get("run_id"), forked_from=forked,
            )  # fmt: skip
            branches.append(entry)
    return TableHistory(
        table=table_name, current_snapshot_id=main[0] if main else None, branches=branches,
        snapshots=[SnapshotEntry.model_validate(entries[s]) for s in main[:limit]], older_snapshots=max(0, len(main) - limit),
    )  # fmt: skip


# -- diff ------------------------------------------------------------------------------------------------


class RowChange(BaseModel):
    key: dict[str, Any]
    before: dict[str, Any] = Field(description="The changed columns before")
    after: dict[str, Any] = Field(description="The changed columns after")


class RowsDiff(BaseModel):
    key: list[str] = Field(description="Rows are matched on these columns")
    only_before: int
    only_after: int
    changed: int
    changed_columns: dict[str, int] = Field(description="How many matched rows changed in each column")
    sample_only_before: list[dict[str, Any]]
    sample_only_after: list[dict[str, Any]]
    sample_changed: list[RowChange]


class SnapshotDiff(RowsDiff):
    table: str
    from_snapshot_id: int
    to_snapshot_id: int
    day: str | None
    rows_before: int
    rows_after: int


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def diff_rows(before: list[dict[str, Any]], after: list[dict[str, Any]], *, key: list[str], compare: list[str], limit: int) -> RowsDiff:
    """Rows only before, only after, and rows whose `compare` columns changed, matched on `key`.

    A key held by several rows on either side (bronze keeps revisions) is compared as a bag of whole rows.
    """
    sides: dict[tuple[Any, ...], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = defaultdict(lambda: ([], []))
    for row in before:
        sides[tuple(row[k] for k in key)][0].append(row)
    for row in after:
        sides[tuple(row[k] for k in key)][1].append(row)
    only_before: list[dict[str, Any]] = []
    only_after: list[dict[str, Any]] = []
    changes: list[RowChange] = []
    per_column: Counter[str] = Counter()
    for k in sorted(sides, key=lambda t: json.dumps(json_safe(t))):
        old, new = sides[k]
        if len(old) == 1 and len(new) == 1:
            differing = [c for c in compare if not _same(old[0][c], new[0][c])]
            per_column.update(differing)
            if differing:
                before_values, after_values = ({c: row[c] for c in differing} for row in (old[0], new[0]))
                changes.append(
                    RowChange(key=json_safe(dict(zip(key, k, strict=True))), before=json_safe(before_values), after=json_safe(after_values))
                )
            continue
        marks = {json.dumps(json_safe(r), sort_keys=True): r for r in (*old, *new)}
        old_bag = Counter(json.dumps(json_safe(r), sort_keys=True) for r in old)
        new_bag = Counter(json.dumps(json_safe(r), sort_keys=True) for r in new)
        only_before += [marks[m] for m in (old_bag - new_bag).elements()]
        only_after += [marks[m] for m in (new_bag - old_bag).elements()]
    return RowsDiff(
        key=key, only_before=len(only_before), only_after=len(only_after), changed=len(changes), changed_columns=dict(per_column),
        sample_only_before=json_safe(only_before[:limit]), sample_only_after=json_safe(only_after[:limit]), sample_changed=changes[:limit],
    )  # fmt: skip


def _known_snapshot(table: Table, name: str, snapshot_id: int) -> None:
    if table.metadata.snapshot_by_id(snapshot_id) is not None:
        return
    recent = main_ancestry(table.metadata)[:5]
    heads = [f"{n}={r.snapshot_id}" for n, r in sorted(table.metadata.refs.items()) if n != wap.MAIN]
    raise LakehouseError(
        f"{name} has no snapshot {snapshot_id} (expired or never existed); main's newest: {', '.join(map(str, recent)) or 'none'}"
        + (f"; other refs: {', '.join(heads)}" if heads else "")
        + ". Call table_history for the full list."
    )


def _run_of(metadata: TableMetadata, snapshot_id: int) -> str | None:
    snapshot = metadata.snapshot_by_id(snapshot_id)
    return snapshot.summary.additional_properties.get("run_id") if snapshot is not None and snapshot.summary is not None else None


def _before_run(metadata: TableMetadata, snapshot_id: int) -> int | None:
    """The newest ancestor committed by another run: a run's overwrite commits a delete and then an append,
    so the direct parent is a half-way state. Falls back to the direct parent."""
    chain = ancestry(metadata, snapshot_id)
    run = _run_of(metadata, snapshot_id)
    earlier = [s for s in chain[1:] if run is None or _run_of(metadata, s) != run]
    return earlier[0] if earlier else (chain[1] if len(chain) > 1 else None)


def diff_snapshots(
    ctx: PlatformContext, table_name: str, *, from_id: int | None = None, to_id: int | None = None, day: date | None = None, limit: int = 20
) -> SnapshotDiff:
    """What changed between two snapshots of `table_name` (default: main's head against the state before its run)."""
    spec = ctx.inventory.table(table_name)
    table = load_table(ctx.catalog, table_name)
    if to_id is None:
        head = table.current_snapshot()
        if head is None:
            raise LakehouseError(f"{table_name} has no snapshot yet; run its pipeline first")
        to_id = head.snapshot_id
    _known_snapshot(table, table_name, to_id)
    if from_id is None:
        from_id = _before_run(table.metadata, to_id)
        if from_id is None:
            raise LakehouseError(
                f"snapshot {to_id} of {table_name} has no parent left to compare with; name from_snapshot_id (see table_history)"
            )
    _known_snapshot(table, table_name, from_id)
    row_filter: BooleanExpression = wap.days_filter([day_start(day)]) if day else AlwaysTrue()
    before = table.scan(row_filter=row_filter, snapshot_id=from_id).to_arrow().to_pylist()
    after = table.scan(row_filter=row_filter, snapshot_id=to_id).to_arrow().to_pylist()
    key = list(spec.key)
    compare = [c.name for c in spec.columns if c.name not in key]
    rows = diff_rows(before, after, key=key, compare=compare, limit=limit)
    return SnapshotDiff(
        **rows.model_dump(), table=table_name, from_snapshot_id=from_id, to_snapshot_id=to_id, day=day.isoformat() if day else None,
        rows_before=len(before), rows_after=len(after),
    )  # fmt: skip
