"""The agent's Slack voice: one thread per incident (root updated in place), steps and outcome in the thread,
approval requests with buttons that turn into the verdict.

Posting never raises into the agent: Slack being down must not stop remediation (the console and the
audit log still have everything); failures are logged with the Slack error code.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from agent.slack.blocks import approval_blocks, approval_text, escape, incident_blocks, incident_text
from agent.slack.store import SlackStore, SlackThread
from pipelines.incidents import Incident, IncidentStore
from policies.approvals import Approval, ApprovalStore

log = logging.getLogger(__name__)


class SlackReporter:
    def __init__(self, client: WebClient, *, channel: str, store: SlackStore, approvals: ApprovalStore, incidents: IncidentStore) -> None:
        self.client = client
        self.channel = channel
        self.store = store
        self.approvals = approvals
        self.incidents = incidents

    # -- posting ---------------------------------------------------------------------------------------
    def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        try:
            response = getattr(self.client, method)(**kwargs)
            return dict(response.data) if isinstance(response.data, dict) else None
        except SlackApiError as exc:
            log.warning("Slack %s failed: %s", method, exc.response.get("error") if exc.response else exc)
        except OSError as exc:
            log.warning("Slack %s failed: %s", method, exc)
        return None

    def incident(self, incident: Incident) -> SlackThread | None:
        """Post the incident's thread root, or update it in place (status, occurrences, evidence)."""
        key = f"incident-{incident.id}"
        thread = self.store.thread(key)
        if thread is not None:
            self._call("chat_update", channel=thread.channel, ts=thread.ts, text=incident_text(incident), blocks=incident_blocks(incident))
            return thread
        posted = self._call("chat_postMessage", channel=self.channel, text=incident_text(incident), blocks=incident_blocks(incident))
        if posted is None:
            return None
        return self.store.remember_thread(key, str(posted.get("channel") or self.channel), str(posted["ts"]))

    def _thread(self, thread_id: str) -> SlackThread | None:
        thread = self.store.thread(thread_id)
        if thread is None and thread_id.startswith("incident-") and thread_id.removeprefix("incident-").isdigit():
            thread = self.incident(self.incidents.get(int(thread_id.removeprefix("incident-"))))
        return thread

    def say(self, thread_id: str, text: str) -> None:
        thread = self._thread(thread_id)
        if thread is not None:
            self._call("chat_postMessage", channel=thread.channel, thread_ts=thread.ts, text=_cut(escape(text)))

    # -- Reporter protocol --------------------------------------------------------------------------------
    def step(self, thread_id: str, text: str) -> None:
        if thread_id.startswith("incident-"):  # a chat thread gets the answer, not the agent's working notes
            self.say(thread_id, text)

    def approval_requested(self, approval: Approval) -> None:
        thread = self._thread(approval.thread_id)
        if thread is None:
            return
        posted = self._call(
            "chat_postMessage", channel=thread.channel, thread_ts=thread.ts, text=approval_text(approval), blocks=approval_blocks(approval)
        )
        if posted is not None:
            self.approvals.set_channel(approval.id, "slack", {"channel": thread.channel, "ts": str(posted["ts"]), "shown": "pending"})

    def approval_decided(self, approval: Approval) -> None:
        """Replace the buttons with the verdict (also for decisions taken in the CLI, and for expiry)."""
        ref = approval.channels.get("slack")
        if not ref or ref.get("shown") == approval.status:
            return
        if self._call("chat_update", channel=ref["channel"], ts=ref["ts"], text=approval_text(approval), blocks=approval_blocks(approval)):
            self.approvals.set_channel(approval.id, "slack", {**ref, "shown": approval.status})

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
