"""Comparisons: one average (or extreme) per period a message names, and how the first differs from each other one.

"Compare yesterday with the day before", "January vs February", "was March greener than February?": the first
period is the one asked about, the others are what it is set against (agent/chat/dates.py reads them, relative
ones included). Each period is measured by the same query, so the figures are comparable: the same column, the
same hours of each day. A period without readings is said to have none, never counted as zero.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from agent.chat.answers import figure, period_phrase
from agent.chat.intents import Intent
from agent.chat.queries import MetricColumn

MAX_PERIODS = 4  # the period asked about and up to three to set against it; more is a table, not a sentence
_WORD = {"avg": "average", "min": "lowest", "max": "highest"}
_FIELD = {"avg": "mean", "min": "low", "max": "high"}


def periods(intent: Intent) -> list[tuple[date, date]]:
    """The periods to measure, the one asked about first."""
    assert intent.start is not None and intent.end is not None
    return [(intent.start, intent.end), *intent.other_ranges][:MAX_PERIODS]


def answer(intent: Intent, column: MetricColumn, rows: list[dict[str, Any]], spans: list[tuple[date, date]]) -> str:
    """One line per period, then the first against each other one, with the difference and the ratio."""
    how = intent.aggregate or "avg"
    word = _WORD[how]
    values: list[float | None] = []
    lines = []
    rows = [*rows, *[{}] * (len(spans) - len(rows))][: len(spans)]  # a period whose query gave nothing has no readings
    for row, (start, end) in zip(rows, spans, strict=True):
        value = row.get(_FIELD[how]) if row.get("n") else None
        values.append(None if value is None else float(value))
        when = period_phrase(start, end, intent.day_hours)
        lines.append(f"- {when}: " + (f"{figure(value)} {column.unit} over {row['n']} readings" if value is not None else "no readings"))
    head = f"The {word} {column.label}, period by period:"
    verdicts = [_verdict(values[0], other, spans[0], span, column) for other, span in zip(values[1:], spans[1:], strict=True)]
    return "\n".join([head, *lines, *[v for v in verdicts if v]])


def _verdict(first: float | None, other: float | None, span: tuple[date, date], against: tuple[date, date], column: MetricColumn) -> str:
    a, b = _short(*span), _short(*against)
    if first is None or other is None:
        return f"{a} against {b}: not comparable, one of them has no readings."
    difference = first - other
    if abs(difference) < 0.05:
        return f"{a} and {b} are the same ({figure(first)} {column.unit})."
    direction = "higher" if difference > 0 else "lower"
    # A ratio of temperatures on the Celsius scale means nothing; of intensities or shares it does.
    share = f", {abs(difference) / abs(other):.0%} {direction}" if other and "°" not in column.unit else ""
    greener = ""
    if column.label == "carbon intensity":
        greener = " (dirtier)" if difference > 0 else " (greener)"
    return f"{a} is {figure(abs(difference))} {column.unit} {direction}{greener} than {b}{share}."


def _short(start: date, end: date) -> str:
    last = date.fromordinal(end.toordinal() - 1)
    return start.isoformat() if last == start else f"{start.isoformat()} to {last.isoformat()}"
