"""`dataops backfill`: a range of day partitions on the local or the Ray executor (`pipelines/backfill.py`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from config.errors import DataOpsError
from pipelines.cli_io import EXIT_FAILED, EXIT_QUARANTINED, EXIT_USAGE, console, emit_json, open_context, out, parse_instant

if TYPE_CHECKING:
    from pipelines.backfill import BackfillReport

# Consecutive partitions one run may cover. A run's fixed cost (commits, audit branch, suite: about 0.5 s) dwarfs a
# day of 48 half-hours, so a week per run makes a year of day partitions about 10x faster (benchmarks/backfill.py),
# while a failed week costs at most 7 day runs again and a week is what `--partition-days 7` already validates together.
DEFAULT_MAX_PARTITIONS_PER_RUN = 7


def backfill(
    pipeline: Annotated[str, typer.Argument(help="Pipeline name from config/pipelines.yaml.")],
    start: Annotated[str, typer.Option(help="First day (UTC date or instant; inclusive).")],
    end: Annotated[str, typer.Option(help="End (UTC date or instant; exclusive). Clipped to the clock.")],
    executor: Annotated[
        str | None,
        typer.Option(help="local or ray: one run after another here, or one Ray task per run. Default: DATAOPS_BACKFILL_EXECUTOR (local)."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option("--ray-address", help="Ray cluster to join (ray://head:10001). Default: DATAOPS_RAY_ADDRESS, else a local cluster."),
    ] = None,
    cpus: Annotated[int | None, typer.Option(min=1, help="CPUs of the local Ray cluster. Default: every core.")] = None,
    partition_days: Annotated[int, typer.Option(min=1, help="Days per partition, the unit the report lists.")] = 1,
    max_partitions_per_run: Annotated[
        int,
        typer.Option(
            "--max-partitions-per-run",
            min=1,
            help="Pack up to N consecutive partitions into one run over their joint window (Dagster's multi_run policy). "
            "Each partition is still reported on its own, with its status, rows and held days read from the run; a packed "
            "run that fails runs its partitions again one per run, so only a bad day ends failed. A run's fixed cost "
            "dominates a day's rows: 7 makes a year of days about 10x faster. 1: one run per partition. On Ray, packs "
            "shrink so that every worker has one. Pipelines of dropped files or with table-scope checks run one per run.",
        ),
    ] = DEFAULT_MAX_PARTITIONS_PER_RUN,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Clock instant: replay serves only data known by then. Default: now.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the backfill report as JSON on stdout.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Exit 3 when a partition held data back, rows an earlier run already quarantined included.")
    ] = False,
) -> None:
    """Run a pipeline over every day partition of a range, each partition the same idempotent run as `dataops run`.

    Up to --max-partitions-per-run consecutive partitions (7 by default) run as one run over their joint
    window, each partition still reported on its own. Runs go one after another (`--executor local`, the
    default) or as parallel Ray tasks (`--executor ray`: a local Ray cluster with every core, or the cluster
    at --ray-address). Partitions that meet on a table re-commit or re-validate as needed; the report counts
    commit retries, re-plans and task retries (a partition that failed transiently runs again, up to
    DATAOPS_RUN_MAX_ATTEMPTS). A stopped backfill loses nothing: run it again. Exit code 0 when every
    partition completed, 1 when one failed, 2 on bad usage, 3 with --strict when data was held back.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from pipelines.backfill import PartitionOutcome, run_backfill
    from pipelines.control import PipelineBusyError
    from pipelines.partition_runs import EXECUTORS

    ctx = open_context()
    chosen = executor or ctx.settings.backfill_executor
    if chosen not in EXECUTORS:
        console.print(f"[red]error:[/red] --executor {chosen!r} is not one of {', '.join(EXECUTORS)}")
        raise typer.Exit(EXIT_USAGE)
    clock = parse_instant(as_of, "--as-of") if as_of else datetime.now(UTC)
    s, e = parse_instant(start, "--start"), parse_instant(end, "--end")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=as_json,
    ) as bar:  # fmt: skip
        task = bar.add_task(f"{pipeline} on {chosen}: starting", total=None)
        failed = 0

        def advance(outcome: PartitionOutcome, total: int) -> None:
            nonlocal failed
            failed += outcome.status == "failed"
            description = f"{pipeline} on {chosen}: {outcome.start.date()} {outcome.status}, {failed} failed"
            bar.update(task, advance=1, total=total, description=description)

        try:
            report = run_backfill(
                ctx, pipeline, s, e, executor=chosen, as_of=clock, partition_days=partition_days,  # type: ignore[arg-type]
                max_partitions_per_run=max_partitions_per_run, address=ray_address, cpus=cpus, on_partition=advance,
            )  # fmt: skip
        except KeyboardInterrupt:
            bar.stop()
            console.print(
                "[yellow]stopped:[/yellow] finished partitions are published and in the ledger; an interrupted one left each "
                "table untouched or at one complete commit. Run the same backfill again to complete it: partitions converge."
            )
            raise typer.Exit(130) from None
        except DataOpsError as exc:  # unknown pipeline, bad range, paused, no Ray; busy: another process runs it
            bar.stop()
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(EXIT_FAILED if isinstance(exc, PipelineBusyError) else EXIT_USAGE) from None
    if as_json:
        emit_json(report.model_dump(mode="json"))
    else:
        _print_report(out, report)
    if report.failed:
        raise typer.Exit(EXIT_FAILED)
    if strict and (report.quarantined or report.rows_quarantined or report.rows_already_held):
        raise typer.Exit(EXIT_QUARANTINED)


def _print_report(out: Console, report: BackfillReport) -> None:
    where = f"ray on {report.cluster}" if report.executor == "ray" else "local"
    out.print(
        f"[bold]{report.backfill_id}[/bold] {report.pipeline} {report.start.date()}..{report.end.date()} on {where}, "
        f"{report.workers} worker(s): {report.partitions} partitions in {report.runs} run(s) (up to "
        f"{report.max_partitions_per_run} a run) in {report.duration_s:.1f} s"
    )
    out.print(
        f"  succeeded {report.succeeded}, quarantined {report.quarantined}, failed {report.failed}; rows published "
        f"{report.rows_out}, held back {report.rows_quarantined}"
        + (f" (+{report.rows_already_held} already held)" if report.rows_already_held else "")
        + f"; commit retries {report.commit_retries}, "
        f"re-plans {report.replans}, task retries {report.task_retries}"
        + (f"; {report.unpacked_reruns} partition(s) of failed packed runs run again alone" if report.unpacked_reruns else "")
    )
    notable = [o for o in report.outcomes if o.status != "succeeded"]
    if notable:
        table = Table(title="Partitions that did not simply succeed")
        for col in ("partition", "status", "attempts", "held days", "error"):
            table.add_column(col)
        for o in notable:
            table.add_row(f"{o.start.date()}", o.status, str(o.attempts), ", ".join(o.held_days) or "-", (o.error or "-")[:120])
        out.print(table)
