"""The operator console: a FastAPI app of server-rendered pages and a JSON API over one platform's state.

    GET  /healthz                    200, the only answer without sign-in (with /signin and its stylesheet)
    GET  /signin, POST /signin       password or personal-token sign-in; POST /signout
    GET  /  /incidents  /incidents/{id}  /approvals                                     pages (sign-in)
    GET  /runs  /runs/{id}  /tables  /tables/{name}  /lineage  /data                    (agent/console/explore.py)
    GET  /chat  /chat/{thread}, POST /chat  /chat/{thread}                              (agent/console/chat.py)
    POST /incidents/{id}/{ack|resolve|expected}  /approvals/{id}/{approve|deny}         forms (sign-in + CSRF)
    /api/...                         JSON, `Authorization: Bearer TOKEN` (agent/console/api.py)

Pages without a session redirect to /signin; the API without a valid token answers 401. Roles are checked on
the server for every action, from the registry as it stands at that request (agent/console/auth.py).
`create_app` takes the platform and how to decide approvals, so `dataops console`, `dataops serve` and the
tests build the same app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from agent.console.actions import ActionRefused, AgentDecider, Decider
from agent.console.answers import error_page, field_errors, wants_json
from agent.console.auth import Caller, Gate
from agent.console.state import SESSION_COOKIE, Console, console_of
from config.errors import DataOpsError
from pipelines.context import PlatformContext

HERE = Path(__file__).parent
PUBLIC = frozenset({"/healthz", "/signin"})
# Everything the console serves comes from itself: no CDN, no inline script, no framing by another site.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def platform_clock(ctx: PlatformContext) -> Callable[[], datetime]:
    """The platform clock outside the service: as the service last saved it (pipelines/monitors/feedback.py)."""

    def now() -> datetime:
        from pipelines.monitors.feedback import platform_now

        return platform_now(ctx)

    return now


def create_app(ctx: PlatformContext, *, decider: Decider | None = None, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The console over `ctx`; `decider` defaults to an agent made on the first decision, `clock` to the saved clock."""
    from agent.console import api, chat, explore, pages

    app = FastAPI(title="dataops console", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = _when
    app.state.console = Console(
        ctx=ctx, gate=Gate(ctx), decider=decider or AgentDecider(ctx), clock=clock or platform_clock(ctx), templates=templates
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(explore.router)
    app.include_router(chat.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.middleware("http")
    async def gatekeeper(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # Before routing and body parsing: nothing but the public paths answers a caller who is not signed in,
        # not even with a 404 or a 422.
        path = request.url.path
        if path in PUBLIC or path.startswith("/static/"):
            return await call_next(request)
        try:
            admitted = await run_in_threadpool(_admit, request, console_of(request).gate)
        except DataOpsError as exc:  # the people file broke since start-up: nobody can be checked, so nobody enters
            return JSONResponse({"detail": f"the platform refused: {exc}"}, status_code=503)
        if isinstance(admitted, Response):
            return admitted
        request.state.caller = admitted
        return await call_next(request)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.add_exception_handler(ActionRefused, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(DataOpsError, _platform_error)  # type: ignore[arg-type]
    return app


def _admit(request: Request, gate: Gate) -> Caller | Response:
    """The caller: by bearer token under /api/ (else 401), by session cookie elsewhere (else a redirect to sign in)."""
    path = request.url.path
    if path.startswith("/api/") or path == "/api":
        actor = gate.bearer(request.headers.get("authorization"))
        if actor is None:
            return JSONResponse(
                {"detail": "sign in with a personal token: Authorization: Bearer TOKEN (dataops users token NAME)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Caller(actor=actor)
    return gate.session_caller(request.cookies.get(SESSION_COOKIE)) or _to_signin(path)


def _to_signin(path: str) -> Response:
    from urllib.parse import quote

    return Response(status_code=303, headers={"Location": f"/signin?next={quote(path, safe='/')}"})


def _refused(request: Request, exc: ActionRefused) -> Response:
    if wants_json(request):
        body: dict[str, Any] = {"detail": str(exc)}
        if exc.field:
            body["field"] = exc.field
        return JSONResponse(body, status_code=exc.status)
    return error_page(request, exc.status, str(exc))


def _invalid(request: Request, exc: RequestValidationError) -> Response:
    field, message = field_errors(exc.errors())
    if wants_json(request):
        return JSONResponse({"detail": message, "field": field}, status_code=422)
    return error_page(request, 422, message)


def _platform_error(request: Request, exc: DataOpsError) -> Response:
    # e.g. a people file broken since start-up: say so rather than a bare 500.
    return error_page(request, 503, f"the platform refused: {exc}")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")
