"""Parts of the day in chat: the whole UTC hours a question narrows its days to.

"yesterday morning" (06-12), "this afternoon", "tonight" (today's evening), "last week during business hours"
(09-17), "between 9 and 17", "from 14:00 to 18:00", "9am-5pm". A range of hours is read before days
(`agent/chat/dates.py` reads the text with the ranges blanked), so "between 9 and 17" is hours while "between 9
and 17 March" stays days 9 to 17 of March; a single time ("at 9") stays a time of day.
"""

from __future__ import annotations

import re
from datetime import time

from pydantic import BaseModel, ConfigDict, Field

from agent.chat.months import month_word

# Parts of the day as [from, to) whole hours on the UTC clock. The tables, the platform clock and every answer are
# UTC and a chat message names no time zone, so a part of the day is read on that clock; the answer prints the hours
# with "UTC" so a reader elsewhere sees what was computed (in British summer time, "morning" is 07:00-13:00 BST).
PARTS_OF_DAY: dict[str, tuple[int, int]] = {
    "morning": (6, 12),
    "afternoon": (12, 18),
    "evening": (18, 24),
    "tonight": (18, 24),
    "night": (0, 6),
    "overnight": (0, 6),
    "business hours": (9, 17),
    "working hours": (9, 17),
    "work hours": (9, 17),
    "office hours": (9, 17),
}


def describe_hours(hours: tuple[int, int]) -> str:
    """A window of whole hours as a person reads it: (6, 12) is "06:00–12:00 UTC"."""
    return f"{hours[0]:02d}:00–{hours[1]:02d}:00 UTC"


def _clock(side: str) -> str:
    """One end of a range of hours: "9", "09:00", "9am", "5 p.m.", "17h", "noon", "midnight"; named groups per side."""
    return (
        rf"(?:(?P<{side}h>\d{{1,2}})(?:[:.](?P<{side}m>[0-5]\d))?(?:\s*(?P<{side}s>am\b|pm\b|a\.m\.|p\.m\.|h\b))?"
        rf"|(?P<{side}w>noon|midday|midnight))"
    )


# Whatever follows a range of hours must not make it a quantity or days: "between 5 and 10 degrees", "from 1 to 3 days".
_NOT_HOURS_AFTER = (
    r"(?![\d/]|[.:]\d|\s*[%°]"
    r"|\s*(?:st|nd|rd|th|days?|weeks?|months?|hours?|hrs?|minutes?|mins?|percent|g|gco2\w*|kwh|degrees?|c|celsius)\b)"
)
_RANGE_TO = r"\s*(?:to|until|till|til|-|–|—)\s*"
# "between 9 and 17", "from 14:00 to 18:00": bare numbers are hours after "between" or "from" (days need a month).
_LED_HOURS = re.compile(rf"\b(?:between|from)\s+{_clock('a')}(?:\s+and\s+|{_RANGE_TO}){_clock('b')}{_NOT_HOURS_AFTER}")
# "9am-5pm", "14:00 to 18:00", "2-4pm": without a lead-in both ends are written as times, or the end carries am/pm and the
# start is a bare hour not after a month ("March 1 to 3pm" is a day and a time).
_MARKED_HOURS = re.compile(rf"(?<![\d/.:-])\b{_clock('a')}{_RANGE_TO}{_clock('b')}{_NOT_HOURS_AFTER}")
_PART_WORDS = re.compile(r"\b(?<!good )(morning|afternoon|evening|tonight|night|overnight)s?\b|\b(business|working|work|office)\s+hours\b")


class DayHours(BaseModel):
    """The hours of the day a message narrows its days to, and the text with every range of hours blanked out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hours: tuple[int, int] | None = None
    problem: str | None = None
    others: tuple[str, ...] = Field(default=(), description="Further windows the text names, as `describe_hours` writes them")
    text: str = Field(description="The text with ranges of hours blanked, so their numbers are read as neither days nor a time")


def _hour_of(m: re.Match[str], side: str) -> tuple[int, int] | None:
    """(hour, minute) of one end, or None when it is no time of day ("13pm", "25"). Midnight at the end is 24."""
    word = m[f"{side}w"]
    if word is not None:
        return (12, 0) if word in ("noon", "midday") else ((24 if side == "b" else 0), 0)
    hour, minute, suffix = int(m[f"{side}h"]), int(m[f"{side}m"] or 0), (m[f"{side}s"] or "").replace(".", "")
    if suffix in ("am", "pm"):
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    if side == "b" and hour == 0 and minute == 0:
        hour = 24  # "from 18:00 to 00:00" ends at midnight
    return (hour, minute) if hour <= (24 if side == "b" else 23) and (hour < 24 or minute == 0) else None


def _marked(m: re.Match[str], side: str) -> bool:
    return bool(m[f"{side}m"] or m[f"{side}s"] or m[f"{side}w"])


def _half_day(m: re.Match[str], side: str) -> str | None:
    suffix = (m[f"{side}s"] or "").replace(".", "")
    return suffix if suffix in ("am", "pm") else None


def _bare(m: re.Match[str], side: str) -> bool:
    return not _marked(m, side) and 1 <= int(m[f"{side}h"]) <= 12


def _with_half_day(hour: int, half: str) -> int:
    return hour % 12 + (12 if half == "pm" else 0)


def _share_half_day(m: re.Match[str], first: tuple[int, int], last: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """am/pm written on one end only reads for the other too when that gives a window: "between 1 and 3 pm" is 13-15,
    "from 8 to 11pm" 20-23; else the other half of the day ("from 9am to 5" is 09-17, "from 10 to 2pm" 10-14)."""
    for bare, marked in (("a", "b"), ("b", "a")):
        half = _half_day(m, marked)
        if half is None or not _bare(m, bare):
            continue
        hour = int(m[f"{bare}h"])
        for candidate in (_with_half_day(hour, half), _with_half_day(hour, "pm" if half == "am" else "am")):
            start, end = (candidate, last[0]) if bare == "a" else (first[0], candidate)
            if start < end:
                return ((start, 0), last) if bare == "a" else (first, (end, 0))
    return first, last


def _range_of_hours(m: re.Match[str], text: str) -> tuple[tuple[int, int] | None, str | None] | None:
    """The window of a matched range, or a problem with it; None when the match is no range of hours after all."""
    if m.re is _MARKED_HOURS and not (_marked(m, "a") and _marked(m, "b")):
        before = re.search(r"([a-z]+\.?)\s*$", text[: m.start()])
        if not (_bare(m, "a") and _half_day(m, "b")) or (before is not None and month_word(before[1]) is not None):
            return None
    following = re.match(r"\s*(?:of\s+|in\s+)?([a-z]+\.?)", text[m.end() :])
    if following is not None and month_word(following[1]) is not None:
        return None  # "between 9 and 17 March", "from 1 to 7 in march" are days of March
    first, last = _hour_of(m, "a"), _hour_of(m, "b")
    if first is None or last is None:
        return None
    first, last = _share_half_day(m, first, last)
    uneven = [f"{h:02d}:{mm:02d}" for h, mm in (first, last) if mm]
    if uneven:
        return None, f"windows of the day are whole hours and {uneven[0]} is not on the hour; write e.g. 'between 9 and 17'"
    if last[0] <= first[0]:
        return None, (
            f"the hours end ({last[0]:02d}:00) before they start ({first[0]:02d}:00); a window across midnight is two "
            "questions, e.g. 'between 22 and 24' and 'between 0 and 6', and 24-hour times avoid am/pm doubt"
        )
    return (first[0], last[0]), None


def read_hours(text: str) -> DayHours:
    """The part of the day `text` (lowercase) narrows its days to: the first range or word written; others are kept."""
    found: list[tuple[int, tuple[int, int] | None, str | None]] = []
    blanked = text
    for pattern in (_LED_HOURS, _MARKED_HOURS):
        for m in pattern.finditer(blanked):
            read = _range_of_hours(m, blanked)
            if read is None:
                continue
            found.append((m.start(), *read))
            blanked = blanked[: m.start()] + " " * (m.end() - m.start()) + blanked[m.end() :]
    ranges = [hours for _, hours, _ in found if hours is not None]
    for m in _PART_WORDS.finditer(blanked):
        if not blanked[: m.start()].strip() and re.match(r"\s*[!,.]", blanked[m.end() :]):
            continue  # "Morning! what was ..." greets
        part = PARTS_OF_DAY[m[1] or f"{m[2]} hours"]
        if any(part[0] <= h[0] and h[1] <= part[1] for h in ranges):
            continue  # "between 6 and 9 this morning": the range says which hours of the morning
        found.append((m.start(), part, None))
    found.sort(key=lambda f: f[0])
    if not found:
        return DayHours(text=blanked)
    _, hours, problem = found[0]
    others = tuple(dict.fromkeys(describe_hours(h) for _, h, _ in found[1:] if h is not None and h != hours))
    return DayHours(hours=hours, problem=problem, others=others, text=blanked)


def within_part(at: time, hours: tuple[int, int]) -> time:
    """ "at 7 in the evening" is 19:00: a morning hour outside the part of the day moves to the afternoon when that fits."""
    if not hours[0] <= at.hour < hours[1] and at.hour < 12 and hours[0] <= at.hour + 12 < hours[1]:
        return at.replace(hour=at.hour + 12)
    return at
