"""The Slack Bolt app: approval buttons, incident buttons (acknowledge, resolve, expected), chat (mentions and
direct messages) and the `/dataops` command.

HTTP mode serves `/slack/events` (events, interactions and commands on one URL) with Bolt's
request-signature verification: a forged or stale request gets 401 and reaches no handler. Socket Mode
(`DATAOPS_SLACK_APP_TOKEN`) needs no public URL. Handlers acknowledge at once; the work (a decision
and the resumed agent, a chat turn) runs after the acknowledgement in Bolt's listener threads.
"""

from __future__ import annotations

import logging
import re
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import Ack, App, Respond
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from agent.judgement import act_on_incident
from agent.slack.blocks import APPROVE, DENY, INCIDENT_ACTIONS
from agent.slack.reporter import SlackReporter
from agent.slack.store import SlackStore
from config.errors import DataOpsError, SettingsError
from config.settings import DataopsSettings
from pipelines.outbox_backoff import outbox_backoff
from policies.people import Actor

if TYPE_CHECKING:
    from agent.runtime import Agent

log = logging.getLogger(__name__)
PATH = "/slack/events"
_MENTION = re.compile(r"<@[A-Z0-9]+>")
GROUP_CACHE_S = 300.0


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("slack http: " + format, *args)


def web_client(settings: DataopsSettings) -> WebClient:
    base = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    return WebClient(token=settings.slack_bot_token, base_url=base)


def check_settings(settings: DataopsSettings) -> None:
    if not settings.slack_bot_token:
        raise SettingsError("DATAOPS_SLACK_BOT_TOKEN is not set; the Slack app needs the bot token (xoxb-...)")
    if not settings.slack_channel:
        raise SettingsError("DATAOPS_SLACK_CHANNEL is not set; give the id (C...) of the channel for incident threads")
    if not settings.slack_app_token and not settings.slack_signing_secret:
        raise SettingsError(
            "set DATAOPS_SLACK_SIGNING_SECRET (HTTP mode, requests are verified with it) or DATAOPS_SLACK_APP_TOKEN (Socket Mode)"
        )


def verify_token(settings: DataopsSettings, client: WebClient) -> None:
    """Refuse a bot token Slack rejects (a settings error, exit 2); an unreachable Slack is only logged.

    The service starts either way when Slack cannot be reached: messages wait in the outbox until it can.
    """
    try:
        client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else str(exc)
        if error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive", "token_expired"):
            raise SettingsError(f"Slack refused DATAOPS_SLACK_BOT_TOKEN ({error}); copy the Bot User OAuth Token (xoxb-...) again") from exc
        log.warning("Slack auth.test failed (%s); starting anyway, Slack messages wait in the outbox", error)
    except OSError as exc:
        log.warning(
            "Slack is unreachable at %s (%s); starting anyway, Slack messages wait in the outbox until it answers",
            settings.slack_api_url, getattr(exc, "reason", exc),
        )  # fmt: skip


class SlackApp:
    """The Bolt app bound to one agent; `start()` serves it, `stop()` ends it."""

    def __init__(self, settings: DataopsSettings, agent: Agent, reporter: SlackReporter, *, store: SlackStore | None = None) -> None:
        check_settings(settings)
        self.settings = settings
        self.agent = agent
        self.reporter = reporter
        self.store = store or SlackStore(agent.ctx.ledger)
        verify_token(settings, reporter.client)
        # Bolt would call auth.test here and fail the whole service when Slack is unreachable; it checks on the
        # first request instead (which only arrives when Slack is up).
        self.app = App(signing_secret=settings.slack_signing_secret or "", client=reporter.client, token_verification_enabled=False)
        self._groups: dict[str, tuple[float, set[str]]] = {}
        self._server: WSGIServer | None = None
        self._socket: Any = None
        self._stopping = threading.Event()
        self.app.action(APPROVE)(self._on_decision)
        self.app.action(DENY)(self._on_decision)
        for action_id in INCIDENT_ACTIONS:
            self.app.action(action_id)(self._on_incident_action)
        self.app.event("app_mention")(self._on_message)
        self.app.event("message")(self._on_message)
        self.app.command("/dataops")(self._on_command)

    # -- serving -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Serve Slack's requests and start delivering queued messages; Slack being down delays both, never fails here."""
        self.reporter.start()
        if self.settings.slack_app_token:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            self._socket = SocketModeHandler(self.app, self.settings.slack_app_token)
            self._stopping.clear()
            threading.Thread(target=self._connect_socket, name="slack-socket", daemon=True).start()
            return
        try:
            self._server = make_server(
                self.settings.slack_addr, self.settings.slack_port, SlackRequestHandler(self.app, PATH),
                server_class=_ThreadingWSGIServer, handler_class=_QuietHandler,
            )  # fmt: skip
        except OSError as exc:
            self.reporter.stop()
            raise SettingsError(
                f"the Slack endpoint cannot listen on {self.settings.slack_addr}:{self.settings.slack_port} ({exc.strerror or exc}); "
                "set DATAOPS_SLACK_PORT (or DATAOPS_SLACK_ADDR) to a free one"
            ) from exc
        threading.Thread(target=self._server.serve_forever, name="slack-http", daemon=True).start()
        log.info("Slack app listening on http://%s:%d%s", self.settings.slack_addr, self.port, PATH)

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.settings.slack_port

    def _connect_socket(self) -> None:
        """Open the Socket Mode connection, retrying with backoff while Slack cannot be reached."""
        backoff = outbox_backoff(self.settings)
        attempt = 0
        while not self._stopping.is_set():
            attempt += 1
            try:
                self._socket.connect()
                log.info("Slack app connected in Socket Mode")
                return
            except Exception as exc:  # unreachable, or refused: either way the service runs on
                wait = backoff.wait(attempt, seed="slack-socket")
                log.warning("Slack Socket Mode cannot connect (%s); trying again in %.0f s", exc, wait)
                self._stopping.wait(wait)

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._socket is not None:
            self._socket.close()
        self.reporter.stop()

    # -- approvals ---------------------------------------------------------------------------------------------
    def _groups_of(self, user: str, candidates: list[str]) -> tuple[str, ...]:
        """The user groups among `candidates` (S... ids) that `user` belongs to; cached, since a click needs an answer now."""
        found = []
        now = time.monotonic()
        for group in (c for c in candidates if c.startswith("S")):
            cached = self._groups.get(group)
            if cached is None or now - cached[0] > GROUP_CACHE_S:
                try:
                    members = set(self.reporter.client.usergroups_users_list(usergroup=group).get("users") or [])
                except SlackApiError as exc:
                    log.warning("cannot read user group %s: %s", group, exc.response.get("error") if exc.response else exc)
                    members = set()
                cached = (now, members)
                self._groups[group] = cached
            if user in cached[1]:
                found.append(group)
        return tuple(found)

    def _on_decision(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        approval_id = str(action.get("value") or "")
        user = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        approve = action.get("action_id") == APPROVE
        try:
            current = self.agent.approvals.get(approval_id)
            actor = self._actor(user, current.approvers)
            if actor is None:
                self._ephemeral(channel, user, _unknown(user, "approver"))
                return
            verb = "approved" if approve else "denied"
            self.agent.decide(approval_id, approve=approve, user=actor, reason=f"{verb} in Slack")
        except DataOpsError as exc:  # not an approver, self-approval, already decided, unreadable people file
            self._ephemeral(channel, user, str(exc))

    def _actor(self, user: str, candidates: list[str], *, strict: bool = True) -> Actor | None:
        """The signed Slack user id as a person of the registry (read now), or a member of a role-holding group. Not
        strict (chat): a people file broken since start-up keeps the registry read before, so questions are answered."""
        people = self.agent.refresh_people(strict=strict)
        return people.slack_actor(user, self._groups_of(user, list(dict.fromkeys([*candidates, *people.slack_groups]))))

    # -- incident buttons --------------------------------------------------------------------------------------
    def _on_incident_action(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Acknowledge / Resolve / Expected on an incident's root: approvers and operators of the policy only.

        "Expected" takes the reason "marked expected in Slack by <user>" and the default 30 days: no modal, since
        the fake Slack Web API the tests speak to has no views.open. Another reason or duration: `dataops monitors
        unsuppress N`, then `dataops incident expected ID --reason ... --for DAYS`.
        """
        ack()
        user = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        verb = INCIDENT_ACTIONS[str(action.get("action_id"))]
        value = str(action.get("value") or "")
        if not value.isdigit():
            self._ephemeral(channel, user, f"{value!r} is not an incident id")
            return
        try:
            actor = self._actor(user, [])
            if actor is None:
                self._ephemeral(channel, user, _unknown(user, "operator"))
                return
            outcome = act_on_incident(
                self.agent.ctx,
                int(value),
                verb,
                actor=actor,
                reason=f"marked expected in Slack by {actor.id}" if verb == "expected" else "",
                now=self.agent.runtime.clock(),
                memory=self.agent.memory,
            )
        except DataOpsError as exc:  # not an approver or operator, unknown incident, impossible move
            self._ephemeral(channel, user, str(exc))
            return
        self.reporter.incident(outcome.judgement.incident)

    def _ephemeral(self, channel: str, user: str, text: str) -> None:
        try:
            self.reporter.client.chat_postEphemeral(channel=channel, user=user, text=text)
        except SlackApiError as exc:
            log.warning("ephemeral to %s failed: %s", user, exc.response.get("error") if exc.response else exc)

    # -- chat ------------------------------------------------------------------------------------------------------
    def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("bot_id") or event.get("subtype"):
            return  # our own posts, edits, joins: not questions
        if event.get("type") == "message" and event.get("channel_type") != "im":
            return  # in channels the agent answers mentions only
        event_id = str(body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")
        if not self.store.first_sight(event_id):
            return  # Slack retried an event we already took
        channel, root = str(event["channel"]), str(event.get("thread_ts") or event["ts"])
        key = f"slack-{channel}-{root}"
        self.store.remember_thread(key, channel, root)
        text = _MENTION.sub("", str(event.get("text") or "")).strip()
        user = str(event.get("user") or "")
        # The signed user id as a person (or a member of a role-holding group): their role decides whether the agent
        # may act on a write they ask for; anyone else is answered, and asked-for writes are refused.
        asker = self._actor(user, [], strict=False) if user else None
        outcome = self.agent.chat(key, text or "help", user=asker or f"slack:{user or 'unknown'}")
        if outcome.status == "busy":
            self.reporter.say(key, outcome.message)

    # -- /dataops ----------------------------------------------------------------------------------------------------
    def _on_command(self, ack: Ack, respond: Respond, command: dict[str, Any]) -> None:
        ack()
        respond(text=command_answer(self.agent, str(command.get("text") or "").strip().lower()), response_type="ephemeral")


def _unknown(user: str, role: str) -> str:
    return (
        f"Your Slack account ({user}) is not linked to a person of the platform, so the click did not count. Ask the "
        f"service owner to add you: `dataops users add NAME --role {role} --slack {user}` (or `slack: {user}` in config/people.yaml)."
    )


def command_answer(agent: Agent, sub: str) -> str:
    """`/dataops status`, `/dataops incidents` or help."""
    ctx = agent.ctx
    if sub in ("", "status"):
        lines = []
        for name in ctx.inventory.pipelines:
            runs = ctx.ledger.runs(pipeline=name, limit=1)
            paused = " (paused)" if ctx.control.is_paused(name) else ""
            last = f"{runs[0].status} {runs[0].window_start:%Y-%m-%d}..{runs[0].window_end:%Y-%m-%d}" if runs else "no run yet"
            lines.append(f"• {name}{paused}: {last}")
        counts = ctx.incidents.open_counts()
        pending = len(agent.approvals.list(status="pending"))
        lines.append(
            f"open incidents: {counts['critical']} critical, {counts['warning']} warning, {counts['info']} info; {pending} approval(s) pending"
        )
        return "\n".join(lines)
    if sub == "incidents":
        found = ctx.incidents.list(status="unresolved", limit=20)
        if not found:
            return "Nothing is open."
        return "\n".join(f"• #{i.id} [{i.severity}] {i.status}: {i.title}" for i in found)
    return "Usage: /dataops status | incidents | help. Mention me in a channel or DM me to ask questions."
