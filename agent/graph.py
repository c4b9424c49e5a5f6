"""The agent's LangGraph graph: gather → plan → review → execute → verify → plan … → report → remember.

    START → gather → plan ─calls─► review ─► execute ─data written─► verify ─► plan
                      │                          └──────────────otherwise───────► plan
                      └─done or budget spent─► report → remember → END

`review` validates the arguments on our side and asks the policy engine; a call that needs approval
records a request in the ops database and pauses the graph with `interrupt()`. `execute` is a separate
node, so resuming re-runs only the review (idempotent: decisions and requests are keyed by call id) and
never a side effect; `execute` itself skips a call whose audit row is already finished. The step budget
and the token budget end a thread in escalation, never in a loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict
from uuid import uuid4

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agent.facts import call_history, incident_vars
from agent.planner import Planner, PlanningState, Turn
from agent.report import Reporter, describe_call, describe_turn, final_text
from agent.verify import verify
from config.errors import DataOpsError, ModelError, ToolError
from memory.store import IncidentMemory, MemoryRecord
from pipelines.context import PlatformContext
from pipelines.incidents import IncidentError
from policies.approvals import ApprovalStore
from policies.audit import AuditLog
from policies.engine import decide
from policies.model import Deny, NeedsApproval, PolicyRequest, PolicySpec
from tools.base import Target, ToolContext, ToolSpec

log = logging.getLogger(__name__)
DATA_LAYERS = ("bronze", "silver", "gold", "quarantine")


class AgentState(TypedDict, total=False):
    thread_id: str
    mode: str
    incident_id: int | None
    question: str | None
    turn_id: str
    actor: str
    context: dict[str, Any]
    proposed: list[dict[str, Any]]
    reviewed: list[dict[str, Any]]
    turns: list[dict[str, Any]]
    step: int
    tokens: int
    step_tokens: int
    verification: dict[str, Any] | None
    outcome: str | None
    message: str
    planner: str
    wrote: bool


@dataclass(kw_only=True)
class Runtime:
    """What the nodes use; held outside the checkpointed state."""

    ctx: PlatformContext
    planner: Planner
    policy: PolicySpec
    tools: dict[str, ToolSpec[Any, Any]]
    approvals: ApprovalStore
    audit: AuditLog
    reporter: Reporter
    memory: Callable[[], IncidentMemory]
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    max_steps: int = 12


def build_graph(rt: Runtime) -> StateGraph:  # type: ignore[type-arg]
    def gather(state: AgentState) -> dict[str, Any]:
        now = rt.clock()
        context: dict[str, Any] = {
            "now": now.isoformat(),
            "effects": {n: t.effect for n, t in rt.tools.items()},
            "turn_id": state.get("turn_id") or "",
        }
        text = state.get("question") or ""
        if state.get("incident_id") is not None:
            incident = rt.ctx.incidents.get(int(state["incident_id"]))  # type: ignore[arg-type]
            if incident.status == "open":
                incident = rt.ctx.incidents.transition(incident.id, "acknowledged", note="the agent is on it", actor="agent")
            context["vars"] = incident_vars(rt.ctx, incident, now)
            text = f"{incident.kind} {incident.table} {incident.title}"
            rt.reporter.step(state["thread_id"], f"on incident {incident.id}: {incident.title} (planner: {rt.planner.name})")
        try:
            hits = rt.memory().search(text, k=3) if text else []
            context["memory"] = [
                {"id": h.record.id, "title": h.record.title, "score": round(h.score, 3), "outcome": h.record.outcome} for h in hits
            ]
        except DataOpsError as exc:
            log.warning("memory search failed: %s", exc)
        return {
            "context": context,
            "turns": state.get("turns") or [],
            "step": state.get("step") or 0,
            # An incident's budget covers its whole thread; a chat turn has a budget of its own.
            "tokens": rt.audit.tokens_of(state["thread_id"]) if state.get("mode") != "chat" else 0,
        }

    def plan(state: AgentState) -> dict[str, Any]:
        step, tokens = state.get("step", 0), state.get("tokens", 0)
        chat = state.get("mode") == "chat"
        if step >= rt.max_steps:
            return _done(
                state,
                "answered" if chat else "escalated",
                f"stopped after {step} planning steps (DATAOPS_AGENT_MAX_STEPS); a human must take over",
            )
        if tokens > rt.policy.token_budget_per_incident:
            return _done(
                state,
                "answered" if chat else "escalated",
                f"the token budget ({rt.policy.token_budget_per_incident}) is spent; a human must take over",
            )
        incident = rt.ctx.incidents.get(int(state["incident_id"])) if state.get("incident_id") is not None else None  # type: ignore[arg-type]
        planning = PlanningState(
            thread_id=state["thread_id"], mode="chat" if chat else "incident", question=state.get("question"),
            incident=incident.model_dump(mode="json") if incident else None, context=state.get("context") or {},
            turns=[Turn.model_validate(t) for t in state.get("turns") or []], verification=state.get("verification"), step=step, tokens=tokens,
        )  # fmt: skip
        try:
            planned = rt.planner.plan(planning)
        except ModelError as exc:
            return _done(state, "answered" if chat else "escalated", f"the model failed: {exc}")
        update: dict[str, Any] = {"planner": planned.planner, "tokens": tokens + planned.tokens, "step_tokens": planned.tokens}
        if planned.calls:
            # Execution is idempotent on the call id, so an id seen before (llama.cpp numbers every reply's calls
            # from call_0) must not inherit an older call's decision or result. The plan is checkpointed, so a
            # resume keeps these ids.
            calls = [c if rt.audit.get(c.id) is None else c.model_copy(update={"id": f"call_{uuid4().hex[:16]}"}) for c in planned.calls]
            update |= {"proposed": [c.model_dump(mode="json") for c in calls], "step": step + 1}
            return update
        return update | _done(state, planned.outcome or ("answered" if chat else "escalated"), planned.message)

    def review(state: AgentState) -> dict[str, Any]:
        reviewed = []
        for index, call in enumerate(state.get("proposed") or []):
            reviewed.append(_review_one(rt, state, call, tokens=state.get("step_tokens", 0) if index == 0 else 0))
        return {"reviewed": reviewed}

    def execute(state: AgentState) -> dict[str, Any]:
        turns = list(state.get("turns") or [])
        wrote = False
        for item in state.get("reviewed") or []:
            turn = item["turn"] if not item["executable"] else _execute_one(rt, state, item)
            turns.append(turn)
            rt.reporter.step(state["thread_id"], describe_turn(turn))
            layer = (item.get("target") or {}).get("layer")
            wrote = wrote or (turn["status"] == "ok" and turn.get("effect") in ("write", "destructive") and layer in DATA_LAYERS)
        return {"turns": turns, "proposed": [], "reviewed": [], "wrote": wrote}

    def check(state: AgentState) -> dict[str, Any]:
        incident = rt.ctx.incidents.get(int(state["incident_id"])).model_dump(mode="json") if state.get("incident_id") is not None else None  # type: ignore[arg-type]
        step_turns = [t for t in state.get("turns") or [] if t.get("step") == state.get("step", 0) - 1]
        result = verify(rt.ctx, turns=step_turns, incident=incident, vars=(state.get("context") or {}).get("vars") or {}, now=rt.clock())
        rt.reporter.step(state["thread_id"], f"verification {'passed' if result['passed'] else 'not passed'}: {result['detail']}")
        return {"verification": result, "wrote": False}

    def report(state: AgentState) -> dict[str, Any]:
        outcome, message = state.get("outcome") or "escalated", state.get("message") or ""
        incident_id = state.get("incident_id")
        if incident_id is not None:
            outcome, message = _settle_incident(rt, int(incident_id), outcome, message, state)
        final = {**state, "outcome": outcome, "message": message}
        rt.reporter.final(state["thread_id"], final_text(final), outcome=outcome, incident_id=incident_id)
        return {"outcome": outcome, "message": message}

    def remember(state: AgentState) -> dict[str, Any]:
        if state.get("incident_id") is None or state.get("outcome") not in ("resolved", "escalated"):
            return {}
        try:
            incident = rt.ctx.incidents.get(int(state["incident_id"]))  # type: ignore[arg-type]
            actions = [describe_call(t["call"]) for t in state.get("turns") or [] if t["status"] == "ok" and t.get("effect") != "read"]
            rt.memory().remember(
                MemoryRecord(
                    id=f"incident-{incident.id}",
                    kind="incident",
                    title=incident.title,
                    table=incident.table,
                    incident_kind=incident.kind,
                    symptoms=f"{incident.kind} on {incident.table}: {incident.title}",
                    root_cause=state.get("message") or "",
                    actions=actions,
                    outcome=f"{state.get('outcome')}: {(state.get('verification') or {}).get('detail', 'not verified')}",
                    recorded_at=rt.clock(),
                )
            )
        except DataOpsError as exc:
            log.warning("could not remember incident %s: %s", state.get("incident_id"), exc)
        return {}

    graph = StateGraph(AgentState)
    for name, node in (
        ("gather", gather),
        ("plan", plan),
        ("review", review),
        ("execute", execute),
        ("verify", check),
        ("report", report),
        ("remember", remember),
    ):
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


def _done(state: AgentState, outcome: str, message: str) -> dict[str, Any]:
    return {"outcome": outcome, "message": message, "proposed": []}


def _turn(
    call: dict[str, Any], *, step: int, decision: str, status: str, message: str = "", rule: str = "", **extra: Any
) -> dict[str, Any]:
    return {"call": call, "step": step, "decision": decision, "status": status, "message": message, "rule": rule, "result": None, **extra}


def _review_one(rt: Runtime, state: AgentState, call: dict[str, Any], *, tokens: int) -> dict[str, Any]:
    """Validate, judge and (when needed) wait for approval; returns {executable, turn | args...}."""
    step = state.get("step", 1) - 1
    thread, incident_id = state["thread_id"], state.get("incident_id")
    actor = str(state.get("actor") or "agent")
    common: dict[str, Any] = {
        "thread_id": thread,
        "incident_id": incident_id,
        "actor": actor,
        "planner": state.get("planner") or "",
        "tokens": tokens,
    }
    spec = rt.tools.get(call["name"])
    problem = call.get("error")
    if spec is None:
        problem = f"unknown tool {call['name']!r}; known: {', '.join(sorted(rt.tools))}"
    target = Target()
    if problem is None and spec is not None:
        try:
            args = spec.parse(call.get("arguments"))
            target = spec.target(_tool_ctx(rt, state, call["id"]), args)
        except (ToolError, DataOpsError) as exc:
            problem = str(exc)
    if problem is not None or spec is None:
        rt.audit.judged(
            call_id=call["id"],
            tool=call["name"],
            arguments=call.get("arguments") or {},
            decision="invalid",
            status="invalid",
            reason=problem or "",
            **common,
        )
        return {"executable": False, "turn": _turn(call, step=step, decision="invalid", status="invalid", message=problem or "")}
    previous = rt.audit.get(call["id"])
    incident = rt.ctx.incidents.get(int(incident_id)) if incident_id is not None else None
    # Verification counts for resolving this thread's own incident only, never another one (nor in chat).
    target_incident = (call.get("arguments") or {}).get("incident_id")
    verified = (
        incident is not None
        and target_incident == incident.id
        and (bool((state.get("verification") or {}).get("passed")) or _verified_read(state))
    )
    same_call = previous is not None and (previous.thread_id, previous.tool) == (thread, spec.name)
    if previous is not None and same_call and previous.decision in ("allow", "needs_approval", "deny"):
        kind, rule, reason = previous.decision, previous.rule, previous.reason
        approvers = list(rt.policy.approvers)
    else:
        history = call_history(
            rt.ctx,
            rt.audit,
            spec.name,
            target,
            incident=incident,
            tokens_used=state.get("tokens", 0),
            verified=verified,
            wall_now=datetime.now(UTC),
        )
        request = PolicyRequest(tool=spec.name, effect=spec.effect, actor=actor, layer=target.layer, table=target.table, pipeline=target.pipeline,
                                partition=target.partition, span_days=target.span_days, arguments=call.get("arguments") or {}, history=history, now=rt.clock())  # fmt: skip
        decision = decide(rt.policy, request)
        kind, rule = decision.kind, decision.rule
        reason = decision.message if isinstance(decision, Deny) else decision.reason
        approvers = list(decision.approvers) if isinstance(decision, NeedsApproval) else []
        status = {"allow": "allowed", "deny": "denied", "needs_approval": "pending_approval"}[kind]
        rt.audit.judged(call_id=call["id"], tool=spec.name, effect=spec.effect, arguments=call.get("arguments") or {}, target=target.model_dump(),
                        decision=kind, rule=rule, reason=reason, status=status, **common)  # fmt: skip
    base = {"call": call, "target": target.model_dump(), "effect": spec.effect, "rule": rule, "decision": kind}
    if kind == "deny":
        return {
            "executable": False,
            "turn": _turn(call, step=step, decision="deny", status="denied", message=reason, rule=rule, effect=spec.effect),
        }
    if kind == "allow":
        return {"executable": True, **base}
    approval, created = rt.approvals.request(
        call_id=call["id"], thread_id=thread, tool=spec.name, arguments=call.get("arguments") or {}, target=target.model_dump(), reason=reason,
        rule=rule, approvers=approvers, requested_by=actor, ttl=timedelta(minutes=rt.policy.approval_ttl_minutes), incident_id=incident_id,
    )  # fmt: skip
    if created:
        rt.audit.update(call["id"], approval_id=approval.id)
        rt.reporter.approval_requested(approval)
    while approval.status == "pending":
        # A resume value may be meant for another request of this step (interrupts are matched by position when
        # the node re-runs): the ops database is the truth, and while this request is undecided the thread waits.
        interrupt({"approval_id": approval.id, "tool": spec.name, "reason": reason, "thread_id": thread})
        approval = rt.approvals.get(approval.id)
    if approval.status == "approved":
        rt.audit.update(call["id"], approver=approval.decided_by)
        return {"executable": True, "approved_by": approval.decided_by, **base}
    status = "expired" if approval.status == "expired" else "denied"
    message = f"{approval.id} {approval.status} by {approval.decided_by}" + (
        f": {approval.decision_reason}" if approval.decision_reason else ""
    )
    rt.audit.update(call["id"], status=status, approver=approval.decided_by)
    turn = _turn(
        call, step=step, decision="needs_approval", status=status, message=message, rule=rule, effect=spec.effect, approved_by=None
    )
    return {"executable": False, "turn": turn}


def _tool_ctx(rt: Runtime, state: AgentState, call_id: str) -> ToolContext:
    incident_id = state.get("incident_id")
    return ToolContext(
        platform=rt.ctx, now=rt.clock(), actor=state.get("actor") or "agent", incident_id=int(incident_id) if incident_id is not None else None,
        call_id=call_id, memory_factory=rt.memory,
    )  # fmt: skip


def _execute_one(rt: Runtime, state: AgentState, item: dict[str, Any]) -> dict[str, Any]:
    call = item["call"]
    step = state.get("step", 1) - 1
    common = {
        "step": step,
        "decision": item["decision"],
        "rule": item["rule"],
        "effect": item["effect"],
        "approved_by": item.get("approved_by"),
    }
    done = rt.audit.finished(call["id"])
    if done is not None:  # executed before a crash or a resume: never twice
        status = "ok" if done.status == "ok" else "error"
        return _turn(call, status=status, message=done.error or "", **common) | {"result": done.result}
    spec = rt.tools[call["name"]]
    started = time.perf_counter()
    args = spec.parse(call.get("arguments"))
    key = spec.idempotency_key(args)
    if spec.effect != "read":
        same = rt.audit.done_with_key(state["thread_id"], key, other_than=call["id"])
        if same is not None:  # the same write with the same arguments already ran in this thread: do not repeat it
            message = f"not repeated: the same call already ran in this thread ({same.call_id})"
            rt.audit.update(call["id"], status="ok", result=same.result, error=message, idem_key=key, duration_ms=0.0)
            return _turn(call, status="ok", message=message, **common) | {"result": same.result}
    rt.audit.update(call["id"], status="running", idem_key=key)
    try:
        result = spec.invoke(_tool_ctx(rt, state, call["id"]), args).model_dump(mode="json")
    except ToolError as exc:
        rt.audit.update(call["id"], status="error", error=str(exc), duration_ms=round((time.perf_counter() - started) * 1000, 1))
        return _turn(call, status="error", message=str(exc), **common)
    except Exception as exc:  # a bug in a tool must end as an error turn the report shows, not strand the thread
        log.exception("tool %s failed unexpectedly", spec.name)
        message = f"{spec.name} failed unexpectedly: {type(exc).__name__}: {exc}"
        rt.audit.update(call["id"], status="error", error=message, duration_ms=round((time.perf_counter() - started) * 1000, 1))
        return _turn(call, status="error", message=message, **common)
    rt.audit.update(call["id"], status="ok", result=result, duration_ms=round((time.perf_counter() - started) * 1000, 1))
    return _turn(call, status="ok", message="", **common) | {"result": result}


def _settle_incident(rt: Runtime, incident_id: int, outcome: str, message: str, state: AgentState) -> tuple[str, str]:
    """Move the incident to where the thread ended; resolve only what verified."""
    incident = rt.ctx.incidents.get(incident_id)
    verified = bool((state.get("verification") or {}).get("passed"))
    if outcome == "resolved" and not verified and not _verified_read(state):
        outcome, message = "escalated", f"{message} (escalated: the fix was not verified)"
    target = {"resolved": "resolved", "escalated": "escalated"}.get(outcome)
    try:
        if target and incident.status != target:
            rt.ctx.incidents.transition(incident_id, target, note=message, actor="agent")
        elif not target:
            rt.ctx.incidents.annotate(incident_id, message, actor="agent")
    except IncidentError as exc:
        log.warning("incident %d: %s", incident_id, exc)
    return outcome, message


def _verified_read(state: AgentState) -> bool:
    """A containment check (validate_partition) of the incident's own table and day counts as verification."""
    scope = (state.get("context") or {}).get("vars") or {}
    for turn in reversed(state.get("turns") or []):
        args = turn["call"].get("arguments") or {}
        if turn["call"]["name"] == "validate_partition" and turn["status"] == "ok":
            if args.get("table") != (scope.get("incident") or {}).get("table") or args.get("day") != scope.get("day"):
                continue
            return bool((turn.get("result") or {}).get("contained"))
    return False
