"""A fake Slack Web API: a real HTTP/1.1 server on 127.0.0.1, stdlib only, plus what Slack sends to the app.

Nothing in our code is replaced: `slack_sdk.WebClient(base_url=fake.api_url)` and a `slack_bolt.App` built on
it open sockets and speak the Web API protocol to this server as they would to https://slack.com/api/. Tests
read back every call and the current state of every message::

    with FakeSlack(usergroups={"S_ONCALL": ["U_ALICE"]}) as slack:
        client = WebClient(token=slack.bot_token, base_url=slack.api_url)
        app = App(client=client, signing_secret="s3cret")   # calls auth.test here
        ...
        [post] = slack.wait_for("chat.postMessage")
        assert slack.message(post.params["channel"], post.response["ts"])["blocks"][0]["type"] == "section"

The protocol, as Slack speaks it:

- `POST /api/<method>` with a form-encoded or JSON body (query-string parameters are merged in). Every call
  is recorded in `calls`; JSON-encoded form fields (`blocks`, `attachments`, `metadata`, `view`) are decoded.
- Errors are HTTP 200 with `{"ok": false, "error": ...}`: `not_authed` without a token, `invalid_auth` with
  a token other than `bot_token` (from `Authorization: Bearer ...` or, as Slack allows, a `token` field).
- `auth.test`, `chat.postMessage`, `chat.update`, `chat.postEphemeral`, `conversations.info`,
  `conversations.history`, `conversations.replies`, `users.info`, `usergroups.users.list` are served from an
  in-memory workspace; any other method answers `unknown_method`. As in Slack, messages read back carry
  their `metadata` only when the call asks for `include_all_metadata`.
- `fail_next(method, ...)` makes the next call of `method` fail (429 `ratelimited` with `Retry-After` by
  default) before any other check, so rate-limit and error paths can be tested.
- `down()` closes the listening socket (connections are refused, as with Slack unreachable) and `up()`
  listens again on the same port with the workspace as it was: an outage and its end.
- `POST /response/<name>` is a response_url (hand them out with `response_url(name)`): JSON bodies are
  recorded in `responses` and answered 200 "ok"; one bound to a message applies `replace_original` and
  `delete_original` to it, as Slack does.

The module functions build what Slack sends to the app: `signed_headers` (v0 request signing) and the
bodies `events_api_body`, `block_actions_body` and `slash_command_body`.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

__all__ = [
    "FakeSlack",
    "ResponsePost",
    "SlackCall",
    "block_actions_body",
    "events_api_body",
    "fake_slack_fixture",
    "signed_headers",
    "slash_command_body",
]

BOT_ID = "BBOT"
_JSON_FIELDS = ("blocks", "attachments", "metadata", "view")
_sequence = itertools.count(1)  # event ids and trigger ids unique across the test session


@dataclass(frozen=True, kw_only=True)
class SlackCall:
    """One Web API call as the server received it; header names are lower-cased."""

    method: str  # "chat.postMessage"
    params: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival
    response: dict[str, Any] = field(default_factory=dict)  # the JSON answered, e.g. response["ts"]


@dataclass(frozen=True, kw_only=True)
class ResponsePost:
    """One POST to a response_url handed out by `FakeSlack.response_url(name)`."""

    name: str
    body: Any  # the parsed JSON body ({"text", "blocks", "replace_original", "response_type", ...})
    headers: dict[str, str]
    at: float


@dataclass(frozen=True, kw_only=True)
class _Failure:
    error: str
    status: int
    retry_after: int | None


class FakeSlack:
    """The fake workspace and its Web API: started on construction, `close()` (or `with`) stops it.

    `channels`, when given, are the only channels that exist: others answer `channel_not_found`.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        bot_user_id: str = "UBOT",
        team_id: str = "T1",
        usergroups: dict[str, list[str]] | None = None,
        channels: Iterable[str] | None = None,
    ) -> None:
        self.bot_token = bot_token
        self.bot_user_id = bot_user_id
        self.team_id = team_id
        self.usergroups = {"S_ONCALL": ["U_ALICE"]} if usergroups is None else dict(usergroups)
        self.channels = None if channels is None else set(channels)
        self._calls: list[SlackCall] = []
        self._responses: list[ResponsePost] = []
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._bound: dict[str, tuple[str, str]] = {}  # response_url name -> (channel, ts)
        self._failures: defaultdict[str, deque[_Failure]] = defaultdict(deque)
        self._ts_count = 0
        # Message ts are wall-clock microseconds as in Slack (reads by `oldest` depend on it), unique and increasing.
        self._first_ts_us = time.time_ns() // 1000
        self._changed = threading.Condition()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-slack", daemon=True)
        self._thread.start()

    # -- addresses -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>"""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """http://127.0.0.1:<port>/api/, for `WebClient(base_url=...)` and `DATAOPS_SLACK_API_URL`."""
        return f"{self.url}/api/"

    def response_url(self, name: str, *, channel: str | None = None, ts: str | None = None) -> str:
        """A response_url to put in an interaction or slash command; with `channel` and `ts`, bound to that message."""
        if channel is not None and ts is not None:
            with self._changed:
                self._bound[name] = (channel, ts)
        return f"{self.url}/response/{name}"

    # -- reading back ----------------------------------------------------------------------------------
    @property
    def calls(self) -> list[SlackCall]:
        with self._changed:
            return list(self._calls)

    def calls_to(self, method: str) -> list[SlackCall]:
        return [c for c in self.calls if c.method == method]

    @property
    def responses(self) -> list[ResponsePost]:
        with self._changed:
            return list(self._responses)

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """The current state of a message the bot posted (a copy), as conversations.history would show it."""
        with self._changed:
            found = self._messages.get((channel, ts))
            if found is None:
                known = ", ".join(f"{c}/{t}" for c, t in self._messages) or "none"
                raise KeyError(f"no message {ts!r} in channel {channel!r}; known: {known}")
            return copy.deepcopy(found)

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The replies in a thread, oldest first, without the parent message."""
        with self._changed:
            found = [m for (c, ts), m in self._messages.items() if c == channel and m.get("thread_ts") == thread_ts and ts != thread_ts]
            return copy.deepcopy(sorted(found, key=lambda m: m["ts"]))

    def ephemerals(self, *, user: str | None = None) -> list[dict[str, Any]]:
        """Ephemeral messages ({channel, user, text, blocks, thread_ts, message_ts}), of one user if given."""
        with self._changed:
            return [copy.deepcopy(e) for e in self._ephemerals if user is None or e["user"] == user]

    def wait_for(self, method: str, *, count: int = 1, timeout: float = 5.0) -> list[SlackCall]:
        """The calls to `method` once there are at least `count`: Bolt runs listeners after acking, in a thread."""
        with self._changed:
            if not self._changed.wait_for(lambda: sum(c.method == method for c in self._calls) >= count, timeout):
                seen = [c.method for c in self._calls]
                raise TimeoutError(f"expected {count} call(s) to {method} within {timeout}s; calls so far: {seen}")
            return [c for c in self._calls if c.method == method]

    def wait_for_responses(self, *, count: int = 1, timeout: float = 5.0) -> list[ResponsePost]:
        """The response_url posts once there are at least `count`."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._responses) >= count, timeout):
                raise TimeoutError(f"expected {count} response_url post(s) within {timeout}s; got {len(self._responses)}")
            return list(self._responses)

    # -- scripting -------------------------------------------------------------------------------------
    def fail_next(self, method: str, *, error: str = "ratelimited", status: int = 429, retry_after: int | None = 1) -> None:
        """Make the next call of `method` answer `{"ok": false, "error": error}` with `status` (and Retry-After on 429).

        Calls queue up: `fail_next` twice fails the next two calls.
        """
        with self._changed:
            self._failures[method].append(_Failure(error=error, status=status, retry_after=retry_after))

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def is_up(self) -> bool:
        return self._thread.is_alive()

    def down(self) -> None:
        """Stop answering: the port refuses connections until `up()`; the workspace is kept."""
        if self.is_up:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

    def up(self) -> None:
        """Listen again on the same port after `down()`."""
        if not self.is_up:
            port = int(self._server.server_address[1])
            self._server = _Server(self, port=port)
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-slack", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self.down()

    def __enter__(self) -> FakeSlack:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- serving ---------------------------------------------------------------------------------------
    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8", "replace") if length else ""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        split = urlsplit(handler.path)
        if split.path.startswith("/response/") and handler.command == "POST":
            self._respond_url(split.path.removeprefix("/response/"), raw, headers)
            return _send(handler, 200, b"ok", {"Content-Type": "text/html"})
        if not split.path.startswith("/api/"):
            return _send(handler, 404, b"Not Found", {"Content-Type": "text/plain"})
        method = split.path.removeprefix("/api/")
        params = _parse_params(split.query, raw, headers.get("content-type", ""))
        status, extra, answer = self._answer(method, params, headers)
        with self._changed:
            self._calls.append(SlackCall(method=method, params=params, headers=headers, at=time.monotonic(), response=answer))
            self._changed.notify_all()
        _send(handler, status, json.dumps(answer).encode(), {"Content-Type": "application/json; charset=utf-8", **extra})

    def _answer(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._changed:
            failure = self._failures[method].popleft() if self._failures.get(method) else None
        if failure is not None:
            extra = {"Retry-After": str(failure.retry_after)} if failure.status == 429 and failure.retry_after is not None else {}
            return failure.status, extra, {"ok": False, "error": failure.error}
        authorization = headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else params.get("token")
        if not token:
            return 200, {}, {"ok": False, "error": "not_authed"}
        if token != self.bot_token:
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        serve = getattr(self, "_api_" + method.replace(".", "_"), None)
        if serve is None:
            return 200, {}, {"ok": False, "error": "unknown_method"}
        return 200, {}, serve(params)

    def _next_ts(self) -> str:
        self._ts_count += 1
        micros = self._first_ts_us + self._ts_count * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _channel_error(self, channel: Any) -> dict[str, Any] | None:
        if not channel or (self.channels is not None and channel not in self.channels):
            return {"ok": False, "error": "channel_not_found"}
        return None

    def _api_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "dataops",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _api_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if error := self._channel_error(channel):
            return error
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return {"ok": False, "error": "no_text"}
        with self._changed:
            ts = self._next_ts()
            message = {"type": "message", "user": self.bot_user_id, "bot_id": BOT_ID, "team": self.team_id, "ts": ts}
            message |= {k: params[k] for k in ("text", "blocks", "attachments", "metadata", "thread_ts") if k in params}
            message.setdefault("text", "")
            self._messages[(channel, ts)] = message
            parent = self._messages.get((channel, params["thread_ts"])) if params.get("thread_ts") else None
            if parent is not None:  # Slack marks the parent as a thread once it has replies
                parent |= {"thread_ts": parent["ts"], "reply_count": parent.get("reply_count", 0) + 1, "latest_reply": ts}
            return {"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _api_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), params.get("ts")
        if error := self._channel_error(channel):
            return error
        with self._changed:
            message = self._messages.get((channel, ts))  # type: ignore[arg-type]
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message |= {k: params[k] for k in ("text", "blocks", "attachments", "metadata") if k in params}
            return {"ok": True, "channel": channel, "ts": ts, "text": message.get("text", ""), "message": copy.deepcopy(message)}

    def _api_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if error := self._channel_error(params.get("channel")):
            return error
        if not params.get("user"):
            return {"ok": False, "error": "user_not_found"}
        with self._changed:
            message_ts = self._next_ts()
            self._ephemerals.append(
                {"channel": params["channel"], "user": params["user"], "text": params.get("text", ""), "blocks": params.get("blocks")}
                | {"thread_ts": params.get("thread_ts"), "message_ts": message_ts}
            )
        return {"ok": True, "message_ts": message_ts}

    def _api_usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        users = self.usergroups.get(params.get("usergroup", ""))
        return {"ok": False, "error": "no_such_subteam"} if users is None else {"ok": True, "users": list(users)}

    def _api_conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel", "")
        if error := self._channel_error(channel):
            return error
        kind = {"D": "is_im", "G": "is_private"}.get(channel[:1], "is_channel")
        return {"ok": True, "channel": {"id": channel, "name": channel.lower(), "is_member": True, "is_archived": False, kind: True}}

    def _api_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel", ""), params.get("ts", "")
        with self._changed:
            parent = self._messages.get((channel, ts))
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        found = [copy.deepcopy(parent), *self.replies(channel, ts)]
        return {"ok": True, "messages": _shown(found, params), "has_more": False}

    def _api_conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages of a channel, newest first, from `oldest` on (exclusive); one page of `limit`."""
        channel = params.get("channel", "")
        if error := self._channel_error(channel):
            return error
        oldest, limit = float(params.get("oldest") or 0), int(params.get("limit") or 100)
        with self._changed:
            found = [
                copy.deepcopy(m) for (c, ts), m in self._messages.items()
                if c == channel and float(ts) > oldest and m.get("thread_ts", ts) == ts
            ]  # fmt: skip
        found.sort(key=lambda m: m["ts"], reverse=True)
        return {"ok": True, "messages": _shown(found[:limit], params), "has_more": len(found) > limit}

    def _api_users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = params.get("user", "")
        if not user:
            return {"ok": False, "error": "user_not_found"}
        name = user.removeprefix("U_").lower()
        profile = {"real_name": name.title(), "display_name": name}
        found = {"id": user, "team_id": self.team_id, "name": name, "is_bot": user == self.bot_user_id, "tz": "UTC", "profile": profile}
        return {"ok": True, "user": found}

    def _respond_url(self, name: str, raw: str, headers: dict[str, str]) -> None:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        with self._changed:
            self._responses.append(ResponsePost(name=name, body=body, headers=headers, at=time.monotonic()))
            bound = self._bound.get(name)
            if bound is not None and isinstance(body, dict) and bound in self._messages:
                if body.get("delete_original"):
                    del self._messages[bound]
                elif body.get("replace_original"):
                    self._messages[bound] |= {k: body[k] for k in ("text", "blocks", "attachments") if k in body}
            self._changed.notify_all()


def _shown(messages: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Messages as a read shows them: without `metadata` unless `include_all_metadata` was asked for."""
    if str(params.get("include_all_metadata", "")).lower() in ("1", "true"):
        return messages
    return [{k: v for k, v in m.items() if k != "metadata"} for m in messages]


def _parse_params(query: str, raw: str, content_type: str) -> dict[str, Any]:
    """The call's parameters: query string, then the form or JSON body; JSON-encoded form fields decoded."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    if content_type.startswith("application/json") and raw:
        body = json.loads(raw)
        params |= body if isinstance(body, dict) else {}
    elif raw:
        params |= dict(parse_qsl(raw, keep_blank_values=True))
    for name in _JSON_FIELDS:
        if isinstance(params.get(name), str):
            try:
                params[name] = json.loads(params[name])
            except ValueError:
                pass  # kept as sent: Slack would answer invalid_blocks, the test will see the raw string
    return params


def _send(handler: _Handler, status: int, data: bytes, headers: dict[str, str]) -> None:
    try:
        handler.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(data))}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        handler.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, fake: FakeSlack, *, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSlack/1.0"
    timeout = 10
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- what Slack sends to the app -------------------------------------------------------------------------
def signed_headers(signing_secret: str, body: str, timestamp: int | None = None, *, content_type: str | None = None) -> dict[str, str]:
    """Headers of a request signed as Slack signs it (v0): `X-Slack-Signature: v0=hmac_sha256(secret, "v0:{ts}:{body}")`.

    `timestamp` defaults to now; Bolt refuses one more than 5 minutes old. The content type is JSON for a
    body that starts with "{", else form-encoded, unless given.
    """
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(signing_secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    kind = content_type or ("application/json" if body.lstrip().startswith("{") else "application/x-www-form-urlencoded")
    return {"Content-Type": kind, "X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def events_api_body(
    event_type: Literal["app_mention", "message.im"],
    *,
    channel: str,
    user: str,
    text: str,
    thread_ts: str | None = None,
    ts: str | None = None,
    event_id: str | None = None,
    team_id: str = "T1",
    bot_user_id: str = "UBOT",
    api_app_id: str = "A_DATAOPS",
) -> str:
    """An Events API `event_callback` (JSON) carrying an `app_mention` or a direct message (`message` in an im).

    An app_mention's `text` is what the user typed, mention included ("<@UBOT> status"). `ts` (= event_ts)
    and `event_id` are unique by default; Bolt uses `authorizations` to know which bot received the event.
    """
    n = next(_sequence)
    ts = ts or f"{int(time.time())}.{n:06d}"
    event: dict[str, Any] = {"type": "app_mention" if event_type == "app_mention" else "message", "user": user, "text": text}
    event |= {"ts": ts, "event_ts": ts, "channel": channel, "team": team_id}
    if event_type == "message.im":
        event["channel_type"] = "im"
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    envelope = {
        "token": "verification-token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{n:08d}",
        "event_time": int(float(ts)),
        "authorizations": [
            {"enterprise_id": None, "team_id": team_id, "user_id": bot_user_id, "is_bot": True, "is_enterprise_install": False}
        ],
        "is_ext_shared_channel": False,
    }
    return json.dumps(envelope)


def block_actions_body(
    *,
    action_id: str,
    value: str,
    user: str,
    channel: str,
    message_ts: str,
    response_url: str,
    thread_ts: str | None = None,
    block_id: str = "actions",
    message: dict[str, Any] | None = None,
    trigger_id: str | None = None,
    team_id: str = "T1",
    api_app_id: str = "A_DATAOPS",
) -> str:
    """A button press on a message: the form body `payload=<urlencoded JSON>` of a `block_actions` interaction.

    `message` is the pressed message as stored (`FakeSlack.message(channel, ts)`), so the app sees its real
    blocks; without it, a bare message with `message_ts`. `response_url` has no default so that a test never
    sends the app to the internet: use `FakeSlack.response_url(name)`.
    """
    n = next(_sequence)
    pressed = copy.deepcopy(message) if message is not None else {"type": "message", "ts": message_ts, "text": ""}
    pressed["ts"] = message_ts
    container: dict[str, Any] = {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False}
    if thread_ts is not None:
        pressed["thread_ts"] = thread_ts
        container["thread_ts"] = thread_ts
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team_id},
        "api_app_id": api_app_id,
        "token": "verification-token",
        "container": container,
        "trigger_id": trigger_id or f"{n}.{team_id}.trigger",
        "team": {"id": team_id, "domain": "fake-workspace"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": channel.lower()},
        "message": pressed,
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id,
                "value": value,
                "type": "button",
                "text": {"type": "plain_text", "text": action_id},
                "action_ts": f"{int(time.time())}.{n:06d}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def slash_command_body(
    *,
    command: str = "/dataops",
    text: str = "",
    user: str,
    channel: str,
    response_url: str,
    trigger_id: str | None = None,
    team_id: str = "T1",
    api_app_id: str = "A_DATAOPS",
) -> str:
    """A slash command as Slack posts it: a form body with command, text, user_id, channel_id, response_url, ...

    `response_url` has no default so that a test never sends the app to the internet: use `FakeSlack.response_url(name)`.
    """
    fields = {
        "token": "verification-token",
        "team_id": team_id,
        "team_domain": "fake-workspace",
        "channel_id": channel,
        "channel_name": channel.lower(),
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{next(_sequence)}.{team_id}.trigger",
    }
    return urlencode(fields)


@pytest.fixture(name="fake_slack")
def fake_slack_fixture() -> Iterator[FakeSlack]:
    """`fake_slack`: a started `FakeSlack()` with the defaults, closed after the test.

    Import `fake_slack_fixture` into a test module (or a conftest) and request `fake_slack`.
    """
    fake = FakeSlack()
    try:
        yield fake
    finally:
        fake.close()
