"""`dataops forecast run|show` and `dataops greenest`: issue a forecast now (or as of an instant), read the latest
issue with its realised accuracy, and find when a job of H hours runs cleanest within a deadline
(`pipelines/forecast/greenest.py`). Imports only typer, rich and the standard library at the top, like every
command module."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from pipelines.cli_io import EXIT_FAILED, EXIT_USAGE, emit_json, fail, open_context, out, parse_instant, usage_errors

if TYPE_CHECKING:
    from pipelines.context import PlatformContext
    from pipelines.forecast.run import ForecastRunResult

AS_OF_HELP = (
    "Issue as of this instant (UTC): only data before it is used. Default: now, or the end of the newest measured slot "
    "when the data ends earlier (the bundled offline data ends in 2023)."
)


def default_issue_clock(ctx: PlatformContext, name: str) -> tuple[datetime, str]:
    """Now, or the end of the newest measured slot of the forecast's input when that is older than a day (replayed
    or stale data): a forecast issued far after its data would only extrapolate a gap. Returns (instant, why)."""
    from pipelines.forecast.run import newest_measured

    now = datetime.now(UTC)
    newest = newest_measured(ctx, ctx.inventory.forecast(name))
    if newest is not None and now - newest > timedelta(days=1):
        return newest, f"the data of {ctx.inventory.forecast(name).input} ends at {newest:%Y-%m-%dT%H:%MZ}; issuing as of then"
    return now, ""


def run_and_print(ctx: PlatformContext, name: str, *, as_of: str | None, model: str | None = None, as_json: bool = False) -> None:
    """Issue forecast `name` and print the outcome; exit 1 when nothing was published for a reason in the data."""
    from pipelines.forecast.run import run_forecast

    with usage_errors():
        ctx.inventory.forecast(name)
    clock, why = (parse_instant(as_of, "--as-of"), "") if as_of else default_issue_clock(ctx, name)
    if why and not as_json:
        out.print(why)
    result = run_forecast(ctx, name, as_of=clock, model=model)
    if as_json:
        emit_json(result.model_dump(mode="json"))
    else:
        out.print(_line(result))
    if result.status in ("quarantined", "insufficient_history"):
        raise typer.Exit(EXIT_FAILED)


def _line(result: ForecastRunResult) -> str:
    when = f"{result.issued_at:%Y-%m-%dT%H:%MZ}"
    if result.status == "published":
        fit = ", refitted" if result.refitted else ""
        return (
            f"Published the forecast issued {when} ({result.model} {result.model_version}{fit}): {result.rows_published} half-hour slots."
        )
    if result.status == "skipped":
        return f"Nothing to do: {result.message}."
    if result.status == "quarantined":
        return f"Not published: {result.message}."
    return f"Not published: {result.message}."


def forecast_run(
    name: Annotated[str, typer.Argument(help="Forecast name from config/pipelines.yaml (forecasts:).")] = "forecast",
    as_of: Annotated[str | None, typer.Option("--as-of", help=AS_OF_HELP)] = None,
    model: Annotated[str | None, typer.Option(help="A model of pipelines/forecast/models.py instead of the configured one.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Issue the next 48 hours of carbon intensity and publish them with write-audit-publish.

    The issue is validated (intervals ordered, no gaps, horizon complete) and published whole, or held back whole
    in quarantine. An issue time already published is left alone: forecasts are never overwritten. Exit 1 when
    nothing was published because of the data (too little history, a malformed issue).
    """
    run_and_print(open_context(), name, as_of=as_of, model=model, as_json=as_json)


def forecast_show(
    name: Annotated[str, typer.Argument(help="Forecast name from config/pipelines.yaml (forecasts:).")] = "forecast",
    as_of: Annotated[str | None, typer.Option("--as-of", help="Show the latest issue at or before this instant. Default: now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
) -> None:
    """The latest published forecast (every 6 hours of its horizon) and its realised accuracy over the last 7 days.

    When no forecast was issued by then, exit 2 with one line: `dataops forecast run` issues one.
    """
    from pipelines.forecast.accuracy import realised_accuracy
    from pipelines.forecast.store import latest_issue

    ctx = open_context()
    with usage_errors():
        spec = ctx.inventory.forecast(name)
    clock = parse_instant(as_of, "--as-of") if as_of else datetime.now(UTC)
    issue = latest_issue(ctx, as_of=clock)
    if issue is None:  # nothing to show yet is the asker's to fix, not a failure of the command
        raise fail(f"no forecast in {spec.table} issued by {clock:%Y-%m-%dT%H:%MZ}; `dataops forecast run` issues one", EXIT_USAGE)
    accuracy = realised_accuracy(ctx, name, until=clock)
    if as_json:
        emit_json({"issue": issue.model_dump(mode="json"), "accuracy": accuracy.model_dump(mode="json")})
        return
    table = Table(title=f"Forecast issued {issue.issued_at:%Y-%m-%dT%H:%MZ} by {issue.model} {issue.model_version}")
    for col in ("slot (UTC)", "horizon", "point", "80 %", "95 %"):
        table.add_column(col)
    for slot in issue.slots[11::12]:
        table.add_row(
            f"{slot.ts:%a %d %b %H:%M}",
            f"{slot.horizon_h:g} h",
            f"{slot.point:.0f}",
            f"{slot.lo80:.0f}–{slot.hi80:.0f}",
            f"{slot.lo95:.0f}–{slot.hi95:.0f}",
        )
    out.print(table)
    if accuracy.slots == 0:
        out.print("Realised accuracy: no slot of the last 7 days' issues is measured yet.")
        return
    parts = [f"{h.horizon_h:g} h MAE {h.mae:.1f}" for h in accuracy.by_horizon if h.mae is not None]
    cov = f"80 % interval covered {accuracy.coverage_80:.0%}" if accuracy.coverage_80 is not None else ""
    out.print(f"Realised accuracy over {accuracy.issues} issues of the last 7 days: {', '.join(parts)} gCO2/kWh; {cov}.")


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
