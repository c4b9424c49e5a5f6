"""The agent's LangGraph graph: gather → plan → review → execute → verify → plan … → report → remember.

    START → gather → plan ─calls─► review ─► execute ─data written─► verify ─► plan
                      │                          └──────────────otherwise───────► plan
                      └─done or budget spent─► report → remember → END

This module is the wiring: each node reads the checkpointed state, calls the module that owns the step,
and returns its update. `review` (agent/review.py) validates the arguments on our side and asks the policy
engine; a call that needs approval records a request in the ops database and pauses the graph with
`interrupt()`. `execute` (agent/execute.py) is a separate node, so resuming re-runs only the review
(idempotent: decisions and requests are keyed by call id) and never a side effect; `execute` itself skips
a call whose audit row is already finished. The step budget and the token budget end a thread in
escalation, never in a loop. The state's types live in agent/state.py.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import uuid4

from langgraph.graph import END, START, StateGraph

from agent.execute import execute_call, settle_incident, verify_step, wrote_data
from agent.facts import incident_vars
from agent.planner import PlanningState, Turn
from agent.report import describe_call, describe_turn, final_text, with_cause
from agent.review import review_calls
from agent.state import AgentState, ReviewedCall, Runtime, TurnRecord, dump, load
from config.errors import DataOpsError, ModelError
from memory.store import MemoryRecord

log = logging.getLogger(__name__)


EARLIER_KEPT = 5  # earlier questions a chat thread keeps for the next turn


def build_graph(rt: Runtime) -> StateGraph:  # type: ignore[type-arg]
    def gather(state: AgentState) -> dict[str, Any]:
        now = rt.clock()
        context: dict[str, Any] = {
            "now": now.isoformat(),
            "effects": {n: t.effect for n, t in rt.tools.items()},
            "turn_id": state.get("turn_id") or "",
            "platform": {"config_dir": str(rt.ctx.settings.config_dir), "source_mode": rt.ctx.settings.source_mode},
        }
        text = state.get("question") or ""
        if state.get("incident_id") is not None:
            incident = rt.ctx.incidents.get(int(state["incident_id"]))  # type: ignore[arg-type]
            if incident.status == "open":
                incident = rt.ctx.incidents.transition(incident.id, "acknowledged", note="the agent is on it", actor="agent")
            context["vars"] = incident_vars(rt.ctx, incident, now)
            diagnosis = context["vars"]["diagnosis"]
            rt.audit.diagnosed(thread_id=state["thread_id"], incident_id=incident.id, **{k: diagnosis[k] for k in DIAGNOSIS_FIELDS})
            rt.reporter.step(state["thread_id"], f"diagnosis: {diagnosis['cause']} ({diagnosis['confidence']:.0%}): {diagnosis['summary']}")
            text = f"{incident.kind} {incident.table} {incident.title}"
            rt.reporter.step(state["thread_id"], f"on incident {incident.id}: {incident.title} (planner: {rt.planner.name})")
        try:
            hits = rt.memory().search(text, k=3) if text else []
            context["memory"] = [
                {"id": h.record.id, "title": h.record.title, "score": round(h.score, 3), "outcome": h.record.outcome} for h in hits
            ]
        except DataOpsError as exc:
            log.warning("memory search failed: %s", exc)
        # An incident's budget covers its whole thread; a chat turn has a budget of its own.
        tokens = rt.audit.tokens_of(state["thread_id"]) if state.get("mode") != "chat" else 0
        return {"context": context, "turns": state.get("turns") or [], "step": state.get("step") or 0, "tokens": tokens}

    def plan(state: AgentState) -> dict[str, Any]:
        step, tokens = state.get("step", 0), state.get("tokens", 0)
        chat = state.get("mode") == "chat"
        gave_up = "answered" if chat else "escalated"
        if step >= rt.max_steps:
            return _done(gave_up, f"stopped after {step} planning steps (DATAOPS_AGENT_MAX_STEPS); a human must take over")
        if tokens > rt.policy.token_budget_per_incident:
            return _done(gave_up, f"the token budget ({rt.policy.token_budget_per_incident}) is spent; a human must take over")
        incident_id = state.get("incident_id")
        incident = rt.ctx.incidents.get(int(incident_id)) if incident_id is not None else None
        planning = PlanningState(
            thread_id=state["thread_id"],
            mode="chat" if chat else "incident",
            question=state.get("question"),
            incident=incident.model_dump(mode="json") if incident else None,
            context=state.get("context") or {},
            turns=load(Turn, state.get("turns")),
            verification=state.get("verification"),
            step=step,
            tokens=tokens,
            earlier=list(state.get("earlier") or []) if chat else [],
        )
        try:
            planned = rt.planner.plan(planning)
        except ModelError as exc:
            return _done(gave_up, f"the model failed: {exc}")
        update: dict[str, Any] = {"planner": planned.planner, "tokens": tokens + planned.tokens, "step_tokens": planned.tokens}
        if not planned.calls:
            return update | _done(planned.outcome or gave_up, planned.message)
        # Execution is idempotent on the call id, so an id seen before (llama.cpp numbers every reply's calls from
        # call_0) must not inherit an older call's decision or result. The plan is checkpointed, so a resume keeps these ids.
        fresh = [c if rt.audit.get(c.id) is None else c.model_copy(update={"id": f"call_{uuid4().hex[:16]}"}) for c in planned.calls]
        return update | {"proposed": dump(fresh), "step": step + 1}

    def review(state: AgentState) -> dict[str, Any]:
        return {"reviewed": dump(review_calls(rt, state))}

    def execute(state: AgentState) -> dict[str, Any]:
        turns, wrote = load(TurnRecord, state.get("turns")), False
        for item in load(ReviewedCall, state.get("reviewed")):
            turn = item.turn if item.turn is not None else execute_call(rt, state, item)
            turns.append(turn)
            rt.reporter.step(state["thread_id"], describe_turn(turn.model_dump(mode="json")))
            wrote = wrote or wrote_data(turn, item)
        return {"turns": dump(turns), "proposed": [], "reviewed": [], "wrote": wrote}

    def verify(state: AgentState) -> dict[str, Any]:
        result = verify_step(rt, state)
        rt.reporter.step(state["thread_id"], f"verification {'passed' if result['passed'] else 'not passed'}: {result['detail']}")
        return {"verification": result, "wrote": False}

    def report(state: AgentState) -> dict[str, Any]:
        outcome, message = state.get("outcome") or "escalated", state.get("message") or ""
        incident_id = state.get("incident_id")
        if incident_id is not None:
            message = with_cause(message, ((state.get("context") or {}).get("vars") or {}).get("diagnosis"))
            outcome, message = settle_incident(rt, state, int(incident_id), outcome, message)
        rt.reporter.final(
            state["thread_id"], final_text({**state, "outcome": outcome, "message": message}), outcome=outcome, incident_id=incident_id
        )
        if state.get("mode") == "chat" and state.get("question"):
            # The thread keeps its last questions, so the next turn can read "release it" against them.
            earlier = [*(state.get("earlier") or []), str(state["question"])][-EARLIER_KEPT:]
            return {"outcome": outcome, "message": message, "earlier": earlier}
        return {"outcome": outcome, "message": message}

    def remember(state: AgentState) -> dict[str, Any]:
        incident_id = state.get("incident_id")
        if incident_id is None or state.get("outcome") not in ("resolved", "escalated"):
            return {}
        try:
            incident = rt.ctx.incidents.get(int(incident_id))
            turns = load(TurnRecord, state.get("turns"))
            verified = (state.get("verification") or {}).get("detail", "not verified")
            record = MemoryRecord(
                id=f"incident-{incident.id}",
                kind="incident",
                title=incident.title,
                table=incident.table,
                incident_kind=incident.kind,
                symptoms=f"{incident.kind} on {incident.table}: {incident.title}",
                root_cause=_root_cause(state),
                actions=[describe_call(t.call.model_dump(mode="json")) for t in turns if t.status == "ok" and t.effect != "read"],
                outcome=f"{state.get('outcome')}: {verified}",
                recorded_at=rt.clock(),
            )
            rt.memory().remember(record)
        except DataOpsError as exc:
            log.warning("could not remember incident %s: %s", incident_id, exc)
        return {}

    graph = StateGraph(AgentState)
    nodes = {"gather": gather, "plan": plan, "review": review, "execute": execute, "verify": verify, "report": report, "remember": remember}
    for name, node in nodes.items():
        graph.add_node(name, node)  # type: ignore[call-overload]
    graph.add_edge(START, "gather")
    graph.add_edge("gather", "plan")
    graph.add_conditional_edges("plan", lambda s: "report" if s.get("outcome") else "review", ["review", "report"])
    graph.add_edge("review", "execute")
    graph.add_conditional_edges("execute", lambda s: "verify" if s.get("wrote") else "plan", ["verify", "plan"])
    graph.add_edge("verify", "plan")
    graph.add_edge("report", "remember")
    graph.add_edge("remember", END)
    return graph


def _done(outcome: str, message: str) -> dict[str, Any]:
    return {"outcome": outcome, "message": message, "proposed": []}


DIAGNOSIS_FIELDS = ("cause", "confidence", "summary", "evidence")


def _root_cause(state: AgentState) -> str:
    """What memory keeps as the cause: the diagnosis (kind and facts), then what the thread concluded."""
    diagnosis = ((state.get("context") or {}).get("vars") or {}).get("diagnosis") or {}
    named = f"{diagnosis['cause'].replace('_', ' ')}: {diagnosis['summary']}. " if diagnosis else ""
    return named + (state.get("message") or "")
