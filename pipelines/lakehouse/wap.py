"""Write-audit-publish on Iceberg branches, and day-partition reads and overwrites.

A promotion writes to branch `audit-<run_id>` created from `main`, validates what the branch holds, and
publishes by moving `main` to the audited snapshot, only while `main` is still that snapshot's ancestor.
The ref update itself asserts `main` did not move since it was read, so a concurrent publish fails the
commit instead of being overwritten. pyiceberg 0.12 has no fast-forward; ancestry is checked here.

Concurrent writers (parallel backfill tasks, several pipelines feeding one mart) meet in two ways, and
`tally_conflicts()` counts both for the run that met them:
- a *commit conflict*: another writer committed to the table in between (a branch, an append, a publish
  of other days). Nothing we validated changed: reload the metadata and commit again (`with_commit_retry`, the
  platform's one retry rule on tenacity, and `partition_files` to prove the days we audited are as they were).
- a *validation conflict*: the partitions we audited, or the inputs they were computed from, changed
  under us. What we validated is stale: the caller re-plans (recomputes and re-validates).
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysFalse, And, BooleanExpression, GreaterThanOrEqual, LessThan, Or
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata
from tenacity import RetryCallState

from config.errors import LakehouseError, PublishConflictError
from pipelines.lakehouse.current import AUDIT_PREFIX
from pipelines.lakehouse.current import audit_branches as _audit_branch_names
from pipelines.retry import Backoff, retrying

log = logging.getLogger(__name__)
T = TypeVar("T")
MAIN = "main"


@dataclass
class ConflictTally:
    """Conflicts one run met: commits retried on fresh metadata, and promotions re-planned."""

    commit_retries: int = 0
    replans: int = 0


_TALLY: ContextVar[ConflictTally | None] = ContextVar("dataops_conflict_tally", default=None)


@contextmanager
def tally_conflicts() -> Iterator[ConflictTally]:
    """Count the conflicts met inside the block (this thread or task only)."""
    tally = ConflictTally()
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def count_commit_retry() -> None:
    tally = _TALLY.get()
    if tally is not None:
        tally.commit_retries += 1


def count_replan() -> None:
    tally = _TALLY.get()
    if tally is not None:
        tally.replans += 1


def table_name(table: Table) -> str:
    """`gold.name`, as the inventory and the logs spell it (pyiceberg's `Table.name()` is a tuple)."""
    return ".".join(table.name())


def day_ranges(days: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Contiguous [start, end) ranges covering the given day starts."""
    ranges: list[tuple[datetime, datetime]] = []
    for day in sorted(set(days)):
        if ranges and ranges[-1][1] == day:
            ranges[-1] = (ranges[-1][0], day + timedelta(days=1))
        else:
            ranges.append((day, day + timedelta(days=1)))
    return ranges


def days_filter(days: Iterable[datetime], column: str = "ts") -> BooleanExpression:
    expression: BooleanExpression = AlwaysFalse()
    for start, end in day_ranges(days):
        # pyiceberg predicates take positional (term, literal); their pydantic signatures hide that from mypy.
        clause = And(GreaterThanOrEqual(column, start.isoformat()), LessThan(column, end.isoformat()))  # type: ignore[call-arg,arg-type]
        expression = clause if isinstance(expression, AlwaysFalse) else Or(expression, clause)
    return expression


def is_stale_commit(exc: Exception) -> bool:
    """pyiceberg 0.12 reports a commit built on stale metadata (another writer committed to another branch
    in between) as a ValueError about sequence numbers rather than a CommitFailedException."""
    return isinstance(exc, ValueError) and "sequence number" in str(exc)


# Commit conflicts are retried at once-ish: another writer just committed, and the next try usually wins.
# Jitter spreads writers that conflicted together; each call draws its own seed, so they do not retry in step.
COMMIT_BACKOFF = Backoff(first_s=0.1, factor=2.0, max_wait_s=2.0, jitter=0.5)


def with_commit_retry(action: Callable[[], T], *, table: Table, attempts: int = 5, what: str = "commit") -> T:
    """Run `action`, reloading the table and retrying with jittered backoff on a commit conflict.

    The retry is the platform's one rule (pipelines/retry.py `retrying`, on tenacity): a commit conflict is
    retried after `COMMIT_BACKOFF` on freshly loaded metadata; anything else propagates at once; when the
    attempts run out a LakehouseError says how many there were.
    """

    def reload(state: RetryCallState) -> None:
        if state.attempt_number > 1:
            table.refresh()  # the next attempt commits on top of what the other writer committed

    def count_and_log(state: RetryCallState) -> None:
        count_commit_retry()
        error = state.outcome.exception() if state.outcome is not None else None
        log.info(
            "%s on %s conflicted (%s); retrying in %.2fs",
            what,
            table_name(table),
            error,
            state.next_action.sleep if state.next_action else 0,
        )

    controller = retrying(
        COMMIT_BACKOFF,
        attempts=attempts,
        retry_on=is_commit_conflict,
        wait=time.sleep,
        seed=secrets.token_hex(8),
        before=reload,
        before_sleep=count_and_log,
    )
    try:
        return controller(action)
    except (CommitFailedException, ValueError) as exc:
        if not is_commit_conflict(exc):
            raise
        raise LakehouseError(f"{what} on {table_name(table)} kept conflicting after {attempts} attempts: {exc}") from exc


def is_commit_conflict(exc: BaseException) -> bool:
    """Another writer committed first: a CommitFailedException, or pyiceberg 0.12's stale-metadata ValueError."""
    return isinstance(exc, CommitFailedException) or (isinstance(exc, ValueError) and is_stale_commit(exc))


def branch_head(table: Table, branch: str) -> int | None:
    ref = table.metadata.refs.get(branch)
    return ref.snapshot_id if ref is not None else None


def is_ancestor(metadata: TableMetadata, ancestor_id: int, snapshot_id: int) -> bool:
    """Whether `ancestor_id` is `snapshot_id` or one of its parents."""
    current: int | None = snapshot_id
    while current is not None:
        if current == ancestor_id:
            return True
        snapshot = metadata.snapshot_by_id(current)
        current = snapshot.parent_snapshot_id if snapshot is not None else None
    return False


def audit_branch_name(run_id: str) -> str:
    return f"{AUDIT_PREFIX}{run_id}"


def ensure_genesis(table: Table, run_id: str) -> int:
    """Give a table without snapshots an empty first snapshot on main; Iceberg branches need one to start from."""
    table.refresh()
    main_id = branch_head(table, MAIN)
    if main_id is not None:
        return main_id

    def commit() -> None:
        with (
            table.transaction() as tx,
            tx.update_snapshot(snapshot_properties={"run_id": run_id, "dataops.operation": "genesis"}).fast_append(),
        ):
            pass

    with_commit_retry(commit, table=table, what="genesis snapshot")
    table.refresh()
    head = branch_head(table, MAIN)
    assert head is not None
    return head


def open_audit_branch(table: Table, name: str, *, run_id: str, at: int | None = None) -> int:
    """Create (or reset) the audit branch at snapshot `at` (default main's current one); returns where it starts."""
    start = at if at is not None else ensure_genesis(table, run_id)

    def create() -> None:
        manage = table.manage_snapshots()
        if name in table.metadata.refs:
            manage = manage.remove_branch(name)
        manage.create_branch(start, name).commit()

    with_commit_retry(create, table=table, what=f"create branch {name}")
    return start


def overwrite_days(table: Table, data: pa.Table, days: Iterable[datetime], *, branch: str, properties: dict[str, str]) -> int | None:
    """Replace the given day partitions on `branch` with `data`; returns the branch head afterwards."""
    days = list(days)
    if not days:
        return branch_head(table, branch)
    data = data.cast(table.schema().as_arrow())

    def write() -> None:
        with warnings.catch_warnings():
            # pyiceberg warns when the filter matches nothing yet, which is every first write of a day.
            warnings.filterwarnings("ignore", message="Delete operation did not match any records")
            table.overwrite(data, overwrite_filter=days_filter(days), snapshot_properties=properties, branch=branch)

    # The branch is this writer's own: a conflict is another writer's commit elsewhere in the table.
    with_commit_retry(write, table=table, what=f"write {branch}")
    table.refresh()
    return branch_head(table, branch)


def append(table: Table, data: pa.Table, *, properties: dict[str, str]) -> int | None:
    """Append to main (bronze landing, quarantine); retried on commit conflicts."""
    if data.num_rows == 0:
        return branch_head(table, MAIN)
    data = data.cast(table.schema().as_arrow())

    def do() -> None:
        table.append(data, snapshot_properties=properties)

    with_commit_retry(do, table=table, what="append")
    table.refresh()
    return branch_head(table, MAIN)


def append_to_branch(table: Table, data: pa.Table, *, branch: str, properties: dict[str, str]) -> int | None:
    """Append `data` to `branch` (rows that replace nothing, e.g. a new forecast issue); returns the branch head."""
    data = data.cast(table.schema().as_arrow())
    with_commit_retry(lambda: table.append(data, snapshot_properties=properties, branch=branch), table=table, what=f"append to {branch}")
    table.refresh()
    return branch_head(table, branch)


def write_files(table: Table, data: pa.Table) -> list[DataFile]:
    """Write `data` as Parquet data files of `table`, split by its partitions, not yet in any snapshot.

    Large promotions write their rows a bounded part at a time and commit every part's files at once
    (`commit_files`); files of a commit that never happens are orphans, as those of a failed `table.append` are.
    """
    if data.num_rows == 0:
        return []
    from pyiceberg.io.pyarrow import _dataframe_to_data_files  # pyiceberg's own append writes its files so

    data = data.cast(table.schema().as_arrow())
    return list(_dataframe_to_data_files(table_metadata=table.metadata, df=data, io=table.io, write_uuid=uuid.uuid4()))


def commit_files(
    table: Table, files: list[DataFile], *, branch: str, properties: dict[str, str], replace_days: Iterable[datetime] = ()
) -> int | None:
    """One commit on `branch`: drop the rows of `replace_days` (if any), then add `files`; returns the branch head.

    Retried on commit conflicts with the same files (they are only registered, never rewritten)."""
    replace = list(replace_days)
    if not files and not replace:
        return branch_head(table, branch)

    def commit() -> None:
        with table.transaction() as tx:
            if replace:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Delete operation did not match any records")
                    tx.delete(days_filter(replace), snapshot_properties=properties, branch=branch)
            if files:
                with tx.update_snapshot(snapshot_properties=properties, branch=branch).fast_append() as add:
                    for data_file in files:
                        add.append_data_file(data_file)

    with_commit_retry(commit, table=table, what=f"commit {len(files)} file(s) to {branch}")
    table.refresh()
    return branch_head(table, branch)


def read_days(table: Table, days: Iterable[datetime], *, branch: str = MAIN, columns: tuple[str, ...] = ("*",)) -> pa.Table:
    """Rows of the given days as of the head of `branch` (empty with the table's schema if none)."""
    days = list(days)
    snapshot_id = branch_head(table, branch)
    if snapshot_id is None or not days:
        schema = table.schema().as_arrow()
        if columns != ("*",):
            schema = pa.schema([schema.field(c) for c in columns])
        return schema.empty_table()
    return table.scan(row_filter=days_filter(days), snapshot_id=snapshot_id, selected_fields=columns).to_arrow()


def read_days_in_parts(
    table: Table, days: Iterable[datetime], *, snapshot_id: int | None, columns: tuple[str, ...] = ("*",)
) -> Iterator[pa.Table]:
    """Rows of `days` in snapshot `snapshot_id`, one data file at a time (memory holds one of them).

    pyiceberg's own batch reader reads every file of the scan at once on its thread pool before yielding the
    first batch, so a large day would be whole in memory: the files are read one after another here."""
    days = list(days)
    if snapshot_id is None or not days:
        return
    from pyiceberg.io.pyarrow import ArrowScan

    scan = table.scan(row_filter=days_filter(days), snapshot_id=snapshot_id, selected_fields=columns)
    reader = ArrowScan(scan.table_metadata, scan.io, scan.projection(), scan.row_filter, scan.case_sensitive)
    for task in scan.plan_files():
        yield reader.to_table([task])


def count_days(table: Table, days: Iterable[datetime], *, branch: str = MAIN) -> int:
    """Rows of the given days at the head of `branch`, from the manifests' record counts when the table is partitioned
    by day of `ts` and has no delete files (every file then holds one day, wholly inside the filter); else by
    reading the `ts` column."""
    days = list(days)
    snapshot_id = branch_head(table, branch)
    if snapshot_id is None or not days:
        return 0
    fields = table.spec().fields
    by_day = len(fields) == 1 and str(fields[0].transform) == "day" and table.schema().find_column_name(fields[0].source_id) == "ts"
    if by_day:
        tasks = list(table.scan(row_filter=days_filter(days), snapshot_id=snapshot_id).plan_files())
        if not any(task.delete_files for task in tasks):
            return sum(task.file.record_count for task in tasks)
    return read_days(table, days, branch=branch, columns=("ts",)).num_rows


def partition_files(table: Table, days: Iterable[datetime], snapshot_id: int | None) -> frozenset[str]:
    """The data and delete files that hold `days` in snapshot `snapshot_id` (day partitions prune the rest)."""
    days = list(days)
    if snapshot_id is None or not days:
        return frozenset()
    tasks = table.scan(row_filter=days_filter(days), snapshot_id=snapshot_id).plan_files()
    return frozenset(path for task in tasks for path in (task.file.file_path, *(d.file_path for d in task.delete_files)))


def days_changed(table: Table, days: Iterable[datetime], since: int | None) -> bool:
    """Whether main now holds `days` in other files than snapshot `since` did (fresh metadata is loaded)."""
    table.refresh()
    now = branch_head(table, MAIN)
    if now == since:
        return False
    if since is not None and table.metadata.snapshot_by_id(since) is None:
        return True  # expired meanwhile: nothing proves the days are as they were
    days = list(days)
    return partition_files(table, days, since) != partition_files(table, days, now)


def publish(table: Table, branch: str) -> int | None:
    """Move main to the head of `branch` and drop the branch, if main is still an ancestor of that head."""
    table.refresh()
    head = branch_head(table, branch)
    if head is None:
        return branch_head(table, MAIN)
    main_id = branch_head(table, MAIN)
    if main_id is not None and not is_ancestor(table.metadata, main_id, head):
        raise PublishConflictError(
            f"{table_name(table)}: main ({main_id}) is no longer an ancestor of audited snapshot {head} on {branch}; "
            "another run published first. Re-plan the promotion from the new main."
        )
    try:
        table.manage_snapshots().set_current_snapshot(snapshot_id=head).remove_branch(branch).commit()
    except CommitFailedException as exc:
        raise PublishConflictError(f"{table_name(table)}: main moved while publishing {branch}: {exc}") from exc
    table.refresh()
    return head


def drop_branch(table: Table, branch: str) -> None:
    table.refresh()
    if branch in table.metadata.refs:
        with_commit_retry(lambda: table.manage_snapshots().remove_branch(branch).commit(), table=table, what=f"drop {branch}")
        table.refresh()


def audit_branches(table: Table) -> list[str]:
    return _audit_branch_names(table.metadata.refs)
