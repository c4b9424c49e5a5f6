"""The read-only pages of the console: Runs (a timeline per pipeline; one run with its validation report), Tables
(schema, snapshots with their runs, branches and tags, quarantined rows, a day as of a snapshot), Lineage (the
inventory's graph as SVG, each node linking to its table) and Data (the series themselves as SVG charts, the
defects marked over them); and their JSON under /api/.

    GET /api/runs[?pipeline=]          runs newest first
    GET /api/runs/{run_id}             {"run", "validation": {table: [checks]}}
    GET /api/tables/{name}/snapshots   as `dataops history TABLE --json`
    GET /data, /api/data[?start=&end=] carbon intensity, generation mix and temperature over UTC days, with defects
    GET /api/forecast                  our latest forecast issue, the measurements over it, the last week's accuracy
                                       (the Data page draws it: agent/console/forecasts.py)
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from agent.console import charts, forecasts, lake, series
from agent.console.actions import ActionRefused
from agent.console.answers import error_page
from agent.console.pages import caller_of, parsed, render
from agent.console.state import console_of
from config.errors import DataOpsError

router = APIRouter()


def _known_pipeline(request: Request, pipeline: str) -> str | None:
    known = console_of(request).ctx.inventory.pipelines
    if pipeline and pipeline not in known:
        raise ActionRefused(f"pipeline: unknown pipeline {pipeline!r}; known: {', '.join(known)}", status=422, field="pipeline")
    return pipeline or None


@router.get("/runs")
def runs_page(request: Request, pipeline: str = "") -> Response:
    ctx = console_of(request).ctx
    chosen = _known_pipeline(request, pipeline)
    names = [chosen] if chosen else list(ctx.inventory.pipelines)
    per_pipeline = []
    for name in names:
        found = lake.runs(ctx, name, limit=100)
        per_pipeline.append({"pipeline": name, "runs": found, "bars": lake.timeline(found)})
    return render(request, "runs.html", per_pipeline=per_pipeline, pipelines=list(ctx.inventory.pipelines), chosen=chosen or "")


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str) -> Response:
    report = lake.run_report(console_of(request).ctx, run_id)
    if report is None:
        return error_page(request, 404, f"no run {run_id!r}; the Runs page lists them", caller=caller_of(request))
    run, checks = report
    return render(request, "run.html", run=run, checks=checks)


@router.get("/tables")
def tables_page(request: Request) -> Response:
    inventory = console_of(request).ctx.inventory
    return render(request, "tables.html", tables=[inventory.tables[name] for name in sorted(inventory.tables)])


@router.get("/tables/{name}")
def table_page(request: Request, name: str, day: str = "", snapshot: str = "") -> Response:
    ctx = console_of(request).ctx
    if name not in ctx.inventory.tables:
        return error_page(request, 404, f"unknown table {name!r}; the Tables page lists them", caller=caller_of(request))
    view = lake.table_view(ctx, name)
    rows: list[dict[str, Any]] | None = None
    problem = ""
    if day:
        try:
            snapshot_id = int(snapshot) if snapshot else None
        except ValueError:
            raise ActionRefused(f"snapshot: {snapshot!r} is not a snapshot id (a number)", status=422, field="snapshot") from None
        try:
            rows = lake.day_as_of(ctx, name, day, snapshot_id)
        except ValueError:
            raise ActionRefused(f"day: {day!r} is not a date (YYYY-MM-DD)", status=422, field="day") from None
        except DataOpsError as exc:
            problem = str(exc)
    return render(request, "table.html", table=view, day=day, snapshot=snapshot, rows=rows, problem=problem, limit=lake.ROW_LIMIT)


@router.get("/lineage")
def lineage_page(request: Request) -> Response:
    nodes, edges, width, height = lake.lineage(console_of(request).ctx)
    return render(request, "lineage.html", nodes=nodes, edges=edges, width=width, height=height, node_w=lake.NODE_W, node_h=lake.NODE_H)


def _picked(request: Request, start: str, end: str) -> series.DayRange:
    """The range asked for; the week before the platform clock when none is; one end alone spans a week."""
    if not start and not end:
        return series.DayRange.before(console_of(request).clock())
    week = timedelta(days=series.DEFAULT_DAYS - 1)
    if not end:
        end = str(_day(start, "start") + week)
    if not start:
        start = str(_day(end, "end") - week)
    return parsed(series.DayRange, {"start": start, "end": end})


def _day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ActionRefused(f"{field}: {value!r} is not a date (YYYY-MM-DD)", status=422, field=field) from None


@router.get("/data")
def data_page(request: Request, start: str = "", end: str = "") -> Response:
    console = console_of(request)
    picked, now = _picked(request, start, end), console.clock()
    data = series.grid_data(console.ctx, picked)
    forecast = forecasts.forecast_view(console.ctx, now)
    drawn = {
        "intensity": charts.intensity_chart(data, forecasts.issue_over(console.ctx, picked, forecast)),
        "forecast": charts.forecast_chart(forecast),
        "mix": charts.mix_chart(data),
        "temperature": charts.temperature_chart(data),
    }
    return render(
        request,
        "data.html",
        data=data,
        forecast=forecast,
        forecast_days=forecasts.ACCURACY_DAYS,
        charts=drawn,
        max_days=series.MAX_DAYS,
        now=now,
    )


# -- JSON ------------------------------------------------------------------------------------------------------------
@router.get("/api/runs")
def runs_api(request: Request, pipeline: str = "") -> list[dict[str, Any]]:
    chosen = _known_pipeline(request, pipeline)
    return [r.model_dump(mode="json") for r in lake.runs(console_of(request).ctx, chosen)]


@router.get("/api/runs/{run_id}")
def run_api(request: Request, run_id: str) -> dict[str, Any]:
    report = lake.run_report(console_of(request).ctx, run_id)
    if report is None:
        raise ActionRefused(f"no run {run_id!r}; GET /api/runs lists them", status=404)
    run, checks = report
    return {"run": run.model_dump(mode="json"), "validation": {t: [c.model_dump(mode="json") for c in cs] for t, cs in checks.items()}}


@router.get("/api/tables/{name}/snapshots")
def snapshots_api(request: Request, name: str) -> dict[str, Any]:
    from pipelines.inspection import history_of

    ctx = console_of(request).ctx
    if name not in ctx.inventory.tables:
        raise ActionRefused(f"unknown table {name!r}; known: {', '.join(sorted(ctx.inventory.tables))}", status=404)
    try:
        return {"table": name, "snapshots": history_of(ctx, name)}
    except DataOpsError as exc:
        raise ActionRefused(str(exc), status=404) from None


@router.get("/api/data")
def data_api(request: Request, start: str = "", end: str = "") -> dict[str, Any]:
    return series.grid_data(console_of(request).ctx, _picked(request, start, end)).model_dump(mode="json")


@router.get("/api/forecast")
def forecast_api(request: Request) -> dict[str, Any]:
    console = console_of(request)
    return forecasts.forecast_view(console.ctx, console.clock()).model_dump(mode="json")
