"""Snapshot expiry and orphan-file cleanup for one table.

pyiceberg 0.12 expires snapshots (`table.maintenance.expire_snapshots()`) by removing them from the table
metadata, but it deletes no file, so the storage they held is never given back. This module does both:

    plan: main's history older than the limit, beyond the last N, and snapshots no ref reaches any more
        (left by dropped audit branches); never a ref's head, nor the history of a branch back to main
    ──► expire in one commit that is refused if any branch or tag moved meanwhile (then re-planned)
    ──► list every file under the table location
    ──► delete those that no remaining snapshot (manifest list, manifests, data and delete files) and no
        metadata file the catalog can still name (current and metadata log) reference, and that are
        older than a grace period, so files a concurrent writer has written but not yet committed survive

All of it happens under the table's write lock. Ages are taken on the wall clock, because snapshot
timestamps and file modification times are wall-clock times.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyarrow import fs as pafs
from pydantic import BaseModel, Field
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update import AssertRefSnapshotId, UpdatesAndRequirements
from pyiceberg.table.update.snapshot import ExpireSnapshots

from config.errors import LakehouseError
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table

log = logging.getLogger(__name__)

DEFAULT_OLDER_THAN = timedelta(days=7)
DEFAULT_RETAIN_LAST = 5
DEFAULT_GRACE = timedelta(hours=1)
_LISTED = 20


class MaintenanceResult(BaseModel):
    """What one expiry and cleanup did (or, for a dry run, would do)."""

    table: str
    dry_run: bool
    snapshots_before: int
    snapshots_expired: int
    expired_snapshot_ids: list[int] = Field(description=f"The first {_LISTED * 2} expired snapshot ids")
    protected_snapshot_ids: list[int] = Field(description="Old snapshots kept because a branch or tag needs them")
    files_deleted: int
    bytes_freed: int
    deleted_files: list[str] = Field(description=f"The first {_LISTED} deleted files, relative to the table location")
    young_orphans_kept: int = Field(description="Unreferenced files newer than the grace period, kept for a writer that may still commit")


@dataclass(frozen=True, kw_only=True)
class _File:
    key: tuple[str, str]
    path: str
    size: int
    mtime: datetime | None


def ancestry(metadata: TableMetadata, snapshot_id: int | None) -> list[int]:
    """`snapshot_id` and its parents still in the metadata, newest first."""
    chain: list[int] = []
    current = snapshot_id
    while current is not None and current not in chain:
        snapshot = metadata.snapshot_by_id(current)
        if snapshot is None:
            break
        chain.append(current)
        current = snapshot.parent_snapshot_id
    return chain


def main_ancestry(metadata: TableMetadata) -> list[int]:
    """main's head and its parents still in the metadata, newest first (empty for a table without snapshots)."""
    ref = metadata.refs.get(wap.MAIN)
    return ancestry(metadata, ref.snapshot_id if ref is not None else None)


def protected_snapshots(metadata: TableMetadata, *, retain_last: int) -> set[int]:
    """Snapshots expiry must keep whatever their age: every ref's head, the last `retain_last` of main, and
    each other branch's own history down to the main snapshot it forked from (so its changes stay diffable)."""
    main = main_ancestry(metadata)
    keep = set(main[:retain_last]) | {ref.snapshot_id for ref in metadata.refs.values()}
    on_main = set(main)
    for name, ref in metadata.refs.items():
        if name == wap.MAIN:
            continue
        for snapshot_id in ancestry(metadata, ref.snapshot_id):
            keep.add(snapshot_id)
            if snapshot_id in on_main:
                break  # the fork point; older history belongs to main and follows main's rules
    return keep


def plan_expiry(metadata: TableMetadata, *, cutoff: datetime, retain_last: int) -> tuple[list[int], list[int]]:
    """(snapshots to expire, old snapshots kept only because something protects them), oldest first."""
    cutoff_ms = int(cutoff.timestamp() * 1000)
    keep = protected_snapshots(metadata, retain_last=retain_last)
    old = sorted((s for s in metadata.snapshots if s.timestamp_ms < cutoff_ms), key=lambda s: (s.timestamp_ms, s.snapshot_id))
    return [s.snapshot_id for s in old if s.snapshot_id not in keep], [s.snapshot_id for s in old if s.snapshot_id in keep]


class ExpireIfRefsUnchanged(ExpireSnapshots):
    """pyiceberg's expiry, plus a requirement per ref: the commit fails if a branch or tag moved or went away
    since the plan.

    pyiceberg 0.12 commits expiry with no requirement at all, and the catalog applies the removal to whatever
    metadata is current, dropping any ref that points at a removed snapshot. With these requirements the
    catalog refuses instead and the caller re-plans. A ref created meanwhile is not covered (no requirement
    can name it); here branches are only ever created at main's head, which expiry never removes.
    """

    def _commit(self) -> UpdatesAndRequirements:
        updates, requirements = super()._commit()
        refs = self._transaction.table_metadata.refs
        guards = tuple(
            AssertRefSnapshotId.model_validate({"ref": name, "snapshot-id": ref.snapshot_id}) for name, ref in sorted(refs.items())
        )
        return updates, (*requirements, *guards)


def _expire(table: Table, *, cutoff: datetime, retain_last: int) -> tuple[list[int], list[int]]:
    """Plan on the table's current metadata and commit the expiry; returns the plan that was committed."""
    planned, protected = plan_expiry(table.metadata, cutoff=cutoff, retain_last=retain_last)
    if planned:
        ExpireIfRefsUnchanged(Transaction(table, autocommit=True)).by_ids(planned).commit()
    return planned, protected


def _fs_and_path(io: FileIO, location: str) -> tuple[pafs.FileSystem, tuple[str, str]]:
    scheme, netloc, path = PyArrowFileIO.parse_location(location)
    if isinstance(io, PyArrowFileIO):
        return io.fs_by_scheme(scheme, netloc), (scheme, path)
    filesystem, _ = pafs.FileSystem.from_uri(location)
    return filesystem, (scheme, path)


def _key(location: str) -> tuple[str, str]:
    """A location as (scheme, path) so `file:///x` in metadata matches `/x` from a listing."""
    scheme, _, path = PyArrowFileIO.parse_location(location)
    return scheme, path


def referenced_files(
    io: FileIO, metadata: TableMetadata, snapshots: Iterable[Snapshot], metadata_files: Iterable[str]
) -> set[tuple[str, str]]:
    """Every file the given snapshots read, the statistics files, and the named metadata files."""
    found = {_key(m) for m in metadata_files}
    found |= {_key(s.statistics_path) for s in metadata.statistics}
    found |= {_key(s.statistics_path) for s in metadata.partition_statistics}
    manifests_read: set[str] = set()
    for snapshot in snapshots:
        found.add(_key(snapshot.manifest_list))
        for manifest in snapshot.manifests(io):
            found.add(_key(manifest.manifest_path))
            if manifest.manifest_path in manifests_read:
                continue
            manifests_read.add(manifest.manifest_path)
            # Live entries only: a DELETED entry records that its snapshot no longer reads the file.
            found |= {_key(entry.data_file.file_path) for entry in manifest.fetch_manifest_entry(io, discard_deleted=True)}
    return found


def _list_files(io: FileIO, location: str) -> tuple[pafs.FileSystem, list[_File]]:
    filesystem, (scheme, root) = _fs_and_path(io, location)
    infos = filesystem.get_file_info(pafs.FileSelector(root.rstrip("/"), recursive=True, allow_not_found=True))
    files = [
        _File(key=(scheme, info.path), path=info.path, size=int(info.size or 0), mtime=info.mtime)
        for info in infos
        if info.type == pafs.FileType.File
    ]
    return filesystem, files


def expire_and_clean(
    ctx: PlatformContext,
    table_name: str,
    *,
    older_than: timedelta = DEFAULT_OLDER_THAN,
    retain_last: int = DEFAULT_RETAIN_LAST,
    grace: timedelta = DEFAULT_GRACE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> MaintenanceResult:
    """Expire old snapshots of `table_name` and delete the files nothing references any more."""
    ctx.inventory.table(table_name)  # a clear error for an unknown table
    if retain_last < 1:
        raise LakehouseError(f"retain_last must keep at least main's current snapshot; got {retain_last}")
    now = now or datetime.now(UTC)
    cutoff = now - older_than
    with ctx.control.table_lock(table_name):
        table = load_table(ctx.catalog, table_name)
        table.refresh()
        before = len(table.metadata.snapshots)
        if dry_run:
            expired, protected = plan_expiry(table.metadata, cutoff=cutoff, retain_last=retain_last)
        else:
            expired, protected = wap.with_commit_retry(
                lambda: _expire(table, cutoff=cutoff, retain_last=retain_last), table=table, what="expire snapshots"
            )
            table.refresh()
        gone = set(expired)
        remaining = [s for s in table.metadata.snapshots if s.snapshot_id not in gone]
        metadata_files = [table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)]
        live = referenced_files(table.io, table.metadata, remaining, metadata_files)
        filesystem, files = _list_files(table.io, table.location())
        _check_listing_matches(table, files, live)
        orphans = [f for f in files if f.key not in live]
        old_enough = [f for f in orphans if f.mtime is not None and f.mtime <= now - grace]
        if not dry_run:
            for f in old_enough:
                filesystem.delete_file(f.path)
        if expired or old_enough:
            log.info(
                "%s %s: expired %d snapshot(s), deleted %d file(s)",
                "would clean" if dry_run else "cleaned",
                table_name,
                len(expired),
                len(old_enough),
            )
    root = _key(table.location())[1].rstrip("/") + "/"
    return MaintenanceResult(
        table=table_name,
        dry_run=dry_run,
        snapshots_before=before,
        snapshots_expired=len(expired),
        expired_snapshot_ids=expired[: _LISTED * 2],
        protected_snapshot_ids=protected[: _LISTED * 2],
        files_deleted=len(old_enough),
        bytes_freed=sum(f.size for f in old_enough),
        deleted_files=sorted(f.path.removeprefix(root) for f in old_enough)[:_LISTED],
        young_orphans_kept=len(orphans) - len(old_enough),
    )


def _check_listing_matches(table: Table, files: list[_File], live: set[tuple[str, str]]) -> None:
    """Refuse to delete anything if the listing does not show the current metadata file: paths would then be
    compared in two spellings and every file would look unreferenced."""
    listed = {f.key for f in files}
    current = _key(table.metadata_location)
    if current not in listed or current not in live:
        raise LakehouseError(
            f"{'.'.join(table.name())}: the listing of {table.location()} does not show the current metadata file "
            f"{table.metadata_location}; refusing to delete files whose paths cannot be matched"
        )
