"""What every route of the console reads: its state on the app (the platform, the gate, the decider, the clock,
the templates), and the names of its cookies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from fastapi.templating import Jinja2Templates

from agent.console.actions import Decider
from agent.console.auth import Gate
from pipelines.context import PlatformContext

SESSION_COOKIE = "dataops_session"
SIGNIN_COOKIE = "dataops_signin_csrf"


@dataclass(kw_only=True)
class Console:
    """What every route reads: the platform, the gate, how approvals are decided and the platform clock."""

    ctx: PlatformContext
    gate: Gate
    decider: Decider
    clock: Callable[[], datetime]
    templates: Jinja2Templates


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console
