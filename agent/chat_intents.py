"""What the runbook planner understands in chat: a fixed set of questions and actions, matched by pattern.

Questions are answered with read tools; actions are proposed as tool calls and go through the same policy
engine and approvals as everything else. Anything else gets a list of what it understands, and the hint
that a model (DATAOPS_LLM_*) answers free-form questions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.planner import PlanningState, PlanStep, ProposedCall, Turn

HELP = (
    "I am the runbook planner (no model is configured), so I understand these: "
    "'what is open?', 'why did the last <pipeline> run fail?', 'what was the carbon intensity yesterday at 18:00?' "
    "(or on YYYY-MM-DD at HH:MM), 'status', 'history of <table>', 'lineage of <table>', "
    "'rerun <pipeline> YYYY-MM-DD [to YYYY-MM-DD]', 'backfill <pipeline> from YYYY-MM-DD to YYYY-MM-DD', "
    "'quarantine <table> YYYY-MM-DD', 'release <table> YYYY-MM-DD', 'delete <table> YYYY-MM-DD', 'expire snapshots of <table>', 'compact <table>', "
    "'rollback <table> to <snapshot id>', 'pause <pipeline>', 'resume <pipeline>'. "
    "Set DATAOPS_LLM_BASE_URL and DATAOPS_LLM_MODEL for free-form questions."
)
_DAY = r"(\d{4}-\d{2}-\d{2})"
_NAME = r"([a-z_]+(?:\.[a-z_]+)?)"


def _call(state: PlanningState, name: str, **arguments: Any) -> ProposedCall:
    # Chat turns share a thread; the turn id keeps call ids (the idempotency key of execution) distinct.
    turn = state.context.get("turn_id") or "t"
    return ProposedCall(id=f"{state.thread_id}-{turn}-s{state.step}-chat{len(state.turns)}", name=name, arguments=arguments)


def _next_day(day: str) -> str:
    return (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()


def _when(question: str, now: datetime) -> datetime | None:
    time = re.search(r"(\d{1,2}):(\d{2})", question)
    if not time:
        return None
    day = re.search(_DAY, question)
    if day:
        base = datetime.fromisoformat(day.group(1)).replace(tzinfo=UTC)
    elif "yesterday" in question:
        base = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        base = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return base.replace(hour=int(time.group(1)), minute=int(time.group(2)))


def _first_call(state: PlanningState, question: str, now: datetime) -> ProposedCall | None:
    q = question.lower().strip()
    patterns: list[tuple[str, Callable[[re.Match[str]], ProposedCall]]] = [
        (
            rf"\bre-?run {_NAME} {_DAY}(?: to {_DAY})?",
            lambda m: _call(state, "rerun_window", pipeline=m[1], start=m[2], end=m[3] or _next_day(m[2])),
        ),
        (rf"\bbackfill {_NAME} from {_DAY} to {_DAY}", lambda m: _call(state, "backfill_range", pipeline=m[1], start=m[2], end=m[3])),
        (
            rf"\bquarantine {_NAME} {_DAY}",
            lambda m: _call(state, "quarantine_partition", table=m[1], day=m[2], reason=f"requested in chat: {question[:200]}"),
        ),
        (rf"\brelease {_NAME} {_DAY}", lambda m: _call(state, "release_partition", table=m[1], day=m[2])),
        (
            rf"\bdelete {_NAME} {_DAY}",
            lambda m: _call(state, "delete_partition", table=m[1], day=m[2], reason=f"requested in chat: {question[:200]}"),
        ),
        (rf"\bexpire snapshots of {_NAME}", lambda m: _call(state, "expire_snapshots", table=m[1])),
        (rf"\bcompact {_NAME}", lambda m: _call(state, "compact_table", table=m[1])),
        (
            rf"\broll ?back {_NAME} to (\d+)",
            lambda m: _call(state, "rollback_table", table=m[1], snapshot_id=int(m[2]), reason=f"requested in chat: {question[:200]}"),
        ),
        (rf"\bpause {_NAME}", lambda m: _call(state, "pause_pipeline", pipeline=m[1], reason=f"requested in chat: {question[:200]}")),
        (rf"\bresume {_NAME}", lambda m: _call(state, "resume_pipeline", pipeline=m[1], reason="requested in chat")),
        (r"why did the (?:last |latest )?([a-z_]+) run fail", lambda m: _call(state, "list_runs", pipeline=m[1], status="failed", limit=1)),
        (rf"\bhistory of {_NAME}", lambda m: _call(state, "table_history", table=m[1], limit=5)),
        (rf"\blineage of {_NAME}", lambda m: _call(state, "table_lineage", table=m[1])),
        (r"\b(what is open|open incidents|incidents)\b", lambda m: _call(state, "list_incidents", status="unresolved", limit=10)),
        (r"\b(status|metrics|health)\b", lambda m: _call(state, "current_metrics")),
    ]
    for pattern, make in patterns:
        match = re.search(pattern, q)
        if match:
            return make(match)
    if "intensity" in q:
        at = _when(q, now)
        if at is not None:
            sql = (
                'SELECT ts, forecast, actual, "index" FROM silver.carbon_intensity '
                f"WHERE ts >= TIMESTAMPTZ '{at.isoformat()}' AND ts < TIMESTAMPTZ '{(at + timedelta(minutes=30)).isoformat()}'"
            )
            return _call(state, "query_lake", sql=sql, limit=5)
    return None


def _answer(turn: Turn) -> str:
    if turn.status != "ok":
        verdict = {"denied": "was refused", "expired": "expired without a decision", "invalid": "could not be used", "error": "failed"}
        return f"{turn.call.name} {verdict.get(turn.status, turn.status)}: {turn.message}"
    result = turn.result or {}
    name = turn.call.name
    if name == "list_incidents":
        items = result.get("incidents") or []
        if not items:
            return "Nothing is open."
        lines = [f"#{i['id']} [{i['severity']}] {i['status']}: {i['title']}" for i in items]
        return f"{len(items)} unresolved incident(s):\n" + "\n".join(lines)
    if name == "query_lake":
        rows, columns = result.get("rows") or [], result.get("columns") or []
        if not rows:
            return "No row matches that time in silver.carbon_intensity (not published yet, or held in quarantine)."
        return "\n".join(", ".join(f"{c}={v}" for c, v in zip(columns, row, strict=False)) for row in rows)
    if name == "get_run":
        run = result.get("run") or {}
        failing = [v for v in result.get("validation") or [] if not v.get("success")]
        detail = f" Failing expectations: {', '.join(v['expectation'] for v in failing)}." if failing else ""
        return f"Run {run.get('run_id')} of {run.get('pipeline')} ({run.get('window_start')}..{run.get('window_end')}) {run.get('status')}: {run.get('error') or 'no error recorded'}.{detail}"
    return f"{name}: {json.dumps(result, default=str)[:1500]}"


def plan_chat(state: PlanningState, *, planner: str) -> PlanStep:
    question = state.question or ""
    now = datetime.fromisoformat(state.context["now"]) if state.context.get("now") else datetime.now(UTC)
    prefix = f"[{planner}] "
    if not state.turns:
        call = _first_call(state, question, now)
        if call is None:
            return PlanStep(outcome="answered", message=prefix + HELP, planner=planner)
        return PlanStep(calls=[call], planner=planner)
    last = state.turns[-1]
    if last.call.name == "list_runs" and last.status == "ok" and len(state.turns) == 1:
        runs = (last.result or {}).get("runs") or []
        if not runs:
            pipeline = (last.call.arguments or {}).get("pipeline")
            return PlanStep(outcome="answered", message=prefix + f"No failed run of {pipeline} is recorded.", planner=planner)
        return PlanStep(calls=[_call(state, "get_run", run_id=runs[0]["run_id"])], planner=planner)
    return PlanStep(outcome="answered", message=prefix + "\n".join(_answer(t) for t in state.turns), planner=planner)
