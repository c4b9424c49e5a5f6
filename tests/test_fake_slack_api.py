"""The fake Slack Web API against the real clients: slack_sdk's WebClient and a slack_bolt App served over WSGI."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
import yaml
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.fakes.slack_api import (
    FakeSlack,
    block_actions_body,
    events_api_body,
    fake_slack_fixture,
    signed_headers,
    slash_command_body,
)

__all__ = ["fake_slack_fixture"]  # the fixture `fake_slack`, imported to be used here

SECRET = "signing-secret"
MANIFEST = Path(__file__).resolve().parent.parent / "config" / "slack" / "manifest.yaml"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Incident 7* opened"}}]


def web_client(fake: FakeSlack, token: str | None = None) -> WebClient:
    return WebClient(token=token or fake.bot_token, base_url=fake.api_url, timeout=5)


def test_web_client_posts_updates_and_reads_back(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)

    me = client.auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == ("UBOT", "BBOT", "T1")

    posted = client.chat_postMessage(channel="C_OPS", text="Incident 7 opened", blocks=BLOCKS)
    reply = client.chat_postMessage(channel="C_OPS", text="diagnosing", thread_ts=posted["ts"])
    client.chat_update(channel="C_OPS", ts=posted["ts"], text="Incident 7 resolved", blocks=[])

    assert float(reply["ts"]) > float(posted["ts"])
    assert posted["message"]["blocks"] == BLOCKS
    [call] = fake_slack.calls_to("chat.postMessage")[:1]
    assert call.params["blocks"] == BLOCKS and call.headers["authorization"] == "Bearer xoxb-test"
    parent = fake_slack.message("C_OPS", posted["ts"])
    assert (parent["text"], parent["blocks"], parent["reply_count"]) == ("Incident 7 resolved", [], 1)
    assert [m["text"] for m in fake_slack.replies("C_OPS", posted["ts"])] == ["diagnosing"]
    assert [m["ts"] for m in client.conversations_replies(channel="C_OPS", ts=posted["ts"])["messages"]] == [posted["ts"], reply["ts"]]

    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel="C_OPS", ts="1.000000", text="x")
    assert missing.value.response["error"] == "message_not_found"
    with pytest.raises(KeyError, match=r"no message '1\.000000' in channel 'C_OPS'; known: C_OPS/"):
        fake_slack.message("C_OPS", "1.000000")


def test_wrong_token_unknown_method_and_injected_rate_limit(fake_slack: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as wrong:
        web_client(fake_slack, token="xoxb-wrong").auth_test()
    assert (wrong.value.response.status_code, wrong.value.response["error"]) == (200, "invalid_auth")

    client = web_client(fake_slack)
    with pytest.raises(SlackApiError) as unknown:
        client.api_call("chat.scheduleTeleport")
    assert unknown.value.response["error"] == "unknown_method"

    fake_slack.fail_next("chat.postMessage")
    with pytest.raises(SlackApiError) as limited:
        client.chat_postMessage(channel="C_OPS", text="hello")
    assert (limited.value.response.status_code, limited.value.response["error"]) == (429, "ratelimited")
    assert limited.value.response.headers["retry-after"] in ("1", ["1"])
    assert client.chat_postMessage(channel="C_OPS", text="hello")["ok"]  # only the next call failed


def test_usergroups_ephemerals_and_lookups(fake_slack: FakeSlack) -> None:
    client = web_client(fake_slack)
    assert client.usergroups_users_list(usergroup="S_ONCALL")["users"] == ["U_ALICE"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        client.usergroups_users_list(usergroup="S_NOBODY")
    assert client.chat_postEphemeral(channel="C_OPS", user="U_ALICE", text="only you", blocks=BLOCKS)["message_ts"]
    assert [(e["text"], e["blocks"]) for e in fake_slack.ephemerals(user="U_ALICE")] == [("only you", BLOCKS)]
    assert fake_slack.ephemerals(user="U_BOB") == []
    assert client.conversations_info(channel="C_OPS")["channel"]["is_channel"]
    assert client.users_info(user="U_ALICE")["user"]["id"] == "U_ALICE"


# -- the real Bolt app, over HTTP -----------------------------------------------------------------------
class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class BoltServer:
    app: App
    url: str  # http://127.0.0.1:<port>/slack/events

    def post(self, body: str, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(self.url, content=body.encode(), headers=headers, timeout=5)


@pytest.fixture
def bolt(fake_slack: FakeSlack) -> Iterator[BoltServer]:
    app = App(client=web_client(fake_slack), signing_secret=SECRET)

    @app.command("/dataops")
    def dataops_command(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        ack()
        respond(f"status for {command['user_id']}: {command['text']}")

    @app.event("app_mention")
    def mentioned(event: dict[str, Any], say: Any) -> None:
        say(text="on it", thread_ts=event.get("thread_ts") or event["ts"])

    @app.action("approve")
    def approve(ack: Any, body: dict[str, Any], respond: Any) -> None:
        ack()
        respond(replace_original=True, text=f"approved by <@{body['user']['id']}>: {body['actions'][0]['value']}")

    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield BoltServer(app=app, url=f"http://127.0.0.1:{server.server_address[1]}/slack/events")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_bolt_app_verifies_its_token_and_accepts_signed_slash_commands(fake_slack: FakeSlack, bolt: BoltServer) -> None:
    assert [c.headers["authorization"] for c in fake_slack.calls_to("auth.test")] == ["Bearer xoxb-test"]
    body = slash_command_body(text="status", user="U_ALICE", channel="C_OPS", response_url=fake_slack.response_url("cmd"))

    assert bolt.post(body, signed_headers(SECRET, body)).status_code == 200
    [posted] = fake_slack.wait_for_responses()
    assert (posted.name, posted.body["text"]) == ("cmd", "status for U_ALICE: status")


def test_bolt_app_rejects_forged_and_stale_requests(fake_slack: FakeSlack, bolt: BoltServer) -> None:
    body = slash_command_body(text="status", user="U_MALLORY", channel="C_OPS", response_url=fake_slack.response_url("cmd"))
    forged = signed_headers("not-the-secret", body)
    stale = signed_headers(SECRET, body, timestamp=int(time.time()) - 6 * 60)

    assert bolt.post(body, forged).status_code == 401
    assert bolt.post(body, stale).status_code == 401
    assert fake_slack.responses == []


def test_bolt_app_handles_mentions_and_button_presses(fake_slack: FakeSlack, bolt: BoltServer) -> None:
    mention = events_api_body("app_mention", channel="C_OPS", user="U_ALICE", text="<@UBOT> status", ts="1700000001.000001")
    assert bolt.post(mention, signed_headers(SECRET, mention)).status_code == 200
    [said] = fake_slack.wait_for("chat.postMessage")
    assert (said.params["text"], said.params["thread_ts"]) == ("on it", "1700000001.000001")

    posted = web_client(fake_slack).chat_postMessage(channel="C_OPS", text="approve backfill?", blocks=BLOCKS)
    press = block_actions_body(
        action_id="approve",
        value="approval-3",
        user="U_ALICE",
        channel="C_OPS",
        message_ts=posted["ts"],
        message=fake_slack.message("C_OPS", posted["ts"]),
        response_url=fake_slack.response_url("press", channel="C_OPS", ts=posted["ts"]),
    )
    assert bolt.post(press, signed_headers(SECRET, press)).status_code == 200
    fake_slack.wait_for_responses()
    assert fake_slack.message("C_OPS", posted["ts"])["text"] == "approved by <@U_ALICE>: approval-3"


def test_manifest_declares_the_scopes_events_and_command() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())

    assert manifest["display_information"]["name"] == "dataops"
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read",
        "chat:write",
        "commands",
        "im:history",
        "im:read",
        "im:write",
        "channels:history",
        "groups:history",
        "usergroups:read",
        "users:read",
    }
    settings = manifest["settings"]
    assert settings["event_subscriptions"]["bot_events"] == ["app_mention", "message.im"]
    assert settings["event_subscriptions"]["request_url"] == settings["interactivity"]["request_url"] == "https://YOUR-HOST/slack/events"
    assert settings["interactivity"]["is_enabled"] is True
    assert (settings["socket_mode_enabled"], settings["org_deploy_enabled"], settings["token_rotation_enabled"]) == (False, False, False)
    [command] = manifest["features"]["slash_commands"]
    assert command == {
        "command": "/dataops",
        "url": "https://YOUR-HOST/slack/events",
        "description": "Status and open incidents of the DataOps platform",
        "usage_hint": "status | incidents | help",
        "should_escape": False,
    }
