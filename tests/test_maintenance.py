"""Snapshot expiry and orphan-file cleanup, through the registry, on tables filled by the real pipeline."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table, Transaction

from config.errors import ToolError
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.lakehouse.maintenance import ExpireIfRefsUnchanged, ancestry, main_ancestry, plan_expiry
from pipelines.promotion import run_pipeline
from tests.conftest import utc, window
from tools.base import ToolContext
from tools.registry import REGISTRY

SILVER = "silver.carbon_intensity"
BRANCH = "audit-kept"


def expire(ctx: PlatformContext, **arguments: Any) -> Any:
    spec = REGISTRY["expire_snapshots"]
    return spec.invoke(ToolContext(platform=ctx, now=utc(2024, 1, 1), call_id="c1"), spec.parse({"table": SILVER, **arguments}))


def local(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def files_under(table: Table) -> set[Path]:
    return {p for p in local(table.location()).rglob("*") if p.is_file()}


def age(paths: set[Path], hours: float) -> None:
    """Pretend the files were written `hours` ago (beyond the grace period that protects a writer's fresh files)."""
    then = time.time() - hours * 3600
    for p in paths:
        os.utime(p, (then, then))


def rows(table: Table, snapshot_id: int | None = None) -> list[str]:
    data = table.scan(snapshot_id=snapshot_id).to_arrow() if snapshot_id else table.scan().to_arrow()
    return sorted(json.dumps(r, default=str, sort_keys=True) for r in data.to_pylist())


def data_files(table: Table, snapshot_id: int) -> set[Path]:
    snapshot = table.metadata.snapshot_by_id(snapshot_id)
    assert snapshot is not None
    return {local(task.file.file_path) for task in table.scan(snapshot_id=snapshot_id).plan_files()}


def needed_files(table: Table) -> set[Path]:
    """Every file the remaining snapshots read."""
    needed = set()
    for snapshot in table.metadata.snapshots:
        needed.add(local(snapshot.manifest_list))
        for manifest in snapshot.manifests(table.io):
            needed.add(local(manifest.manifest_path))
            needed |= {local(e.data_file.file_path) for e in manifest.fetch_manifest_entry(table.io)}
    return needed


@pytest.fixture
def lake(ctx: PlatformContext) -> Table:
    """silver.carbon_intensity after a few runs: overwritten days, a held run's unreachable snapshot, and a kept audit branch."""
    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 18), (2023, 10, 20)))
    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 20), (2023, 10, 24)))  # the NESO outage: days held back
    table = load_table(ctx.catalog, SILVER)
    wap.open_audit_branch(table, BRANCH, run_id="kept")
    day = utc(2023, 10, 19)
    changed = wap.read_days(table, [day]).slice(0, 30)
    changed = changed.set_column(changed.schema.get_field_index("actual"), "actual", pa.array([1.0] * 30))
    wap.overwrite_days(table, changed, [day], branch=BRANCH, properties={"run_id": "kept"})
    # main moves on past the branch's fork point: a re-run writes the same rows in new files.
    run_pipeline(ctx, "carbon_intensity", window((2023, 10, 18), (2023, 10, 19)))
    return table.refresh()


def test_expiry_removes_old_snapshots_and_orphans_and_keeps_what_main_and_branches_read(ctx: PlatformContext, lake: Table) -> None:
    main_rows, branch_head = rows(lake), wap.branch_head(lake, BRANCH)
    assert branch_head is not None
    branch_rows, branch_files = rows(lake, branch_head), data_files(lake, branch_head)
    fork = next(s for s in ancestry(lake.metadata, branch_head) if s in main_ancestry(lake.metadata))
    assert fork != lake.current_snapshot().snapshot_id
    before = files_under(lake)
    age(before, hours=2)

    result = expire(ctx, older_than_hours=0, retain_last=1)

    lake.refresh()
    kept = {s.snapshot_id for s in lake.metadata.snapshots}
    assert result.snapshots_before == len(kept) + result.snapshots_expired and result.snapshots_expired >= 4
    assert lake.current_snapshot().snapshot_id in kept and branch_head in kept
    assert fork in kept and fork in result.protected_snapshot_ids, "the main snapshot the branch forked from stays diffable"
    assert not set(result.expired_snapshot_ids) & kept
    assert result.files_deleted > 0 and result.bytes_freed > 0 and result.young_orphans_kept == 0
    after = files_under(lake)
    assert len(before - after) == result.files_deleted
    assert {p.name for p in before - after} >= {Path(f).name for f in result.deleted_files}
    assert any(f.startswith("data/") for f in result.deleted_files), "data files of expired snapshots are freed"
    assert needed_files(lake) <= after, "every file a remaining snapshot reads is still there"
    assert branch_files <= after, "the audit branch's data files survive"
    assert rows(lake) == main_rows and rows(lake, branch_head) == branch_rows

    again = expire(ctx, older_than_hours=0, retain_last=1)
    assert (again.snapshots_expired, again.files_deleted) == (0, 0)
    assert run_pipeline(ctx, "carbon_intensity", window((2023, 10, 19), (2023, 10, 20))).status == "succeeded"
    assert rows(load_table(ctx.catalog, SILVER)) == main_rows


def test_a_dry_run_deletes_nothing_and_names_what_a_real_run_deletes(ctx: PlatformContext, lake: Table) -> None:
    age(files_under(lake), hours=2)
    before_files, before_snapshots = files_under(lake), len(lake.metadata.snapshots)

    preview = expire(ctx, older_than_hours=0, retain_last=2, dry_run=True)
    assert preview.dry_run and preview.snapshots_expired > 0 and preview.files_deleted > 0
    assert files_under(lake) == before_files
    assert len(lake.refresh().metadata.snapshots) == before_snapshots

    done = expire(ctx, older_than_hours=0, retain_last=2)
    assert (done.expired_snapshot_ids, done.files_deleted, done.bytes_freed) == (
        preview.expired_snapshot_ids,
        preview.files_deleted,
        preview.bytes_freed,
    )
    assert done.deleted_files == preview.deleted_files


def test_files_newer_than_the_grace_period_are_kept(ctx: PlatformContext, lake: Table) -> None:
    age(files_under(lake), hours=2)
    data = local(lake.location()) / "data" / "ts_day=2023-10-18"
    stale, fresh = data / "stale-orphan.parquet", data / "in-flight-writer.parquet"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y" * 100)
    age({stale}, hours=2)

    result = expire(ctx, older_than_hours=0, retain_last=1)
    assert not stale.exists() and "data/ts_day=2023-10-18/stale-orphan.parquet" in result.deleted_files
    assert fresh.exists() and result.young_orphans_kept == 1


def test_young_snapshots_and_the_newest_of_main_are_kept(ctx: PlatformContext, lake: Table) -> None:
    age(files_under(lake), hours=2)
    assert expire(ctx).snapshots_expired == 0, "everything is younger than the default week"
    main = []
    current: int | None = lake.current_snapshot().snapshot_id
    while current is not None and (snapshot := lake.metadata.snapshot_by_id(current)) is not None:
        main.append(current)
        current = snapshot.parent_snapshot_id
    result = expire(ctx, older_than_hours=0, retain_last=2)
    kept = {s.snapshot_id for s in lake.refresh().metadata.snapshots}
    fork = next(s for s in ancestry(lake.metadata, wap.branch_head(lake, BRANCH)) if s in main)
    assert fork == main[2], "the re-run's delete and append came after the fork"
    assert set(main[:2]) <= kept and set(main[2:]) & kept == {fork}
    assert result.protected_snapshot_ids, "old snapshots kept by retain_last or the branch are reported"


def test_expiry_waits_for_the_table_lock(ctx: PlatformContext, lake: Table) -> None:
    done = threading.Event()
    with ctx.control.table_lock(SILVER):
        worker = threading.Thread(target=lambda: (expire(ctx, older_than_hours=0, retain_last=1), done.set()))
        worker.start()
        time.sleep(0.5)
        assert not done.is_set(), "a writer holds the table; expiry must wait"
    worker.join(timeout=30)
    assert done.is_set()


def test_the_expiry_commit_is_refused_when_a_ref_moved_since_the_plan(ctx: PlatformContext, lake: Table) -> None:
    stale = load_table(ctx.catalog, SILVER)
    planned, _ = plan_expiry(stale.metadata, cutoff=datetime.now().astimezone() + timedelta(hours=1), retain_last=1)
    assert planned
    # Another writer drops the audit branch meanwhile (as clean_audit_branches does, outside the table lock).
    wap.drop_branch(load_table(ctx.catalog, SILVER), BRANCH)
    with pytest.raises(CommitFailedException):
        ExpireIfRefsUnchanged(Transaction(stale, autocommit=True)).by_ids(planned).commit()
    assert len(lake.refresh().metadata.snapshots) == len(stale.metadata.snapshots), "nothing was expired"


def test_unknown_tables_and_bad_arguments_are_refused(ctx: PlatformContext) -> None:
    with pytest.raises(ToolError, match=r"unknown table 'silver\.carbon'; known: .*silver\.carbon_intensity"):
        expire(ctx, table="silver.carbon")
    with pytest.raises(ToolError, match="retain_last: Input should be greater than or equal to 1"):
        expire(ctx, retain_last=0)
    spec = REGISTRY["expire_snapshots"]
    assert spec.effect == "destructive"
    assert all(field.description for field in spec.input.model_fields.values())
