"""The platform's clock: the wall clock with live sources, a replay clock for the embedded default.

The replay clock starts at a simulated instant (`DATAOPS_REPLAY_START`) and runs `DATAOPS_REPLAY_SPEED`
simulated seconds per real second, so the bundled real data plays as a live feed: replay sources serve
only what was captured before the clock's now, and schedules fire on the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def real_seconds(self, simulated: timedelta) -> float:
        """Real seconds that pass while the clock advances by `simulated`."""
        ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_seconds(self, simulated: timedelta) -> float:
        return simulated.total_seconds()


@dataclass(kw_only=True)
class ReplayClock:
    """Simulated time: `start` at real instant `origin` (Unix seconds), advancing `speed` simulated s per real s."""

    start: datetime
    speed: float
    origin: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"replay speed must be positive, got {self.speed}")
        if self.start.tzinfo is None:
            raise ValueError(f"replay start {self.start.isoformat()} has no time zone; use an ISO instant such as 2023-01-01T00:00Z")

    def now(self) -> datetime:
        return self.to_sim(time.time())

    def real_seconds(self, simulated: timedelta) -> float:
        return simulated.total_seconds() / self.speed

    def to_sim(self, real_epoch: float) -> datetime:
        return self.start + timedelta(seconds=(real_epoch - self.origin) * self.speed)

    def to_real(self, sim: datetime) -> float:
        return self.origin + (sim - self.start).total_seconds() / self.speed


@dataclass(kw_only=True)
class SteppedClock:
    """A clock a driver moves by hand: benchmarks and tests run the service window by window, as fast as it goes."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    def real_seconds(self, simulated: timedelta) -> float:
        return 0.0

    def advance_to(self, instant: datetime) -> None:
        if instant < self.current:
            raise ValueError(f"a clock does not run backwards: {instant.isoformat()} is before {self.current.isoformat()}")
        self.current = instant
