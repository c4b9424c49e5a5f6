"""Upkeep at the cleanest hour: the service defers due upkeep to the greenest forecast window within the deadline,
runs it now when now is cleanest or no forecast can say, and records the intensity it ran at."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from apscheduler.schedulers.background import BackgroundScheduler

from pipelines import metrics
from pipelines.clock import ReplayClock
from pipelines.context import PlatformContext
from pipelines.forecast.deferral import UPKEEP_STATE, intensity_at, plan_deferral, record_upkeep_intensity
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.state import MonitorStateRow
from pipelines.service import Service
from tests.conftest import utc
from tests.test_forecast_run import seed_silver

ISSUED = utc(2023, 1, 20, 12)


def write_issue(ctx: PlatformContext, issued_at: datetime, points: list[float], *, perfect_prognosis: bool = False) -> None:
    n = len(points)
    stamps = [issued_at + timedelta(minutes=30 * k) for k in range(n)]
    data = pa.table(
        {
            "issued_at": [issued_at] * n,
            "ts": stamps,
            "horizon_h": [(k + 1) / 2 for k in range(n)],
            "point": points,
            "lo80": [p - 20 for p in points],
            "hi80": [p + 20 for p in points],
            "lo95": [p - 40 for p in points],
            "hi95": [p + 40 for p in points],
            "model": ["test"] * n,
            "model_version": ["1"] * n,
            "perfect_prognosis": [perfect_prognosis] * n,
            "run_id": ["seed"] * n,
        }
    )
    table = load_table(ctx.catalog, "gold.carbon_intensity_forecast")
    table.append(data.cast(table.schema().as_arrow()))


def dip_at(hours_after_issue: float) -> list[float]:
    """300 everywhere, 100 for the hour starting `hours_after_issue` after the issue."""
    first = int(hours_after_issue * 2)
    return [100.0 if first <= k < first + 2 else 300.0 for k in range(96)]


def test_upkeep_is_deferred_to_the_cleanest_hour_within_the_deadline(ctx: PlatformContext) -> None:
    write_issue(ctx, ISSUED, dip_at(5))
    deferral = plan_deferral(ctx, now=ISSUED, hours=1, deadline_hours=12)
    assert deferral.deferred and deferral.run_at == ISSUED + timedelta(hours=5)
    assert deferral.expected_intensity == 100 and deferral.now_intensity == 300
    assert "66.7 % less" in deferral.reason
    beyond = plan_deferral(ctx, now=ISSUED, hours=1, deadline_hours=4)  # the dip ends after the deadline
    assert not beyond.deferred and beyond.reason == "now is the cleanest window within the deadline"
    assert not plan_deferral(ctx, now=ISSUED, hours=1, deadline_hours=0).deferred


def test_without_a_forecast_upkeep_runs_when_due_and_says_why(ctx: PlatformContext) -> None:
    deferral = plan_deferral(ctx, now=ISSUED, hours=1, deadline_hours=12)
    assert not deferral.deferred and deferral.run_at == ISSUED
    assert deferral.reason.startswith("running when due: no forecast has been published yet")


def test_the_service_schedules_the_deferred_upkeep_on_the_replay_clock(ctx: PlatformContext) -> None:
    write_issue(ctx, ISSUED, dip_at(5))
    clock = ReplayClock(start=ISSUED, speed=3600.0)
    service = Service(ctx, clock=clock)
    service.scheduler = BackgroundScheduler(timezone=UTC)
    service.upkeep_tick()
    job = service.scheduler.get_job("upkeep:deferred")
    assert job is not None and service.deferral is not None
    expected = datetime.fromtimestamp(clock.to_real(ISSUED + timedelta(hours=5)), UTC)
    assert abs((job.trigger.run_date - expected).total_seconds()) < 1


def test_the_intensity_upkeep_ran_at_is_recorded(ctx: PlatformContext) -> None:
    seed_silver(ctx, utc(2023, 1, 19), utc(2023, 1, 20, 12))
    write_issue(ctx, ISSUED, dip_at(5))
    measured = intensity_at(ctx, utc(2023, 1, 20, 11, 40))
    assert measured.kind == "actual" and measured.value is not None
    forecast = intensity_at(ctx, ISSUED + timedelta(hours=5, minutes=10))
    assert forecast.kind == "forecast" and forecast.value == 100
    deferral = plan_deferral(ctx, now=ISSUED, hours=1, deadline_hours=12)
    ran = record_upkeep_intensity(ctx, at=deferral.run_at + timedelta(minutes=3), deferral=deferral)
    assert ran.value == 100 and metrics.REGISTRY.get_sample_value("dataops_upkeep_intensity_gco2_per_kwh") == 100
    with ctx.ledger.session() as session:
        row = session.get(MonitorStateRow, UPKEEP_STATE)
        assert row is not None
        assert row.state["intensity_gco2_per_kwh"] == 100 and row.state["intensity_kind"] == "forecast"
        assert row.state["due_at"] == ISSUED.isoformat() and "deferred to" in row.state["reason"]


def test_perfect_prognosis_issues_are_never_the_latest_forecast(ctx: PlatformContext) -> None:
    """An issue made with observed weather is for comparison only: greenest windows and deferrals never plan on it."""
    from pipelines.forecast.store import latest_issue

    write_issue(ctx, ISSUED, dip_at(5))
    later = ISSUED + timedelta(hours=1)
    write_issue(ctx, later, dip_at(2), perfect_prognosis=True)
    assert latest_issue(ctx).issued_at == ISSUED  # type: ignore[union-attr]
    assert latest_issue(ctx, perfect_prognosis=True).issued_at == later  # type: ignore[union-attr]
