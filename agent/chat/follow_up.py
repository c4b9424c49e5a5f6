"""A message that refers back ("ok unpause it", "release it again", "how long has that incident been open?").

A chat thread keeps its earlier questions (`PlanningState.earlier`). When a message points back with "it",
"that", "them" or "again" and names no table, pipeline, days or incident of its own, the latest earlier
question that named them lends them: the message keeps its own kind and everything it did say.

A message that is only another period ("and saturday?", "what about last week?", "same for yesterday") asks
the latest earlier question again for that period (`elliptical`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from agent.chat.dates import When, read_when
from agent.chat.intents import HOURLY, Intent, names_a_metric, read_intent
from agent.chat.names import Names

_ELLIPSIS = re.compile(r"^\W*(?:and|what about|how about|same for|and for|and on|and what about|what of|now for|now)\b\s*(?P<rest>.*)$")
_MAX_ELLIPSIS_WORDS = 5  # "and the saturday before?" at most: a longer message says more than another period
_BACK = re.compile(r"\b(?:it|its|that|this|them|those|these|they|same|again|there|then)\b")


def refers_back(text: str) -> bool:
    return bool(_BACK.search(text.lower()))


def with_earlier(intent: Intent, text: str, earlier: list[str], *, now: datetime, names: Names) -> Intent:
    """`intent` with what it leaves open taken from the latest earlier question that said it; unchanged otherwise."""
    if not earlier or not refers_back(text) or intent.unknown_table or intent.unknown_pipeline or intent.off_topic:
        return intent
    lent: dict[str, Any] = {}
    for question in reversed(earlier):
        before = read_intent(question, now=now, names=names)
        if intent.table is None and intent.pipeline is None and (before.table or before.pipeline) and "table" not in lent:
            lent |= {"table": before.table, "pipeline": before.pipeline or names.owner.get(before.table or "")}
        if intent.start is None and before.start is not None and "start" not in lent:
            lent |= {"start": before.start, "end": before.end}
        measured = intent.kind in ("value_at", "aggregate") and before.kind in ("value_at", "aggregate")
        if measured and not names_a_metric(text) and before.metric not in (None, "intensity") and "metric" not in lent:
            # "and the day before?" after "average temperature on Tuesday": the same measure, on the table it lives in
            lent |= {"metric": before.metric, "fuel": before.fuel, "table": before.table, "pipeline": before.pipeline}
        if intent.kind == "incidents" and intent.incident_id is None and before.incident_id is not None and "incident_id" not in lent:
            lent["incident_id"] = before.incident_id
        if {"table", "start"} <= lent.keys():
            break  # the nearest earlier question that said both decides
    return intent.model_copy(update=lent) if lent else intent


def _period_only(text: str, now: datetime) -> When | None:
    """The period a message names and nothing else ("and saturday?", "what about last week?"), or None."""
    lowered = text.lower().strip()
    m = _ELLIPSIS.match(lowered)
    rest = m["rest"] if m else lowered
    if len(re.findall(r"[a-z0-9:/-]+", rest)) > _MAX_ELLIPSIS_WORDS or (m is None and len(rest.split()) > 2):
        return None
    when = read_when(rest, now)
    return when if when.start is not None else None


def bare_period(text: str, now: datetime) -> str | None:
    """`_period_only`, described ("2023-03-04", "2023-02-27 to 2023-03-05")."""
    when = _period_only(text, now)
    return when.describe() if when is not None else None


def elliptical(text: str, earlier: list[str], *, now: datetime, names: Names) -> tuple[Intent, str] | None:
    """The latest earlier question asked again for the period `text` names alone, with that question's words; or None."""
    when = _period_only(text, now) if earlier else None
    if when is None:
        return None
    question = earlier[-1]
    before = read_intent(question, now=now, names=names)
    if before.kind in ("unknown", "help") or before.off_topic:
        return None
    update: dict[str, Any] = {"start": when.start, "end": when.end, "other_ranges": (), "other_periods": (), "date_problem": when.problem}
    if when.at is not None:
        update["at"] = when.at
    if when.hours is not None and before.kind in HOURLY:
        update["day_hours"] = when.hours
    return before.model_copy(update=update), question
