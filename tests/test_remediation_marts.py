"""Remediating a silver day marks the gold marts built from it, and the next run rebuilds them from what silver holds."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines import mart_refresh
from pipelines.context import PlatformContext
from pipelines.promotion import run_pipeline
from tests.conftest import window
from tests.test_remediation_tools import SILVER, call, rows

HOURLY = "gold.carbon_intensity_hourly"
DAILY = "gold.intensity_vs_temperature_daily"


@pytest.fixture
def lake(ctx: PlatformContext) -> PlatformContext:
    """24 and 25 January 2023 in silver and in both marts (the daily one joins the weather of those days)."""
    for pipeline in ("weather", "carbon_intensity"):
        result = run_pipeline(ctx, pipeline, window((2023, 1, 24), (2023, 1, 26)))
        assert result.status == "succeeded", result
    assert len(rows(ctx, HOURLY, day="2023-01-25")) == 24 and len(rows(ctx, DAILY, day="2023-01-25")) == 1
    return ctx


def next_run(ctx: PlatformContext) -> None:
    """A later scheduled run of the carbon pipeline, over a day after the remediated one."""
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 26), (2023, 1, 27)))
    assert result.status in ("succeeded", "quarantined"), result


def pending(ctx: PlatformContext) -> dict[str, list[str]]:
    return {table: [d.date().isoformat() for d in days] for table, days in mart_refresh.pending_days(ctx).items()}


def values(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without the run id that built them (a rebuild is a new run)."""
    return [{k: v for k, v in r.items() if k != "run_id"} for r in found]


def hourly_actuals(ctx: PlatformContext, day: str) -> list[Any]:
    return [r["actual"] for r in sorted(rows(ctx, HOURLY, day=day), key=lambda r: r["ts"])]


def test_a_quarantined_silver_day_leaves_gold_at_the_next_run_and_comes_back_on_release(lake: PlatformContext) -> None:
    kept = rows(lake, HOURLY, day="2023-01-24")
    hourly, daily = rows(lake, HOURLY, day="2023-01-25"), rows(lake, DAILY, day="2023-01-25")

    moved = call(lake, "quarantine_partition", {"table": SILVER, "day": "2023-01-25", "reason": "actuals doubled"})
    assert moved.marts_to_rebuild == [HOURLY, DAILY] and moved.days_to_rebuild == ["2023-01-25"]
    assert pending(lake) == {HOURLY: ["2023-01-25"], DAILY: ["2023-01-25"]}

    next_run(lake)
    assert rows(lake, HOURLY, day="2023-01-25") == [] and rows(lake, DAILY, day="2023-01-25") == [], (
        "gold no longer shows the taken-out day"
    )
    assert rows(lake, HOURLY, day="2023-01-24") == kept, "other days are not touched"
    assert pending(lake) == {}

    released = call(lake, "release_partition", {"table": SILVER, "day": "2023-01-25"}, call_id="call-2")
    assert released.rows_released == 48 and released.marts_to_rebuild == [HOURLY, DAILY]
    next_run(lake)
    assert values(rows(lake, HOURLY, day="2023-01-25")) == values(hourly)
    assert values(rows(lake, DAILY, day="2023-01-25")) == values(daily)


def test_a_silver_rollback_marks_exactly_the_days_it_changes(lake: PlatformContext) -> None:
    before = hourly_actuals(lake, "2023-01-25")
    deleted = call(lake, "delete_partition", {"table": SILVER, "day": "2023-01-25", "reason": "duplicated load"})
    assert deleted.days_to_rebuild == ["2023-01-25"]
    next_run(lake)
    assert hourly_actuals(lake, "2023-01-25") == []

    back = call(lake, "rollback_table", {"table": SILVER, "snapshot_id": deleted.snapshot_before, "reason": "wrong"}, call_id="call-2")
    # Back before the delete and before the 26th's run: the two days whose files differ, not the untouched 24th.
    assert back.days_to_rebuild == ["2023-01-25", "2023-01-26"] and back.marts_to_rebuild == [HOURLY, DAILY]
    next_run(lake)
    assert hourly_actuals(lake, "2023-01-25") == before


def test_no_op_calls_and_gold_tables_mark_nothing(lake: PlatformContext) -> None:
    empty = call(lake, "quarantine_partition", {"table": SILVER, "day": "2023-02-10", "reason": "nothing there"})
    assert not empty.changed and empty.marts_to_rebuild == [] and empty.days_to_rebuild == []
    gold = call(lake, "quarantine_partition", {"table": HOURLY, "day": "2023-01-25", "reason": "hourly means off"}, call_id="call-2")
    assert gold.changed and gold.marts_to_rebuild == []
    assert pending(lake) == {}
