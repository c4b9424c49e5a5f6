"""A source whose timestamps moved: the trace a shifted span leaves at its two ends.

When a source labels a span of records Δ later than their real time (local summer time read as UTC is the
usual case: Europe/London wall clock is UTC+1 from March to October), the values inside the span look
ordinary, one by one and as a series. Only the ends show it: the first Δ of the span is left without
records (a gap), and the last Δ lands on the real records that follow the span, which arrive twice with
different values (a collision, held in quarantine as conflicting duplicates). Labelled Δ earlier, the
collision comes first and the gap last.

`find_shift` looks for that pair: a gap and a collision of the same length with every slot between them
present. A real outage of exactly that length next to changed duplicates of exactly that length, with
nothing else missing between, is a far less likely story than one moved clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

LONDON = ZoneInfo("Europe/London")
MAX_SHIFT = timedelta(hours=14)  # the widest offset a time zone has from UTC


class ClockShift(BaseModel):
    """The span [start, end) whose records arrived labelled `shift` late (or early), and the traces it left."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime
    shift: timedelta
    direction: Literal["late", "early"]
    gap: list[datetime]
    collision: list[datetime]

    def describe(self) -> str:
        """One clause a person can act on: what moved, by how much, and what it left behind."""
        span = f"{_at(self.start)} to {_at(self.end)} UTC"
        size = _duration(self.shift)
        part = "hour" if self.shift == timedelta(hours=1) else size
        gap = _range(self.gap)
        collision = _range(self.collision)
        if self.direction == "late":
            ends = f"the first {part} of it went missing ({gap}) and its last {part} collided with the real {collision}"
        else:
            ends = f"its first {part} collided with the real {collision} and its last {part} went missing ({gap})"
        return f"the source's timestamps from {span} are {size} {self.direction}: {ends}, so every value between is published {size} {self.direction}"

    def likely_reason(self) -> str | None:
        """Local summer time labelled as UTC, when the shifted span is in Europe/London summer time and moved one hour late."""
        summer = all((t.astimezone(LONDON).utcoffset() or timedelta()) == timedelta(hours=1) for t in (self.start, self.end - self.shift))
        if self.direction == "late" and self.shift == timedelta(hours=1) and summer:
            return "Europe/London summer time, UTC+1, labelled as UTC"
        return None


def find_shift(missing: Iterable[datetime], duplicated: Iterable[datetime], cadence: timedelta) -> ClockShift | None:
    """The clock shift that explains a gap and a collision of one length with nothing missing between, if any.

    `missing` are the slots the table lacks, `duplicated` the slots held because they arrived twice with
    different values (they may be among `missing` or not)."""
    held = set(duplicated)
    lacking = set(missing) - held
    gaps, collisions = _runs(lacking, cadence), _runs(held, cadence)
    every_missing = sorted(lacking | held)
    for collision in collisions:
        for gap in gaps:
            shift = len(gap) * cadence
            if len(gap) != len(collision) or shift > MAX_SHIFT:
                continue
            first, second = (gap, collision) if gap[0] < collision[0] else (collision, gap)
            between = [t for t in every_missing if first[-1] < t < second[0]]
            if between:
                continue
            late = first is gap
            start, end = (gap[0], collision[0]) if late else (collision[-1] + cadence, gap[-1] + cadence)
            return ClockShift(start=start, end=end, shift=shift, direction="late" if late else "early", gap=gap, collision=collision)
    return None


def _runs(slots: set[datetime], cadence: timedelta) -> list[list[datetime]]:
    """Contiguous runs of slots, in order."""
    runs: list[list[datetime]] = []
    for slot in sorted(slots):
        if runs and slot - runs[-1][-1] == cadence:
            runs[-1].append(slot)
        else:
            runs.append([slot])
    return runs


def _at(t: datetime) -> str:
    return f"{t:%Y-%m-%d %H:%M}"


def _range(slots: list[datetime]) -> str:
    return _at(slots[0]) if len(slots) == 1 else f"{_at(slots[0])}–{slots[-1]:%H:%M}"


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes % 60:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} hour{'s' if hours > 1 else ''}"
