"""Days, ranges and times of day in a chat message, read against the platform's clock (never the machine's).

`read_when(text, now)` finds what a person said about time: "yesterday at 18:00", "last week", "in March",
"March 2023", "2023-03-01 to 2023-03-31", "the 5th of March", "last 3 days", "between the 1st and the 3rd",
"1-3 March", "March 1 to 3", "the week of 23 January" (seven days from it), "last tusday" (weekdays and months forgive a typo that keeps the first letter).
Every period is a range of UTC days [start, end): a day is one day, a month every day of it, and a range
written with "to", "until", "through" or "-" includes its last day ("March 1 to March 31" is all of March).
A year left out is the latest one that is not in the future. An impossible range (its end before its
start) is reported as a problem, never swapped silently.

A part of the day narrows every day of the period to whole UTC hours [from, to): "yesterday morning" (06-12),
"this afternoon", "tonight" (today's evening), "last week during business hours" (09-17), "between 9 and 17",
"from 14:00 to 18:00", "9am-5pm". A range of hours is read before days, so "between 9 and 17" is hours, while
"between 9 and 17 March" stays days 9 to 17 of March; a single time ("at 9") stays a time of day.

Written here rather than taken from `dateparser`: these few forms cover what people type in chat, and the
CLI starts faster without it.
"""

from __future__ import annotations

import calendar
import difflib
import re
from datetime import date, datetime, time, timedelta

from pydantic import BaseModel, ConfigDict, Field

from agent.chat.day_hours import describe_hours, read_hours, within_part
from agent.chat.months import month_word

_WEEKDAYS = {name.lower(): n for n, name in enumerate(calendar.day_name)}
_NOT_WEEKDAYS = {"today", "yesterday", "weekday", "holiday", "birthday", "someday", "midday", "everyday", "payday"}
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_NUMBER_WORDS |= {"a": 1, "an": 1, "couple": 2, "fortnight": 14, "eleven": 11, "twelve": 12, "fourteen": 14, "thirty": 30}
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)?"
_CONNECTOR = re.compile(r"^\s*(?:to|until|till|til|through|thru|and|-|–|—|\.\.)\s*$")


class When(BaseModel):
    """What a message says about time: a range of UTC days, a time of day, or neither."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date | None = Field(default=None, description="First UTC day, inclusive")
    end: date | None = Field(default=None, description="The day after the last one (exclusive)")
    at: time | None = Field(default=None, description="A time of day, UTC")
    hours: tuple[int, int] | None = Field(
        default=None, description="Whole UTC hours [from, to) of each day the question covers: 'morning' is (6, 12)"
    )
    problem: str | None = Field(default=None, description="Why the dates cannot be used, e.g. an end before the start")
    hours_problem: str | None = Field(default=None, description="Why the hours cannot be used, e.g. a range across midnight")
    other_hours: tuple[str, ...] = Field(default=(), description="Further windows of the day the text names ('morning and evening')")
    others: tuple[str, ...] = Field(
        default=(), description="Further periods the text names apart from this one ('compare 2023-01-28 with 2023-02-01')"
    )
    other_ranges: tuple[tuple[date, date], ...] = Field(
        default=(), description="The same further periods as [start, end) UTC days, in the order written"
    )

    @property
    def day(self) -> date | None:
        """The day, when the range is exactly one day."""
        if self.start is not None and self.end is not None and (self.end - self.start).days == 1:
            return self.start
        return None

    @property
    def days(self) -> int:
        return (self.end - self.start).days if self.start and self.end else 0

    def describe(self) -> str:
        """The days, and the hours of each day when the message narrowed them: "2023-03-03 06:00–12:00 UTC"."""
        hours = f" {describe_hours(self.hours)}" if self.hours else ""
        if self.start is None or self.end is None:
            return hours.strip() or "no date"
        if self.day is not None:
            return self.day.isoformat() + hours
        return f"{self.start.isoformat()} to {(self.end - timedelta(days=1)).isoformat()}" + (f",{hours} each day" if hours else "")


class _Span(BaseModel):
    """One mention of a period in the text, at character positions [begin, finish)."""

    begin: int
    finish: int
    start: date
    end: date
    explicit_year: bool = True


def _month_start(year: int, month: int) -> date:
    return date(year, month, 1)


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _latest_year(month: int, day: int, today: date) -> int:
    """The latest year in which month/day is not after today."""
    year = today.year
    while True:
        try:
            if date(year, month, day) <= today:
                return year
        except ValueError:
            pass
        year -= 1


def _weekday_word(word: str) -> int | None:
    """Monday is 0; a typo keeps the first letter: "tusday", "wendesday", "thrusday"."""
    word = word.rstrip("s") if word.endswith("days") else word
    if word in _WEEKDAYS:
        return _WEEKDAYS[word]
    if word in _NOT_WEEKDAYS:
        return None
    same_start = [name for name in _WEEKDAYS if name[0] == word[0]]
    close = difflib.get_close_matches(word, same_start, n=1, cutoff=0.8)
    return _WEEKDAYS[close[0]] if close else None


def _number(word: str) -> int | None:
    return int(word) if word.isdigit() else _NUMBER_WORDS.get(word.lower())


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


_MONTH_TOKEN = r"([a-z]{3,10}\.?)"
_RANGE_WORD = r"(-|–|—|to|until|till|through|thru|and)"
_YEAR = r"(\d{4})"
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("iso", re.compile(r"\b(\d{4})[-/](\d{1,2})[-/](\d{1,2})\b")),
    ("dmy_numeric", re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")),
    ("day_before_yesterday", re.compile(r"\bday before yesterday\b")),
    ("day_after_tomorrow", re.compile(r"\bday after tomorrow\b")),
    # "last night" is the night (00-06 UTC) that began today; "tonight", "this afternoon" are today too.
    ("relative_day", re.compile(r"\b(today|yesterday|tonight|last night|this (?:morning|afternoon|evening)|tomorrow)\b")),
    ("last_n", re.compile(r"\b(?:last|past|previous|preceding)\s+(\d{1,3}|[a-z]+)\s+(days?|weeks?|months?)\b")),
    ("n_ago", re.compile(r"\b(\d{1,3}|[a-z]+)\s+(days?|weeks?)\s+ago\b")),
    ("period", re.compile(r"\b(last|past|previous|this|current|next|coming)\s+(week|month|year|fortnight)\b")),
    # "last weekend", "this weekend", "over the weekend", "the weekend before last": a Saturday and a Sunday.
    ("weekend", re.compile(r"\b(?:(last|this|previous|past|the|a)\s+)?weekend\b(\s+before\s+last)?")),
    ("weekday", re.compile(r"\b(?:(last|this|on|next|coming)\s+)?([a-z]{2,9}days?)\b")),
    # "1-3 March", "between 1 and 3 March": one span; "and" joins two days only after "between".
    (
        "days_of_month",
        re.compile(
            rf"\b(between\s+)?(?:the\s+)?{_ORDINAL}\s*{_RANGE_WORD}\s*(?:the\s+)?{_ORDINAL}\s+(?:(?:of|in)\s+)?{_MONTH_TOKEN}(?:,?\s+{_YEAR})?\b"
        ),
    ),
    # "March 1-3", "March 1 to 3" (not "March 1 to 3 April" nor "March 1 to 3pm": times are blanked out first).
    (
        "month_days",
        re.compile(
            rf"\b{_MONTH_TOKEN}\s+(?:the\s+)?{_ORDINAL}\s*{_RANGE_WORD}\s*(?:the\s+)?{_ORDINAL}(?:,?\s+{_YEAR})?\b(?![:/-]|\s+(?:of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))"
        ),
    ),
    ("the_dth_of_month", re.compile(rf"\b(?:the\s+)?{_ORDINAL}\s+(?:of\s+)?{_MONTH_TOKEN}(?:,?\s+{_YEAR})?\b")),
    ("month_dth", re.compile(rf"\b{_MONTH_TOKEN}\s+(?:the\s+)?{_ORDINAL}(?:,?\s+{_YEAR})?\b(?!:)")),
    ("month_year", re.compile(rf"\b{_MONTH_TOKEN}\s+{_YEAR}\b")),
    ("month", re.compile(rf"\b{_MONTH_TOKEN}\b")),
    ("the_dth", re.compile(r"\bthe\s+(\d{1,2})(?:st|nd|rd|th)\b|\b(\d{1,2})(?:st|nd|rd|th)\b")),
]


def _period(which: str, unit: str, today: date) -> tuple[date, date]:
    """ "last week" is the calendar week (Monday to Sunday) before this one; "the past week" the seven days before today."""
    back = which in ("last", "previous", "past")
    this_month = _month_start(today.year, today.month)
    if which == "coming":  # "the coming week": the days from today on
        return today, today + timedelta(days={"week": 7, "fortnight": 14, "month": 30}.get(unit, 365))
    if which == "next":  # the whole next calendar period: a question about it is answered from the forecast or refused
        monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
        return {
            "week": (monday, monday + timedelta(days=7)),
            "fortnight": (today + timedelta(days=1), today + timedelta(days=15)),
            "month": (_next_month(this_month), _next_month(_next_month(this_month))),
        }.get(unit, (date(today.year + 1, 1, 1), date(today.year + 2, 1, 1)))
    if unit == "week":
        monday = today - timedelta(days=today.weekday())
        if which == "past":
            return today - timedelta(days=7), today
        return (monday - timedelta(days=7), monday) if back else (monday, today + timedelta(days=1))
    if unit == "fortnight":
        return today - timedelta(days=14), today
    if unit == "month":
        previous = _month_start(this_month.year - (this_month.month == 1), (this_month.month - 2) % 12 + 1)
        return (previous, this_month) if back else (this_month, _next_month(this_month))
    year = today.year - back
    return date(year, 1, 1), date(year + 1, 1, 1)


def _weekend(which: str | None, before_last: bool, today: date) -> tuple[date, date]:
    """Saturday and Sunday. "this weekend" is this week's; "last weekend" the one before this week; "the weekend"
    alone the latest one that has begun (today's, on a Saturday or a Sunday)."""
    saturday = today - timedelta(days=today.weekday()) + timedelta(days=5)  # this week's Saturday
    if which in ("last", "previous", "past") or (which != "this" and saturday > today):
        saturday -= timedelta(days=7)
    if before_last:
        saturday -= timedelta(days=7)
    return saturday, saturday + timedelta(days=2)


def _spans(text: str, today: date) -> list[_Span]:
    found: list[_Span] = []
    taken: list[tuple[int, int]] = []

    def add(match: re.Match[str], start: date | None, end: date | None, *, explicit_year: bool = True) -> None:
        if start is None or end is None:
            return
        taken.append(match.span())
        found.append(_Span(begin=match.start(), finish=match.end(), start=start, end=end, explicit_year=explicit_year))

    def free(match: re.Match[str]) -> bool:
        return not any(match.start() < b and a < match.end() for a, b in taken)

    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if not free(m):
                continue
            if kind == "iso":
                day = _safe_date(int(m[1]), int(m[2]), int(m[3]))
                add(m, day, day + timedelta(days=1) if day else None)
            elif kind == "dmy_numeric":
                day = _safe_date(int(m[3]), int(m[2]), int(m[1]))
                add(m, day, day + timedelta(days=1) if day else None)
            elif kind == "day_before_yesterday":
                add(m, today - timedelta(days=2), today - timedelta(days=1))
            elif kind == "day_after_tomorrow":
                add(m, today + timedelta(days=2), today + timedelta(days=3))
            elif kind == "relative_day":
                offset = {"yesterday": -1, "tomorrow": 1}.get(m[1], 0)
                add(m, today + timedelta(days=offset), today + timedelta(days=offset + 1))
            elif kind == "last_n":
                n, unit = _number(m[1]), m[2].rstrip("s")
                if n is None:
                    continue
                if unit == "month":
                    first = _month_start(today.year, today.month)
                    for _ in range(n):
                        first = _month_start(first.year - (first.month == 1), (first.month - 2) % 12 + 1)
                    add(m, first, _month_start(today.year, today.month))
                else:
                    add(m, today - timedelta(days=n * (7 if unit == "week" else 1)), today)
            elif kind == "n_ago":
                n, unit = _number(m[1]), m[2].rstrip("s")
                if n is None:
                    continue
                day = today - timedelta(days=n * (7 if unit == "week" else 1))
                add(m, day, day + timedelta(days=1))
            elif kind == "period":
                add(m, *_period(m[1], m[2], today))
            elif kind == "weekend":
                add(m, *_weekend(m[1], bool(m[2]), today))
            elif kind == "weekday":
                target = _weekday_word(m[2])
                if target is None:
                    continue
                if m[1] in ("next", "coming"):  # "next wednesday": the first one after today
                    day = today + timedelta(days=(target - today.weekday()) % 7 or 7)
                    add(m, day, day + timedelta(days=1))
                    continue
                back = (today.weekday() - target) % 7 or (7 if m[1] == "last" else 0)
                day = today - timedelta(days=back)
                add(m, day, day + timedelta(days=1))
            elif kind in ("days_of_month", "month_days"):
                add(m, *_days_of_month(m, kind, text, today), explicit_year=bool(m[6] if kind == "days_of_month" else m[5]))
            elif kind == "the_dth_of_month":
                month = month_word(m[2])
                if month is None:
                    continue
                year = int(m[3]) if m[3] else _latest_year(month, int(m[1]), today)
                day = _safe_date(year, month, int(m[1]))
                add(m, day, day + timedelta(days=1) if day else None, explicit_year=bool(m[3]))
            elif kind == "month_dth":
                month = month_word(m[1])
                if month is None or (
                    m[1] == "may" and not m[3] and not re.search(r"\b(?:in|of|on|since|from|during)\s+$", text[: m.start()])
                ):
                    continue
                year = int(m[3]) if m[3] else _latest_year(month, int(m[2]), today)
                day = _safe_date(year, month, int(m[2]))
                add(m, day, day + timedelta(days=1) if day else None, explicit_year=bool(m[3]))
            elif kind == "month_year":
                month = month_word(m[1])
                if month is None:
                    continue
                first = _month_start(int(m[2]), month)
                add(m, first, _next_month(first))
            elif kind == "month":
                month = month_word(m[1])
                if month is None or (
                    m[1] in ("may", "mar")
                    and not re.search(
                        r"\b(?:in|of|for|during|since|from|to|until|through)\s+(?:the\s+)?(?:whole\s+|all\s+|month\s+of\s+)?$",
                        text[: m.start()],
                    )
                ):
                    continue
                first = _month_start(_latest_year(month, 1, today), month)
                add(m, first, _next_month(first), explicit_year=False)
            elif kind == "the_dth":
                n = int(m[1] or m[2])
                if not 1 <= n <= 31:
                    continue
                anchor = today if n <= today.day else _month_start(today.year, today.month) - timedelta(days=1)
                day = _safe_date(anchor.year, anchor.month, n)
                add(m, day, day + timedelta(days=1) if day else None, explicit_year=False)
    return sorted(found, key=lambda s: s.begin)


def _days_of_month(m: re.Match[str], kind: str, text: str, today: date) -> tuple[date | None, date | None]:
    """The days of "1-3 March" or "March 1 to 3" as [start, end); (None, None) when it is not such a range."""
    if kind == "days_of_month":
        between, first, word, last, name, year = m[1], m[2], m[3], m[4], m[5], m[6]
    else:
        name, first, word, last, year = m[1], m[2], m[3], m[4], m[5]
        between = re.search(r"\bbetween\s+$", text[: m.start()])
    month = month_word(name)
    if month is None or (word == "and" and not between) or int(last) < int(first):
        return None, None  # an end before the start is left to the two-span reading, which reports it
    if (
        kind == "month_days"
        and name == "may"
        and not year
        and not re.search(r"\b(?:in|of|on|since|from|during|between)\s+$", text[: m.start()])
    ):
        return None, None
    start_year = int(year) if year else _latest_year(month, int(first), today)
    start, last_day = _safe_date(start_year, month, int(first)), _safe_date(start_year, month, int(last))
    return (start, last_day + timedelta(days=1)) if start and last_day else (None, None)


# "18:30", "7.30pm", "18.30" (a dot between hour and minutes, as written in the UK), "6pm", "at 6", "noon".
# A dotted number followed by a unit is a quantity, not a time: "2.50 hours", "18.30 gCO2/kWh", "7.5 hours".
_UNIT_AFTER = r"(?!\s*(?:hours?|hrs?|h\b|minutes?|mins?|days?|weeks?|%|percent|g\b|gco2|kwh|°|degrees?|c\b|rows?))"
_TIME = re.compile(
    r"\b(?:at\s+|@\s*|around\s+|about\s+)?(?<!\.)(\d{1,2})(?:[:.]([0-5]\d))?\s*(am|pm|a\.m\.|p\.m\.|h|hrs|o'?clock)\b"
    r"|\b(?:at\s+|@\s*|around\s+|about\s+)?(?<!\.)([01]?\d|2[0-3])[:.]([0-5]\d)\b(?!-)"
    + _UNIT_AFTER
    + r"|\b(?:at\s+)(\d{1,2})\b(?![-/:\d]|\.\d|\s*(?:st|nd|rd|th|days?|hours?|weeks?)\b)"
    r"|\b(noon|midday|midnight)\b"
)


def read_time(text: str) -> tuple[time | None, tuple[int, int] | None]:
    """A time of day and where it was written, or (None, None)."""
    for m in _TIME.finditer(text):
        if m[1] is not None:
            hour, minute, suffix = int(m[1]), int(m[2] or 0), m[3].replace(".", "")
            if suffix == "pm" and hour < 12:
                hour += 12
            if suffix == "am" and hour == 12:
                hour = 0
        elif m[4] is not None:
            hour, minute = int(m[4]), int(m[5])
        elif m[6] is not None:
            hour, minute = int(m[6]), 0
        else:
            hour, minute = (0, 0) if m[7] == "midnight" else (12, 0)
        if 0 <= hour <= 23 and 0 <= minute <= 59:
            return time(hour, minute), m.span()
    return None, None


_SINCE = re.compile(r"\b(?:since|ever since|starting|from)\s+(?:the\s+|last\s+|this\s+|on\s+)?$")
_WEEK_OF = re.compile(r"\b(?:week\s+(?:of|starting|beginning|commencing|from)(?:\s+on)?|w/c)\s+(?:the\s+|monday\s+)?$")


def read_when(text: str, now: datetime) -> When:
    """The period and time of day `text` speaks of, relative to the platform clock `now` (UTC)."""
    narrowed = read_hours(text.lower())
    lowered = narrowed.text  # "between 9 and 17" is hours: neither days of a month nor a time
    at, where = read_time(lowered)
    if where is not None:  # keep "18:00" or "6pm" from being read as a day of the month
        lowered = lowered[: where[0]] + " " * (where[1] - where[0]) + lowered[where[1] :]
    if at is not None and narrowed.hours is not None:
        at = within_part(at, narrowed.hours)
    when = _days(lowered, now.date(), at)
    return when.model_copy(update={"hours": narrowed.hours, "hours_problem": narrowed.problem, "other_hours": narrowed.others})


def _days(lowered: str, today: date, at: time | None) -> When:
    """The range of days of `lowered` (its times already blanked), with the time of day `at`."""
    spans = _spans(lowered, today)
    if not spans:
        if at is not None:
            return When(start=today, end=today + timedelta(days=1), at=at)
        return When()
    first = spans[0]
    for second in spans[1:]:
        between = lowered[first.finish : second.begin]
        before = lowered[max(0, first.begin - 12) : first.begin]
        if _CONNECTOR.match(between) and (between.strip() != "and" or "between" in before):
            if not second.explicit_year and first.explicit_year and second.start < first.start:
                second = _same_year_as(second, first)  # "2023-03-01 to the 5th"
            if not first.explicit_year and second.explicit_year and first.start.year != second.start.year:
                first = _same_year_as(first, second)  # "March 1 to March 31 2022"
            others = _others(spans[spans.index(second) + 1 :], first.start, second.end)
            if second.end <= first.start:
                return When(
                    start=first.start,
                    end=second.end,
                    at=at,
                    problem=f"the range ends ({(second.end - timedelta(days=1)).isoformat()}) before it starts ({first.start.isoformat()})",
                    others=others,
                )
            return _with_others(When(start=first.start, end=second.end, at=at), spans[spans.index(second) + 1 :], lowered[second.finish :])
    end = first.end
    if first.end - first.start == timedelta(days=1) and _WEEK_OF.search(lowered[: first.begin]):
        end = first.start + timedelta(days=7)  # "the week of 23 January": 7 days from it
    elif _SINCE.search(lowered[: first.begin]) and first.start <= today:
        end = max(end, today + timedelta(days=1))  # "since Monday": from Monday up to today, included
    return _with_others(When(start=first.start, end=end, at=at), spans[1:], lowered[first.finish :])


def _with_others(when: When, spans: list[_Span], rest: str) -> When:
    """`when` with the further periods the text names: other spans outside it, else one named relative to it
    ("yesterday ... the day before", "this week versus the previous week")."""
    assert when.start is not None and when.end is not None
    ranges = list(dict.fromkeys((s.start, s.end) for s in spans if not (when.start <= s.start and s.end <= when.end)))
    relative = _RELATIVE.search(rest)
    if not ranges and relative:
        ranges = [_before(when.start, when.end, relative.group(1) or relative.group(2))]
    described = tuple(dict.fromkeys(When(start=a, end=b).describe() for a, b in ranges))
    return when.model_copy(update={"others": described, "other_ranges": tuple(ranges)})


def _others(spans: list[_Span], start: date, end: date) -> tuple[str, ...]:
    """The periods of `spans` outside [start, end), as `When.describe` writes them, in the order written."""
    described = [When(start=s.start, end=s.end).describe() for s in spans if not (start <= s.start and s.end <= end)]
    return tuple(dict.fromkeys(described))


# A period named relative to the one before it: "the day before", "the previous week", "the month prior".
_RELATIVE = re.compile(
    r"\b(?:the|a)\s+(day|week|month|year)\s+(?:before|earlier|prior)\b|\b(?:the\s+)?(?:previous|prior|preceding)\s+(day|week|month|year)\b"
)


def _before(start: date, end: date, unit: str) -> tuple[date, date]:
    """The period of the same kind just before [start, end): the month before a calendar month, else as many days."""
    if unit == "month" and start.day == 1 and end == _next_month(start):
        return _month_start(start.year - (start.month == 1), (start.month - 2) % 12 + 1), start
    if unit == "year" and (start.month, start.day) == (1, 1) and end == start.replace(year=start.year + 1):
        return start.replace(year=start.year - 1), start
    return start - (end - start), start


def _same_year_as(span: _Span, other: _Span) -> _Span:
    try:
        start = span.start.replace(year=other.start.year)
    except ValueError:
        return span
    length = span.end - span.start
    return span.model_copy(update={"start": start, "end": start + length})
