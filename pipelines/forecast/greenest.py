"""The greenest window: when, within a deadline, a job of H hours runs at the lowest expected carbon intensity.

Read from one issued forecast (`pipelines/forecast/store.py`'s latest issue). The rules, in order:

- A window is H hours of consecutive forecast slots. It starts on a slot boundary at or after `now` (or after
  `not_before`, when later): a slot already in progress at `now` is skipped, because a job started mid-slot
  would overrun into a slot the window did not count. So "now" means the next half-hour boundary, at most
  29 minutes away.
- It ends by `now + within` (the deadline) and inside the forecast's horizon: a window partly beyond the last
  slot is never a candidate.
- The lowest mean of the point forecasts wins; on a tie the earliest window wins (sooner is as clean, and
  the job is done earlier). Sums are exact (`math.fsum`), so equal slots tie exactly.
- "Run now" is the window starting at the first slot at or after `now` (whatever the deadline or
  `not_before`); the saving is measured against it.

Errors, each naming what to do next::

    DataOpsError
    └── GreenestWindowError       no window can be given
        ├── WindowRequestError        H is not a positive multiple of half an hour; a duration cannot be read
        ├── NoForecastError           no forecast has been published
        ├── StaleForecastError        the latest issue is older than `max_age`, or ends before now + H
        └── HorizonTooShortError      fewer than H hours of forecast lie between now and the deadline
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from config.errors import DataOpsError
from pipelines.forecast.schema import SLOT, ForecastSlot, IssuedForecast

if TYPE_CHECKING:
    from pipelines.context import PlatformContext

DEFAULT_WITHIN = timedelta(hours=24)
MAX_ISSUE_AGE = timedelta(hours=48)  # the horizon of one issue: an older issue has no slot left to offer
PUBLISH_HINT = "run `dataops run forecast` (or let `dataops serve` issue one after the next carbon-intensity run)"


class GreenestWindowError(DataOpsError):
    """No greenest window can be given; the message says why and what to do."""


class WindowRequestError(GreenestWindowError):
    """The request itself is malformed: a window length that is not a positive multiple of 0.5 h, a bad duration."""


class NoForecastError(GreenestWindowError):
    """No forecast has been published (as of the instant asked about)."""


class StaleForecastError(GreenestWindowError):
    """The latest forecast is too old, or ends before a window of H hours from now would."""


class HorizonTooShortError(GreenestWindowError):
    """The forecast covers fewer than H hours between now and the deadline."""


class GreenestWindow(BaseModel):
    """The cleanest window of `hours` hours ending by the deadline, against running now, from one forecast issue."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hours: float = Field(description="Length of the window, hours")
    start: datetime = Field(description="When to start, UTC (a slot boundary)")
    end: datetime = Field(description="When the window ends, UTC")
    intensity: float = Field(description="Expected mean carbon intensity over the window, gCO2/kWh (mean of the point forecasts)")
    lo80: float = Field(description="Lower end of the 80 % interval of the mean (mean of the slots' lower bounds; conservative)")
    hi80: float = Field(description="Upper end of the 80 % interval of the mean (conservative)")
    lo95: float = Field(description="Lower end of the 95 % interval of the mean (conservative)")
    hi95: float = Field(description="Upper end of the 95 % interval of the mean (conservative)")
    now_start: datetime | None = Field(description="Start of the run-now window: the first slot boundary at or after now")
    now_intensity: float | None = Field(description="Expected mean intensity if the job started now, gCO2/kWh")
    saving: float | None = Field(description="now_intensity minus intensity, gCO2/kWh")
    saving_pct: float | None = Field(description="The saving as a percentage of now_intensity")
    candidates: int = Field(description="How many windows were compared")
    as_of: datetime = Field(description="The instant the question was asked at (the platform clock)")
    deadline: datetime = Field(description="The window had to end by this instant, UTC")
    issued_at: datetime = Field(description="Issue time of the forecast the answer comes from")
    model: str = Field(description="The forecast's model")
    model_version: str
    perfect_prognosis: bool = Field(description="The forecast used observed weather as if forecast: not a real forecast")


def window_slots(hours: float) -> int:
    """How many half-hour slots a window of `hours` spans; WindowRequestError unless hours is a positive multiple of 0.5."""
    slots = hours * 2
    if not math.isfinite(slots) or slots <= 0 or slots != int(slots):
        raise WindowRequestError(f"a window of {hours:g} hours cannot be planned: give a positive multiple of 0.5 hours (e.g. 0.5, 1, 2.5)")
    return int(slots)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m)")


def parse_duration(text: str) -> timedelta:
    """ "24h", "90m", "2d", "1h30m", "1.5h" as a timedelta; a bare number is hours. WindowRequestError otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        cleaned += "h"
    parts = _DURATION.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise WindowRequestError(f"cannot read the duration {text!r}: write it like 24h, 90m, 2d or 1h30m")
    unit = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
    total = sum((float(n) * unit[u] for n, u in parts), timedelta())
    if total <= timedelta():
        raise WindowRequestError(f"the duration {text!r} is not positive: write it like 24h, 90m, 2d or 1h30m")
    return total


def _utc(moment: datetime) -> datetime:
    """An instant in UTC; a naive one (a model may send one) is read as UTC, never as the machine's local time."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _runs(slots: tuple[ForecastSlot, ...], k: int) -> list[int]:
    """Indices i where slots[i : i + k] are k consecutive half-hours."""
    return [i for i in range(len(slots) - k + 1) if slots[i + k - 1].ts - slots[i].ts == (k - 1) * SLOT]


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _longest_stretch(slots: list[ForecastSlot]) -> timedelta:
    best = run = 0
    for n, slot in enumerate(slots):
        run = run + 1 if n and slot.ts - slots[n - 1].ts == SLOT else 1
        best = max(best, run)
    return best * SLOT


def greenest_window(
    issue: IssuedForecast | None,
    *,
    now: datetime,
    hours: float,
    within: timedelta = DEFAULT_WITHIN,
    not_before: datetime | None = None,
    max_age: timedelta = MAX_ISSUE_AGE,
) -> GreenestWindow:
    """The cleanest window of `hours` hours in `issue` that starts at or after `now` (and `not_before`) and ends by
    `now + within`, with its expected mean intensity and intervals, against starting at the first slot from `now`.

    The interval of the mean is the mean of the slots' bounds (lo80, hi80, lo95, hi95). That is exact when the
    slots' errors move together and wider than the true interval when they partly cancel, as they do for
    roughly normal errors: read it as a conservative interval for the mean.
    """
    k = window_slots(hours)
    if within <= timedelta():
        raise WindowRequestError(f"the deadline must lie after now: within is {within}, give a positive duration such as 24h")
    if issue is None:
        raise NoForecastError(f"no forecast has been published yet; {PUBLISH_HINT}, then ask again")
    now = _utc(now)
    deadline = now + within
    earliest = max(now, _utc(not_before)) if not_before is not None else now
    slots = tuple(sorted(issue.slots, key=lambda s: s.ts))
    last_end = slots[-1].ts + SLOT if slots else issue.issued_at
    first_boundary = next((s.ts for s in slots if s.ts >= now), last_end)
    age = now - issue.issued_at
    if age > max_age or last_end < first_boundary + k * SLOT:
        why = (
            f"{age.total_seconds() / 3600:.0f} h old, older than {max_age.total_seconds() / 3600:g} h"
            if age > max_age
            else "it ends too soon"
        )
        raise StaleForecastError(
            f"the latest forecast is stale ({why}): issued at {_fmt(issue.issued_at)} by {issue.model}, its last slot ends at "
            f"{_fmt(last_end)}, before a {hours:g}-hour window from {_fmt(now)} could end; {PUBLISH_HINT}"
        )
    eligible = [s for s in slots if s.ts >= earliest and s.ts + SLOT <= deadline]
    starts = [i for i in _runs(slots, k) if slots[i].ts >= earliest and slots[i + k - 1].ts + SLOT <= deadline]
    if not starts:
        available = _longest_stretch(eligible).total_seconds() / 3600
        raise HorizonTooShortError(
            f"only {available:g} h of forecast lie between {_fmt(earliest)} and the deadline {_fmt(deadline)} "
            f"(forecast issued at {_fmt(issue.issued_at)}, last slot ends {_fmt(last_end)}), fewer than the {hours:g} h asked for; "
            "allow a later deadline (within) or ask for a shorter window"
        )
    best = starts[0]
    best_sum = math.fsum(s.point for s in slots[best : best + k])
    for i in starts[1:]:
        total = math.fsum(s.point for s in slots[i : i + k])
        if total < best_sum:  # strictly lower: on a tie the earlier window stays
            best, best_sum = i, total
    window = list(slots[best : best + k])
    now_index = next((i for i in _runs(slots, k) if slots[i].ts >= now), None)
    now_intensity = _mean([s.point for s in slots[now_index : now_index + k]]) if now_index is not None else None
    intensity = best_sum / k
    saving = now_intensity - intensity if now_intensity is not None else None
    return GreenestWindow(
        hours=k / 2,
        start=window[0].ts,
        end=window[-1].ts + SLOT,
        intensity=round(intensity, 1),
        lo80=round(_mean([s.lo80 for s in window]), 1),
        hi80=round(_mean([s.hi80 for s in window]), 1),
        lo95=round(_mean([s.lo95 for s in window]), 1),
        hi95=round(_mean([s.hi95 for s in window]), 1),
        now_start=slots[now_index].ts if now_index is not None else None,
        now_intensity=round(now_intensity, 1) if now_intensity is not None else None,
        saving=round(saving, 1) if saving is not None else None,
        saving_pct=round(100 * saving / now_intensity, 1) if saving is not None and now_intensity else None,
        candidates=len(starts),
        as_of=now,
        deadline=deadline,
        issued_at=issue.issued_at,
        model=issue.model,
        model_version=issue.model_version,
        perfect_prognosis=issue.perfect_prognosis,
    )


def find_greenest_window(
    ctx: PlatformContext, *, now: datetime, hours: float, within: timedelta = DEFAULT_WITHIN, not_before: datetime | None = None
) -> GreenestWindow:
    """`greenest_window` over the latest forecast published at or before `now` (the platform clock)."""
    from pipelines.forecast.store import latest_issue

    window_slots(hours)  # a malformed request is told before the lake is read
    return greenest_window(latest_issue(ctx, as_of=now), now=now, hours=hours, within=within, not_before=not_before)


def describe(window: GreenestWindow) -> str:
    """One or two lines for a person: when to run, the expected intensity with its 80 % interval, the saving."""
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    day = f"{start:%a} {start.day} {start:%b}"
    # A window ending at midnight ends on its own day ("22:00–00:00"); one that runs past midnight names its end day.
    ends_same_day = (end - timedelta(microseconds=1)).date() == start.date()
    until = f"{end:%H:%M}" if ends_same_day else f"{end:%H:%M} on {end:%a} {end.day} {end:%b}"
    line = f"Run {start:%H:%M}–{until} UTC on {day}: {window.intensity:g} gCO2/kWh expected (80 %: {window.lo80:g}–{window.hi80:g})"
    if window.now_intensity is None or window.saving is None or window.saving_pct is None:
        line += "."
    elif window.saving < 0:  # a later start was asked for (not_before) and now is cleaner
        line += f", {-window.saving_pct:g} % above running now ({window.now_intensity:g}), which would be cleaner."
    elif window.saving == 0:
        line += f", the same as running now ({window.now_intensity:g}): now is as clean as it gets."
    else:
        line += f", {window.saving_pct:g} % below running now ({window.now_intensity:g})."
    caveat = " (perfect-prognosis: it used observed weather, not a real forecast)" if window.perfect_prognosis else ""
    return (
        f"{line}\nForecast issued {_fmt(window.issued_at)} by {window.model} {window.model_version}{caveat}; "
        f"{window.candidates} windows compared, ending by {_fmt(window.deadline)}."
    )
