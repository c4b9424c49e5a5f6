"""The agent's Slack voice: one thread per incident (root updated in place), steps and outcome in the thread,
approval requests with buttons that turn into the verdict.

Nothing is posted directly: every post and update is queued in the outbox (pipelines/outbox.py) and then
delivered, at once when Slack answers, later when it does not (agent/slack/delivery.py says how). So
Slack being down never stops remediation or the service, and never loses or repeats a message; the
console and the audit log have everything meanwhile. Delivery is attempted in the caller's thread right
after queueing (skipped while a retry is not yet due, or while the worker is delivering) and by the
worker thread `start()` runs, which retries with backoff.

Idempotency keys: `incident-12:<digest>:<previous>` for a root's content (the same content twice in a row is
queued once), `approval-<id>:request` and `approval-<id>:<status>` for approval messages, and a fresh key
for each reply (two equal answers to two equal questions are two messages).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

from slack_sdk import WebClient

from agent.slack.blocks import approval_blocks, approval_text, escape, incident_blocks, incident_text
from agent.slack.delivery import CHANNEL, SlackDelivery, SlackPayload
from agent.slack.store import SlackStore, SlackThread
from pipelines.incidents import Incident, IncidentStore
from pipelines.outbox import DrainResult, Outbox
from pipelines.outbox_worker import OutboxWorker
from pipelines.retry import Backoff
from policies.approvals import Approval, ApprovalStore

log = logging.getLogger(__name__)


class SlackReporter:
    def __init__(
        self, client: WebClient, *, channel: str, store: SlackStore, approvals: ApprovalStore, incidents: IncidentStore,
        outbox: Outbox | None = None, backoff: Backoff | None = None,
    ) -> None:  # fmt: skip
        self.client = client
        self.channel = channel
        self.store = store
        self.approvals = approvals
        self.incidents = incidents
        self.outbox = outbox or Outbox(store.ledger)
        self.backoff = backoff
        self.delivery = SlackDelivery(client, channel=channel, store=store, approvals=approvals)
        self.worker: OutboxWorker | None = None

    # -- delivery ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Deliver in the background too: retries while Slack is down, and what a previous process left queued."""
        if self.worker is None:
            self.worker = OutboxWorker(
                self.outbox, CHANNEL, self.delivery.send, reconcile=self.delivery.reconcile, backoff=self.backoff
            ).start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def flush(self) -> DrainResult | None:
        """Deliver what is due now, unless another thread is already at it; never raises into the agent."""
        try:
            result = self.outbox.drain(CHANNEL, self.delivery.send, reconcile=self.delivery.reconcile, backoff=self.backoff, block=False)
        except Exception:
            log.exception("delivering Slack messages failed; they stay queued in the outbox")
            result = None
        if self.worker is not None:
            self.worker.kick()
        return result

    def _queue(self, key: str, payload: SlackPayload, *, group: str | None = None) -> None:
        try:
            self.outbox.enqueue(CHANNEL, key, payload.model_dump(mode="json"), group=group)
        except Exception:
            log.exception("cannot queue Slack message %s; it is not sent", key)
            return
        self.flush()

    # -- threads -----------------------------------------------------------------------------------------
    def incident(self, incident: Incident) -> SlackThread | None:
        """Post the incident's thread root, or update it in place (status, occurrences, evidence).

        Returns the thread once its root is in Slack; None while the root waits in the outbox.
        """
        key = f"incident-{incident.id}"
        payload = SlackPayload(kind="incident", thread=key, text=incident_text(incident), blocks=incident_blocks(incident))
        dumped = payload.model_dump(mode="json")
        latest = self.outbox.latest(CHANNEL, key)
        if latest is not None and latest.payload == dumped:
            self.flush()  # the same content is queued or shown already
        else:
            digest = hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()[:16]
            self._queue(f"{key}:{digest}:{latest.id if latest else 0}", payload, group=key)
        return self.store.thread(key)

    def _has_thread(self, thread_id: str) -> bool:
        """Whether `thread_id` has a root in Slack or queued; an incident's root is queued on demand."""
        if self.store.thread(thread_id) is not None or self.outbox.latest(CHANNEL, thread_id) is not None:
            return True
        if thread_id.startswith("incident-") and thread_id.removeprefix("incident-").isdigit():
            self.incident(self.incidents.get(int(thread_id.removeprefix("incident-"))))
            return True
        return False

    def say(self, thread_id: str, text: str) -> None:
        if self._has_thread(thread_id):
            payload = SlackPayload(kind="reply", thread=thread_id, text=_cut(escape(text)))
            self._queue(f"{thread_id}:reply:{uuid.uuid4().hex}", payload)

    # -- Reporter protocol --------------------------------------------------------------------------------
    def step(self, thread_id: str, text: str) -> None:
        if thread_id.startswith("incident-"):  # a chat thread gets the answer, not the agent's working notes
            self.say(thread_id, text)

    def approval_requested(self, approval: Approval) -> None:
        if self._has_thread(approval.thread_id):
            payload = SlackPayload(
                kind="approval", thread=approval.thread_id, text=approval_text(approval), blocks=approval_blocks(approval),
                approval_id=approval.id,
            )  # fmt: skip
            self._queue(f"approval-{approval.id}:request", payload)

    def approval_decided(self, approval: Approval) -> None:
        """Replace the buttons with the verdict (also for decisions taken in the CLI, and for expiry)."""
        ref = approval.channels.get("slack")
        if ref and ref.get("shown") == approval.status:
            return
        if not ref and self.outbox.get(f"approval-{approval.id}:request") is None:
            return  # never asked in Slack
        payload = SlackPayload(
            kind="verdict", thread=approval.thread_id, text=approval_text(approval), blocks=approval_blocks(approval),
            approval_id=approval.id, status=approval.status,
        )  # fmt: skip
        self._queue(f"approval-{approval.id}:{approval.status}", payload)

    def final(self, thread_id: str, text: str, *, outcome: str, incident_id: int | None) -> None:
        self.say(thread_id, f"{outcome}\n{text}" if incident_id is not None else text)
        if incident_id is not None:
            self.incident(self.incidents.get(incident_id))

    def sync(self) -> None:
        """Bring approval messages up to date with decisions taken elsewhere (the CLI, another process, expiry)."""
        for approval in self.approvals.list(limit=200):
            if approval.status != "pending":
                self.approval_decided(approval)


def _cut(text: str, limit: int = 3500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
