"""Forecast tool: the greenest window ahead for a flexible job, from the latest published carbon-intensity forecast."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import Field

from config.errors import DataOpsError, ToolError
from pipelines.forecast import greenest
from pipelines.forecast.greenest import DEFAULT_WITHIN, GreenestWindow
from tools import names
from tools.base import ToolContext, ToolInput, ToolSpec


class FindGreenestWindowInput(ToolInput):
    hours: float = Field(gt=0, le=48, multiple_of=0.5, description="How long the job runs, in hours: a multiple of 0.5, e.g. 3 or 1.5.")
    within_hours: float = Field(
        default=DEFAULT_WITHIN.total_seconds() / 3600,
        gt=0,
        le=48,
        description="The job must have finished this many hours from now (the deadline). 24 by default; the forecast reaches 48.",
    )
    not_before: datetime | None = Field(
        default=None,
        description="Earliest start, ISO UTC, e.g. tomorrow's midnight for 'tomorrow'. Omit to allow starting now.",
    )


def find_greenest_window(ctx: ToolContext, args: FindGreenestWindowInput) -> GreenestWindow:
    try:
        return greenest.find_greenest_window(
            ctx.platform, now=ctx.now, hours=args.hours, within=timedelta(hours=args.within_hours), not_before=args.not_before
        )
    except DataOpsError as exc:
        raise ToolError(str(exc)) from None


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.FIND_GREENEST_WINDOW,
        description=(
            "When to run a flexible job of N hours so it uses the cleanest electricity: the window with the lowest expected "
            "carbon intensity in the latest 48-hour forecast, ending by a deadline, with its 80 %/95 % interval and the saving "
            "against starting now."
        ),
        input=FindGreenestWindowInput,
        result=GreenestWindow,
        effect="read",
        run=find_greenest_window,
    ),
]
