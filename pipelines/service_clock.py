"""The clock of `dataops serve`: the wall clock with live sources; under replay a replay clock that survives restarts.

The service saves its replay clock in the ops database (the monitors' state row `CLOCK_STATE`) on every monitor
tick and when it stops; the next start resumes from there while `DATAOPS_REPLAY_START` is unchanged. Other
processes read the same row as the platform's now (pipelines/monitors/feedback.py `platform_now`).
"""

from __future__ import annotations

import logging
from datetime import datetime

from pipelines.clock import Clock, ReplayClock, WallClock
from pipelines.context import PlatformContext
from pipelines.monitors.state import CLOCK_STATE, MonitorStateRow

# The service's voice: operators' logging configurations filter on the service's logger.
log = logging.getLogger("pipelines.service")


def service_clock(ctx: PlatformContext) -> Clock:
    """The wall clock with live sources; under replay the saved replay clock, or a new one at the replay start."""
    s = ctx.settings
    if s.source_mode != "replay":
        return WallClock()
    start = s.replay_start
    with ctx.ledger.session() as session:
        saved = session.get(MonitorStateRow, CLOCK_STATE)
        resumed = saved.state.get("now") if saved and saved.state.get("start") == start.isoformat() else None
    if resumed:
        start = datetime.fromisoformat(resumed)
        log.info("replay clock resumes at %s", start.isoformat())
    return ReplayClock(start=start, speed=s.replay_speed)


def save_clock(ctx: PlatformContext, clock: Clock) -> None:
    """Save a replay clock's now for the next start and for other processes; the wall clock needs no saving."""
    if not isinstance(clock, ReplayClock):
        return
    with ctx.ledger.session() as session, session.begin():
        row = session.get(MonitorStateRow, CLOCK_STATE) or MonitorStateRow(name=CLOCK_STATE)
        row.state = {"start": ctx.settings.replay_start.isoformat(), "now": clock.now().isoformat()}
        session.add(row)
