"""`dataops greenest`: when, within a deadline, a job of H hours runs cleanest, from the latest forecast
(`pipelines/forecast/greenest.py`). Imports only typer and the standard library at the top, like every command module."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.cli_io import emit_json, open_context, out, parse_instant


def greenest(
    hours: Annotated[float, typer.Option(help="Length of the job in hours, a multiple of 0.5 (e.g. 3 or 1.5).")],
    within: Annotated[str, typer.Option(help="Deadline from now by which the job must have finished: 24h, 90m, 2d, 1h30m.")] = "24h",
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Answer as of this instant (ISO). Default: the platform clock (the replay clock under replay)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the window as JSON on stdout.")] = False,
) -> None:
    """The cleanest window of HOURS hours that ends within the deadline, from the latest published forecast: its start,
    end and expected mean intensity with 80 % and 95 % intervals, and the saving against starting now.

    Windows start on half-hour boundaries at or after now (a slot in progress is skipped); a tie goes to the
    earliest window. No forecast, a stale one or too short a horizon exit 2 with one line saying what to do.
    """
    from pipelines.forecast.greenest import describe, find_greenest_window, parse_duration, window_slots
    from pipelines.monitors.feedback import platform_now

    window_slots(hours)  # bad input is told before the platform is opened
    deadline = parse_duration(within)
    ctx = open_context()
    clock = parse_instant(as_of, "--as-of") if as_of else platform_now(ctx)
    window = find_greenest_window(ctx, now=clock, hours=hours, within=deadline)
    if as_json:
        emit_json(window.model_dump(mode="json"))
    else:
        out.print(describe(window), markup=False, soft_wrap=True)
