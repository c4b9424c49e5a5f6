"""Ask the source about every day of an incident's extent: which days a backfill would fill, which it still lacks.

One comparison per UTC day (`pipelines.refetch.refetch_and_diff`); the days a backfill can complete are
grouped into contiguous ranges, so the agent backfills each range once (one policy decision, one approval
when the policy asks for one) instead of a day at a time. Nothing is written.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import BaseModel, Field

from config.errors import LakehouseError
from pipelines.context import PlatformContext
from pipelines.refetch import SourceComparison, refetch_and_diff

# A comparison fetches every day once, writing nothing: a quarter covers the longest outage worth comparing at once
# (a backfill longer than 31 days is refused by the policy anyway, but the comparison says what the source lacks).
MAX_DAYS = 92
# The longest backfill the policy allows (config/policy.yaml backfill deny_over_days): a longer fixable stretch is
# offered as several pieces, each approved on its own.
PIECE_DAYS = 31


class DayState(BaseModel):
    day: str
    state: str = Field(
        description="complete (nothing missing), fixable (the source has it all now), lacking (the source still lacks slots)"
    )
    source_slots: int
    silver_slots: int
    lacking_slots: int
    missing_in_silver: int


class ExtentComparison(BaseModel):
    pipeline: str
    start: str
    end: str = Field(description="Exclusive")
    days: list[DayState]
    fixable_ranges: list[list[str]] = Field(description="[start, end) ranges of days a backfill would complete, contiguous days joined")
    fixable_days: list[str]
    lacking_days: list[str]
    lacking_slots: int
    missing_in_silver_count: int
    comparisons: list[SourceComparison] = Field(description="The per-day comparisons, in day order")
    verdict: str


def compare_extent(ctx: PlatformContext, pipeline: str, start: date, end: date, *, as_of: datetime) -> ExtentComparison:
    """Compare every day of [start, end) with the source as known at `as_of`; source errors propagate."""
    days = (end - start).days
    if days <= 0:
        raise LakehouseError(f"the range {start}..{end} is empty; end is exclusive and must be after start")
    if days > MAX_DAYS:
        raise LakehouseError(f"the range {start}..{end} spans {days} days; compare at most {MAX_DAYS} at a time")
    comparisons = []
    for i in range(days):
        day = start + timedelta(days=i)
        if datetime(day.year, day.month, day.day, tzinfo=as_of.tzinfo) >= as_of:
            break  # a day that has not started cannot be asked about
        comparisons.append(refetch_and_diff(ctx, pipeline, day, as_of=as_of))
    states = [_state(c) for c in comparisons]
    fixable = [s.day for s in states if s.state == "fixable"]
    lacking = [s.day for s in states if s.state == "lacking"]
    return ExtentComparison(
        pipeline=pipeline,
        start=start.isoformat(),
        end=end.isoformat(),
        days=states,
        fixable_ranges=_ranges(fixable),
        fixable_days=fixable,
        lacking_days=lacking,
        lacking_slots=sum(s.lacking_slots for s in states),
        missing_in_silver_count=sum(s.missing_in_silver for s in states),
        comparisons=comparisons,
        verdict=_verdict(states),
    )


def _state(c: SourceComparison) -> DayState:
    if c.lacking_slots or (c.source_slots == 0 and c.expected_slots != 0):
        state = "lacking"
    elif c.missing_in_silver_count or c.differing:
        state = "fixable"
    else:
        state = "complete"
    return DayState(
        day=c.day,
        state=state,
        source_slots=c.source_slots,
        silver_slots=c.silver_slots,
        lacking_slots=c.lacking_slots,
        missing_in_silver=c.missing_in_silver_count,
    )


def _ranges(days: list[str]) -> list[list[str]]:
    """Contiguous days joined into [start, end) ranges of at most PIECE_DAYS, each one backfill the policy can allow."""
    ranges: list[list[str]] = []
    for day in days:
        following = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        if ranges and ranges[-1][1] == day and (date.fromisoformat(day) - date.fromisoformat(ranges[-1][0])).days < PIECE_DAYS:
            ranges[-1][1] = following
        else:
            ranges.append([day, following])
    return ranges


def _verdict(states: list[DayState]) -> str:
    parts = []
    fixable = [s for s in states if s.state == "fixable"]
    lacking = [s for s in states if s.state == "lacking"]
    if fixable:
        parts.append(f"the source now has {', '.join(s.day for s in fixable)} complete: a backfill would fill them")
    if lacking:
        parts.append(
            "the source still lacks "
            + ", ".join(f"{s.lacking_slots} slot(s) of {s.day}" if s.source_slots else f"all of {s.day}" for s in lacking)
            + ": a backfill cannot fill them"
        )
    if not parts:
        return "silver matches the source on every day of the range: nothing to backfill"
    return "; ".join(parts)
