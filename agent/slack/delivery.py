"""Delivering the agent's Slack messages from the outbox (pipelines/outbox.py), once each, in order.

The reporter queues `SlackPayload`s; `SlackDelivery.send` turns each into one Web API call when Slack
takes it. Addresses are resolved at send time, not at queueing time: a reply or an approval request goes
into its thread's root as Slack numbered it (`ts`), which is known only once the root was delivered, and
the outbox's order guarantees the root went first. An incident's root is an upsert: posted the first
time, updated in place after.

Every post carries its outbox key in the message metadata (`event_type` "dataops_outbox"). When an
earlier attempt may have arrived (a crash between the post and its mark, a timeout), `reconcile` looks
for that key in the channel's history or the thread's replies (the `channels:history` scope) and keeps
what it finds instead of posting again. Updates (`chat.update`) are idempotent and are simply repeated.

Slack's answers are sorted into `DeliveryError`s: rate limits, server errors, a network that is down,
and workspace-wide refusals (a revoked token, a channel the bot left) are transient, so messages wait
until someone fixes the cause; a refusal of this one message (too long, bad blocks, a message gone) is
permanent, so the queue moves on.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Literal
from urllib.error import URLError

from pydantic import BaseModel, ConfigDict
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from agent.slack.store import SlackStore, SlackThread
from pipelines.outbox import DeliveryError, OutboxMessage
from policies.approvals import ApprovalStore

log = logging.getLogger(__name__)
CHANNEL = "slack"
EVENT_TYPE = "dataops_outbox"
HISTORY_SLACK_S = 120.0  # how far before a message was queued its post is looked for (clock skew, slow claims)
UNREADABLE = frozenset({"missing_scope", "not_in_channel"})  # the history cannot be read: reconciling is impossible
# Refusals of one message that no retry changes; everything else Slack says is about the workspace or the moment.
PERMANENT = frozenset(
    {
        "msg_too_long", "no_text", "invalid_blocks", "invalid_blocks_format", "invalid_attachments", "too_many_attachments",
        "invalid_metadata_format", "invalid_metadata_schema", "metadata_too_large", "message_not_found", "cant_update_message",
        "edit_window_closed", "thread_not_found", "invalid_ts_latest", "invalid_ts_oldest", "invalid_arguments",
    }
)  # fmt: skip


class SlackPayload(BaseModel):
    """One queued Slack message: what to show, and where, in terms that are stable before Slack numbered anything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["incident", "reply", "approval", "verdict"]
    thread: str
    text: str
    blocks: list[dict[str, Any]] | None = None
    approval_id: str | None = None
    status: str | None = None


class SlackDelivery:
    """`send` and `reconcile` of the outbox's "slack" channel."""

    def __init__(self, client: WebClient, *, channel: str, store: SlackStore, approvals: ApprovalStore) -> None:
        self.client = client
        self.channel = channel
        self.store = store
        self.approvals = approvals

    # -- send --------------------------------------------------------------------------------------------
    def send(self, message: OutboxMessage) -> dict[str, Any]:
        p = SlackPayload.model_validate(message.payload)
        content: dict[str, Any] = {"text": p.text} | ({"blocks": p.blocks} if p.blocks is not None else {})
        if p.kind == "verdict":
            return self._verdict(p, content)
        thread = self.store.thread(p.thread)
        if p.kind == "incident":
            if thread is not None:
                self._call("chat_update", channel=thread.channel, ts=thread.ts, **content)
                return {"channel": thread.channel, "ts": thread.ts}
            posted = self._call("chat_postMessage", channel=self.channel, metadata=_metadata(message.key), **content)
            return self._delivered(p, posted)
        if thread is None:
            raise DeliveryError(
                f"thread {p.thread!r} has no root message in Slack (it was never delivered), so {message.key} has nowhere to go",
                transient=False,
            )
        posted = self._call("chat_postMessage", channel=thread.channel, thread_ts=thread.ts, metadata=_metadata(message.key), **content)
        return self._delivered(p, posted, thread=thread)

    def _verdict(self, p: SlackPayload, content: dict[str, Any]) -> dict[str, Any]:
        assert p.approval_id is not None and p.status is not None
        ref = self.approvals.get(p.approval_id).channels.get("slack")
        if not ref:
            raise DeliveryError(
                f"approval {p.approval_id}'s request was never shown in Slack; there is no message to update", transient=False
            )
        if ref.get("shown") != p.status:
            self._call("chat_update", channel=ref["channel"], ts=ref["ts"], **content)
            self.approvals.set_channel(p.approval_id, "slack", {**ref, "shown": p.status})
        return {"channel": ref["channel"], "ts": ref["ts"]}

    def _delivered(self, p: SlackPayload, posted: dict[str, Any], *, thread: SlackThread | None = None) -> dict[str, Any]:
        """Remember where a post landed: a thread root under its key, an approval request on its approval."""
        channel, ts = str(posted.get("channel") or (thread.channel if thread else self.channel)), str(posted["ts"])
        if p.kind == "incident":
            self.store.remember_thread(p.thread, channel, ts)
        elif p.kind == "approval":
            assert p.approval_id is not None
            self.approvals.set_channel(p.approval_id, "slack", {"channel": channel, "ts": ts, "shown": "pending"})
        return {"channel": channel, "ts": ts}

    # -- reconcile ---------------------------------------------------------------------------------------
    def reconcile(self, message: OutboxMessage) -> dict[str, Any] | None:
        """The post of `message` if an earlier attempt did arrive (found by its key in the metadata), else None."""
        p = SlackPayload.model_validate(message.payload)
        thread = self.store.thread(p.thread)
        if p.kind == "verdict" or (p.kind == "incident" and thread is not None):
            return None  # an update: repeating it changes nothing
        try:
            if p.kind == "incident":
                oldest = f"{message.created_at.timestamp() - HISTORY_SLACK_S:.6f}"
                found = self._find(message.key, "conversations_history", channel=self.channel, oldest=oldest)
            elif thread is None:
                return None  # send() says why it has nowhere to go
            else:
                found = self._find(message.key, "conversations_replies", channel=thread.channel, ts=thread.ts)
        except DeliveryError as exc:
            cause = exc.__cause__
            unreadable = isinstance(cause, SlackApiError) and cause.response.get("error") in UNREADABLE
            if exc.transient and not unreadable:
                raise
            log.warning(
                "cannot check whether %s reached Slack (%s); posting it again, which may show it twice. "
                "Grant the bot channels:history (groups:history for a private channel) to rule that out",
                message.key, exc,
            )  # fmt: skip
            return None
        return None if found is None else self._delivered(p, found, thread=thread)

    def _find(self, key: str, method: str, **kwargs: Any) -> dict[str, Any] | None:
        cursor: str | None = None
        for _page in range(20):
            page = self._call(method, include_all_metadata=True, limit=200, **kwargs, **({"cursor": cursor} if cursor else {}))
            for m in page.get("messages") or []:
                meta = m.get("metadata") or {}
                if meta.get("event_type") == EVENT_TYPE and (meta.get("event_payload") or {}).get("key") == key:
                    return {"channel": kwargs["channel"], "ts": m["ts"]}
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return None

    # -- the Web API -------------------------------------------------------------------------------------
    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = getattr(self.client, method)(**kwargs)
        except SlackApiError as exc:
            raise _refusal(method, exc) from exc
        except (URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, URLError) else exc
            refused = isinstance(reason, ConnectionRefusedError | socket.gaierror)  # nothing left this host
            raise DeliveryError(f"Slack {method} failed: {reason}", maybe_delivered=not refused) from exc
        return dict(response.data) if isinstance(response.data, dict) else {}


def _metadata(key: str) -> dict[str, Any]:
    return {"event_type": EVENT_TYPE, "event_payload": {"key": key}}


def _refusal(method: str, exc: SlackApiError) -> DeliveryError:
    response = exc.response
    status = getattr(response, "status_code", 200)
    error = str(response.get("error") if response is not None else exc)
    if status == 429:
        after = (getattr(response, "headers", None) or {}).get("Retry-After") or (getattr(response, "headers", None) or {}).get(
            "retry-after"
        )
        return DeliveryError(f"Slack {method}: rate limited", retry_after_s=float(after) if after else None)
    if status >= 500:
        return DeliveryError(f"Slack {method}: HTTP {status} {error}", maybe_delivered=True)
    if error in PERMANENT:
        return DeliveryError(f"Slack {method} refused this message: {error}", transient=False)
    hint = " (check DATAOPS_SLACK_BOT_TOKEN)" if error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive") else ""
    return DeliveryError(f"Slack {method} refused: {error}{hint}; messages wait until it is fixed")
