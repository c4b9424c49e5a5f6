"""`dataops deferred`: the agent's large backfills waiting for the greenest window, and `release` to run one now.

Plain functions, assembled into `dataops` by evals/cli.py; the agent is imported inside `release`, which resumes
the thread (the service resumes it by itself when the window comes).
"""

from __future__ import annotations

from typing import Annotated

import typer

from agent.people_cli import cli_actor
from config.errors import ApprovalError
from pipelines.cli_io import EXIT_USAGE, emit_json, fail, open_context, out

DEFERRED_HELP = (
    "Large backfills the agent deferred to the greenest window of the carbon-intensity forecast "
    "(DATAOPS_BACKFILL_GREEN_*): list them, or `release CALL_ID` to run one now."
)
_STATUSES = ("waiting", "released", "resumed")


def deferred_list(
    status: Annotated[str | None, typer.Option(help="waiting, released or resumed; default all.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List deferred calls, newest first: when each was due, the window it waits for, and the intensity it ran at."""
    from policies.deferrals import DeferralStore

    if status is not None and status not in _STATUSES:
        raise typer.BadParameter(f"{status!r} is not a status; valid: {', '.join(_STATUSES)}", param_hint="--status")
    found = DeferralStore(open_context().ledger).list(status=status)
    if as_json:
        emit_json([d.model_dump(mode="json") for d in found])
        return
    if not found:
        out.print("no deferred calls")
    for d in found:
        args = ", ".join(f"{k}={v}" for k, v in d.arguments.items())
        if d.ran_at is not None:
            ran = f"{d.ran_intensity:g} gCO2/kWh ({d.ran_intensity_kind})" if d.ran_intensity is not None else "an unknown intensity"
            state = f"ran {d.ran_at:%Y-%m-%d %H:%M} at {ran}"
        elif d.status == "released":
            state = f"released by {d.released_by}"
        else:
            state = f"waits until {d.run_at:%Y-%m-%d %H:%M} UTC"
        out.print(f"{d.call_id} {d.status}, {state}: {d.tool}({args}) — {d.reason}", markup=False, soft_wrap=True)


def deferred_release(
    call_id: Annotated[str, typer.Argument(help="The deferred call's id (`dataops deferred list` shows them).")],
    reason: Annotated[str, typer.Option(help="Why it should not wait (kept with the call).")] = "",
    as_user: Annotated[
        str | None, typer.Option("--as", help="Only confirms who releases: the person of DATAOPS_TOKEN or your OS login.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the released call as JSON.")] = False,
) -> None:
    """Run a deferred call now instead of at its greenest window (operators and approvers); the agent resumes at once.

    An unknown id, a call no longer waiting, or a person who may not release it exits 2 with one line saying why.
    """
    from agent.cli import agent_for_cli

    agent = agent_for_cli(as_json=as_json)
    try:
        actor = cli_actor(agent.ctx, as_user)
        try:
            released = agent.release(call_id, user=actor, reason=reason, channel="cli")
        except ApprovalError as exc:  # unknown id, not waiting any more, or a person who may not release: exit 2
            raise fail(str(exc), EXIT_USAGE, label="refused") from None
    finally:
        agent.close()
    if as_json:
        emit_json(released.model_dump(mode="json"))
    else:
        out.print(f"{released.call_id} released by {released.released_by}; the agent has resumed ({released.status})")
