"""The scheduler of `dataops serve`: APScheduler 3 with a persistent SQLAlchemy job store in the ops database.

One job per scheduled pipeline (on the replay clock under replay), the monitor timer and the upkeep interval;
jobs coalesce missed fire times and never run two at once. The job targets are module-level functions of
pipelines/service.py, handed in by the service: the job store keeps a reference to each target
("pipelines.service:_run_job"), not a closure, so a stored job resolves only while its target keeps its module
and name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from pipelines.clock import Clock, ReplayClock
from pipelines.context import PlatformContext
from pipelines.scheduling import ReplayTrigger, declared_trigger


def build_scheduler(
    ctx: PlatformContext,
    clock: Clock,
    *,
    run_job: Callable[[str], None],
    monitor_job: Callable[[], None],
    upkeep_job: Callable[[], None],
) -> BackgroundScheduler:
    """A scheduler (not started) with the service's jobs added: `run_job(pipeline)`, `monitor_job`, `upkeep_job`."""
    s = ctx.settings
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=s.ops_db, tablename="scheduler_jobs")},
        executors={"default": ThreadPoolExecutor(max_workers=4)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": s.misfire_grace_s},
        timezone=UTC,
    )
    for name, spec in ctx.inventory.pipelines.items():
        trigger = declared_trigger(spec.schedule, start=s.replay_start if isinstance(clock, ReplayClock) else None)
        if trigger is None:
            continue
        if isinstance(clock, ReplayClock):
            trigger = ReplayTrigger(trigger, start=clock.start, speed=clock.speed, origin=clock.origin)
        scheduler.add_job(run_job, trigger=trigger, args=[name], id=f"pipeline:{name}", name=f"run {name}", replace_existing=True)
    scheduler.add_job(
        monitor_job,
        trigger=IntervalTrigger(seconds=s.monitor_interval_s, timezone=UTC),
        id="monitors",
        name="monitors",
        replace_existing=True,
    )
    if s.maintenance_interval_hours > 0:
        scheduler.add_job(
            upkeep_job,
            trigger=IntervalTrigger(hours=s.maintenance_interval_hours, timezone=UTC),
            id="upkeep",
            name="table upkeep",
            replace_existing=True,
        )
    return scheduler


def shut_down(scheduler: BackgroundScheduler) -> None:
    """Stop submitting jobs, then wait for the running ones to finish."""
    scheduler.pause()  # no new submissions while the running jobs finish
    # APScheduler 3 can race its own executor shutdown and log "cannot schedule new futures after
    # shutdown" for a firing that would not have run anyway; keep that out of the user's terminal.
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    previous = scheduler_log.level
    scheduler_log.setLevel(logging.CRITICAL)
    try:
        scheduler.shutdown(wait=True)
    finally:
        scheduler_log.setLevel(previous)
