"""Schedules from config/pipelines.yaml as APScheduler triggers, on the wall clock or the replay clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from config.inventory import ScheduleSpec
from pipelines.clock import ReplayClock


def declared_trigger(schedule: ScheduleSpec, *, start: datetime | None = None) -> BaseTrigger | None:
    """The trigger a schedule declares, in UTC; None for manual pipelines."""
    if schedule.manual:
        return None
    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron, timezone=UTC)
    assert schedule.interval_minutes is not None
    return IntervalTrigger(minutes=schedule.interval_minutes, start_date=start, timezone=UTC)


def _round_second(value: datetime) -> datetime:
    return (value + timedelta(microseconds=500_000)).replace(microsecond=0)


class ReplayTrigger(BaseTrigger):
    """Fires a declared trigger on the replay clock: fire times are computed in simulated time and mapped back.

    Picklable (plain fields only), so it can live in APScheduler's SQLAlchemy job store.
    """

    def __init__(self, inner: BaseTrigger, *, start: datetime, speed: float, origin: float) -> None:
        self.inner = inner
        self.start = start
        self.speed = speed
        self.origin = origin

    def _clock(self) -> ReplayClock:
        return ReplayClock(start=self.start, speed=self.speed, origin=self.origin)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        clock = self._clock()
        # Round to the second: float round trips would put a fire time a hair before itself and fire it twice.
        sim_now = _round_second(clock.to_sim(now.timestamp()))
        sim_previous = _round_second(clock.to_sim(previous_fire_time.timestamp())) if previous_fire_time else None
        sim_next = self.inner.get_next_fire_time(sim_previous, sim_now)
        if sim_next is None:
            return None
        return datetime.fromtimestamp(clock.to_real(sim_next), UTC)

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner, "start": self.start, "speed": self.speed, "origin": self.origin}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __str__(self) -> str:
        return f"replay[{self.inner} at x{self.speed:g}]"


def minimum_real_interval(schedule: ScheduleSpec, speed: float) -> timedelta:
    """How often (real time) a schedule fires under replay; for reporting."""
    minutes = schedule.interval_minutes or 30
    return timedelta(seconds=minutes * 60 / speed)
