"""`dataops`'s agent commands: approve, deny, approvals, audit, chat, remediate, maintain, demo, and people's
judgement on incidents (`incident ack|resolve|expected`, `monitors unsuppress`).

Plain functions: `evals/cli.py` assembles them into the one `dataops` app; `attach_agent` is what it hands
`dataops serve` so every new incident reaches the agent. The agent (LangGraph, the model client, chromadb)
is imported inside the commands that use it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from agent.people_cli import cli_actor, cli_asker
from config.errors import ModelError, PolicyError
from pipelines.cli_io import EXIT_FAILED, EXIT_USAGE, console, emit_json, fail, open_context, out, usage_errors

if TYPE_CHECKING:
    from pipelines.service import Service, ServiceExtension
    from policies.people import Actor


def attach_agent(service: Service) -> ServiceExtension | None:
    """The agent (and Slack, when configured) alongside `dataops serve`; None when DATAOPS_AGENT_ENABLED is off."""
    from agent.service_hook import attach

    return attach(service)


_AS_HELP = "Only confirms who decides: refused unless it names the person of DATAOPS_TOKEN (or of your OS login)."


def agent_for_cli(*, as_json: bool = False, planner: Any = None) -> Any:
    """The agent, reporting on stdout, or on stderr when stdout carries JSON; `planner` replaces the configured one.

    Its clock is the replay clock as `dataops serve` last saved it, so "yesterday" in a CLI chat is the day the
    console and the service call so; with live sources, or in a home the service has not run in (filled by
    `dataops run`, which reads the replay as of the wall clock), the wall clock."""
    from agent.report import ConsoleReporter
    from agent.runtime import Agent, make_planner
    from pipelines.monitors.feedback import saved_replay_clock

    ctx = open_context()
    channel = console if as_json else out
    with usage_errors():
        planner = planner(make_planner(ctx)) if planner is not None else None
        return Agent(
            ctx,
            planner=planner,
            reporter=ConsoleReporter(lambda text: channel.print(text, markup=False, highlight=False, soft_wrap=True)),
            clock=lambda: saved_replay_clock(ctx) or datetime.now(UTC),
        )


def _decide(approval_id: str, approve: bool, as_user: str | None, reason: str, as_json: bool) -> None:
    agent = agent_for_cli(as_json=as_json)
    try:
        actor = cli_actor(agent.ctx, as_user)
        approval, problem = agent.decide_or_explain(approval_id, approve=approve, user=actor, reason=_attributed(reason, actor))
    finally:
        agent.close()
    if approval is None:  # unknown id, not an approver of it, its requester, already decided or expired: exit 2
        raise fail(problem, EXIT_USAGE, label="refused")
    if as_json:
        emit_json(approval.model_dump(mode="json"))
    else:
        out.print(f"{approval.id} {approval.status} by {approval.decided_by}; the agent has resumed")


def approve(
    approval_id: Annotated[str, typer.Argument(help="The request id, e.g. A-1f2e3d (`dataops approvals` lists them).")],
    as_user: Annotated[str | None, typer.Option("--as", help=_AS_HELP)] = None,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the decided request as JSON.")] = False,
) -> None:
    """Approve a pending request of the agent as yourself (DATAOPS_TOKEN or your OS login); the first decision wins, only its approvers count.

    A refused decision (unknown id, not an approver of the request, its requester, already decided or expired) exits 2
    with one line saying why.
    """
    _decide(approval_id, True, as_user, reason, as_json)


def deny(
    approval_id: Annotated[str, typer.Argument(help="The request id, e.g. A-1f2e3d.")],
    reason: Annotated[str, typer.Option(help="Why not; the agent reports it and escalates.")],
    as_user: Annotated[str | None, typer.Option("--as", help=_AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decided request as JSON.")] = False,
) -> None:
    """Deny a pending request of the agent as yourself; the action does not run and the agent escalates.

    A refused decision exits 2, as for `dataops approve`.
    """
    _decide(approval_id, False, as_user, reason, as_json)


_JUDGE_AS_HELP = "Only confirms who acts (an operator or approver): refused unless it names the person of DATAOPS_TOKEN or your OS login."


def _attributed(reason: str, actor: Actor) -> str:
    """The reason, with the OS login that typed the command when a token, not that login, authenticated the person."""
    return f"{reason} [token of {actor.id}, login {actor.login}]".strip() if actor.by_token else reason


@contextmanager
def _refusals() -> Iterator[None]:
    """A person the policy does not let act: one line on stderr, exit 2 (as a refused `dataops approve`)."""
    try:
        yield
    except PolicyError as exc:
        raise fail(str(exc), EXIT_USAGE, label="refused") from None


def _judge(incident_id: int, action: str, *, reason: str, as_user: str | None, as_json: bool, days: float = 30) -> None:
    from agent.judgement import act_on_incident
    from memory.store import IncidentMemory
    from pipelines.monitors.feedback import platform_now

    ctx = open_context()
    actor = cli_actor(ctx, as_user)
    user = actor.id
    with usage_errors(), _refusals():
        outcome = act_on_incident(
            ctx,
            incident_id,
            action,
            actor=actor,
            reason=_attributed(reason, actor),
            now=platform_now(ctx),
            days=days,
            memory=lambda: IncidentMemory.open(ctx.settings),
        )
    if as_json:
        emit_json(outcome.model_dump(mode="json"))
        return
    incident, suppression = outcome.judgement.incident, outcome.judgement.suppression
    said = f"incident {incident.id} {incident.status} by {user}, labelled {outcome.judgement.label.verdict}"
    if suppression is not None:
        said += (
            f"; suppression #{suppression.id} of {suppression.pattern} until {suppression.expires_at:%Y-%m-%d %H:%M} UTC (platform clock)"
        )
        said += f"; remembered as {outcome.remembered}" if outcome.remembered else f"; not remembered: {outcome.memory_error}"
    out.print(said, markup=False, soft_wrap=True)


_ID = Annotated[int, typer.Argument(metavar="ID", help="Incident id from `dataops incidents`.")]
_JSON = Annotated[bool, typer.Option("--json", help="Print the incident, label and suppression as JSON.")]


def incident_ack(
    incident_id: _ID,
    reason: Annotated[str, typer.Option(help="Why (kept in the incident's notes).")] = "",
    as_user: Annotated[str | None, typer.Option("--as", help=_JUDGE_AS_HELP)] = None,
    as_json: _JSON = False,
) -> None:
    """Acknowledge an incident: a person owns it now; labelled real (the monitor was right)."""
    _judge(incident_id, "ack", reason=reason, as_user=as_user, as_json=as_json)


def incident_resolve(
    incident_id: _ID,
    reason: Annotated[str, typer.Option(help="What fixed it (kept in the incident's notes).")] = "",
    as_user: Annotated[str | None, typer.Option("--as", help=_JUDGE_AS_HELP)] = None,
    as_json: _JSON = False,
) -> None:
    """Resolve an incident; labelled real (the monitor was right)."""
    _judge(incident_id, "resolve", reason=reason, as_user=as_user, as_json=as_json)


def incident_expected(
    incident_id: _ID,
    reason: Annotated[str, typer.Option(help="Why this is expected (kept in the suppression, the notes and the agent's memory).")],
    days: Annotated[int, typer.Option("--for", min=1, help="Days the pattern stays suppressed, on the platform clock.")] = 30,
    as_user: Annotated[str | None, typer.Option("--as", help=_JUDGE_AS_HELP)] = None,
    as_json: _JSON = False,
) -> None:
    """Mark an incident a false alarm: resolve it, label it expected, suppress its pattern, remember it for the agent.

    The pattern is the finding kind, monitor (cause) and table, plus for value anomalies the direction and scores up
    to 1.25x the labelled one: a stronger deviation, the other direction or another monitor still alerts. It lasts
    --for days on the platform clock; `dataops monitors` lists it, `dataops monitors unsuppress ID` lifts it.
    """
    if not reason.strip():
        raise fail("--reason is empty: say why this is expected; it is kept with the suppression for whoever meets it next", EXIT_USAGE)
    _judge(incident_id, "expected", reason=reason, as_user=as_user, as_json=as_json, days=days)


def monitors_unsuppress(
    suppression_id: Annotated[int, typer.Argument(metavar="ID", help="Suppression id from `dataops monitors`.")],
    as_user: Annotated[str | None, typer.Option("--as", help=_JUDGE_AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lifted suppression as JSON.")] = False,
) -> None:
    """Lift a suppression before it expires: findings of its pattern alert again."""
    from agent.judgement import lift_suppression
    from pipelines.monitors.feedback import platform_now

    ctx = open_context()
    actor = cli_actor(ctx, as_user)
    user = actor.id
    with usage_errors(), _refusals():
        lifted = lift_suppression(ctx, suppression_id, actor=actor, now=platform_now(ctx))
    if as_json:
        emit_json(lifted.model_dump(mode="json"))
    else:
        out.print(f"suppression #{lifted.id} lifted by {user}: {lifted.pattern} alerts again", markup=False)


def approvals(
    status: Annotated[str | None, typer.Option(help="pending, approved, denied or expired; default all.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the agent's approval requests, newest first."""
    from policies.approvals import ApprovalStore

    if status is not None and status not in ("pending", "approved", "denied", "expired"):
        raise typer.BadParameter(f"{status!r} is not a status; valid: pending, approved, denied, expired", param_hint="--status")
    ctx = open_context()
    store = ApprovalStore(ctx.ledger)
    store.expire_due()
    found = store.list(status=status)
    if as_json:
        emit_json([a.model_dump(mode="json") for a in found])
        return
    if not found:
        out.print("no approval requests")
    for a in found:
        decided = f" by {a.decided_by}" if a.decided_by else f", expires {a.expires_at:%Y-%m-%d %H:%M}"
        out.print(
            f"{a.id} {a.status}{decided}: {a.tool}({', '.join(f'{k}={v}' for k, v in a.arguments.items())}) — {a.reason} [{a.rule}]",
            markup=False,
        )


def audit(
    incident: Annotated[int | None, typer.Option(help="Only calls made for this incident.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, oldest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    diagnoses: Annotated[
        bool, typer.Option("--diagnoses", help="The causes the agent named before planning, instead of the calls.")
    ] = False,
) -> None:
    """The audit log: every tool call of the agent with actor, arguments, policy decision and rule, approver, result, duration, tokens.

    With --diagnoses: the cause the agent named for each incident thread (kind, confidence, summary, evidence)."""
    from policies.audit import AuditLog

    ctx = open_context()
    if diagnoses:
        found = AuditLog(ctx.ledger).diagnoses(incident_id=incident, limit=limit)
        if as_json:
            emit_json([d.model_dump(mode="json") for d in found])
            return
        if not found:
            out.print("no diagnosis is recorded")
        for d in found:
            out.print(f"{d.at:%Y-%m-%d %H:%M:%S} {d.thread_id} {d.cause} ({d.confidence:.0%}): {d.summary}", markup=False)
            for fact in d.evidence:
                out.print(f"    - {fact}", markup=False)
        return
    entries = AuditLog(ctx.ledger).entries(incident_id=incident, limit=limit)
    if as_json:
        emit_json([e.model_dump(mode="json") for e in entries])
        return
    if not entries:
        out.print("the audit log is empty")
    for e in entries:
        who = f" approved by {e.approver}" + (f" via {e.approver_via}" if e.approver_via else "") if e.approver else ""
        took = f" {e.duration_ms:.0f} ms" if e.duration_ms is not None else ""
        out.print(
            f"{e.at:%Y-%m-%d %H:%M:%S} {e.thread_id} {e.actor} {e.tool}({', '.join(f'{k}={v}' for k, v in e.arguments.items())}) "
            f"{e.decision}[{e.rule}]{who} → {e.status}{took} tokens={e.tokens}" + (f" error: {e.error}" if e.error else ""),
            markup=False,
        )


def remediate(
    incident_id: Annotated[int, typer.Argument(help="The incident the agent should work now.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Hand one incident to the agent now (what `dataops serve` does for every new incident)."""
    agent = agent_for_cli(as_json=as_json)
    try:
        with usage_errors():
            outcome = agent.handle_incident(incident_id)
    finally:
        agent.close()
    if as_json:
        emit_json(outcome.model_dump(mode="json"))
    elif outcome.status == "waiting":
        out.print(f"waiting for approval {outcome.approval_id}: an approver runs `dataops approve {outcome.approval_id}`", markup=False)
    else:
        out.print(f"incident {incident_id}: {outcome.outcome}. {outcome.message}", markup=False, soft_wrap=True)


def chat(
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Ask one question and exit, instead of an interactive session.")
    ] = None,
    thread: Annotated[str | None, typer.Option(help="Conversation id; the same id continues a conversation. Default: a new one.")] = None,
    as_user: Annotated[
        str | None,
        typer.Option("--as", help="Only confirms who asks: refused unless it names the person of DATAOPS_TOKEN or your OS login."),
    ] = None,
) -> None:
    """Talk to the agent in the terminal: it answers with read-only tools and proposes actions through policy and approvals.

    Exits 1 when the model endpoint failed (down, refused the key, answered nothing usable), with the reason on stderr.
    """
    import secrets

    if message is not None and not message.strip():
        raise fail("--message is empty: give a question, or leave --message out for an interactive session", EXIT_USAGE)
    agent = agent_for_cli(planner=_WatchedPlanner)
    watch: _WatchedPlanner = agent.runtime.planner
    cli_asker(agent.ctx, as_user)  # refuse a bad --as or token before the first question
    thread_id = f"chat-{thread or secrets.token_hex(4)}"
    if message is None:
        out.print(f"the agent ({agent.planner_name}); ask a question, 'quit' ends", markup=False)
    try:
        while True:
            text = message if message is not None else _prompt()
            if text is None or text.strip().lower() in ("quit", "exit"):
                if watch.failures:  # an interactive session whose model failed does not end as a success
                    raise typer.Exit(EXIT_FAILED)
                return
            if not text.strip():
                continue
            failed_before = len(watch.failures)
            # Who asks, read again each turn: a role changed or a token revoked mid-session counts from the next turn.
            outcome = agent.chat(thread_id, text, user=cli_asker(agent.ctx, as_user))
            if len(watch.failures) > failed_before:
                console.print(f"[red]error:[/red] {escape(str(watch.failures[-1]))}", soft_wrap=True)
                if message is not None:
                    raise typer.Exit(EXIT_FAILED)
            if outcome.status == "busy":
                out.print(outcome.message, markup=False)
            elif outcome.status == "waiting":
                out.print(
                    f"waiting for approval {outcome.approval_id}: another approver runs `dataops approve {outcome.approval_id}`",
                    markup=False,
                )
            if message is not None:
                if outcome.status == "busy" or (
                    outcome.status == "done" and outcome.outcome not in ("answered", "resolved", "nothing_to_do")
                ):
                    raise typer.Exit(EXIT_FAILED)
                return
    finally:
        agent.close()


class _WatchedPlanner:
    """The configured planner, keeping each ModelError it raised: the graph turns one into a reply, `chat` into exit 1."""

    def __init__(self, planner: Any) -> None:
        self._planner = planner
        self.name: str = planner.name
        self.failures: list[ModelError] = []

    def plan(self, state: Any) -> Any:
        try:
            return self._planner.plan(state)
        except ModelError as exc:
            self.failures.append(exc)
            raise


def _prompt() -> str | None:
    try:
        return input("you> ") if sys.stdin.isatty() else (sys.stdin.readline() or None)
    except EOFError:
        return None


def maintain(
    table: Annotated[str | None, typer.Argument(help="One table (layer.name); default every table.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Report what expiry would remove; compact nothing, delete nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Table upkeep now (what `dataops serve` runs every DATAOPS_MAINTENANCE_INTERVAL_HOURS): compact small files, expire old snapshots, delete orphan files."""
    from pipelines.lakehouse.upkeep import upkeep

    ctx = open_context()
    with usage_errors():
        if table is not None:
            ctx.inventory.table(table)
        results = upkeep(ctx, tables=[table] if table else None, dry_run=dry_run)
    if as_json:
        emit_json([r.model_dump(mode="json") for r in results])
    else:
        for r in results:
            compacted = (
                f"compacted {len(r.compaction.days_compacted)} day(s) {r.compaction.files_before}→{r.compaction.files_after} files"
                if r.compaction
                else "no compaction (dry run)"
            )
            expired = (
                f"expired {r.expiry.snapshots_expired} snapshot(s), deleted {r.expiry.files_deleted} file(s), {r.expiry.bytes_freed} bytes"
                if r.expiry
                else ""
            )
            out.print(f"{r.table}: {r.error or f'{compacted}; {expired}'}", markup=False)
    if any(r.error for r in results):
        raise typer.Exit(EXIT_FAILED)


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the tour's outcome as JSON on stdout.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the demo's state folder and print where it is.")] = False,
) -> None:
    """A bounded offline tour: real data with real defects plus injected faults, the agent fixing or escalating each incident within policy."""
    from agent.demo import run_demo
    from config.settings import load_settings

    with usage_errors():
        report = run_demo(
            load_settings(),
            echo=None if as_json else (lambda text: out.print(text, markup=False, highlight=False, soft_wrap=True)),
            keep=keep,
        )
    if as_json:
        emit_json(report)
    if report.get("policy_violations"):
        raise typer.Exit(EXIT_FAILED)
