"""Hands every new incident of `dataops serve` to the agent, on a worker thread of its own; starts Slack.

`dataops serve` runs it as a service extension (`attach`, which the assembly in evals/cli.py hands to the
pipelines layer's serve command), so the pipelines layer never imports the agent. The worker posts (or
updates) each incident's Slack thread, works new incidents, and on every monitor tick expires overdue
approvals, resumes decided ones and brings Slack's approval messages up to date with decisions taken elsewhere. At start-up it picks up incidents still
open and decisions taken while the service was down.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from agent.email_reporter import EmailReporter
from agent.report import ConsoleReporter, Reporter, Reporters
from agent.runtime import Agent
from pipelines.email_notifier import EmailNotifier
from pipelines.incidents import Incident
from pipelines.service import Service
from policies.approvals import ApprovalStore

log = logging.getLogger(__name__)
Job = tuple[str, int]
_RESUME: Job = ("resume", 0)
_STOP: Job = ("stop", 0)


class AgentExtension:
    def __init__(self, service: Service, *, reporter: Reporter | None = None, slack: bool | None = None) -> None:
        ctx = service.ctx
        # The live steps would repeat in the final report, which lists every action with its decision.
        console: Reporter = reporter or ConsoleReporter(lambda text: print(text, flush=True), verbose=False)
        self.slack_reporter: Any = None
        self.slack_app: Any = None
        use_slack = ctx.settings.slack_configured if slack is None else slack
        if use_slack:
            from agent.slack.app import check_settings, web_client
            from agent.slack.reporter import SlackReporter
            from agent.slack.store import SlackStore
            from pipelines.outbox_backoff import outbox_backoff

            check_settings(ctx.settings)
            assert ctx.settings.slack_channel is not None
            self.slack_reporter = SlackReporter(
                web_client(ctx.settings), channel=ctx.settings.slack_channel, store=SlackStore(ctx.ledger),
                approvals=ApprovalStore(ctx.ledger), incidents=ctx.incidents, backoff=outbox_backoff(ctx.settings),
            )  # fmt: skip
            console = Reporters(console, self.slack_reporter)
        email = next((e for e in service.extensions if isinstance(e, EmailNotifier)), None)
        if email is not None:  # started by the service when DATAOPS_SMTP_URL is set
            console = Reporters(console, EmailReporter(email, ApprovalStore(ctx.ledger)))
        self.agent = Agent(ctx, reporter=console, clock=lambda: service.clock.now(), real_seconds=service.clock.real_seconds)
        if self.slack_reporter is not None:
            from agent.slack.app import SlackApp

            self.slack_app = SlackApp(ctx.settings, self.agent, self.slack_reporter)
            self.slack_app.start()
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="agent", daemon=True)
        self.worker.start()
        self.jobs.put(("recover", 0))
        self.jobs.put(_RESUME)
        # Incidents the agent has not finished: new ones, and ones a crash interrupted (handle_incident continues those).
        for incident in ctx.incidents.list(status="unresolved", limit=1000)[::-1]:
            if incident.status != "escalated":
                self.jobs.put(("handle", incident.id))

    def on_incident(self, incident: Incident, opened: bool) -> None:
        if self.slack_reporter is not None:
            self.jobs.put(("announce", incident.id))
        if opened:
            self.jobs.put(("handle", incident.id))

    def tick(self) -> None:
        self.jobs.put(_RESUME)

    def stop(self) -> None:
        self.jobs.put(_STOP)
        self.worker.join(timeout=60)
        if self.slack_app is not None:
            self.slack_app.stop()
        self.agent.close()

    def idle(self) -> bool:
        return self.jobs.unfinished_tasks == 0

    def _work(self) -> None:
        while True:
            kind, incident_id = self.jobs.get()
            try:
                if kind == "stop":
                    return
                if kind == "recover":
                    self.agent.recover()
                elif kind == "resume":
                    self.agent.resume_decided()
                    if self.slack_reporter is not None:
                        self.slack_reporter.sync()
                elif kind == "announce":
                    self.slack_reporter.incident(self.agent.ctx.incidents.get(incident_id))
                else:
                    self.agent.handle_incident(incident_id)
            except Exception:  # the agent failing on one job must not stop it for the next
                log.exception("the agent failed on %s %s", kind, incident_id)
            finally:
                self.jobs.task_done()


def attach(service: Service) -> AgentExtension | None:
    if not service.ctx.settings.agent_enabled:
        return None
    return AgentExtension(service)
