"""Review: check a proposed call's arguments on our side, ask the policy engine, and wait for a human if it says so.

    check_arguments ─problem─► ended as invalid
        │
    judge (policy engine, or the decision recorded before a resume) ─deny─► ended as denied
        │ allow                                  │ needs approval
        ▼                                        ▼
    executable                     await_approval ─approved─► executable
        │                                └─refused or expired─► ended
        ▼
    await_green_window (a large backfill of an incident thread, with a forecast saying later is cleaner)
        ─► waits until the platform clock reaches the greenest window, or a person releases it ─► executable

The review node is the one a resume re-runs (`interrupt()` restarts the node), so everything here is
keyed by the call id: a recorded decision stands, an approval request is made once, and nothing runs a
tool. Execution is a separate node (agent/execute.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from langgraph.types import interrupt

from agent.execute import fix_verified
from agent.facts import call_history
from agent.planner import ProposedCall
from agent.state import AgentState, ReviewedCall, Runtime, TurnRecord, load, planned_step
from config.errors import DataOpsError, ToolError
from policies.audit import AuditEntry
from policies.engine import decide
from policies.model import Allow, Decision, Deny, NeedsApproval, PolicyRequest, RequesterRole
from tools.base import Target, ToolSpec

log = logging.getLogger(__name__)


def review_calls(rt: Runtime, state: AgentState) -> list[ReviewedCall]:
    """Review the step's proposed calls in order; the step's model tokens are booked on its first call."""
    calls = load(ProposedCall, state.get("proposed"))
    return [review_call(rt, state, call, tokens=state.get("step_tokens", 0) if i == 0 else 0) for i, call in enumerate(calls)]


def review_call(rt: Runtime, state: AgentState, call: ProposedCall, *, tokens: int) -> ReviewedCall:
    checked = check_arguments(rt, state, call)
    if isinstance(checked, str):
        journal = _journal(state, tokens)
        rt.audit.judged(call_id=call.id, tool=call.name, arguments=call.arguments or {}, decision="invalid", reason=checked, **journal)
        return ReviewedCall.ended(TurnRecord(call=call, step=planned_step(state), decision="invalid", status="invalid", message=checked))
    spec, target = checked
    decision = judge(rt, state, call, spec, target, tokens=tokens)
    reviewed = ReviewedCall(call=call, decision=decision.kind, rule=decision.rule, effect=spec.effect, target=target)
    if isinstance(decision, Deny):
        return _ended(state, reviewed, status="denied", message=decision.message)
    if isinstance(decision, NeedsApproval):
        reviewed = await_approval(rt, state, reviewed, decision)
    if reviewed.executable and spec.defers_to_green_window:
        await_green_window(rt, state, reviewed)
    return reviewed


def check_arguments(rt: Runtime, state: AgentState, call: ProposedCall) -> tuple[ToolSpec[Any, Any], Target] | str:
    """The tool and what the call touches, or why the call cannot run (unknown tool, unreadable or invalid arguments)."""
    spec = rt.tools.get(call.name)
    if spec is None:
        return f"unknown tool {call.name!r}; known: {', '.join(sorted(rt.tools))}"
    if call.error is not None:
        return call.error
    try:
        args = spec.parse(call.arguments)
        return spec, spec.target(rt.tool_context(state, call.id), args)
    except (ToolError, DataOpsError) as exc:
        return str(exc)


def _requester_role(state: AgentState) -> RequesterRole | None:
    """'agent' when the platform works an incident; otherwise the asking person's role (None: no person, or a thread
    that does not say: it fails closed)."""
    if state.get("mode") == "incident":
        return "agent"
    role = state.get("actor_role")
    return role if role in ("viewer", "operator", "approver") else None  # type: ignore[return-value]


def judge(rt: Runtime, state: AgentState, call: ProposedCall, spec: ToolSpec[Any, Any], target: Target, *, tokens: int) -> Decision:
    """The policy engine's decision, recorded in the audit log; on a resumed review, the decision recorded before."""
    recorded = _recorded(rt, state, rt.audit.get(call.id), spec)
    if recorded is not None:
        return recorded
    incident_id = state.get("incident_id")
    incident = rt.ctx.incidents.get(int(incident_id)) if incident_id is not None else None
    # Verification counts for resolving this thread's own incident only, never another one (nor in chat).
    verified = incident is not None and (call.arguments or {}).get("incident_id") == incident.id and fix_verified(rt, state)
    tokens_used = state.get("tokens", 0)
    history = call_history(
        rt.ctx, rt.audit, spec.name, target, incident=incident, tokens_used=tokens_used, verified=verified, wall_now=datetime.now(UTC)
    )
    request = PolicyRequest(
        tool=spec.name,
        effect=spec.effect,
        runs_pipeline=spec.runs_pipeline,
        needs_verification=spec.needs_verification,
        restores_snapshot=spec.restores_snapshot,
        actor=str(state.get("actor") or "agent"),
        requester_role=_requester_role(state),
        layer=target.layer,
        table=target.table,
        pipeline=target.pipeline,
        partition=target.partition,
        span_days=target.span_days,
        arguments=call.arguments or {},
        history=history,
        now=rt.clock(),
    )
    decision = decide(rt.policy, request)
    reason = decision.message if isinstance(decision, Deny) else decision.reason
    rt.audit.judged(
        call_id=call.id,
        tool=spec.name,
        effect=spec.effect,
        arguments=call.arguments or {},
        target=target.model_dump(),
        decision=decision.kind,
        rule=decision.rule,
        reason=reason,
        **_journal(state, tokens),
    )
    return decision


def await_approval(rt: Runtime, state: AgentState, reviewed: ReviewedCall, decision: NeedsApproval) -> ReviewedCall:
    """Ask the approvers once, then pause the thread until the ops database holds a decision."""
    call, thread = reviewed.call, state["thread_id"]
    approval, created = rt.approvals.request(
        call_id=call.id,
        thread_id=thread,
        tool=call.name,
        arguments=call.arguments or {},
        target=reviewed.target.model_dump(),
        reason=decision.reason,
        rule=decision.rule,
        approvers=list(decision.approvers),
        requested_by=str(state.get("actor") or "agent"),
        ttl=timedelta(minutes=rt.policy.approval_ttl_minutes),
        incident_id=state.get("incident_id"),
    )
    if created:
        rt.audit.approval_requested(call.id, approval.id)
        rt.reporter.approval_requested(approval)
    while approval.status == "pending":
        # A resume value may be meant for another request of this step (interrupts are matched by position when
        # the node re-runs): the ops database is the truth, and while this request is undecided the thread waits.
        interrupt({"approval_id": approval.id, "tool": call.name, "reason": decision.reason, "thread_id": thread})
        approval = rt.approvals.get(approval.id)
    if approval.status == "approved":
        rt.audit.approved(call.id, by=approval.decided_by, via=approval.decided_via)
        return reviewed.model_copy(update={"approved_by": approval.decided_by})
    if approval.status == "expired":
        rt.audit.expired(call.id, by=approval.decided_by)
    else:
        rt.audit.refused(call.id, by=approval.decided_by, via=approval.decided_via)
    why = f": {approval.decision_reason}" if approval.decision_reason else ""
    message = f"{approval.id} {approval.status} by {approval.decided_by}{why}"
    return _ended(state, reviewed, status="expired" if approval.status == "expired" else "denied", message=message)


def await_green_window(rt: Runtime, state: AgentState, reviewed: ReviewedCall) -> None:
    """Defer a large backfill of an incident thread to the greenest window of the forecast within the deadline
    (DATAOPS_BACKFILL_GREEN_*), recorded once per call, and pause the thread until the clock gets there or a
    person releases it. A chat request runs at once: a person asked for it now."""
    settings, call, thread = rt.ctx.settings, reviewed.call, state["thread_id"]
    if state.get("mode") == "chat" or settings.backfill_green_deadline_hours <= 0:
        return
    if (reviewed.target.span_days or 0) < settings.backfill_green_min_days or not rt.ctx.inventory.forecasts:
        return
    deferral = rt.deferrals.for_call(call.id)
    if deferral is None:
        from pipelines.forecast.deferral import plan_deferral

        try:
            plan = plan_deferral(
                rt.ctx, now=rt.clock(), hours=settings.backfill_green_window_hours, deadline_hours=settings.backfill_green_deadline_hours
            )
        except Exception as exc:  # deferral saves carbon; it must never hold back a fix
            log.warning("could not plan a green window for %s, running it now: %s: %s", call.id, type(exc).__name__, exc)
            rt.reporter.step(thread, f"{call.name} runs now: the forecast could not be read ({type(exc).__name__})")
            return
        if not plan.deferred:
            rt.reporter.step(thread, f"{call.name} runs now: {plan.reason}")
            return
        deferral, created = rt.deferrals.defer(
            call_id=call.id, thread_id=thread, incident_id=state.get("incident_id"), tool=call.name, arguments=call.arguments or {},
            due_at=plan.due_at, run_at=plan.run_at, wake_at=datetime.now(UTC) + timedelta(seconds=rt.real_seconds(plan.run_at - plan.due_at)),
            expected_intensity=plan.expected_intensity, now_intensity=plan.now_intensity,
            reason=plan.reason,
        )  # fmt: skip
        if created:
            rt.reporter.step(
                thread,
                f"{call.name} {plan.reason}. To run it now: dataops deferred release {call.id} --reason TEXT",
            )
    while not deferral.due(rt.clock()) and deferral.status != "resumed":
        # As for approvals: a resume value may be meant for another wait of this step; the ops database and the clock decide.
        interrupt({"deferred_call": call.id, "run_at": deferral.run_at.isoformat(), "tool": call.name, "thread_id": thread})
        deferral = rt.deferrals.get(call.id)


def _recorded(rt: Runtime, state: AgentState, previous: AuditEntry | None, spec: ToolSpec[Any, Any]) -> Decision | None:
    """The decision this very call got before the node was interrupted, if any: a resume never asks twice."""
    if previous is None or (previous.thread_id, previous.tool) != (state["thread_id"], spec.name):
        return None
    if previous.decision == "allow":
        return Allow(rule=previous.rule, reason=previous.reason)
    if previous.decision == "needs_approval":
        return NeedsApproval(rule=previous.rule, reason=previous.reason, approvers=rt.policy.approvers)
    if previous.decision == "deny":
        return Deny(rule=previous.rule, message=previous.reason)
    return None


def _ended(state: AgentState, reviewed: ReviewedCall, *, status: Literal["denied", "expired"], message: str) -> ReviewedCall:
    step = planned_step(state)
    turn = TurnRecord(
        call=reviewed.call,
        step=step,
        decision=reviewed.decision,
        rule=reviewed.rule,
        status=status,
        message=message,
        effect=reviewed.effect,
    )
    return ReviewedCall.ended(turn)


def _journal(state: AgentState, tokens: int) -> dict[str, Any]:
    """Who and where, for the audit row."""
    return {
        "thread_id": state["thread_id"],
        "incident_id": state.get("incident_id"),
        "actor": str(state.get("actor") or "agent"),
        "planner": state.get("planner") or "",
        "tokens": tokens,
    }
