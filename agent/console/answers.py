"""How the console answers what it will not do: JSON under /api/, an error page elsewhere; 422s name the field."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from agent.console.auth import Caller
from agent.console.state import console_of


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_page(request: Request, status: int, message: str, *, caller: Caller | None = None) -> Response:
    if wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    return console_of(request).templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "caller": caller}, status_code=status
    )


def field_errors(errors: Any) -> tuple[str, str]:
    """(the first bad field's name, a message naming every bad field) from pydantic's or FastAPI's errors."""
    parts, first = [], ""
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "form")]
        name = ".".join(loc) or "body"
        first = first or name
        parts.append(f"{name}: {error.get('msg', 'invalid')}")
    return first or "body", "; ".join(parts) or "the request is malformed"
