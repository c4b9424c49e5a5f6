"""Hands every new incident of `dataops serve` to the agent, on a worker thread of its own.

Registered as a service extension when the `dataops` command starts (agent/cli.py), so the pipelines
layer never imports the agent. The worker also resumes decided approvals and expires overdue ones on
every monitor tick, and at start-up picks up incidents that are still open and decisions taken while
the service was down.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from agent.report import ConsoleReporter, Reporter
from agent.runtime import Agent
from pipelines.incidents import Incident
from pipelines.service import EXTENSIONS, Service

log = logging.getLogger(__name__)
_RESUME = -1
_STOP = -2


class AgentExtension:
    def __init__(self, service: Service, *, reporter: Reporter | None = None) -> None:
        self.agent = Agent(
            service.ctx, reporter=reporter or ConsoleReporter(lambda text: print(text, flush=True)), clock=lambda: service.clock.now()
        )
        self.jobs: queue.Queue[int] = queue.Queue()
        self.worker = threading.Thread(target=self._work, name="agent", daemon=True)
        self.worker.start()
        self.jobs.put(_RESUME)
        for incident in service.ctx.incidents.list(status="open", limit=1000)[::-1]:
            self.jobs.put(incident.id)

    def on_incident(self, incident: Incident, opened: bool) -> None:
        if opened:
            self.jobs.put(incident.id)

    def tick(self) -> None:
        self.jobs.put(_RESUME)

    def stop(self) -> None:
        self.jobs.put(_STOP)
        self.worker.join(timeout=60)
        self.agent.close()

    def idle(self) -> bool:
        return self.jobs.unfinished_tasks == 0

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                if job == _STOP:
                    return
                if job == _RESUME:
                    self.agent.resume_decided()
                else:
                    self.agent.handle_incident(job)
            except Exception:  # the agent failing on one incident must not stop it for the next
                log.exception("the agent failed on job %s", job)
            finally:
                self.jobs.task_done()


def attach(service: Service) -> Any:
    if not service.ctx.settings.agent_enabled:
        return None
    return AgentExtension(service)


def register() -> None:
    if attach not in EXTENSIONS:
        EXTENSIONS.append(attach)
