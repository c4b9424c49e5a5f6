"""`dataops`'s incident and monitor commands: list incidents, show one, and report the monitors with their suppressions.

Plain functions, like `pipelines/cli.py`: `evals/cli.py` assembles them into the `incidents`, `incident` and `monitors`
commands. They read the ops database only, never the lake: this module imports typer, rich and the standard library
at the top, and each command imports the rest of what it needs when it runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from pipelines.cli_io import EXIT_USAGE, emit_json, fail, open_context, out, usage_errors

if TYPE_CHECKING:
    from pipelines.context import PlatformContext


def incidents(
    status_filter: Annotated[
        str, typer.Option("--status", help="open, acknowledged, remediating, resolved, escalated, unresolved or all.")
    ] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
) -> None:
    """Incidents, newest first, with time-to-detect on the platform clock."""
    choices = ("open", "acknowledged", "remediating", "resolved", "escalated", "unresolved", "all")
    if status_filter not in choices:
        raise fail(f"--status {status_filter!r} is not one of: {', '.join(choices)}", EXIT_USAGE)
    ctx = open_context()
    found = ctx.incidents.list(status=None if status_filter == "all" else status_filter)
    if as_json:
        emit_json({"incidents": [i.model_dump(mode="json") for i in found]})
        return
    table = Table(title="Incidents")
    for col in ("id", "severity", "status", "kind", "table", "seen", "detected (clock)", "ttd", "title"):
        table.add_column(col)
    for i in found:
        ttd = "-" if i.time_to_detect_s is None else f"{i.time_to_detect_s / 3600:.1f} h"
        table.add_row(
            str(i.id),
            i.severity,
            i.status,
            i.kind,
            i.table,
            str(i.occurrences),
            i.detected_at.strftime("%Y-%m-%d %H:%M"),
            ttd,
            i.title[:80],
        )
    out.print(table)


class IncidentGroup(TyperGroup):
    """`dataops incident ID` stays the short form of `dataops incident show ID`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's vendored click Context
        if args and args[0].isdigit():
            args = ["show", *args]
        return super().parse_args(ctx, args)


def incident_show(
    incident_id: Annotated[int, typer.Argument(metavar="ID", help="Incident id from `dataops incidents`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
) -> None:
    """One incident with its evidence and history (notes: who did what, through which channel)."""
    ctx = open_context()
    with usage_errors():
        found = ctx.incidents.get(incident_id)
    if as_json:
        emit_json(found.model_dump(mode="json"))
        return
    out.print(f"[bold]incident {found.id}[/bold] {escape(f'[{found.severity}] {found.status}: {found.title}')}")
    out.print(f"kind {found.kind} · table {found.table} · partition {found.partition or '-'} · seen {found.occurrences}x")
    out.print(f"occurred {found.occurred_at} · detected {found.detected_at} · time to detect {found.time_to_detect_s} s")
    out.print_json(data=found.evidence, default=str)
    for note in found.notes:
        via = f" via {note['channel']}" if note.get("channel") else ""
        out.print(
            f"{note.get('at', '')[:16]} {note.get('actor')}{via} [{note.get('status')}] {note.get('note')}", markup=False, soft_wrap=True
        )


def monitors_report(ctx: PlatformContext, now: datetime) -> dict[str, Any]:
    """Each monitor (name, kind, table, severity) with the suppressions active at `now` on the platform clock.

    Suppressions of findings that no monitor raises (validation, run failures) are listed apart.
    """
    from pipelines.monitors.feedback import suppressions
    from pipelines.monitors.state import monitor_status

    active = suppressions(ctx, active_at=now)
    rows = []
    claimed: set[int] = set()
    for spec in ctx.inventory.monitors.values():
        mine = [x for x in active if x.cause_key == spec.name or x.cause_key.startswith(spec.name + ":")]
        claimed |= {x.id for x in mine}
        row: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "table": spec.table, "severity": spec.severity}
        row |= monitor_status(ctx, spec.name).model_dump(mode="json")
        row["suppressions"] = [x.model_dump(mode="json") for x in mine]
        rows.append(row)
    others = [x.model_dump(mode="json") for x in active if x.id not in claimed]
    return {"now": now.isoformat(), "monitors": rows, "other_suppressions": others}


def monitors(
    typer_ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON on stdout.")] = False,
) -> None:
    """Every monitor (name, kind, table, severity), where it stands (not evaluated yet, warming up, or active with
    its calibrated threshold) and the suppressions active now on the platform clock."""
    if typer_ctx.invoked_subcommand is not None:
        return
    from pipelines.monitors.feedback import platform_now

    ctx = open_context()
    report = monitors_report(ctx, platform_now(ctx))
    if as_json:
        emit_json(report)
        return
    table = Table(title=f"Monitors (clock {report['now'][:16]})")
    for col in ("monitor", "kind", "table", "severity", "state", "suppressed"):
        table.add_column(col)
    for m in report["monitors"]:
        short = ", ".join(f"#{x['id']} until {x['expires_at'][:10]}" for x in m["suppressions"])
        state = m["status"] if m["threshold"] is None else f"{m['status']} (threshold {m['threshold']:.2f})"
        if m["status"] == "warming_up":
            state = m["detail"]
        table.add_row(m["name"], m["kind"], m["table"], m["severity"], state, short or "-")
    out.print(table)
    active = [x for m in report["monitors"] for x in m["suppressions"]] + report["other_suppressions"]
    for x in active:
        out.print(
            f"#{x['id']} {x['pattern']}: until {x['expires_at'][:16]}, by {x['actor']} ({x['channel']}), {x['hits']} hit(s): {x['reason']}",
            markup=False,
            soft_wrap=True,
        )
