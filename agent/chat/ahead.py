"""Where a question about the forecast looks: the stretch of the coming 48 hours it is about.

"in the next 12 hours" is a deadline; "tomorrow" is tomorrow's midnight to the next; "tomorrow morning" is its
hours; nothing said is the next 24 hours. `search` gives the greenest-window tool's arguments, `outlook_window`
the same stretch as [since, until) for "what will the intensity be tomorrow?". A str says why there is nothing
to search, in words a person can act on.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from agent.chat.day_hours import describe_hours
from agent.chat.intents import HORIZON_HOURS, Intent


def midnight(day: date) -> datetime:
    """The UTC midnight that starts `day`."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def search(intent: Intent, now: datetime) -> dict[str, Any] | str:
    """The greenest-ahead call's arguments: a deadline in hours from now, and the earliest start for a later day.

    "in the next 12 hours" is the deadline itself; "tomorrow" starts at tomorrow's midnight and ends at the next;
    "today" ends at midnight; nothing said: the tool's default (24 hours). A forecast reaches 48 hours, so a
    later deadline is cut there. A part of the day ("tomorrow morning") is the search itself: from its first hour
    to its last; with no day, the next such hours that have not ended. A str says why there is nothing to search."""
    i = intent
    arguments: dict[str, Any] = {"hours": i.hours or 1}
    if i.within_hours is not None:
        return arguments | {"within_hours": i.within_hours}
    if i.day_hours is not None:
        return _in_hours(intent, now, arguments, i.day_hours)
    if i.start is None or i.end is None:
        return arguments
    horizon = timedelta(hours=HORIZON_HOURS)
    deadline = min(midnight(i.end), now + horizon)
    if midnight(i.start) >= deadline:  # "next week": the whole stretch lies beyond what any forecast covers
        return beyond_horizon(max(midnight(i.start), now + horizon), now)
    job = timedelta(hours=float(arguments["hours"]))
    if deadline - max(midnight(i.start), now) < job:
        return (
            f"A forecast reaches {HORIZON_HOURS} hours ahead, to {now + horizon:%Y-%m-%d %H:%M} UTC (platform clock {now:%Y-%m-%d %H:%M}): "
            f"{_days_text(i)} it covers less than the {arguments['hours']}-hour job. Nothing ran."
        )
    arguments["within_hours"] = round(max((deadline - now).total_seconds() / 3600, 0.5), 2)
    if midnight(i.start) > now:
        arguments["not_before"] = midnight(i.start).isoformat()
    return arguments


def outlook_window(intent: Intent, now: datetime) -> tuple[datetime, datetime] | str:
    """The coming stretch a forecast question is about: the search `search()` would make, as [since, until)."""
    searched = search(intent, now)
    if isinstance(searched, str):
        return searched
    since = datetime.fromisoformat(searched["not_before"]) if "not_before" in searched else now
    until = now + timedelta(hours=float(searched.get("within_hours", 24)))
    if since >= until:
        return beyond_horizon(since, now)
    return since, until


def beyond_horizon(since: datetime, now: datetime) -> str:
    """Why a stretch starting at `since` has no forecast, and how far one does reach."""
    horizon = now + timedelta(hours=HORIZON_HOURS)
    return (
        f"A forecast reaches {HORIZON_HOURS} hours ahead, to {horizon:%Y-%m-%d %H:%M} UTC (platform clock {now:%Y-%m-%d %H:%M}); "
        f"{since:%Y-%m-%d %H:%M} UTC is beyond it. Nothing ran."
    )


def _days_text(intent: Intent) -> str:
    """The intent's days without its hours: "on 2023-03-04", "from 2023-03-04 to 2023-03-05"."""
    day_range = intent.when.model_copy(update={"hours": None}).describe()
    return f"on {day_range}" if " to " not in day_range else f"from {day_range}"


def _in_hours(intent: Intent, now: datetime, arguments: dict[str, Any], hours: tuple[int, int]) -> dict[str, Any] | str:
    """Search the first day whose hours still hold the whole job before the forecast ends: the tool searches one
    stretch of time, not one per day ("3 hours this evening" asked at 22:30 looks at tomorrow evening)."""
    i = intent
    today = now.date()
    first, last = i.start or today, i.end or today + timedelta(days=2)
    job, horizon = timedelta(hours=float(arguments["hours"])), now + timedelta(hours=HORIZON_HOURS)
    for day in (first + timedelta(days=n) for n in range((last - first).days)):
        begin = max(midnight(day) + timedelta(hours=hours[0]), now)
        deadline = min(midnight(day) + timedelta(hours=hours[1]), horizon)
        if deadline - begin >= job:
            arguments["within_hours"] = round((deadline - now).total_seconds() / 3600, 2)
            if begin > now:
                arguments["not_before"] = begin.isoformat()
            return arguments
    return (
        f"No {describe_hours(hours)} {_days_text(intent) if i.start else 'in the next two days'} still holds a "
        f"{arguments['hours']}-hour window before the forecast ends ({horizon:%Y-%m-%d %H:%M} UTC, platform clock "
        f"{now:%Y-%m-%d %H:%M} UTC): ask about a later day within the forecast, a shorter job, or measured data "
        "('greenest hour this morning'). Nothing ran."
    )
