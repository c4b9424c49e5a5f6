"""`dataops demo`: a bounded, offline tour of the agent on real data with real and injected faults.

In a fresh state folder it replays ten days of real GB carbon intensity and ERA5 weather (2023-01-22 to
2023-02-01: the real defects of 24, 26 and 31 January are in it), then injects three faults: a transient
source outage, a bad publish to gold found later by the published-data audit, and a schema drift. The
agent works every incident through the policy engine; the one action that needs approval (the rollback)
is approved through the same API the CLI and Slack use, after a non-approver's click was refused. Each
incident is printed with its actions, their policy decisions and the outcome; the audit log proves that
nothing ran outside policy.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from agent.report import ConsoleReporter
from agent.runtime import Agent
from config.errors import ApprovalError
from config.settings import DataopsSettings
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.incidents import Incident
from pipelines.monitors.findings import findings_from_run
from pipelines.monitors.publish_audit import audit_published
from pipelines.promotion import run_pipeline
from pipelines.sources.base import Window
from policies.audit import AuditEntry

Echo = Callable[[str], None]
START = datetime(2023, 1, 22, tzinfo=UTC)
END = datetime(2023, 2, 1, tzinfo=UTC)


def _day(d: datetime) -> Window:
    return Window(start=d, end=d + timedelta(days=1))


class _Tour:
    def __init__(self, ctx: PlatformContext, echo: Echo | None) -> None:
        self.ctx = ctx
        self.echo = echo or (lambda _text: None)
        self.now = END + timedelta(hours=1)
        self.agent = Agent(ctx, reporter=ConsoleReporter(self.echo, verbose=False), clock=lambda: self.now)
        self.handled: list[dict[str, Any]] = []
        self.approvals: list[dict[str, Any]] = []

    def say(self, text: str) -> None:
        self.echo(text)

    def run(self, pipeline: str, window: Window) -> list[Incident]:
        result = run_pipeline(self.ctx, pipeline, window, as_of=self.now)
        self.say(
            f"  run {pipeline} {window.start.date()}..{window.end.date()}: {result.status}, {result.rows_out} rows published, {result.rows_quarantined} quarantined"
        )
        silver = self.ctx.inventory.pipeline(pipeline).silver
        return self.report(findings_from_run(result, silver=silver))

    def report(self, findings: list[Any]) -> list[Incident]:
        opened = []
        for finding in findings:
            incident, new = self.ctx.incidents.report(finding, now=self.now)
            if new:
                opened.append(incident)
                self.say(f"  incident {incident.id} [{incident.severity}] {incident.kind}: {incident.title}")
        return opened

    def work(self, incidents: list[Incident]) -> None:
        for incident in incidents:
            started = time.perf_counter()
            outcome = self.agent.handle_incident(incident.id)
            if outcome.status == "waiting" and outcome.approval_id:
                self.decide(outcome.approval_id)
            self.settled(incident.id, time.perf_counter() - started)

    def decide(self, approval_id: str) -> None:
        approval = self.agent.approvals.get(approval_id)
        try:
            self.agent.decide(approval_id, approve=True, user="mallory", reason="looks fine to me")
        except ApprovalError as exc:
            self.say(f"  mallory clicks Approve: refused ({exc})")
        approver = approval.approvers[0]
        self.say(f"  {approver} approves {approval_id}; the agent resumes")
        decided = self.agent.decide(approval_id, approve=True, user=approver, reason="rollback to the last audited snapshot")
        self.approvals.append(
            {"id": decided.id, "tool": decided.tool, "rule": decided.rule, "status": decided.status, "decided_by": decided.decided_by}
        )

    def settled(self, incident_id: int, seconds: float) -> None:
        incident = self.ctx.incidents.get(incident_id)
        entries = self.agent.audit.entries(incident_id=incident_id)
        values = self.agent.graph.get_state({"configurable": {"thread_id": f"incident-{incident_id}"}}).values
        self.say(
            f"  → incident {incident.id} ({incident.kind}) {incident.status} after {len(list(values.get('turns') or []))} tool calls\n"
        )
        self.handled.append(
            {
                "id": incident.id, "kind": incident.kind, "table": incident.table, "status": incident.status,
                "steps": int(values.get("step") or 0), "tokens": int(values.get("tokens") or 0), "time_to_remediate_s": round(seconds, 2),
                "actions": [_action(e) for e in entries], "message": values.get("message", ""),
            }
        )  # fmt: skip


def _action(entry: AuditEntry) -> dict[str, Any]:
    return {"tool": entry.tool, "decision": entry.decision, "rule": entry.rule, "status": entry.status, "approver": entry.approver}


def violations(entries: list[AuditEntry]) -> list[dict[str, Any]]:
    """Executed calls the policy did not allow: must always be empty."""
    executed = [e for e in entries if e.status in ("ok", "error", "running")]
    return [
        _action(e)
        for e in executed
        if e.decision == "deny" or (e.decision == "needs_approval" and not e.approver) or e.decision == "invalid"
    ]


def _negate_actual(rows: pa.Table) -> pa.Table:
    index = rows.schema.get_field_index("actual")
    return rows.set_column(index, "actual", pc.negate(rows.column("actual")))


def run_demo(settings: DataopsSettings, *, echo: Echo | None = None, keep: bool = False) -> dict[str, Any]:
    """Run the tour in a fresh state folder; returns incidents, actions, approvals and policy violations."""
    home = Path(tempfile.mkdtemp(prefix="dataops-demo-"))
    ctx = PlatformContext.open(settings.model_copy(update={"home": home, "source_mode": "replay"}))
    tour = _Tour(ctx, echo)
    try:
        tour.say(f"demo state in {home} (planner: {tour.agent.planner_name})")
        tour.say(f"1. replaying {START.date()}..{END.date()} of real carbon intensity and weather (real defects on 24, 26, 31 January)")
        opened = tour.run("weather", Window(start=START, end=END)) + tour.run("carbon_intensity", Window(start=START, end=END))
        tour.work(opened)

        tour.say("\n2. injected: the carbon-intensity API answers 503 for 2023-02-01 (once)")
        ctx.faults.inject(
            faults.SourceFault(kind="transient_error", source="carbon_intensity", start=END, end=END + timedelta(days=1), times=1)
        )
        tour.now = END + timedelta(days=1, hours=1)
        tour.work(tour.run("carbon_intensity", _day(END)))

        tour.say("\n3. injected: a manual job publishes negative intensities to gold.carbon_intensity_hourly for 2023-01-28")
        faults.bad_publish(
            ctx, "gold.carbon_intensity_hourly", datetime(2023, 1, 28, tzinfo=UTC), _negate_actual, run_id="manual-fix-20230202"
        )
        tour.work(tour.report(audit_published(ctx, "gold.carbon_intensity_hourly", tour.now)))

        tour.say("\n4. injected: the API renames intensity.actual to intensity.measured from 2023-02-02")
        second = END + timedelta(days=1)
        ctx.faults.inject(
            faults.SourceFault(kind="rename_field", source="carbon_intensity", start=second, field="intensity.actual", new_name="measured")
        )
        tour.now = second + timedelta(days=1, hours=1)
        tour.work(tour.run("carbon_intensity", _day(second)))

        entries = tour.agent.audit.entries(limit=10_000)
        found_violations = violations(entries)
        report: dict[str, Any] = {
            "home": str(home) if keep else None,
            "planner": tour.agent.planner_name,
            "incidents": [{"id": h["id"], "kind": h["kind"], "status": h["status"]} for h in tour.handled],
            "actions": [_action(e) for e in entries],
            "approvals": tour.approvals,
            "policy_violations": found_violations,
            "per_incident": tour.handled,
        }
        tour.say(f"\n{len(tour.handled)} incidents: " + ", ".join(f"#{h['id']} {h['kind']} {h['status']}" for h in tour.handled))
        trail = (
            f"DATAOPS_HOME={home} dataops audit shows the trail" if keep else "run with --keep to inspect the trail with `dataops audit`"
        )
        tour.say(f"{len(entries)} tool calls audited; policy violations: {len(found_violations)}; {trail}")
        return report
    finally:
        tour.agent.close()
        ctx.ledger.engine.dispose()
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
