"""Where the agent speaks: a Reporter receives its steps, approval requests and final reports.

The console reporter writes to the terminal (serve, chat, demo); the Slack app implements the same
protocol with threads and buttons. Reports are built from structured turns, so every channel says the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from policies.approvals import Approval


class Reporter(Protocol):
    def step(self, thread_id: str, text: str) -> None: ...

    def approval_requested(self, approval: Approval) -> None: ...

    def approval_decided(self, approval: Approval) -> None: ...

    def final(self, thread_id: str, text: str, *, outcome: str, incident_id: int | None) -> None: ...


def describe_call(call: dict[str, Any]) -> str:
    args = call.get("arguments")
    shown = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in (args or {}).items()) if args else call.get("raw_arguments", "")
    return f"{call['name']}({shown})"


def describe_turn(turn: dict[str, Any]) -> str:
    decision = turn["decision"] + (f" by rule {turn['rule']}" if turn.get("rule") else "")
    who = f", approved by {turn['approved_by']}" if turn.get("approved_by") else ""
    message = f": {turn['message']}" if turn.get("message") else ""
    return f"{describe_call(turn['call'])} → {turn['status']} ({decision}{who}){message}"


def approval_text(approval: Approval) -> str:
    return (
        f"approval {approval.id} needed: {approval.tool}({', '.join(f'{k}={v}' for k, v in approval.arguments.items())})\n"
        f"  why: {approval.reason} (rule {approval.rule}); approvers: {', '.join(approval.approvers)}; "
        f"expires {approval.expires_at:%Y-%m-%d %H:%M} UTC\n"
        f"  decide (as yourself: DATAOPS_TOKEN or your OS login): dataops approve {approval.id}   |   dataops deny {approval.id} --reason TEXT"
    )


SETTLED = " Cause: "  # how a report names its cause; a planner's message holding it has settled the cause itself


def with_cause(message: str, diagnosis: dict[str, Any] | None) -> str:
    """The report names the cause the agent diagnosed, whichever planner wrote the rest (once, at the end).

    A message that names its cause itself ("... Cause: late data: ...") was settled by what the actions found
    (a refetch that now has the slots refutes an outage), so the diagnosis made before acting is not added."""
    if not diagnosis or diagnosis["summary"] in message or SETTLED in message:
        return message
    cause = diagnosis["cause"].replace("_", " ")
    return f"{message.rstrip()} Cause: {cause} ({diagnosis['confidence']:.0%}): {diagnosis['summary']}."


def final_text(state: dict[str, Any]) -> str:
    lines = [state.get("message") or f"outcome: {state.get('outcome')}"]
    scope = (state.get("context") or {}).get("vars") or {}
    diagnosis = scope.get("diagnosis")
    if diagnosis and diagnosis["summary"] not in lines[0]:
        label = "diagnosis before acting (the outcome above settles it)" if SETTLED in lines[0] else "diagnosis"
        lines.append(f"{label}: {diagnosis['cause'].replace('_', ' ')} ({diagnosis['confidence']:.0%}): {diagnosis['summary']}")
    if diagnosis:
        lines.extend(f"  - evidence: {fact}" for fact in diagnosis.get("evidence") or [])
    extent = scope.get("extent") or {}
    if extent.get("count", 0) > 1 or extent.get("missing"):
        lines.append(f"extent: {extent.get('summary')}")
    turns = state.get("turns") or []
    if turns:
        lines.append("actions:")
        lines.extend(f"  - {describe_turn(t)}" for t in turns)
    verification = state.get("verification")
    if verification:
        lines.append(f"verification: {'passed' if verification.get('passed') else 'not passed'} ({verification.get('detail')})")
    lines.append(f"planner: {state.get('planner', '?')}; steps: {state.get('step', 0)}; tokens: {state.get('tokens', 0)}")
    return "\n".join(lines)


class ConsoleReporter:
    """Writes the agent's words as plain lines through `emit` (print by default)."""

    def __init__(self, emit: Callable[[str], None] = print, *, verbose: bool = True) -> None:
        self.emit = emit
        self.verbose = verbose

    def step(self, thread_id: str, text: str) -> None:
        if self.verbose:
            self.emit(f"[{thread_id}] {text}")

    def approval_requested(self, approval: Approval) -> None:
        self.emit(f"[{approval.thread_id}] {approval_text(approval)}")

    def approval_decided(self, approval: Approval) -> None:
        by = f" by {approval.decided_by}" if approval.decided_by else ""
        reason = f": {approval.decision_reason}" if approval.decision_reason else ""
        self.emit(f"[{approval.thread_id}] approval {approval.id} {approval.status}{by}{reason}")

    def final(self, thread_id: str, text: str, *, outcome: str, incident_id: int | None) -> None:
        head = f"incident {incident_id} {outcome}" if incident_id is not None else outcome
        self.emit(f"[{thread_id}] {head}\n{text}")


class Reporters:
    """Fan-out to several reporters (console and Slack)."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = list(reporters)

    def step(self, thread_id: str, text: str) -> None:
        for r in self.reporters:
            r.step(thread_id, text)

    def approval_requested(self, approval: Approval) -> None:
        for r in self.reporters:
            r.approval_requested(approval)

    def approval_decided(self, approval: Approval) -> None:
        for r in self.reporters:
            r.approval_decided(approval)

    def final(self, thread_id: str, text: str, *, outcome: str, incident_id: int | None) -> None:
        for r in self.reporters:
            r.final(thread_id, text, outcome=outcome, incident_id=incident_id)
