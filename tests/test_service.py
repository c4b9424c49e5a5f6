"""The scheduled service: replay clock, scheduling semantics, retries, pause, monitors and incidents."""

from __future__ import annotations

import pickle
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.inventory import ScheduleSpec
from pipelines.clock import ReplayClock, SteppedClock
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse.catalog import load_table
from pipelines.scheduling import ReplayTrigger, declared_trigger
from pipelines.service import Service
from tests.conftest import utc


def service(ctx: PlatformContext, at: datetime, sleeps: list[float] | None = None) -> tuple[Service, SteppedClock]:
    clock = SteppedClock(current=at)
    recorded = sleeps if sleeps is not None else []
    return Service(ctx, clock=clock, sleep=recorded.append), clock


def test_replay_clock_runs_at_its_speed() -> None:
    clock = ReplayClock(start=utc(2023, 1, 1), speed=3600.0, origin=time.time() - 2.0)
    assert utc(2023, 1, 1, 1, 59) <= clock.now() <= utc(2023, 1, 1, 2, 1)
    assert clock.real_seconds(timedelta(hours=1)) == 1.0
    with pytest.raises(ValueError, match="no time zone"):
        ReplayClock(start=datetime(2023, 1, 1), speed=1.0)


def test_schedules_fire_on_the_replay_clock() -> None:
    origin = time.time()
    trigger = ReplayTrigger(declared_trigger(ScheduleSpec(cron="5,35 * * * *")), start=utc(2023, 1, 1), speed=1800.0, origin=origin)
    trigger = pickle.loads(pickle.dumps(trigger))  # it lives in the SQLAlchemy job store
    first = trigger.get_next_fire_time(None, datetime.fromtimestamp(origin, UTC))
    second = trigger.get_next_fire_time(first, first)
    assert first is not None and second is not None
    # 00:05 simulated is 300 s / 1800 = 1/6 s of real time after the origin; the next firing is 30 minutes (1 s) later.
    assert first.timestamp() - origin == pytest.approx(300 / 1800, abs=1e-3)
    assert (second - first).total_seconds() == pytest.approx(1.0, abs=1e-3)


def test_a_tick_runs_from_the_watermark_to_now_and_serves_only_the_past(ctx: PlatformContext) -> None:
    svc, clock = service(ctx, utc(2023, 1, 3, 10, 20))
    svc.tick("carbon_intensity")
    silver = load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow()
    newest = max(silver.column("ts").to_pylist())
    assert newest == utc(2023, 1, 3, 9, 30), "the 09:30-10:00 slot is the last one that ended by 10:20"
    assert ctx.control.watermark("carbon_intensity") == clock.current
    clock.current = utc(2023, 1, 3, 12, 0)
    svc.tick("carbon_intensity")
    silver = load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow()
    assert max(silver.column("ts").to_pylist()) == utc(2023, 1, 3, 11, 30)
    assert silver.num_rows == 2 * 48 + 24
    assert all(r.status == "succeeded" for r in svc.results)


def test_a_clock_restarted_before_the_watermark_waits_instead_of_failing(ctx: PlatformContext) -> None:
    # Found by benchmarks/chaos.py: `serve` restarted with an earlier DATAOPS_REPLAY_START raised on every firing.
    ctx.control.set_watermark("carbon_intensity", utc(2023, 1, 16, 3))
    svc, clock = service(ctx, utc(2023, 1, 12, 6))
    svc.tick("carbon_intensity")
    assert svc.results == [] and ctx.control.watermark("carbon_intensity") == utc(2023, 1, 16, 3)
    clock.current = utc(2023, 1, 16, 6)
    svc.tick("carbon_intensity")
    assert [(r.window_start, r.status) for r in svc.results] == [(utc(2023, 1, 16), "succeeded")]


def test_paused_pipelines_are_skipped_until_resumed(ctx: PlatformContext) -> None:
    svc, _ = service(ctx, utc(2023, 1, 2))
    ctx.control.set_paused("weather", True, reason="maintenance")
    svc.tick("weather")
    assert svc.results == [] and ctx.control.watermark("weather") is None
    ctx.control.set_paused("weather", False)
    svc.tick("weather")
    assert [r.pipeline for r in svc.results] == ["weather"]


def test_never_two_runs_of_one_pipeline_at_once(ctx: PlatformContext) -> None:
    svc, _ = service(ctx, utc(2023, 1, 2))
    with ctx.control.exclusive("weather"):
        svc.tick("weather")
    assert svc.results == []


def test_transient_failures_are_retried_with_backoff_and_open_one_incident(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from config.errors import TransientSourceError
    from pipelines.sources import neso

    def outage(*_args: Any) -> dict[str, Any]:
        raise TransientSourceError("GET /intensity answered 503: maintenance; gave up after 5 attempts")

    monkeypatch.setitem(neso._REPLAY, "carbon_intensity", outage)
    sleeps: list[float] = []
    svc, _ = service(ctx, utc(2023, 1, 2), sleeps)
    svc.tick("carbon_intensity")
    assert [r.status for r in svc.results] == ["failed"] * ctx.settings.run_max_attempts
    assert sleeps == [2.0, 4.0]
    assert ctx.control.watermark("carbon_intensity") is None, "a failed run does not advance the watermark"
    svc.tick("carbon_intensity")
    (incident,) = ctx.incidents.list()
    assert incident.kind == "source_failure" and incident.severity == "warning" and incident.occurrences == 2
    runs = ctx.ledger.runs(pipeline="carbon_intensity")
    assert sorted({r.attempts for r in runs}) == [1, 2, 3]


def test_validation_failures_are_not_retried(ctx: PlatformContext) -> None:
    sleeps: list[float] = []
    svc, _ = service(ctx, utc(2023, 1, 27), sleeps)
    svc.tick("carbon_intensity")  # 2023-01-01..27 holds the real 26 January gap
    assert sleeps == [] and all(r.status != "failed" for r in svc.results)
    validation = [i for i in ctx.incidents.list() if i.kind == "validation"]
    assert {i.cause_key for i in validation} >= {"actual_reported_after_slot", "forecast_tracks_actual"}
    missing = next(i for i in validation if i.cause_key == "actual_reported_after_slot")
    assert missing.occurred_at == utc(2023, 1, 26, 13, 30)


def test_the_same_cause_updates_one_incident(ctx: PlatformContext) -> None:
    finding = Finding(kind="freshness", severity="warning", table="silver.weather", cause_key="weather_freshness", title="stale")
    first, opened = ctx.incidents.report(finding, now=utc(2023, 1, 1))
    again, opened_again = ctx.incidents.report(finding.model_copy(update={"severity": "critical"}), now=utc(2023, 1, 1, 6))
    assert opened and not opened_again and again.id == first.id
    assert again.occurrences == 2 and again.severity == "critical"
    later, opened_later = ctx.incidents.report(finding, now=utc(2023, 1, 3))
    assert opened_later and later.id != first.id, "past the grouping window a new incident opens"
    other, _ = ctx.incidents.report(finding.model_copy(update={"cause_key": "other"}), now=utc(2023, 1, 3))
    assert other.id not in {first.id, later.id}
    ctx.incidents.transition(first.id, "acknowledged")
    assert ctx.incidents.transition(first.id, "resolved").status == "resolved"
    from pipelines.incidents import IncidentError

    with pytest.raises(IncidentError, match="it can move to open, not escalated"):
        ctx.incidents.transition(first.id, "escalated")


def test_an_outage_is_detected_by_freshness_with_its_time_to_detect(ctx: PlatformContext) -> None:
    svc, clock = service(ctx, utc(2023, 10, 20, 20))
    ctx.control.set_watermark("carbon_intensity", utc(2023, 10, 18))
    svc.tick("carbon_intensity")
    assert not [i for i in ctx.incidents.list() if i.kind == "freshness"]
    for hour in range(21, 24 + 4):
        clock.current = utc(2023, 10, 20) + timedelta(hours=hour)
        svc.tick("carbon_intensity")
        svc.monitor_tick()
    (stale,) = [i for i in ctx.incidents.list() if i.kind == "freshness"]
    assert stale.occurred_at == utc(2023, 10, 20, 22), "the last slot that arrived ended at 22:00"
    assert stale.time_to_detect_s is not None and 3 * 3600 < stale.time_to_detect_s <= 4 * 3600
    assert stale.severity == "critical" and stale.occurrences >= 1


def test_permanent_failures_are_not_retried(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from config.errors import PermanentSourceError
    from pipelines.sources import neso

    def gone(*_args: Any) -> dict[str, Any]:
        raise PermanentSourceError("GET /intensity answered 404")

    monkeypatch.setitem(neso._REPLAY, "carbon_intensity", gone)
    sleeps: list[float] = []
    svc, _ = service(ctx, utc(2023, 1, 2), sleeps)
    svc.tick("carbon_intensity")
    assert [r.status for r in svc.results] == ["failed"] and sleeps == []
    (incident,) = ctx.incidents.list()
    assert incident.severity == "critical"
