"""The runbook planner's chat step, as the chat tests drive it: one message on a platform clock, with the turns so far."""

from __future__ import annotations

from datetime import datetime

from agent.chat_intents import plan_chat
from agent.planner import PlanningState, PlanStep, ProposedCall, Turn


def plan(text: str, now: datetime, turns: list[Turn] | None = None, *, thread: str = "chat-t") -> PlanStep:
    """The planner's next step for `text` at platform time `now`: the calls it proposes, or its answer once `turns` hold their results."""
    state = PlanningState(thread_id=thread, mode="chat", question=text, context={"now": now.isoformat(), "turn_id": "x"}, turns=turns or [])
    return plan_chat(state, planner="runbook planner")


def answered(call: ProposedCall, columns: list[str], rows: list[list[object]]) -> Turn:
    """A query call's turn with these result rows, as the tool returns them."""
    return Turn(call=call, decision="allow", status="ok", result={"columns": columns, "rows": rows})
