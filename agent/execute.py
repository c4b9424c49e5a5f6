"""Execute, verify, settle: run what review let through, re-check what changed, and close the incident honestly.

Execution is idempotent on the call id: a call whose audit row already finished (before a crash, or in a
resumed node) returns the recorded result, and a write the thread already made with the same arguments is
not repeated. A tool's bug ends as an error turn the report shows, never a stranded thread. Only a passed
verification, or a held containment check of the incident's own partition, lets an incident be resolved.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from agent.state import AgentState, ReviewedCall, Runtime, TurnRecord, dump, load, planned_step
from agent.verify import verify
from config.errors import ToolError
from pipelines.incidents import IncidentError

log = logging.getLogger(__name__)
DATA_LAYERS = ("bronze", "silver", "gold", "quarantine")


def execute_call(rt: Runtime, state: AgentState, item: ReviewedCall) -> TurnRecord:
    """Run one reviewed call (at most once per call id) and record the transition in the audit log."""
    call = item.call
    done = rt.audit.finished(call.id)
    if done is not None:  # executed before a crash or a resume: never twice
        return _turn(state, item, "ok" if done.status == "ok" else "error", done.error or "", done.result)
    spec = rt.tools[call.name]
    started = time.perf_counter()
    args = spec.parse(call.arguments)
    key = spec.idempotency_key(args)
    if not spec.reads_only:
        same = rt.audit.done_with_key(state["thread_id"], key, other_than=call.id)
        if same is not None:  # the same write with the same arguments already ran in this thread: do not repeat it
            note = f"not repeated: the same call already ran in this thread ({same.call_id})"
            rt.audit.skipped_repeat(call.id, idem_key=key, original=same, note=note)
            return _turn(state, item, "ok", note, same.result)
    rt.audit.started(call.id, idem_key=key)
    try:
        result = spec.invoke(rt.tool_context(state, call.id), args).model_dump(mode="json")
    except ToolError as exc:
        rt.audit.failed(call.id, error=str(exc), duration_ms=_since(started))
        return _turn(state, item, "error", str(exc))
    except Exception as exc:  # a bug in a tool must end as an error turn the report shows, not strand the thread
        log.exception("tool %s failed unexpectedly", spec.name)
        message = f"{spec.name} failed unexpectedly: {type(exc).__name__}: {exc}"
        rt.audit.failed(call.id, error=message, duration_ms=_since(started))
        return _turn(state, item, "error", message)
    rt.audit.succeeded(call.id, result=result, duration_ms=_since(started))
    if spec.defers_to_green_window:
        _record_green_run(rt, state, call.id)
    return _turn(state, item, "ok", "", result)


def _record_green_run(rt: Runtime, state: AgentState, call_id: str) -> None:
    """A deferred call ran: keep (and say) the intensity of the slot it ran in, beside what waiting was meant to save."""
    deferral = rt.deferrals.for_call(call_id)
    if deferral is None:
        return
    from pipelines.forecast.deferral import intensity_at

    at = rt.clock()
    try:
        ran = intensity_at(rt.ctx, at)
    except Exception as exc:  # the record is a report: its failure must not fail (or repeat) the call that ran
        log.warning("could not read the intensity %s ran at: %s: %s", call_id, type(exc).__name__, exc)
        return
    rt.deferrals.ran(call_id, at=at, intensity=ran.value, kind=ran.kind)
    shown = f"{ran.value:g} gCO2/kWh ({ran.kind})" if ran.value is not None else "an unknown intensity"
    hoped = f"; the forecast expected {deferral.expected_intensity:g}" if deferral.expected_intensity is not None else ""
    when_due = f", {deferral.now_intensity:g} when it was due" if deferral.now_intensity is not None else ""
    rt.reporter.step(state["thread_id"], f"{deferral.tool} ran at {at:%Y-%m-%dT%H:%MZ} at {shown}{hoped}{when_due}")


def wrote_data(turn: TurnRecord, item: ReviewedCall) -> bool:
    """The turn changed a data table, so the step's outcome must be verified."""
    return turn.status == "ok" and turn.effect in ("write", "destructive") and item.target.layer in DATA_LAYERS


def verify_step(rt: Runtime, state: AgentState) -> dict[str, Any]:
    """Verify the writes of the step just executed against what the incident (or the chat request) was about."""
    incident_id = state.get("incident_id")
    incident = rt.ctx.incidents.get(int(incident_id)).model_dump(mode="json") if incident_id is not None else None
    step_turns = [t for t in load(TurnRecord, state.get("turns")) if t.step == state.get("step", 0) - 1]
    scope = (state.get("context") or {}).get("vars") or {}
    return verify(rt.ctx, turns=dump(step_turns), incident=incident, vars=scope, now=rt.clock())


def fix_verified(rt: Runtime, state: AgentState) -> bool:
    """A verification passed, or a containment check of the incident's own table and day held."""
    return bool((state.get("verification") or {}).get("passed")) or _containment_held(rt, state)


def settle_incident(rt: Runtime, state: AgentState, incident_id: int, outcome: str, message: str) -> tuple[str, str]:
    """Move the incident to where the thread ended; resolve only what verified."""
    incident = rt.ctx.incidents.get(incident_id)
    if outcome == "resolved" and not fix_verified(rt, state):
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


def _containment_held(rt: Runtime, state: AgentState) -> bool:
    # The latest containment check of the incident's own table and day decides; checks elsewhere do not count.
    scope = (state.get("context") or {}).get("vars") or {}
    for turn in reversed(load(TurnRecord, state.get("turns"))):
        spec = rt.tools.get(turn.call.name)
        if spec is None or not spec.checks_containment or turn.status != "ok":
            continue
        args = turn.call.arguments or {}
        if args.get("table") != (scope.get("incident") or {}).get("table") or args.get("day") != scope.get("day"):
            continue
        return bool((turn.result or {}).get("contained"))
    return False


def _turn(
    state: AgentState, item: ReviewedCall, status: Literal["ok", "error"], message: str, result: dict[str, Any] | None = None
) -> TurnRecord:
    return TurnRecord(
        call=item.call,
        step=planned_step(state),
        decision=item.decision,
        rule=item.rule,
        effect=item.effect,
        approved_by=item.approved_by,
        status=status,
        message=message,
        result=result,
    )


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
