"""The console's pages: sign-in, overview, incidents, one incident, approvals; and the forms they post.

Every form carries the session's CSRF token (the sign-in form a double-submit one, as there is no session yet)
and every POST checks it before anything else; then the role, then the form's fields (422 naming the field),
then the id (404). Actions answer with a redirect back to the page (303), so a reload never repeats them.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from agent.console import views
from agent.console.actions import (
    INCIDENT_ACTIONS,
    ActionRefused,
    DecisionInput,
    JudgementInput,
    decide_approval,
    judge_incident,
    may_decide,
)
from agent.console.answers import error_page, field_errors
from agent.console.auth import Caller
from agent.console.state import SESSION_COOKIE, SIGNIN_COOKIE, console_of
from pipelines.incidents import IncidentError
from policies.people import Role

router = APIRouter()
_Form = TypeVar("_Form", bound=BaseModel)
_SIGNIN_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def caller_of(request: Request) -> Caller:
    caller: Caller | None = getattr(request.state, "caller", None)
    if caller is None:  # the gatekeeper lets no page through without one
        raise ActionRefused("sign in first", status=401)
    return caller


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    caller: Caller | None = getattr(request.state, "caller", None)
    return console_of(request).templates.TemplateResponse(
        request, template, {"caller": caller, "request": request, **context}, status_code=status_code
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe_next(target: str | None) -> str:
    """Only a path of this console: never `//host` or `https://host`, which would send the person elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def checked_form(request: Request, *, role: Role | None = None) -> dict[str, str]:
    """The posted form, after the CSRF token (403) and the role (403) are checked."""
    caller = caller_of(request)
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or caller.csrf is None or not hmac.compare_digest(caller.csrf.encode(), sent.encode()):
        raise ActionRefused("the form's CSRF token is missing or wrong; reload the page and try again", status=403)
    if role is not None and not caller.actor.may(role):
        raise ActionRefused(f"{caller.name} may not do this: role {caller.actor.role or 'none'}, {role} needed", status=403)
    return {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf"}


def parsed(model: type[_Form], form: dict[str, str]) -> _Form:
    try:
        return model.model_validate(form)
    except ValidationError as exc:
        field, message = field_errors(exc.errors())
        raise ActionRefused(message, status=422, field=field) from None


# -- signing in and out ------------------------------------------------------------------------------------------
@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> Response:
    caller = console_of(request).gate.session_caller(request.cookies.get(SESSION_COOKIE))
    if caller is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _signin_form(request, next=_safe_next(next))


def _signin_form(request: Request, *, next: str, error: str = "", status: int = 200) -> Response:
    # The browser's token is kept while it lasts: a second sign-in page (another tab, or a request the browser makes
    # by itself, such as /favicon.ico sent here while signed out) must not void the form already on screen.
    kept = request.cookies.get(SIGNIN_COOKIE, "")
    token = kept if _SIGNIN_TOKEN.fullmatch(kept) else secrets.token_urlsafe(32)
    response = render(request, "signin.html", status, signin_csrf=token, next=next, error=error)
    response.set_cookie(SIGNIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/signin", max_age=3600)
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    target = _safe_next(fields.get("next"))
    cookie, sent = request.cookies.get(SIGNIN_COOKIE, ""), fields.get("csrf", "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        return _signin_form(request, next=target, error="the sign-in form expired or was not this console's; try again", status=403)
    gate = console_of(request).gate
    token, name, password = fields.get("token", "").strip(), fields.get("name", "").strip(), fields.get("password", "")
    if token:
        person, how = gate.by_token(token), "token"
    elif name and password:
        person, how = gate.by_password(name, password), "password"
    else:
        return _signin_form(request, next=target, error="give your name and password, or your personal token", status=422)
    if person is None:
        return _signin_form(request, next=target, error="that name and password, or that token, is not right", status=401)
    secret, _ = gate.sessions.open(person.name, signed_in_by=how)  # type: ignore[arg-type]
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="strict", secure=_secure(request), path="/")
    response.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    await checked_form(request)
    console_of(request).gate.sessions.close(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- pages -----------------------------------------------------------------------------------------------------------
@router.get("/")
def overview(request: Request) -> Response:
    console = console_of(request)
    now = console.clock()
    return render(
        request,
        "overview.html",
        now=now,
        pipelines=views.pipelines(console.ctx, now),
        incidents=views.incidents(console.ctx, status="unresolved"),
        approvals=views.approvals(console.ctx, status="pending"),
        scorecard=views.scorecard(console.ctx, now),
    )


@router.get("/incidents")
def incidents_page(request: Request, status: str = "unresolved", severity: str = "", table: str = "") -> Response:
    console = console_of(request)
    everything = views.incidents(console.ctx, status=None if status == "all" else status)
    found = views.incidents(console.ctx, status=None if status == "all" else status, severity=severity or None, table=table or None)
    return render(
        request,
        "incidents.html",
        incidents=found,
        filters={"status": status, "severity": severity, "table": table},
        statuses=("unresolved", *views.STATUSES, "all"),
        severities=views.SEVERITIES,
        tables=views.tables_of(everything),
    )


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: int, done: str = "") -> Response:
    console = console_of(request)
    try:
        incident = console.ctx.incidents.get(incident_id)
    except IncidentError as exc:
        return error_page(request, 404, str(exc), caller=caller_of(request))
    detail = views.incident_detail(console.ctx, incident)
    return render(request, "incident.html", detail=detail, done=done, actions=INCIDENT_ACTIONS, call_text=views.call_text)


@router.post("/incidents/{incident_id}/{action}")
async def incident_action(request: Request, incident_id: int, action: str) -> Response:
    form = await checked_form(request, role="operator")
    body = parsed(JudgementInput, form)
    console = console_of(request)
    judge_incident(console.ctx, incident_id, action, body, actor=caller_of(request).actor, now=console.clock())
    return RedirectResponse(f"/incidents/{incident_id}?done={quote(action)}", status_code=303)


@router.get("/approvals")
def approvals_page(request: Request, status: str = "", done: str = "") -> Response:
    console = console_of(request)
    found = views.approvals(console.ctx, status=status or None)
    actor = caller_of(request).actor
    return render(
        request,
        "approvals.html",
        approvals=found,
        status=status,
        done=done,
        decidable={a.id for a in found if may_decide(a, actor)},
        call_text=views.call_text,
        waiting=views.deferred(console.ctx, status="waiting"),
    )


@router.post("/approvals/{approval_id}/{verb}")
async def approval_action(request: Request, approval_id: str, verb: str) -> Response:
    form = await checked_form(request, role="approver")
    body = parsed(DecisionInput, form)
    console = console_of(request)
    decided = decide_approval(console.ctx, console.decider, approval_id, verb, body, actor=caller_of(request).actor)
    if form.get("next"):  # decided inline elsewhere (a chat thread): back there
        return RedirectResponse(_safe_next(form["next"]), status_code=303)
    return RedirectResponse(f"/approvals?done={quote(decided.id)}", status_code=303)
