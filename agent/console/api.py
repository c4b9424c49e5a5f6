"""The console's JSON API: what the CLI's `--json` prints, for scripts, with `Authorization: Bearer TOKEN`.

    GET  /api/me                                          {"name", "role"}
    GET  /api/incidents[?status=]                         a list, each as `dataops incidents --json` prints it
    GET  /api/incidents/{id}                              as `dataops incident ID --json`
    POST /api/incidents/{id}/{ack|resolve|expected}       {"reason", "days"?} -> as `dataops incident ACTION --json`
    GET  /api/approvals[?status=]                         as `dataops approvals --json`
    GET  /api/approvals/{id}
    POST /api/approvals/{id}/{approve|deny}               {"reason"} -> as `dataops approve --json`
    GET  /api/deferred[?status=]                          as `dataops deferred list --json`
    POST /api/alerts                                      Alertmanager's webhook (operator): {"incidents": [ids]}

401 without a valid token, 403 when the person's role (or the request's approvers) does not allow it, 404 for
an unknown id, 409 when it already moved on, 422 naming the bad field.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import HTTPException

from agent.console.actions import ActionRefused, DecisionInput, JudgementInput, decide_approval, judge_incident
from agent.console.auth import Caller
from agent.console.state import console_of
from agent.console.views import approvals, deferred, incidents
from config.errors import ApprovalError
from pipelines.incidents import IncidentError
from policies.approvals import ApprovalStore
from policies.people import Actor, Role

router = APIRouter(prefix="/api")
INCIDENT_STATUSES = ("open", "acknowledged", "remediating", "resolved", "escalated", "unresolved", "all")
APPROVAL_STATUSES = ("pending", "approved", "denied", "expired")
DEFERRAL_STATUSES = ("waiting", "released", "resumed")


def bearer(request: Request) -> Actor:
    """The actor the gatekeeper (agent/console/app.py) authenticated from the bearer token."""
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:  # unreachable behind the gatekeeper; refuse rather than trust
        raise HTTPException(401, "sign in with a personal token", {"WWW-Authenticate": "Bearer"})
    return caller.actor


def role(needed: Role) -> Any:
    def check(actor: Annotated[Actor, Depends(bearer)]) -> Actor:
        if not actor.may(needed):
            raise HTTPException(403, f"{actor.id} may not do this: role {actor.role or 'none'}, {needed} needed")
        return actor

    return Depends(check)


Reader = Annotated[Actor, Depends(bearer)]


@router.get("/me")
def me(actor: Reader) -> dict[str, Any]:
    return {"name": actor.id, "role": actor.role}


@router.get("/incidents")
def list_incidents(request: Request, actor: Reader, status: str = "all") -> list[dict[str, Any]]:
    if status not in INCIDENT_STATUSES:
        raise ActionRefused(f"status: {status!r} is not a status; valid: {', '.join(INCIDENT_STATUSES)}", status=422, field="status")
    found = incidents(console_of(request).ctx, status=None if status == "all" else status)
    return [i.model_dump(mode="json") for i in found]


@router.get("/incidents/{incident_id}")
def get_incident(request: Request, actor: Reader, incident_id: int) -> dict[str, Any]:
    try:
        return console_of(request).ctx.incidents.get(incident_id).model_dump(mode="json")
    except IncidentError as exc:
        raise ActionRefused(str(exc), status=404) from None


@router.post("/incidents/{incident_id}/{action}")
def act(request: Request, incident_id: int, action: str, body: JudgementInput, actor: Annotated[Actor, role("operator")]) -> dict[str, Any]:
    console = console_of(request)
    outcome = judge_incident(console.ctx, incident_id, action, body, actor=actor, now=console.clock())
    return outcome.model_dump(mode="json")


@router.get("/approvals")
def list_approvals(request: Request, actor: Reader, status: str | None = None) -> list[dict[str, Any]]:
    if status is not None and status not in APPROVAL_STATUSES:
        raise ActionRefused(f"status: {status!r} is not a status; valid: {', '.join(APPROVAL_STATUSES)}", status=422, field="status")
    return [a.model_dump(mode="json") for a in approvals(console_of(request).ctx, status=status)]


@router.get("/deferred")
def list_deferred(request: Request, actor: Reader, status: str | None = None) -> list[dict[str, Any]]:
    if status is not None and status not in DEFERRAL_STATUSES:
        raise ActionRefused(f"status: {status!r} is not a status; valid: {', '.join(DEFERRAL_STATUSES)}", status=422, field="status")
    return [d.model_dump(mode="json") for d in deferred(console_of(request).ctx, status=status)]


@router.get("/approvals/{approval_id}")
def get_approval(request: Request, actor: Reader, approval_id: str) -> dict[str, Any]:
    try:
        return ApprovalStore(console_of(request).ctx.ledger).get(approval_id).model_dump(mode="json")
    except ApprovalError as exc:
        raise ActionRefused(str(exc), status=404) from None


@router.post("/approvals/{approval_id}/{verb}")
def decide(request: Request, approval_id: str, verb: str, body: DecisionInput, actor: Annotated[Actor, role("approver")]) -> dict[str, Any]:
    console = console_of(request)
    return decide_approval(console.ctx, console.decider, approval_id, verb, body, actor=actor).model_dump(mode="json")


@router.post("/alerts")
async def alerts(request: Request, actor: Annotated[Actor, role("operator")]) -> dict[str, Any]:
    """Alertmanager's webhook (config/alertmanager/alertmanager.yml): each alert opens, updates or resolves an incident.

    The token is an operator's (e.g. a person `alertmanager` with role operator): alerts become incidents, which
    is what operators do."""
    from fastapi.concurrency import run_in_threadpool

    from pipelines.alert_intake import AlertPayloadError, record_alerts

    try:
        payload = await request.json()
    except ValueError:
        raise ActionRefused("body: not JSON; Alertmanager's webhook posts a JSON object", status=422, field="body") from None
    if not isinstance(payload, dict):
        raise ActionRefused(f"body: a JSON object is needed, got {type(payload).__name__}", status=422, field="body")
    try:
        recorded = await run_in_threadpool(record_alerts, console_of(request).ctx, payload)
    except AlertPayloadError as exc:
        raise ActionRefused(str(exc), status=422, field="body") from None
    return {"incidents": recorded}
