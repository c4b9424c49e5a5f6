"""`dataops`'s pipeline commands: run pipelines, serve them, pause and resume them, inspect the lake and query it.

Plain functions: `evals/cli.py` assembles them with the other layers' commands into the one `dataops` app (the
incident and monitor commands are in `pipelines/incident_cli.py`).
This module imports only typer, rich and the standard library at the top; each command imports what it
needs (pyiceberg, DuckDB, the scheduler) when it runs, so `dataops --help` stays instant.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from config.errors import DataOpsError, QueryLimitError, QueryRefusedError, QuerySqlError
from pipelines.cli_io import (
    EXIT_FAILED,
    EXIT_QUARANTINED,
    EXIT_USAGE,
    console,
    emit_json,
    fail,
    open_context,
    out,
    parse_instant,
    usage_errors,
)
from pipelines.error_report import Debug

if TYPE_CHECKING:
    from pipelines.context import PlatformContext
    from pipelines.run_result import RunResult
    from pipelines.service import ExtensionFactory

HELP = "Sustainability DataOps platform: Iceberg pipelines with write-audit-publish, validated by Great Expectations."


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        out.print(f"dataops {metadata.version('dataops')}", markup=False, highlight=False)
        raise typer.Exit()


def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an internal error (also DATAOPS_DEBUG=1).")] = False,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the installed version and exit.")
    ] = False,
) -> None:
    """Set up logging with redaction, then validate every setting before any command runs."""
    from config.redact import install_redaction, register_secrets, register_secrets_from_env
    from config.settings import load_settings

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_redaction()
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    if not verbose:
        # Under replay a firing often finds the previous run still going; coalescing is the design, not news.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
    Debug.on = debug
    register_secrets_from_env()  # before validation: an error about one setting must not print another's secret
    register_secrets(load_settings().secret_values())


def run(
    pipeline: Annotated[
        str,
        typer.Argument(
            help="Pipeline name from config/pipelines.yaml, 'all' (every pipeline), or a forecast (issued once, as `dataops forecast run`)."
        ),
    ] = "all",
    start: Annotated[
        str | None, typer.Option(help="Window start (UTC date or instant, inclusive). Default: the pipeline's default_window.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Window end (UTC date or instant, exclusive).")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Clock instant: replay serves only data known by then. Default: now.")
    ] = None,
    window_days: Annotated[
        int | None, typer.Option(min=1, help="Days per run (at least 1); default the source's request limit (chunk_days).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run results as JSON on stdout.")] = False,
    strict: Annotated[
        bool, typer.Option(help=f"Exit {EXIT_QUARANTINED} when a run held data back (quarantined now or by an earlier run of the window).")
    ] = False,
) -> None:
    """Ingest a window through bronze, silver (validated, write-audit-publish) and gold.

    The window is cut into whole UTC days and into runs no longer than the source's request limit; a
    progress bar counts them. Days after the clock's day are not run (nothing is known of them yet), as
    `dataops backfill` does. Exit code 0 when every run completed (data held back is reported, not an
    error), 1 when a run failed, 2 on bad usage, 3 with --strict when anything was quarantined.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pipelines.inspection import quarantine_summary
    from pipelines.promotion import day_floor, run_pipeline, split_windows
    from pipelines.sources.base import Window

    ctx = open_context()
    if pipeline in ctx.inventory.forecasts:  # `dataops run forecast`: the forecast pipeline issues once
        from pipelines.forecast.cli import run_and_print

        run_and_print(ctx, pipeline, as_of=as_of, as_json=as_json)
        return
    names = list(ctx.inventory.pipelines) if pipeline == "all" else [pipeline]
    with usage_errors():
        specs = [ctx.inventory.pipeline(n) for n in names]
    clock = parse_instant(as_of, "--as-of") if as_of else datetime.now(UTC)
    plan: list[tuple[str, Window]] = []
    for spec in specs:
        default = spec.default_window or (date.today().isoformat(), date.today().isoformat())
        s = parse_instant(start if start is not None else default[0], "--start")
        e = parse_instant(end if end is not None else default[1], "--end")
        if e <= s:
            given = "--end" if end is not None else f"the end of {spec.name}'s default window (pass --end)"
            raise fail(f"{given} {e.isoformat()} is not after --start {s.isoformat()}", EXIT_USAGE)
        if s >= clock:
            raise fail(f"--start {s.isoformat()} is after the clock ({clock.isoformat()}); nothing is known yet", EXIT_USAGE)
        last = day_floor(clock) + timedelta(days=1)  # the clock's own day runs; later ones are not known yet
        if e > last:
            console.print(
                f"[yellow]{spec.name}: running up to {last.date()}; nothing after the clock ({clock.isoformat()}) is known yet[/yellow]"
            )
            e = last
        days = window_days or ctx.inventory.source(spec.source).chunk_days
        ctx.ledger.mark_abandoned(spec.name)
        for lost in ctx.ledger.unrecovered(spec.name):
            console.print(f"[yellow]re-running the window of abandoned run {lost.run_id} first[/yellow]")
            plan.append((spec.name, Window(start=lost.window_start, end=lost.window_end)))
        plan.extend((spec.name, w) for w in split_windows(s, e, days))
    results: list[RunResult] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=as_json
    ) as bar:
        task = bar.add_task("runs", total=len(plan))
        for name, window in plan:
            bar.update(task, description=f"{name} {window.start.date()}..{window.end.date()}")
            try:
                with ctx.control.exclusive(name):
                    result = run_pipeline(ctx, name, window, as_of=clock, progress=lambda msg: bar.update(task, description=msg[:70]))
            except DataOpsError as exc:  # another process runs this pipeline
                bar.stop()
                raise fail(str(exc), EXIT_FAILED) from None
            results.append(result)
            bar.advance(task)
    if as_json:
        emit_json({"runs": [r.model_dump(mode="json") for r in results], "quarantine": quarantine_summary(ctx, results)})
    else:
        _print_runs(ctx, results)
    if any(r.status == "failed" for r in results):
        raise typer.Exit(EXIT_FAILED)
    if strict and any(r.status == "quarantined" or r.rows_quarantined or r.rows_already_held for r in results):
        raise typer.Exit(EXIT_QUARANTINED)


def _print_runs(ctx: PlatformContext, results: list[RunResult]) -> None:
    from pipelines.inspection import quarantine_summary

    table = Table(title="Runs", show_lines=False)
    for col in ("pipeline", "window", "status", "fetched", "bronze new", "silver published", "quarantined", "held days"):
        table.add_column(col)
    colours = {"succeeded": "green", "quarantined": "yellow", "failed": "red"}
    for r in results:
        table.add_row(
            r.pipeline,
            f"{r.window_start.date()}..{r.window_end.date()}",
            f"[{colours.get(r.status, 'white')}]{r.status}[/]",
            str(r.records_fetched),
            str(r.bronze_new),
            str(r.rows_out),
            r.quarantined_text(),
            ", ".join(r.held_days) or "-",
        )
    out.print(table)
    landed: Counter[str] = Counter()
    for r in results:
        for t in r.tables:
            landed[t.table] += t.rows_written
    land = Table(title="Rows written per table")
    land.add_column("table")
    land.add_column("rows", justify="right")
    for name, rows in sorted(landed.items()):
        land.add_row(name, str(rows))
    out.print(land)
    summary = quarantine_summary(ctx, results)
    if summary:
        q = Table(title="Quarantined by this invocation")
        for col in ("table", "check", "scope", "rows", "example"):
            q.add_column(col)
        for item in summary:
            q.add_row(item["target_table"], item["expectation"], item["scope"], str(item["rows"]), item["example"][:80])
        out.print(q)
    for r in results:
        if r.error:
            out.print(f"[red]{r.pipeline} {r.window_start.date()}: {r.error}[/red]")


def status(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False) -> None:
    """Tables (rows, snapshots, audit branches), the last run of each pipeline and data-quality scores."""
    from pipelines.control import pause_note
    from pipelines.inspection import lake_status

    ctx = open_context()
    report = lake_status(ctx)
    if as_json:
        emit_json(report)
        return
    table = Table(title=f"Lake at {ctx.settings.home}")
    for col in ("table", "rows", "snapshots", "audit branches", "quality", "last commit run"):
        table.add_column(col)
    for t in report["tables"]:
        q = t["quality_score"]
        table.add_row(
            t["table"],
            str(t["rows"]),
            str(t["snapshots"]),
            str(len(t["audit_branches"])),
            "-" if q is None else f"{q:.3f}",
            t["last_run_id"] or "-",
        )
    out.print(table)
    runs = Table(title="Last run per pipeline")
    for col in ("pipeline", "run", "status", "window", "in", "out", "quarantined", "error"):
        runs.add_column(col)
    for r in report["pipelines"]:
        runs.add_row(
            r["pipeline"],
            r["run_id"] or "-",
            r["status"] or "never run",
            r["window"] or "-",
            str(r["rows_in"]),
            str(r["rows_out"]),
            str(r["rows_quarantined"]),
            (r["error"] or "")[:60],
        )
    out.print(runs)
    for r in report["pipelines"]:
        if r["paused"]:
            out.print(pause_note(r["pipeline"], r["paused_by"], r["paused_reason"]))


def query(
    sql: Annotated[str, typer.Argument(help="One read-only SQL statement; address tables as layer.name, e.g. silver.carbon_intensity.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print columns and rows as JSON on stdout.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many rows (0: only the columns).")] = 10_000,
) -> None:
    """Read-only SQL over the lake with DuckDB. Anything but a read is refused, and SQL that does not parse or names
    an unknown table or column is an error (both exit 2).

    Each statement runs under DATAOPS_QUERY_TIMEOUT_S and DATAOPS_QUERY_MEMORY_LIMIT; past either it is
    interrupted and reported (exit 2).
    """
    from pipelines.query import run_query

    ctx = open_context()
    try:
        result = run_query(ctx, sql, limit=limit)
    except QueryRefusedError as exc:
        raise fail(str(exc), EXIT_USAGE, label="refused") from None
    except (QueryLimitError, QuerySqlError) as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    except DataOpsError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    if as_json:
        emit_json(result.model_dump(mode="json"))
        return
    table = Table(show_header=True)
    for c in result.columns:
        table.add_column(c)
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    out.print(table)
    console.print(f"{result.row_count} row(s){' (truncated)' if result.truncated else ''} in {result.elapsed_ms} ms")


def history(
    table_name: Annotated[str, typer.Argument(metavar="TABLE", help="layer.name, e.g. silver.carbon_intensity")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
) -> None:
    """Snapshots of a table, newest first: time, operation, run id, rows added and deleted, refs."""
    from pipelines.inspection import history_of

    ctx = open_context()
    with usage_errors():
        entries = history_of(ctx, table_name)
    if as_json:
        emit_json({"table": table_name, "snapshots": entries})
        return
    table = Table(title=f"History of {table_name}")
    for col in ("snapshot", "committed", "operation", "run", "added", "deleted", "total", "refs"):
        table.add_column(col)
    for e in entries:
        table.add_row(
            str(e["snapshot_id"]),
            e["committed_at"],
            e["operation"],
            e["run_id"] or "-",
            str(e["added_records"]),
            str(e["deleted_records"]),
            str(e["total_records"]),
            ", ".join(e["refs"]),
        )
    out.print(table)


def serve_command(extensions: Sequence[ExtensionFactory] = ()) -> Callable[..., None]:
    """`dataops serve`, running `extensions` alongside the service (the agent and Slack: the assembly in evals/cli.py names them)."""

    def serve(
        until: Annotated[str | None, typer.Option(help="Stop when the clock passes this instant (replay: simulated time).")] = None,
        speed: Annotated[
            float | None, typer.Option(help="Replay speed, simulated seconds per real second (overrides DATAOPS_REPLAY_SPEED).")
        ] = None,
        start: Annotated[str | None, typer.Option(help="Replay start instant (overrides DATAOPS_REPLAY_START).")] = None,
        metrics: Annotated[bool, typer.Option(help="Serve Prometheus metrics on DATAOPS_METRICS_PORT.")] = True,
        agent: Annotated[
            bool,
            typer.Option(help="Hand each new incident to the agent (and Slack, when configured); --no-agent: pipelines and monitors only."),
        ] = True,
    ) -> None:
        """Run the scheduled service: pipelines on their schedules, monitors, incidents and /metrics.

        Offline (the default) the bundled real data plays as a live feed on a replay clock starting at
        DATAOPS_REPLAY_START and running DATAOPS_REPLAY_SPEED times real time. Stop with Ctrl-C or SIGTERM:
        the running job finishes first, nothing is left half-published.
        """
        from config.settings import load_settings
        from pipelines.clock import ReplayClock
        from pipelines.metrics import serve_metrics
        from pipelines.service import Service

        overrides: dict[str, Any] = {}
        if speed is not None:
            overrides["replay_speed"] = speed
        if start is not None:
            overrides["replay_start"] = parse_instant(start, "--start")
        with usage_errors():  # the overrides are validated like the settings they replace
            settings = load_settings(**overrides)
        ctx = open_context(settings)
        service = Service(ctx, extensions=extensions if agent else ())
        stop_at = parse_instant(until, "--until") if until else None
        begin = service.clock.start if isinstance(service.clock, ReplayClock) else service.clock.now()
        if stop_at is not None and stop_at < begin:  # equal: start, run what is due, stop
            raise fail(f"--until {stop_at.isoformat()} is before the clock's start ({begin.isoformat()})", EXIT_USAGE)
        if metrics:
            try:
                serve_metrics(ctx.settings.metrics_port, ctx.settings.metrics_addr)
            except OSError as exc:
                where = f"{ctx.settings.metrics_addr}:{ctx.settings.metrics_port}"
                raise fail(f"cannot serve metrics on {where} ({exc}); set DATAOPS_METRICS_PORT or --no-metrics", EXIT_USAGE) from None
            console.print(f"metrics on http://{ctx.settings.metrics_addr}:{ctx.settings.metrics_port}/metrics")
        clock = service.clock
        clock_note = f"replay clock from {clock.start.isoformat()} at x{clock.speed:g}" if isinstance(clock, ReplayClock) else "wall clock"
        console.print(f"serving {len(ctx.inventory.pipelines)} pipelines on the {clock_note}; Ctrl-C stops")

        def announce(incident: Any, opened: bool) -> None:
            if opened:
                out.print(f"[bold]incident {incident.id}[/bold] [{incident.severity}] {incident.kind} {incident.table}: {incident.title}")

        service.on_incident = announce
        with usage_errors():  # a misconfigured extension (e.g. Slack without a channel) stops here, with its message
            service.serve_forever(until=stop_at)
        console.print(f"stopped at clock {service.clock.now().isoformat()}; {len(service.results)} runs")

    return serve


def pause(
    pipeline: Annotated[str, typer.Argument(help="Pipeline to pause.")],
    reason: Annotated[str, typer.Option(help="Why; shown in status.")] = "",
) -> None:
    """Pause a pipeline's schedule; running work finishes, new firings are skipped until resumed."""
    ctx = open_context()
    with usage_errors():
        ctx.inventory.pipeline(pipeline)
    ctx.control.set_paused(pipeline, True, reason=reason, actor="cli")
    out.print(f"{pipeline} paused")


def resume(pipeline: Annotated[str, typer.Argument(help="Pipeline to resume.")]) -> None:
    """Resume a paused pipeline; the next firing catches up from its watermark."""
    ctx = open_context()
    with usage_errors():
        ctx.inventory.pipeline(pipeline)
    ctx.control.set_paused(pipeline, False, actor="cli")
    out.print(f"{pipeline} resumed")
