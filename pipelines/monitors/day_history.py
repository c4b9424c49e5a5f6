"""The history of a day partition on main: which commit wrote the rows a day holds, and what it read.

Gold days are replaced whole (an overwrite per day), so the live data files of a day in a snapshot all
come from one commit, and each manifest entry names the snapshot that added its file. That commit's
properties say what it was: a mart publish (with `dataops.inputs`, the input snapshots it read), a
compaction (same rows, new files: the writer is further back), a remediation, or a manual job. Monitors
that check a published day (reconcile.py, distribution.py) start here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pyiceberg.conversions import from_bytes
from pyiceberg.manifest import ManifestContent, ManifestFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.transforms import DayTransform
from pyiceberg.types import DateType

from config.errors import LakehouseError

MAX_ANCESTORS = 50  # snapshots walked back to find who emptied a day, or where it was last good
DATA_PRESERVING = frozenset({"compaction"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InputExpired(LakehouseError):
    """An input snapshot a publish was computed from is no longer in the table's metadata."""


def day_floor(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def properties(snapshot: Snapshot) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary is not None else {}


def signature(paths: Iterable[str]) -> str:
    """A short digest of a day's file set ("" for no files): equal digests, equal rows."""
    ordered = sorted(paths)
    return hashlib.sha256("\n".join(ordered).encode()).hexdigest()[:16] if ordered else ""


def _day_position(table: Table) -> int:
    ts = table.schema().find_field("ts").field_id
    for position, partition in enumerate(table.spec().fields):
        if partition.source_id == ts and isinstance(partition.transform, DayTransform):
            return position
    raise LakehouseError(f"{table.name()} is not partitioned by day(ts); reconciliation reads day partitions")


def _as_day(value: Any) -> datetime | None:
    if isinstance(value, int):
        return _EPOCH + timedelta(days=value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return None


def day_files(table: Table, snapshot_id: int, days: Iterable[datetime]) -> dict[datetime, dict[str, int]]:
    """The live data files of `days` in a snapshot, per day: file path -> the snapshot that added it."""
    wanted = set(days)
    snapshot = table.metadata.snapshot_by_id(snapshot_id)
    found: dict[datetime, dict[str, int]] = {}
    if snapshot is None or not wanted:
        return found
    position = _day_position(table)
    span = (min(wanted), max(wanted))
    for manifest in snapshot.manifests(table.io):
        if manifest.content != ManifestContent.DATA or not _may_hold(manifest, position, span):
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            day = _as_day(entry.data_file.partition[position])
            if day in wanted and entry.snapshot_id is not None:
                found.setdefault(day, {})[entry.data_file.file_path] = entry.snapshot_id
    return found


def days_differing(table: Table, first: int | None, second: int | None) -> list[datetime]:
    """The days whose live files differ between two snapshots (None: the empty table), oldest first.

    Equal files mean equal rows, so these are the days a move of main from one to the other changes. Only
    manifests are read, never data files, and only those the two snapshots do not share: a manifest in both
    lists the same files on both sides.
    """

    def manifests(snapshot_id: int | None) -> dict[str, ManifestFile]:
        snapshot = table.metadata.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
        if snapshot is None:
            return {}
        return {m.manifest_path: m for m in snapshot.manifests(table.io) if m.content == ManifestContent.DATA}

    def files(own: dict[str, ManifestFile], shared: set[str]) -> set[tuple[datetime, str]]:
        position = _day_position(table)
        found = set()
        for path, manifest in own.items():
            if path in shared:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                day = _as_day(entry.data_file.partition[position])
                if day is not None:
                    found.add((day, entry.data_file.file_path))
        return found

    before, after = manifests(first), manifests(second)
    shared = before.keys() & after.keys()
    changed = files(before, shared) ^ files(after, shared)
    return sorted({day for day, _ in changed})


def _may_hold(manifest: ManifestFile, position: int, span: tuple[datetime, datetime]) -> bool:
    """Whether the manifest's partition summary lets it hold a day in `span` (unknown: yes); a long history is many manifests."""
    summaries = manifest.partitions or []
    summary = summaries[position] if position < len(summaries) else None
    if summary is None or summary.lower_bound is None or summary.upper_bound is None:
        return True
    try:
        low, high = (_as_day(from_bytes(DateType(), bound)) for bound in (summary.lower_bound, summary.upper_bound))
    except (ValueError, TypeError):
        return True
    return low is None or high is None or (low <= span[1] and span[0] <= high)


def _emptied_by(table: Table, day: datetime, snapshot_id: int) -> Snapshot | None:
    """The commit after which `day` had no files any more, walking back from `snapshot_id`."""
    child = table.metadata.snapshot_by_id(snapshot_id)
    for _ in range(MAX_ANCESTORS):
        if child is None or child.parent_snapshot_id is None:
            return None
        parent = table.metadata.snapshot_by_id(child.parent_snapshot_id)
        if parent is None:
            return None
        if day_files(table, parent.snapshot_id, [day]).get(day):
            return child
        child = parent
    return None


def find_writer(table: Table, day: datetime, snapshot_id: int, files: dict[str, int] | None = None) -> Snapshot | str:
    """The commit whose rows `day` holds at `snapshot_id`, looking past compactions; why not, when history cannot tell."""
    for _ in range(MAX_ANCESTORS):
        files = day_files(table, snapshot_id, [day]).get(day, {}) if files is None else files
        if files:
            adders = [s for s in (table.metadata.snapshot_by_id(i) for i in set(files.values())) if s is not None]
            writer = max(adders, key=lambda s: s.sequence_number or 0) if adders else None
        else:
            writer = _emptied_by(table, day, snapshot_id)
        if writer is None:
            return "cannot recompute: the commit that wrote the day has expired"
        if properties(writer).get("dataops.operation") not in DATA_PRESERVING:
            return writer
        if writer.parent_snapshot_id is None:
            return "cannot recompute: a compaction without a parent"
        snapshot_id, files = writer.parent_snapshot_id, None
    return "cannot recompute: the day's history is too long to walk"


def main_at(table: Table, timestamp_ms: int) -> int | None:
    """The snapshot main pointed at when `timestamp_ms` came (None: the table had none yet)."""
    log = table.metadata.snapshot_log
    before = [entry for entry in log if entry.timestamp_ms <= timestamp_ms]
    if before:
        return before[-1].snapshot_id
    first = table.metadata.snapshot_by_id(log[0].snapshot_id) if log else None
    if not log or (first is not None and first.parent_snapshot_id is None):
        return None
    raise InputExpired(f"{table.name()} at {datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat()}")
