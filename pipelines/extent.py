"""What an incident covers: the exact slots and days it affects, and what became of each day.

A run that holds a day back (or publishes a partial day under the `partial_days: publish_flagged` policy)
says which slots the day has and which it lacks; the incident that groups those findings keeps the union,
so the agent plans per affected day and the report names exact ranges ("6 half-hours missing
2023-10-20 22:00–2023-10-21 00:30; partial day 2023-10-20 (44 of 48 slots) held back").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

Disposition = Literal["held", "published_partial", "empty"]
CLOCK_ZONE = ZoneInfo("Europe/London")
"""The clock of the sources' region (GB): a source that labels its local time as UTC loses an hour on its spring change."""


class SlotRange(BaseModel):
    """Consecutive missing slots, `start` inclusive, `end` exclusive (the slot after the last one missing)."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime

    def slots(self, cadence: timedelta) -> int:
        return int((self.end - self.start) / cadence)


class DayExtent(BaseModel):
    """One UTC day of an incident: how many slots it should have, has, and which are missing."""

    model_config = ConfigDict(frozen=True)

    day: str = Field(description="The UTC day, YYYY-MM-DD")
    cadence_minutes: int = Field(gt=0)
    expected: int = Field(ge=0, description="Slots a complete day has")
    present: int = Field(ge=0, description="Slots the source delivered for the day")
    missing: tuple[SlotRange, ...] = ()
    disposition: Disposition = Field(description="held back whole, published with a completeness flag, or empty")

    @property
    def missing_count(self) -> int:
        return sum(r.slots(timedelta(minutes=self.cadence_minutes)) for r in self.missing)

    @property
    def partial(self) -> bool:
        return 0 < self.present < self.expected

    def describe_day(self) -> str:
        """Its missing slots, e.g. "4 half-hours missing 2023-10-20 22:00–23:30"."""
        return Extent(days=(self,)).describe_missing()


class Extent(BaseModel):
    """The days (and within them the slots) an incident affects; merged as findings are grouped."""

    model_config = ConfigDict(frozen=True)

    days: tuple[DayExtent, ...] = ()

    @property
    def day_names(self) -> list[str]:
        return [d.day for d in self.days]

    @property
    def first_day(self) -> str | None:
        return self.days[0].day if self.days else None

    @property
    def end_day(self) -> str | None:
        """The day after the last affected day: the exclusive end of a window covering the extent."""
        return _next(self.days[-1].day) if self.days else None

    def merge(self, other: Extent) -> Extent:
        """The union; a day seen again takes its latest state."""
        by_day = {d.day: d for d in self.days} | {d.day: d for d in other.days}
        return Extent(days=tuple(by_day[k] for k in sorted(by_day)))

    def added_by(self, other: Extent) -> list[str]:
        """Days `other` adds to this extent, or changes."""
        known = {d.day: d for d in self.days}
        return [d.day for d in other.days if known.get(d.day) != d]

    def missing_ranges(self) -> list[SlotRange]:
        """Missing slots as ranges across day boundaries (an outage from 22:00 to 19:30 two days later is one range)."""
        ranges = sorted((r for d in self.days for r in d.missing), key=lambda r: r.start)
        joined: list[SlotRange] = []
        for r in ranges:
            if joined and r.start <= joined[-1].end:
                joined[-1] = SlotRange(start=joined[-1].start, end=max(joined[-1].end, r.end))
            else:
                joined.append(r)
        return joined

    def missing_count(self) -> int:
        return sum(d.missing_count for d in self.days)

    def describe_missing(self) -> str:
        """The missing slots as ranges, e.g. "91 half-hours missing 2023-10-20 22:00–2023-10-22 19:00"."""
        ranges = self.missing_ranges()
        if not ranges:
            return "no slot missing"
        cadence = self.days[0].cadence_minutes
        count = self.missing_count()
        unit = "half-hour" if cadence == 30 else "hour" if cadence == 60 else f"{cadence}-minute slot"
        spans = ", ".join(_span(r, timedelta(minutes=cadence)) for r in ranges)
        return f"{count} {unit}{'' if count == 1 else 's'} missing {spans}{_clock_change(ranges)}"

    def describe(self) -> str:
        """One sentence: what is missing, from when to when, and what became of the partial days."""
        if not self.days:
            return "no affected slot is recorded"
        parts: list[str] = []
        if self.missing_ranges():
            parts.append(self.describe_missing())
        for disposition, verb in (("held", "held back"), ("published_partial", "published with a completeness flag")):
            partial = [d for d in self.days if d.disposition == disposition and d.partial]
            if partial:
                listed = " and ".join(f"{d.day} ({d.present} of {d.expected} slots)" for d in partial)
                parts.append(f"partial day{'s' if len(partial) > 1 else ''} {listed} {verb}")
        empty = [d.day for d in self.days if d.present == 0]
        if empty:
            parts.append(f"{'days' if len(empty) > 1 else 'day'} {', '.join(empty)} empty at the source")
        return "; ".join(parts)


def day_extent(day: datetime, present: Iterable[datetime], *, cadence_minutes: int, disposition: Disposition) -> DayExtent:
    """The extent of one UTC day from the slot times it holds."""
    start = day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    cadence = timedelta(minutes=cadence_minutes)
    expected = int(timedelta(days=1) / cadence)
    have = {_slot(t, start, cadence) for t in present}
    have = {i for i in have if 0 <= i < expected}
    missing: list[SlotRange] = []
    run_start: int | None = None
    for i in range(expected + 1):
        gap = i < expected and i not in have
        if gap and run_start is None:
            run_start = i
        elif not gap and run_start is not None:
            missing.append(SlotRange(start=start + run_start * cadence, end=start + i * cadence))
            run_start = None
    return DayExtent(
        day=start.date().isoformat(),
        cadence_minutes=cadence_minutes,
        expected=expected,
        present=len(have),
        missing=tuple(missing),
        disposition="empty" if not have else disposition,
    )


def _slot(ts: datetime, start: datetime, cadence: timedelta) -> int:
    aware = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return int((aware.astimezone(UTC) - start) // cadence)


def _next(day: str) -> str:
    return (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()


def _clock_change(ranges: list[SlotRange]) -> str:
    """A hint when the one gap is the hour the clocks of `CLOCK_ZONE` skip: what a source's local time read as UTC
    looks like, not an outage."""
    if len(ranges) != 1 or ranges[0].end - ranges[0].start != timedelta(hours=1):
        return ""
    start = ranges[0].start.astimezone(UTC)
    before, after = (start - timedelta(minutes=1)).astimezone(CLOCK_ZONE).utcoffset(), start.astimezone(CLOCK_ZONE).utcoffset()
    if before is None or after is None or after <= before:
        return ""  # no change here, or the clocks went back: an hour repeats in local time, none is skipped
    return (
        f" (the hour {CLOCK_ZONE.key} skipped when its clocks went forward: a source that labels local time as UTC "
        "leaves exactly this gap, and its later slots an hour off)"
    )


def _span(r: SlotRange, cadence: timedelta) -> str:
    """The first and the last missing slot, both included."""
    last = r.end - cadence
    if last == r.start:
        return f"at {r.start:%Y-%m-%d %H:%M}"
    if r.start.date() == last.date():
        return f"{r.start:%Y-%m-%d %H:%M}–{last:%H:%M}"
    return f"{r.start:%Y-%m-%d %H:%M}–{last:%Y-%m-%d %H:%M}"
