"""Write-audit-publish semantics on real Iceberg tables."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException

from config.errors import LakehouseError, PublishConflictError
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from tests.conftest import utc


def weather_rows(day_hours: list[int], value: float, run: str) -> pa.Table:
    ts = [utc(2023, 1, 1, h) for h in day_hours]
    n = len(ts)
    return pa.table(
        {"ts": ts, "temperature_c": [value] * n, "run_id": [run] * n, "fetched_at": [utc(2023, 1, 2)] * n, "payload_hash": ["h"] * n}
    )


def test_audit_branch_is_invisible_until_published(ctx: PlatformContext) -> None:
    table = load_table(ctx.catalog, "silver.weather")
    day = [utc(2023, 1, 1)]
    wap.open_audit_branch(table, "audit-a", run_id="a")
    wap.overwrite_days(table, weather_rows(list(range(24)), 4.0, "a"), day, branch="audit-a", properties={"run_id": "a"})
    assert table.scan().to_arrow().num_rows == 0, "readers of main see nothing yet"
    assert wap.read_days(table, day, branch="audit-a").num_rows == 24
    wap.publish(table, "audit-a")
    assert table.scan().to_arrow().num_rows == 24
    assert "audit-a" not in table.metadata.refs


def test_publish_refuses_when_main_moved_away(ctx: PlatformContext) -> None:
    table = load_table(ctx.catalog, "silver.weather")
    day = [utc(2023, 1, 1)]
    wap.open_audit_branch(table, "audit-slow", run_id="slow")
    wap.overwrite_days(table, weather_rows(list(range(24)), 1.0, "slow"), day, branch="audit-slow", properties={"run_id": "slow"})
    # Another run publishes first.
    wap.open_audit_branch(table, "audit-fast", run_id="fast")
    wap.overwrite_days(table, weather_rows(list(range(24)), 2.0, "fast"), day, branch="audit-fast", properties={"run_id": "fast"})
    wap.publish(table, "audit-fast")
    with pytest.raises(PublishConflictError, match="no longer an ancestor of audited snapshot"):
        wap.publish(table, "audit-slow")
    assert set(table.scan().to_arrow().column("temperature_c").to_pylist()) == {2.0}
    assert "audit-slow" in table.metadata.refs, "a refused branch is kept for diagnosis"


def test_overwrite_touches_only_the_named_days(ctx: PlatformContext) -> None:
    table = load_table(ctx.catalog, "silver.weather")
    two_days = pa.concat_tables(
        [
            weather_rows(list(range(24)), 1.0, "a"),
            weather_rows(list(range(24)), 1.0, "a").set_column(0, "ts", pa.array([utc(2023, 1, 2, h) for h in range(24)])),
        ]
    )
    wap.open_audit_branch(table, "audit-a", run_id="a")
    wap.overwrite_days(table, two_days, [utc(2023, 1, 1), utc(2023, 1, 2)], branch="audit-a", properties={"run_id": "a"})
    wap.publish(table, "audit-a")
    wap.open_audit_branch(table, "audit-b", run_id="b")
    wap.overwrite_days(table, weather_rows([0, 1], 9.0, "b"), [utc(2023, 1, 1)], branch="audit-b", properties={"run_id": "b"})
    wap.publish(table, "audit-b")
    data = table.scan().to_arrow().to_pylist()
    assert len(data) == 26
    assert {r["temperature_c"] for r in data if r["ts"].day == 1} == {9.0}
    assert {r["temperature_c"] for r in data if r["ts"].day == 2} == {1.0}


def test_kept_audit_branches_are_cleaned_after_retention(ctx: PlatformContext) -> None:
    from datetime import timedelta

    from pipelines.audit_retention import clean_audit_branches
    from pipelines.promotion import run_pipeline
    from tests.conftest import window

    # Schema drift holds the run: its audit branch would be kept for diagnosis, so make a held run by hand.
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 1, 2)))
    table = load_table(ctx.catalog, "silver.carbon_intensity")
    branch = wap.audit_branch_name(result.run_id)
    wap.open_audit_branch(table, branch, run_id=result.run_id)
    spec = ctx.inventory.pipeline("carbon_intensity")
    assert clean_audit_branches(ctx, spec) == [], "within retention the branch stays"
    assert branch in load_table(ctx.catalog, "silver.carbon_intensity").metadata.refs
    later = result.window_end + timedelta(days=365 * 10)
    assert clean_audit_branches(ctx, spec, now=later) == [f"silver.carbon_intensity@{branch}"]
    assert branch not in load_table(ctx.catalog, "silver.carbon_intensity").metadata.refs


class _Table:
    """The parts of a pyiceberg Table that `with_commit_retry` touches: its name and a metadata reload."""

    def __init__(self) -> None:
        self.refreshes = 0

    def name(self) -> tuple[str, ...]:
        return ("silver", "weather")

    def refresh(self) -> _Table:
        self.refreshes += 1
        return self


def _conflicting(times: int, error: Exception) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def commit() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise error
        return "committed"

    return calls, commit


def test_a_commit_conflict_is_committed_again_on_fresh_metadata_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(wap.time, "sleep", waits.append)
    table = _Table()
    calls, commit = _conflicting(2, CommitFailedException("branch main has changed"))
    with wap.tally_conflicts() as tally:
        assert wap.with_commit_retry(commit, table=table, what="append") == "committed"  # type: ignore[arg-type]
    assert calls == [1, 2, 3] and table.refreshes == 2 and tally.commit_retries == 2
    # The one backoff rule with jitter: 0.1 s then 0.2 s, each scaled by a factor in [0.5, 1.5].
    assert len(waits) == 2 and 0.05 <= waits[0] <= 0.15 and 0.1 <= waits[1] <= 0.3


def test_a_stale_commit_counts_as_a_conflict_and_other_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wap.time, "sleep", lambda _s: None)
    calls, commit = _conflicting(1, ValueError("Cannot add snapshot with sequence number 7 older than last sequence number 8"))
    assert wap.with_commit_retry(commit, table=_Table()) == "committed"  # type: ignore[arg-type]
    assert calls == [1, 2]
    calls, commit = _conflicting(1, ValueError("schema mismatch"))
    with pytest.raises(ValueError, match="schema mismatch"):
        wap.with_commit_retry(commit, table=_Table())  # type: ignore[arg-type]
    assert calls == [1]


def test_commit_conflicts_that_never_end_are_a_lakehouse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wap.time, "sleep", lambda _s: None)
    calls, commit = _conflicting(99, CommitFailedException("branch main has changed"))
    with pytest.raises(LakehouseError) as caught:
        wap.with_commit_retry(commit, table=_Table(), attempts=3, what="write audit-r1")  # type: ignore[arg-type]
    assert str(caught.value) == "write audit-r1 on silver.weather kept conflicting after 3 attempts: branch main has changed"
    assert calls == [1, 2, 3] and isinstance(caught.value.__cause__, CommitFailedException)


def test_count_days_reads_the_manifests_and_agrees_with_the_rows(ctx: PlatformContext) -> None:
    table = load_table(ctx.catalog, "silver.weather")
    day1, day2 = utc(2023, 1, 1), utc(2023, 1, 2)
    two_days = pa.concat_tables(
        [
            weather_rows(list(range(24)), 1.0, "a"),
            weather_rows(list(range(10)), 1.0, "a").set_column(0, "ts", pa.array([utc(2023, 1, 2, h) for h in range(10)])),
        ]
    )
    assert wap.count_days(table, [day1]) == 0
    wap.open_audit_branch(table, "audit-a", run_id="a")
    wap.overwrite_days(table, two_days, [day1, day2], branch="audit-a", properties={"run_id": "a"})
    assert wap.count_days(table, [day1], branch="audit-a") == 24
    assert wap.count_days(table, [day1, day2], branch="audit-a") == 34
    assert wap.count_days(table, [day2], branch=wap.MAIN) == 0, "main does not see the branch"
    wap.overwrite_days(table, weather_rows([0, 1], 9.0, "a"), [day1], branch="audit-a", properties={"run_id": "a"})
    for days in ([day1], [day2], [day1, day2], [utc(2023, 1, 3)]):
        assert wap.count_days(table, days, branch="audit-a") == wap.read_days(table, days, branch="audit-a", columns=("ts",)).num_rows
