"""What the runbook planner does with a chat message: read it into an `Intent`, check it, then answer or act.

Questions are answered in prose from read tools (`query_lake`, `list_runs`, `get_run`, `table_history`,
`table_lineage`, `refetch_and_diff`, ...). Actions are proposed as tool calls and pass the same policy
engine and approvals as everything else; the planner only proposes. Bad input (an unknown table or
pipeline, a day after the platform clock or outside the source's data, a range that ends before it
starts) gets one line naming what is wrong and the valid choices, and nothing runs. When the planner is
unsure it says what it understood and offers the two closest things it can do.

The planner is stateless like the rest of the runbook planner: each step reads the message again (the
classifier is cached) and continues from the turns already taken.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.chat import advice, ahead, answers, compare, guard, incidents, oversight, queries, summary, topic
from agent.chat.day_hours import describe_hours
from agent.chat.follow_up import bare_period, elliptical, with_earlier
from agent.chat.intents import ACTIONS, FORECAST_TABLE, Intent, read_intent
from agent.chat.names import Names, names_of
from agent.chat.topic import small_talk
from agent.planner import PlanningState, PlanStep, ProposedCall, Turn
from config.settings import load_settings
from tools import names as tool
from tools.runs import MAX_RERUN_DAYS

LLM_HINT = "Set DATAOPS_LLM_BASE_URL and DATAOPS_LLM_MODEL for free-form questions."
# What each kind of request is, and one way to say it: the echo when unsure, and the help text.
KINDS: dict[str, tuple[str, str]] = {
    "incidents": ("list open incidents", "what is open?"),
    "status": ("platform status and quality scores", "status"),
    "value_at": ("a value at one moment", "what was the carbon intensity yesterday at 18:00?"),
    "why_missing": ("why a day's data is missing or wrong", "why is carbon intensity missing data on 2023-03-02?"),
    "freshness": ("how fresh the data is", "is the data fresh?"),
    "quarantined": ("which rows are quarantined and why", "which rows were quarantined last week and why?"),
    "aggregate": ("an average, minimum or maximum over a period", "average carbon intensity last week"),
    "greenest": ("the greenest hour or window", "greenest 3-hour window yesterday"),
    "greenest_ahead": ("when to run a job on the cleanest power, from the forecast", "when should I run a 3-hour job tomorrow?"),
    "run_report": ("what a pipeline's last run did", "why did the last generation_mix run fail?"),
    "history": ("a table's snapshot history", "history of silver.carbon_intensity"),
    "lineage": ("a table's lineage", "lineage of silver.weather"),
    "rows": ("how many rows a table holds, from when to when", "how many rows does silver.weather have?"),
    "approvals": ("approval requests waiting on people", "any approvals pending?"),
    "audit": ("what has been changed, from the audit log", "what have you changed today?"),
    "summary": ("a summary of a period: the grid, incidents, pipelines", "summarise last week"),
    "help": ("what I can do", "help"),
    "rerun": ("re-run a pipeline over a few days", "rerun weather for yesterday"),
    "backfill": ("backfill a pipeline over a range", "backfill carbon intensity for all of March"),
    "quarantine": ("quarantine one day of a table", "quarantine silver.weather on 2023-03-02"),
    "release": ("release a quarantined day", "release silver.weather 2023-03-02"),
    "delete": ("delete one day of a table", "delete silver.weather 2023-03-02"),
    "expire": ("expire a table's old snapshots", "expire snapshots of bronze.weather"),
    "compact": ("compact a table's small files", "compact bronze.carbon_intensity"),
    "rollback": ("roll a table back to a snapshot", "roll back silver.weather to snapshot <id>"),
    "pause": ("pause a pipeline's schedule", "pause weather"),
    "resume": ("resume a paused pipeline", "resume weather"),
}
# "What did you do about the weather outage?", "how was the carbon incident handled?": what became of a table's incidents.
_DONE_ABOUT = re.compile(
    r"\b(?:what did (?:you|the agent) do|what (?:was|has been) done|how (?:did you|was it|were they|was the \w+ \w+) (?:handle|deal|fix)|what happened (?:to|with)|handled|dealt with)\b"
)
MAX_RANGE_DAYS = 200  # a range's completeness is one row a day, and query_lake returns at most 200 rows
_FAILURE_WORDS = ("fail", "wrong", "problem", "error", "broke", "bad", "issue")


_RUNS = re.compile(r"\bruns\b")
_HOW_MANY_RUNS = re.compile(r"\b(?:last|latest|recent|past)\s+(\d{1,2}|two|three|four|five|six|seven|eight|nine|ten)\b")
_RUN_COUNT_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
RUNS_LISTED = 5  # runs a list question gets when it names no number


def runs_listed(question: str) -> int | None:
    """How many runs a question asks to see listed ("the last 3 runs", "recent runs"); None for one run's report."""
    lowered = question.lower()
    if not _RUNS.search(lowered):
        return None
    m = _HOW_MANY_RUNS.search(lowered)
    if m is None:
        return RUNS_LISTED
    return min(20, int(m[1]) if m[1].isdigit() else _RUN_COUNT_WORDS[m[1]])


def _now(state: PlanningState) -> datetime:
    # The platform clock: replays and evals run in the past; the machine's calendar would be wrong there.
    raw = state.context.get("now")
    return datetime.fromisoformat(raw) if raw else datetime.now(UTC)


class ChatPlan:
    """One chat message's plan: checks, the calls to make, and the answer once their results are in."""

    def __init__(
        self, state: PlanningState, intent: Intent, names: Names, *, now: datetime, replay: bool, planner: str, question: str | None = None
    ) -> None:
        self.state, self.intent, self.names, self.now, self.replay = state, intent, names, now, replay
        self.prefix = f"[{planner}] "
        self.planner = planner
        # The words the intent was read from: the message, or the earlier question an elliptical one asks again.
        self.question = question if question is not None else state.question or ""

    # -- the step -----------------------------------------------------------------------------------------
    def step(self) -> PlanStep:
        if not self.state.turns:
            problem = self.refusal()
            if problem is not None:
                return self.say(problem)
            planned = self.first_calls()
            return self.say(planned) if isinstance(planned, str) else PlanStep(calls=planned, planner=self.planner)
        follow_up = self.follow_up()
        if follow_up is not None:
            return PlanStep(calls=follow_up, planner=self.planner)
        return self.say(self.answer())

    def compares(self) -> bool:
        """An average or extreme asked for over several periods: each is measured and set against the first."""
        i = self.intent
        return i.kind == "aggregate" and i.start is not None and i.end is not None and bool(i.other_ranges)

    def say(self, text: str) -> PlanStep:
        others = self.intent.other_periods[len(compare.periods(self.intent)) - 1 :] if self.compares() else self.intent.other_periods
        if others and self.intent.start is not None:
            # One period is answered at a time: say so rather than let the others pass as answered.
            text += f"\nThis answers {self.intent.when.describe()} only; ask again for {' and '.join(others)}."
        unused = self.unused_hours()
        if unused:
            text += f"\n{unused}"
        return PlanStep(outcome="answered", message=self.prefix + text, planner=self.planner)

    def unused_hours(self) -> str | None:
        """A part of the day this kind cannot narrow (an action works on whole days), told rather than dropped unseen."""
        i = self.intent
        if i.unused_hours is None or i.unsure or i.kind in ("unknown", "help"):
            return None
        window = describe_hours(i.unused_hours)
        if i.kind == "value_at":
            if i.at is not None and i.unused_hours[0] <= i.at.hour < i.unused_hours[1]:
                return None  # "at 7 in the evening": the hours only placed the time
            return f"This is the value at one moment; for {window} as a whole, ask for the average, e.g. 'average carbon intensity yesterday morning'."
        what = KINDS.get(i.kind, (i.kind, ""))[0]
        scope = "works on whole days" if i.kind in ACTIONS or i.kind == "why_missing" else "is not narrowed by the hour"
        return f"The hours {window} were not used: {what} {scope}."

    def call(self, name: str, index: int = 0, **arguments: Any) -> ProposedCall:
        # Chat turns share a thread; the turn id keeps call ids (the idempotency key of execution) distinct.
        turn = self.state.context.get("turn_id") or "t"
        number = len(self.state.turns) + index
        return ProposedCall(id=f"{self.state.thread_id}-{turn}-s{self.state.step}-chat{number}", name=name, arguments=arguments)

    # -- understanding ------------------------------------------------------------------------------------
    def understood(self) -> str:
        i = self.intent
        bits = [KINDS.get(i.kind, ("something I cannot do", ""))[0]]
        if i.table:
            bits.append(f"table {i.table}")
        elif i.pipeline:
            bits.append(f"pipeline {i.pipeline}")
        if i.start or i.day_hours:
            bits.append(i.when.describe() + (f" at {i.at:%H:%M}" if i.at else ""))
        return ", ".join(bits)

    def unsure(self) -> str:
        options = " or ".join(f"{KINDS[k][0]} (e.g. '{KINDS[k][1]}')" for k in self.intent.closest if k in KINDS)
        guess = (
            f"I am not sure what you want: it could be {self.understood()}."
            if self.intent.kind != "unknown"
            else "I did not understand that."
        )
        return f"{guess} The closest things I can do: {options}. {LLM_HINT}"

    def refusal(self) -> str | None:
        """One line on what is wrong with the request, or None when it can go ahead."""
        i = self.intent
        chatter = small_talk(self.question) or guard.refusal(self.question)
        if chatter is not None:
            return chatter
        if i.off_topic:
            return f"{topic.OFF_TOPIC} {LLM_HINT}"
        if (measure := topic.unheld_measure(self.question)) is not None and i.kind not in ACTIONS:
            return topic.unheld(measure)
        if i.start is not None and i.start > self.now.date() and i.metric == "temperature":
            return (
                f"There is no weather forecast here: {i.table or 'silver.weather'} holds measured hourly temperatures (ERA5) "
                f"at one point over the UK, up to the platform clock ({self.now:%Y-%m-%d %H:%M} UTC). Nothing ran."
            )
        if i.unsure or i.kind == "unknown":
            return self.unsure()
        if i.kind == "help":
            return (
                "I am the runbook planner (no model is configured). Ask me: "
                + "; ".join(f"'{example}'" for _, example in KINDS.values())
                + f". {LLM_HINT}"
            )
        if i.unknown_table:
            return f"unknown table '{i.unknown_table}'; known: {', '.join(self.names.tables)}. Nothing ran."
        if i.ambiguous_tables and i.table is None and (i.kind in ACTIONS or i.kind in ("history", "lineage", "rows", "why_missing")):
            return f"Which table: {' or '.join(i.ambiguous_tables)}? Name it and ask again. Nothing ran."
        if i.unknown_pipeline:
            return f"unknown pipeline '{i.unknown_pipeline}'; known: {', '.join(self.names.pipelines)}. Nothing ran."
        if i.date_problem:
            return f"impossible range: {i.date_problem}; write the earlier day first, e.g. 'from 2023-03-01 to 2023-03-05'. Nothing ran."
        if i.hours_problem:
            return f"cannot use those hours: {i.hours_problem}. Nothing ran."
        today = self.now.date()
        if i.kind == "greenest_ahead":
            return None  # the forecast looks ahead: a later day is the point, and the source's coverage does not apply
        if i.start is not None and i.start > today:
            return (
                f"{i.start.isoformat()} is after the platform clock ({self.now:%Y-%m-%d %H:%M} UTC): there is no data for it yet; "
                f"choose a day up to {today.isoformat()}. Nothing ran."
            )
        return self.outside_coverage()

    def outside_coverage(self) -> str | None:
        i = self.intent
        coverage = self.names.coverage.get(i.pipeline or "", ()) if self.replay else ()
        if not coverage or i.start is None or i.end is None:
            return None
        ranges = [(date.fromisoformat(a), date.fromisoformat(b)) for a, b in coverage]
        if any(i.start < b and a < i.end for a, b in ranges):
            return None
        valid = ", ".join(f"{a} to {b - timedelta(days=1)}" for a, b in ranges)
        return f"{i.when.describe()} is outside the data: the {i.pipeline} source covers {valid}. Nothing ran."

    # -- first calls -------------------------------------------------------------------------------------
    def first_calls(self) -> list[ProposedCall] | str:
        i = self.intent
        if i.acts:
            return self.action()
        if i.kind in ACTIONS:
            # A question about an action: what it would do and how to ask for it, with the days it is about.
            counted = advice.counted_table(i, self.names)
            if counted is None or i.start is None or i.end is None:
                return advice.explain(i)
            return [self.call(tool.QUERY_LAKE, sql=queries.day_counts(*counted, i.start, i.end), limit=advice.MAX_DAYS_SHOWN)]
        if i.kind == "incidents":
            if i.incident_id is not None:
                return [self.call(tool.GET_INCIDENT, incident_id=i.incident_id)]
            if self.about_a_table():
                # "what did you do about the weather outage?": that table's incidents, the newest told in full.
                return [self.call(tool.LIST_INCIDENTS, status="all", table=i.table, limit=10)]
            if i.start is not None:
                # "what incidents came up today?": whatever became of them, the ones detected in that period
                return [self.call(tool.LIST_INCIDENTS, **incidents.list_arguments("all"))]
            return [self.call(tool.LIST_INCIDENTS, **incidents.list_arguments(i.incident_status or "unresolved"))]
        if i.kind == "status":
            return [self.call(tool.CURRENT_METRICS)]
        if i.kind == "summary":
            start, end = self.period(7)
            column = queries.metric_column("intensity")
            return [
                self.call(tool.LIST_INCIDENTS, 0, status="all", limit=200),
                self.call(tool.LIST_RUNS, 1, limit=100),
                self.call(tool.QUERY_LAKE, 2, sql=queries.aggregate(column, start, end), limit=1),
            ]
        if i.kind == "approvals":
            return [self.call(tool.LIST_APPROVALS, status=oversight.status_asked(self.question), limit=50)]
        if i.kind == "audit":
            return [self.call(tool.LIST_ACTIONS, writes_only=True, limit=20)]
        if i.kind in ("history", "lineage", "rows"):
            if not i.table:
                return f"Which table? Known: {', '.join(self.names.tables)}."
            if i.kind == "history":
                return [self.call(tool.TABLE_HISTORY, table=i.table, limit=5)]
            if i.kind == "rows":
                return [self.call(tool.QUERY_LAKE, sql=queries.row_count(i.table, self.names.time_column.get(i.table)), limit=1)]
            return [self.call(tool.TABLE_LINEAGE, table=i.table)]
        if i.kind == "run_report":
            return [self.call(tool.LIST_RUNS, pipeline=i.pipeline, limit=20)]
        if i.kind == "freshness":
            tables = [self.names.silver[i.pipeline]] if i.pipeline else list(self.names.silver.values())
            return [self.call(tool.QUERY_LAKE, sql=queries.freshness(tables), limit=20)]
        if i.kind == "quarantined":
            pipelines = [i.pipeline] if i.pipeline else list(self.names.pipelines)
            sql = queries.quarantined(
                [self.names.quarantine[p] for p in pipelines],
                table=i.table if i.pipeline else None,
                start=i.start,
                end=i.end,
                hours=i.day_hours,
            )
            return [self.call(tool.QUERY_LAKE, sql=sql, limit=30)]
        return self.measure()

    def period(self, default_days: int) -> tuple[date, date]:
        if self.intent.start is not None and self.intent.end is not None:
            return self.intent.start, self.intent.end
        today = self.now.date()
        return today - timedelta(days=default_days), today

    def measure(self) -> list[ProposedCall] | str:
        i = self.intent
        if i.kind == "value_at" and i.latest:
            table = i.table or queries.metric_column(i.metric, i.fuel).table
            return [self.call(tool.QUERY_LAKE, sql=queries.latest_value(table, self.now), limit=20)]
        if i.kind == "value_at":
            if i.at is None or i.start is None:
                return "At what time? e.g. 'what was the carbon intensity yesterday at 18:00?'"
            column = queries.metric_column(i.metric, i.fuel)
            minutes = 1440 // self.names.slots_per_day.get(column.table, 48)
            at = ahead.midnight(i.start) + timedelta(hours=i.at.hour, minutes=i.at.minute - i.at.minute % minutes)
            return [self.call(tool.QUERY_LAKE, sql=queries.value_at(column.table, at, minutes), limit=20)]
        if i.kind == "aggregate" and i.per is not None and not self.compares():
            column, (start, end) = queries.metric_column(i.metric, i.fuel), self.period(7)
            return [self.call(tool.QUERY_LAKE, sql=queries.per_period(column, start, end, i.day_hours, i.per), limit=100)]
        if i.kind == "aggregate" and i.threshold is not None:
            column, (start, end) = queries.metric_column(i.metric, i.fuel), self.period(7)
            sql = queries.count_beyond(column, start, end, i.day_hours, threshold=i.threshold, above=i.above, days=i.count_days)
            return [self.call(tool.QUERY_LAKE, sql=sql, limit=1)]
        if i.kind == "aggregate" and i.metric == "mix":
            start, end = self.period(1)
            return [self.call(tool.QUERY_LAKE, sql=queries.mix(start, end, i.day_hours), limit=20)]
        if i.kind == "aggregate":
            column = queries.metric_column(i.metric, i.fuel)
            if i.by_day and not self.compares():
                start, end = self.period(7)
                sql = queries.extreme_day(column, start, end, i.day_hours, highest=i.aggregate == "max")
                return [self.call(tool.QUERY_LAKE, sql=sql, limit=1)]
            spans = compare.periods(i) if self.compares() else [self.period(7)]
            return [
                self.call(tool.QUERY_LAKE, n, sql=queries.aggregate(column, a, b, i.day_hours), limit=1) for n, (a, b) in enumerate(spans)
            ]
        if i.day_hours is not None and (i.hours or 1) > i.day_hours[1] - i.day_hours[0]:
            return (
                f"A {i.hours or 1}-hour window does not fit in {describe_hours(i.day_hours)}: ask for a shorter window "
                "or wider hours. Nothing ran."
            )
        if i.kind == "greenest_ahead" and i.outlook:
            window = ahead.outlook_window(i, self.now)
            if isinstance(window, str):
                return window
            return [self.call(tool.QUERY_LAKE, sql=queries.outlook(FORECAST_TABLE, *window, issued_by=self.now), limit=1)]
        if i.kind == "greenest_ahead":
            if i.dirtiest:
                return (
                    "The forecast is searched for the greenest window only; to avoid the dirtiest hours, ask when to run "
                    "the job ('when should I run a 2-hour job tomorrow?'). Nothing ran."
                )
            arguments = ahead.search(i, self.now)
            return arguments if isinstance(arguments, str) else [self.call(tool.FIND_GREENEST_WINDOW, **arguments)]
        if i.kind == "greenest":
            start, end = self.period(1)
            slots = int((i.hours or 1) * 2)
            sql = queries.greenest(start, end, slots=slots, slot_minutes=30, hours=i.day_hours, dirtiest=i.dirtiest)
            return [self.call(tool.QUERY_LAKE, sql=sql, limit=1)]
        # why_missing
        table = i.table or "silver.carbon_intensity"
        pipeline = i.pipeline or self.names.owner.get(table, "carbon_intensity")
        if i.day is None and i.start is not None and i.end is not None:
            # A range ("is anything missing this week?"): each day's slots, then the days that lack some.
            start, end = i.start, min(i.end, self.now.date())
            if end <= start:
                return f"{i.when.describe()} has not ended yet on the platform clock ({self.now:%Y-%m-%d %H:%M} UTC); ask about a day up to {start}."
            if (end - start).days > MAX_RANGE_DAYS:
                return f"That is {(end - start).days} days; ask about at most {MAX_RANGE_DAYS} days at a time (one row a day). Nothing ran."
            sql = queries.day_counts(table, self.names.quarantine.get(pipeline), start, end)
            return [self.call(tool.QUERY_LAKE, sql=sql, limit=MAX_RANGE_DAYS)]
        if i.day is None:
            return "Which day? e.g. 'why is carbon intensity missing data on 2023-03-02?'"
        return [
            self.call(tool.QUERY_LAKE, 0, sql=queries.day_contents(table, self.names.quarantine[pipeline], i.day), limit=50),
            self.call(tool.LIST_RUNS, 1, pipeline=pipeline, limit=50),
            self.call(tool.LIST_INCIDENTS, 2, status="all", table=table, limit=20),
            self.call(tool.REFETCH_AND_DIFF, 3, pipeline=pipeline, day=i.day.isoformat()),
        ]

    def action(self) -> list[ProposedCall] | str:
        i = self.intent
        reason = f"requested in chat: {self.question[:200]}"
        if i.kind in ("rerun", "backfill", "pause", "resume"):
            if not i.pipeline:
                return f"Which pipeline? Known: {', '.join(self.names.pipelines)}. Nothing ran."
            if i.kind == "pause":
                return [self.call(tool.PAUSE_PIPELINE, pipeline=i.pipeline, reason=reason)]
            if i.kind == "resume":
                return [self.call(tool.RESUME_PIPELINE, pipeline=i.pipeline, reason=reason)]
            if i.start is None or i.end is None:
                return f"Which days? e.g. '{i.kind} {i.pipeline} from 2023-03-01 to 2023-03-03'. Nothing ran."
            name = tool.RERUN_WINDOW if i.kind == "rerun" and i.when.days <= MAX_RERUN_DAYS else tool.BACKFILL_RANGE
            return [self.call(name, pipeline=i.pipeline, start=i.start.isoformat(), end=i.end.isoformat())]
        if not i.table:
            return f"Which table? Known: {', '.join(self.names.tables)}. Nothing ran."
        if i.kind == "expire":
            return [self.call(tool.EXPIRE_SNAPSHOTS, table=i.table)]
        if i.kind == "compact":
            return [self.call(tool.COMPACT_TABLE, table=i.table)]
        if i.kind == "rollback":
            if i.snapshot_id is None:
                return f"To which snapshot? Ask for the history of {i.table} to see the ids. Nothing ran."
            return [self.call(tool.ROLLBACK_TABLE, table=i.table, snapshot_id=i.snapshot_id, reason=reason)]
        if i.day is None:
            return f"Which single day? e.g. '{i.kind} {i.table} on 2023-03-02' (one day at a time). Nothing ran."
        day = i.day.isoformat()
        if i.kind == "quarantine":
            return [self.call(tool.QUARANTINE_PARTITION, table=i.table, day=day, reason=reason)]
        if i.kind == "release":
            return [self.call(tool.RELEASE_PARTITION, table=i.table, day=day)]
        return [self.call(tool.DELETE_PARTITION, table=i.table, day=day, reason=reason)]

    # -- after the first results ---------------------------------------------------------------------------
    def about_a_table(self) -> bool:
        """An incidents question that names a table and asks what became of it, not for a list by status."""
        i = self.intent
        return i.kind == "incidents" and i.table is not None and bool(_DONE_ABOUT.search(self.question.lower()))

    def follow_up(self) -> list[ProposedCall] | None:
        last = self.state.turns[-1]
        if self.about_a_table() and last.call.name == tool.LIST_INCIDENTS and last.status == "ok" and len(self.state.turns) == 1:
            found = (last.result or {}).get("incidents") or []
            return [self.call(tool.GET_INCIDENT, incident_id=found[0]["id"])] if found else None
        if self.intent.kind != "run_report" or last.call.name != tool.LIST_RUNS or last.status != "ok" or len(self.state.turns) != 1:
            return None
        if runs_listed(self.question) is not None:
            return None  # "list the last 3 runs": the list is the answer
        runs = (last.result or {}).get("runs") or []
        if not runs:
            return None
        chosen = runs[0]
        if any(w in self.question.lower() for w in _FAILURE_WORDS):
            troubled = [r for r in runs if r["status"] != "succeeded" or r["rows_quarantined"] or r["held_days"]]
            chosen = troubled[0] if troubled else runs[0]
        return [self.call(tool.GET_RUN, run_id=chosen["run_id"])]

    def answer(self) -> str:
        turns = self.state.turns
        i = self.intent
        if i.acts:
            return "\n".join(self.action_answer(t) for t in turns)
        failed = [t for t in turns if t.status != "ok"]
        if failed and (len(turns) == 1 or turns[0].status != "ok"):
            return "\n".join(answers.not_done(t) for t in failed)
        first = turns[0]
        result = first.result or {}
        if i.kind in ACTIONS:
            counted = advice.counted_table(i, self.names)
            assert counted is not None
            counts = advice.day_counts(i, counted[0], self.names.slots_per_day.get(counted[0]), answers.rows_of(first))
            return counts + "\n" + advice.explain(i)
        if i.kind == "incidents":
            if i.incident_id is not None:
                return incidents.one(result)
            if self.about_a_table():
                return incidents.about_table(i.table or "", result, turns[1].result if len(turns) > 1 else None)
            if i.start is not None and i.end is not None:
                return incidents.detected_in(result, i.start, i.end, i.when.describe())
            return incidents.listed(result, i.incident_status or "unresolved")
        if i.kind == "status":
            return answers.status(result)
        if i.kind == "summary":
            slots = self.names.slots_per_day.get("silver.carbon_intensity", 48)
            return summary.summary(*self.period(7), *turns[:3], slots_per_day=slots)
        if i.kind == "approvals":
            return oversight.approvals(result, oversight.status_asked(self.question))
        if i.kind == "audit":
            return oversight.actions(result)
        if i.kind == "history":
            return answers.history(result)
        if i.kind == "lineage":
            return answers.lineage(result, self.names.parents)
        if i.kind == "rows":
            assert i.table is not None
            return answers.row_count(i.table, (answers.rows_of(first) or [{}])[0])
        if i.kind == "run_report":
            return self.run_answer()
        rows = answers.rows_of(first)
        if i.kind == "freshness":
            return self.freshness_answer(rows)
        if i.kind == "quarantined":
            return self.quarantine_answer(rows)
        if i.kind == "value_at" and i.latest:
            return answers.latest(i, rows, i.table or queries.metric_column(i.metric, i.fuel).table, self.now)
        if i.kind == "value_at":
            column = queries.metric_column(i.metric, i.fuel)
            assert i.start is not None and i.at is not None
            minutes = 1440 // self.names.slots_per_day.get(column.table, 48)
            at = ahead.midnight(i.start) + timedelta(hours=i.at.hour, minutes=i.at.minute - i.at.minute % minutes)
            return answers.value_at(i, rows, at, column.table)
        if i.kind == "aggregate" and i.per is not None and not self.compares():
            return answers.per_period(i, queries.metric_column(i.metric, i.fuel), rows, *self.period(7))
        if i.kind == "aggregate" and i.threshold is not None:
            column = queries.metric_column(i.metric, i.fuel)
            minutes = 1440 // self.names.slots_per_day.get(column.table, 48)
            return answers.count_beyond(i, column, rows[0] if rows else {}, *self.period(7), slot_minutes=minutes)
        if i.kind == "aggregate" and i.metric == "mix":
            return answers.mix(i, rows, *self.period(1))
        if i.kind == "aggregate":
            column = queries.metric_column(i.metric, i.fuel)
            if self.compares():
                return compare.answer(i, column, [(answers.rows_of(t) or [{}])[0] for t in turns], compare.periods(i))
            start, end = self.period(7)
            if i.by_day:
                return answers.extreme_day(i, column, rows[0] if rows else {}, start, end)
            return answers.aggregate(i, column, rows[0] if rows else {}, start, end)
        if i.kind == "greenest":
            start, end = self.period(1)
            return answers.greenest(i, rows[0] if rows else {}, start, end)
        if i.kind == "greenest_ahead" and i.outlook:
            window = ahead.outlook_window(i, self.now)
            assert not isinstance(window, str)
            return answers.outlook(rows[0] if rows else {}, *window)
        if i.kind == "greenest_ahead":
            searched = ahead.search(i, self.now)
            if i.day_hours is None or isinstance(searched, str):
                return answers.greenest_ahead(result)
            since = datetime.fromisoformat(searched["not_before"]) if "not_before" in searched else self.now
            until = self.now + timedelta(hours=searched["within_hours"])
            return answers.greenest_ahead(result) + f" (Searched {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC only.)"
        table = i.table or "silver.carbon_intensity"
        if i.day is None:
            assert i.start is not None and i.end is not None
            return answers.gaps_in_range(table, self.names.slots_per_day.get(table), rows, i.start, min(i.end, self.now.date()))
        by_role = {
            "runs": next((t for t in turns if t.call.name == tool.LIST_RUNS), None),
            "incidents": next((t for t in turns if t.call.name == tool.LIST_INCIDENTS), None),
            "source": next((t for t in turns if t.call.name == tool.REFETCH_AND_DIFF), None),
        }
        expected = self.names.slots_per_day.get(table)
        return answers.why_missing(table, i.day, expected, rows, {k: v for k, v in by_role.items() if v is not None})

    def action_answer(self, turn: Turn) -> str:
        if turn.status != "ok":
            return answers.not_done(turn)
        approved = f" (approved by {turn.approved_by})" if turn.approved_by else ""
        return answers.action(turn) + approved

    def run_answer(self) -> str:
        listed = self.state.turns[0]
        runs = (listed.result or {}).get("runs") or []
        count = runs_listed(self.question)
        if count is not None:
            return answers.runs_listed(runs[:count], self.intent.pipeline)
        if len(self.state.turns) == 1:
            who = self.intent.pipeline or "any pipeline"
            return f"No run of {who} is recorded yet."
        got = self.state.turns[-1]
        if got.status != "ok":
            return answers.not_done(got)
        asked_failure = any(w in self.question.lower() for w in _FAILURE_WORDS)
        return answers.run_report(got.result or {}, asked_failure=asked_failure, ok_runs=len(runs))

    def freshness_answer(self, rows: list[dict[str, Any]]) -> str:
        lines = []
        for row in rows:
            table = row["table_name"]
            pipeline = self.names.owner.get(table, table)
            if row["newest"] is None:
                lines.append(f"{pipeline}: no data yet in {table}")
                continue
            newest = datetime.fromisoformat(str(row["newest"]))
            lag = self.now - newest
            hours = lag.total_seconds() / 3600
            limit = self.names.max_lag_minutes.get(table)
            verdict = (
                "no freshness monitor watches it"
                if limit is None
                else ("fresh" if lag <= timedelta(minutes=limit) else "STALE") + f" (its monitor allows {limit / 60:g} h)"
            )
            lines.append(f"{pipeline}: newest slot {newest:%Y-%m-%d %H:%M} UTC, {hours:.1f} h before the platform clock; {verdict}")
        judged = [line for line in lines if "no freshness monitor" not in line]
        stale = sum("STALE" in line or "no data" in line for line in judged)
        head = (
            f"As of {self.now:%Y-%m-%d %H:%M} UTC (platform clock), {len(judged) - stale} of {len(judged)} monitored pipeline(s) are fresh."
        )
        return head + "\n" + "\n".join(lines)

    def quarantine_answer(self, rows: list[dict[str, Any]]) -> str:
        i = self.intent
        scope = (f" for {i.table}" if i.pipeline else "") + (f" {i.when.describe()}" if i.start or i.day_hours else "")
        if not rows:
            when = answers.period_phrase(i.start, i.end, i.day_hours) if i.start and i.end else ""
            where = f" for {i.table}" if i.pipeline else ""
            return f"No row is held in quarantine{where}{' ' + when if when else ''}."
        total = sum(int(r["n_rows"]) for r in rows)
        lines = [
            f"{r['n_rows']} row{'' if int(r['n_rows']) == 1 else 's'} of {r['target_table']} by {r['expectation']} ({r['scope']}, {r['days']} day(s), "
            f"{str(r['first_ts'])[:16].replace('T', ' ')} to {str(r['last_ts'])[:16].replace('T', ' ')}): {r['reason']}"
            for r in rows
        ]
        return f"{total} row(s) held in quarantine{scope}, by check:\n" + "\n".join(lines)


def plan_chat(state: PlanningState, *, planner: str) -> PlanStep:
    """The runbook planner's next step in a chat turn."""
    # The platform the graph runs on (its config folder and source mode); this process's settings only outside a graph.
    platform = state.context.get("platform") or {}
    if not platform:
        settings = load_settings()
        platform = {"config_dir": str(settings.config_dir), "source_mode": settings.source_mode}
    names = names_of(Path(platform["config_dir"]))
    now = _now(state)
    question = state.question or ""
    again = elliptical(question, state.earlier, now=now, names=names)  # "and saturday?": the last question, for saturday
    if again is None and (period := bare_period(question, now)) is not None:
        # A period alone with no earlier question to ask again: say what can be asked about it rather than guess.
        on = f"from {period}" if " to " in period else f"on {period}"
        return PlanStep(
            outcome="answered",
            message=f"[{planner}] What should I tell you about {period}? e.g. 'average carbon intensity {on}', "
            f"'what incidents came up {on}?' or 'summarise {on}'.",
            planner=planner,
        )
    if again is not None:
        intent, question = again
    else:
        intent = with_earlier(read_intent(question, now=now, names=names), question, state.earlier, now=now, names=names)
    replay = platform.get("source_mode") == "replay"
    return ChatPlan(state, intent, names, now=now, replay=replay, planner=planner, question=question).step()
