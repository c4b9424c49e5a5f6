"""The real Bolt app in HTTP mode, real signed requests, a local fake Slack Web API: threads, buttons, chat.

End to end: incident → thread → approval request → signed click → action executed → message updated →
outcome posted, with a restart of the app between the request and the click.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from agent.report import Reporters
from agent.runtime import Agent
from agent.slack.app import SlackApp, web_client
from agent.slack.reporter import SlackReporter
from agent.slack.store import SlackStore
from config.settings import load_settings
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.publish_audit import audit_published
from pipelines.promotion import run_pipeline
from policies.approvals import ApprovalStore
from tests.conftest import utc, window
from tests.fakes.slack_api import FakeSlack, block_actions_body, events_api_body, signed_headers, slash_command_body
from tests.test_serve_process import free_port

SECRET = "s3cret-signing"
CHANNEL = "C_OPS"
GOLD = "gold.carbon_intensity_hourly"
NOW = utc(2023, 1, 28)


def _negate(rows: pa.Table) -> pa.Table:
    return rows.set_column(rows.schema.get_field_index("actual"), "actual", pc.negate(rows.column("actual")))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real gold data, a bad publish of 25 January and its incident (id 1)."""
    home = tmp_path_factory.mktemp("slack") / "home"
    ctx = PlatformContext.open(load_settings(home=home))
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW)
    faults.bad_publish(ctx, GOLD, utc(2023, 1, 25), _negate, run_id="manual-bad")
    ctx.incidents.report(audit_published(ctx, GOLD, NOW)[0], now=NOW)
    ctx.ledger.engine.dispose()
    return home


@dataclass
class Rig:
    home: Path
    slack: FakeSlack
    people: Path
    agent: Agent | None = None
    app: SlackApp | None = None
    reporter: SlackReporter | None = None

    def start(self, **overrides: Any) -> Rig:
        settings = load_settings(
            home=self.home, slack_bot_token=self.slack.bot_token, slack_signing_secret=SECRET, slack_channel=CHANNEL, slack_port=free_port(),
            slack_api_url=self.slack.api_url, people_file=self.people, **overrides,
        )  # fmt: skip
        ctx = PlatformContext.open(settings)
        self.reporter = SlackReporter(
            web_client(settings),
            channel=CHANNEL,
            store=SlackStore(ctx.ledger),
            approvals=ApprovalStore(ctx.ledger),
            incidents=ctx.incidents,
        )
        self.agent = Agent(ctx, reporter=Reporters(self.reporter), clock=lambda: NOW)
        self.app = SlackApp(settings, self.agent, self.reporter)
        self.app.start()
        return self

    def stop(self) -> None:
        if self.app is not None:
            self.app.stop()
        if self.agent is not None:
            self.agent.close()
        self.app = self.agent = self.reporter = None

    def post(self, body: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        assert self.app is not None
        sent = headers if headers is not None else signed_headers(SECRET, body)
        return httpx.post(f"http://127.0.0.1:{self.app.port}/slack/events", content=body, headers=sent, timeout=30)

    def click(self, action: str, approval_id: str, user: str) -> httpx.Response:
        ref = self.approval(approval_id).channels["slack"]
        body = block_actions_body(
            action_id=action, value=approval_id, user=user, channel=ref["channel"], message_ts=ref["ts"],
            response_url=self.slack.response_url(f"click-{user}"), message=self.slack.message(ref["channel"], ref["ts"]),
        )  # fmt: skip
        return self.post(body)

    def approval(self, approval_id: str) -> Any:
        assert self.agent is not None
        return self.agent.approvals.get(approval_id)


PEOPLE = """
people:
  - {name: alice, role: approver, slack: U_ALICE}
  - {name: bob, role: approver, slack: U_BOB}
  - {name: olive, role: operator, slack: U_OLIVE}
  - {name: victor, role: viewer, slack: U_VICTOR}
slack_groups: {S_ONCALL: approver}
"""


@pytest.fixture
def rig(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    shutil.copytree(prepared, home)
    people = tmp_path / "people.yaml"
    people.write_text(PEOPLE)
    with FakeSlack(usergroups={"S_ONCALL": ["U_CAROL"]}) as slack:
        r = Rig(home=home, slack=slack, people=people)
        yield r
        r.stop()


def _until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


def _gold_sum(rig: Rig) -> float:
    assert rig.agent is not None
    table = load_table(rig.agent.ctx.catalog, GOLD)
    table.refresh()
    rows = table.scan(row_filter="ts >= '2023-01-25T00:00:00+00:00' and ts < '2023-01-26T00:00:00+00:00'").to_arrow()
    return float(pc.sum(rows.column("actual")).as_py())


def _texts(blocks: list[dict[str, Any]]) -> str:
    out = []
    for b in blocks:
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        out += [f["text"] for f in b.get("fields", [])]
        out += [e.get("text", "") for e in b.get("elements", []) if isinstance(e, dict) and isinstance(e.get("text"), str)]
    return "\n".join(out)


def test_incident_thread_approval_click_after_a_restart_and_outcome(rig: Rig) -> None:
    rig.start()
    assert rig.agent is not None and rig.reporter is not None
    thread = rig.reporter.incident(rig.agent.ctx.incidents.get(1))
    assert thread is not None
    root = rig.slack.message(CHANNEL, thread.ts)
    assert "Incident 1: bad_publish" in _texts(root["blocks"]) and "critical" in _texts(root["blocks"])

    waiting = rig.agent.handle_incident(1)
    assert waiting.status == "waiting" and waiting.approval_id
    approval_id = waiting.approval_id
    ref = rig.approval(approval_id).channels["slack"]
    request = rig.slack.message(CHANNEL, ref["ts"])
    buttons = next(b for b in request["blocks"] if b["type"] == "actions")["elements"]
    assert [(e["action_id"], e["value"]) for e in buttons] == [("dataops_approve", approval_id), ("dataops_deny", approval_id)]
    assert "rollback_table" in _texts(request["blocks"]) and "rollback_approval" in _texts(request["blocks"])
    assert request.get("thread_ts") == thread.ts

    rig.stop()  # the app and the agent restart between the request and the click
    rig.start()
    assert _gold_sum(rig) < 0

    refused = rig.click("dataops_approve", approval_id, "U_MALLORY")
    assert refused.status_code == 200
    rig.slack.wait_for("chat.postEphemeral")
    assert "Your Slack account (U_MALLORY) is not linked to a person" in rig.slack.ephemerals(user="U_MALLORY")[0]["text"]
    assert rig.approval(approval_id).status == "pending" and _gold_sum(rig) < 0

    assert rig.click("dataops_approve", approval_id, "U_ALICE").status_code == 200
    _until(lambda: rig.approval(approval_id).resumed_at is not None)
    assert _gold_sum(rig) > 0, "the rollback ran"
    verdict = rig.slack.message(CHANNEL, ref["ts"])
    assert not [b for b in verdict["blocks"] if b["type"] == "actions"], "the buttons are gone"
    assert "Approved* by alice" in _texts(verdict["blocks"])
    assert (rig.approval(approval_id).decided_by, rig.approval(approval_id).decided_via) == ("alice", "slack")
    replies = "\n".join(r["text"] for r in rig.slack.replies(CHANNEL, thread.ts))
    assert "resolved" in replies and "rollback_table" in replies
    assert "resolved" in _texts(rig.slack.message(CHANNEL, thread.ts)["blocks"]), "the root shows the new status"

    late = rig.click("dataops_deny", approval_id, "U_BOB")
    assert late.status_code == 200
    rig.slack.wait_for("chat.postEphemeral", count=2)
    assert "already approved by alice" in rig.slack.ephemerals(user="U_BOB")[0]["text"]
    assert rig.approval(approval_id).status == "approved"


def test_forged_and_stale_requests_get_401_and_change_nothing(rig: Rig) -> None:
    rig.start()
    assert rig.agent is not None
    approval_id = rig.agent.handle_incident(1).approval_id
    assert approval_id is not None
    ref = rig.approval(approval_id).channels["slack"]
    body = block_actions_body(
        action_id="dataops_approve", value=approval_id, user="U_ALICE", channel=ref["channel"], message_ts=ref["ts"],
        response_url=rig.slack.response_url("forged"),
    )  # fmt: skip
    forged = signed_headers("not-the-secret", body)
    assert rig.post(body, headers=forged).status_code == 401
    stale = signed_headers(SECRET, body, timestamp=int(time.time()) - 600)
    assert rig.post(body, headers=stale).status_code == 401
    unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
    assert rig.post(body, headers=unsigned).status_code == 401
    time.sleep(0.3)
    assert rig.approval(approval_id).status == "pending" and _gold_sum(rig) < 0
    assert not rig.slack.calls_to("chat.postEphemeral")


def test_a_user_group_member_may_approve(rig: Rig) -> None:
    rig.start()
    assert rig.agent is not None
    approval_id = rig.agent.handle_incident(1).approval_id
    assert approval_id is not None
    rig.click("dataops_deny", approval_id, "U_CAROL")
    _until(lambda: rig.approval(approval_id).resumed_at is not None)
    decided = rig.approval(approval_id)
    assert (decided.status, decided.decided_by) == ("denied", "slack:U_CAROL"), "a group member who is not a person"
    assert _gold_sum(rig) < 0 and rig.agent.ctx.incidents.get(1).status == "escalated"
    assert rig.slack.calls_to("usergroups.users.list")[0].params["usergroup"] == "S_ONCALL"


def test_decisions_from_the_cli_and_expiry_show_in_slack(rig: Rig, tmp_path: Path) -> None:
    rig.start()
    assert rig.agent is not None and rig.reporter is not None
    approval_id = rig.agent.handle_incident(1).approval_id
    assert approval_id is not None
    ref = rig.approval(approval_id).channels["slack"]
    cli = Agent(PlatformContext.open(load_settings(home=rig.home, people_file=rig.people)), clock=lambda: NOW)
    try:
        cli.decide(approval_id, approve=True, user="alice", channel="cli")  # another process, no Slack
    finally:
        cli.close()
    rig.reporter.sync()
    assert "Approved* by alice" in _texts(rig.slack.message(CHANNEL, ref["ts"])["blocks"])


def test_expired_requests_are_marked_expired_in_slack(rig: Rig, tmp_path: Path) -> None:
    from tests.conftest import REPO

    policy = tmp_path / "policy.yaml"
    policy.write_text((REPO / "config" / "policy.yaml").read_text().replace("approval_ttl_minutes: 1440", "approval_ttl_minutes: 0.0001"))
    rig.start(policy_file=policy)
    assert rig.agent is not None
    approval_id = rig.agent.handle_incident(1).approval_id
    assert approval_id is not None
    time.sleep(0.05)
    rig.agent.resume_decided()
    ref = rig.approval(approval_id).channels["slack"]
    assert "Expired" in _texts(rig.slack.message(CHANNEL, ref["ts"])["blocks"])
    assert rig.agent.ctx.incidents.get(1).status == "escalated"


def test_chat_by_mention_and_dm_with_retries_deduplicated(rig: Rig) -> None:
    rig.start()
    body = events_api_body(
        "app_mention", channel=CHANNEL, user="U_DAVE", text="<@UBOT> what is open?", event_id="Ev1", ts="1700000001.000100"
    )
    assert rig.post(body).status_code == 200
    rig.slack.wait_for("chat.postMessage")
    retry = signed_headers(SECRET, body) | {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert rig.post(body, headers=retry).status_code == 200
    time.sleep(0.5)
    answers = rig.slack.replies(CHANNEL, "1700000001.000100")
    assert len(answers) == 1, "a retried event is answered once"
    assert "unresolved incident(s)" in answers[0]["text"] and "#1 [critical]" in answers[0]["text"]

    dm = events_api_body("message.im", channel="D_DAVE", user="U_DAVE", text="status", event_id="Ev2", ts="1700000002.000100")
    assert rig.post(dm).status_code == 200
    _until(lambda: bool(rig.slack.replies("D_DAVE", "1700000002.000100")))
    assert "runbook planner" in rig.slack.replies("D_DAVE", "1700000002.000100")[0]["text"]


def test_chat_proposing_an_action_waits_for_its_approval(rig: Rig) -> None:
    rig.start()
    assert rig.agent is not None
    head = load_table(rig.agent.ctx.catalog, GOLD).current_snapshot()
    assert head is not None and head.parent_snapshot_id is not None
    ask = events_api_body(
        "app_mention",
        channel=CHANNEL,
        user="U_OLIVE",
        text=f"<@UBOT> rollback {GOLD} to {head.parent_snapshot_id}",
        event_id="Ev3",
        ts="1700000003.000100",
    )
    rig.post(ask)
    _until(lambda: any(r.get("blocks") for r in rig.slack.replies(CHANNEL, "1700000003.000100")))
    assert rig.agent.approvals.list(status="pending")[0].requested_by == "olive"  # the person, not the Slack id
    again = events_api_body(
        "app_mention",
        channel=CHANNEL,
        user="U_OLIVE",
        text="<@UBOT> what is open?",
        event_id="Ev4",
        ts="1700000004.000100",
        thread_ts="1700000003.000100",
    )
    rig.post(again)
    _until(lambda: any("is pending in this thread" in r["text"] for r in rig.slack.replies(CHANNEL, "1700000003.000100")))


@pytest.mark.parametrize("user", ["U_DAVE", "U_VICTOR"], ids=["no-person", "viewer"])
def test_chat_writes_asked_by_someone_without_the_role_are_refused(rig: Rig, user: str) -> None:
    """Anyone in the workspace may ask the agent questions; a write is acted on only for an operator or above."""
    rig.start()
    assert rig.agent is not None
    before = rig.agent.ctx.control.is_paused("weather")
    rig.post(
        events_api_body(
            "app_mention", channel=CHANNEL, user=user, text="<@UBOT> pause the weather pipeline", event_id="Ev9", ts="1700000009.000100"
        )
    )
    _until(lambda: any("need role operator" in r["text"] for r in rig.slack.replies(CHANNEL, "1700000009.000100")))
    assert rig.agent.ctx.control.is_paused("weather") == before is False
    assert not any(r.get("blocks") for r in rig.slack.replies(CHANNEL, "1700000009.000100")), "no approval asked for either"


def test_slash_command_answers_privately(rig: Rig) -> None:
    rig.start()
    url = rig.slack.response_url("cmd")
    body = slash_command_body(text="incidents", user="U_DAVE", channel=CHANNEL, response_url=url)
    assert rig.post(body).status_code == 200
    [posted] = rig.slack.wait_for_responses()
    assert posted.body["response_type"] == "ephemeral" and "#1 [critical]" in posted.body["text"]
    status = slash_command_body(text="status", user="U_DAVE", channel=CHANNEL, response_url=rig.slack.response_url("cmd2"))
    rig.post(status)
    rig.slack.wait_for_responses(count=2)
    assert "carbon_intensity" in rig.slack.responses[-1].body["text"]


def test_serve_posts_one_thread_per_incident_and_updates_it(rig: Rig) -> None:
    from agent.service_hook import AgentExtension
    from pipelines.clock import ReplayClock
    from pipelines.service import Service

    settings = load_settings(
        home=rig.home, slack_bot_token=rig.slack.bot_token, slack_signing_secret=SECRET, slack_channel=CHANNEL, slack_port=free_port(),
        slack_api_url=rig.slack.api_url, people_file=rig.people, agent_enabled=True,
    )  # fmt: skip
    ctx = PlatformContext.open(settings)
    service = Service(ctx, clock=ReplayClock(start=NOW, speed=1.0))
    extension = AgentExtension(service, reporter=Reporters())
    service.extensions = [extension]
    try:
        finding = audit_published(ctx, GOLD, NOW)[0]
        service.report([finding], NOW)  # the same cause again: grouped into incident 1
        _until(extension.idle)
        roots = [c for c in rig.slack.calls_to("chat.postMessage") if "thread_ts" not in c.params]
        assert len(roots) == 1, "one thread root per incident, however often it is seen"
        assert rig.slack.calls_to("chat.update"), "the root is updated in place"
        assert any(
            c.params.get("blocks") and "Approval needed" in _texts(c.params["blocks"]) for c in rig.slack.calls_to("chat.postMessage")
        )
    finally:
        extension.stop()


def _incident_click_body(rig: Rig, action: str, user: str) -> str:
    """A signed-to-be click on a button of incident 1's thread root, carrying the root as Slack stores it."""
    assert rig.reporter is not None
    thread = rig.reporter.store.thread("incident-1")
    assert thread is not None
    return block_actions_body(
        action_id=action,
        value="1",
        user=user,
        channel=thread.channel,
        message_ts=thread.ts,
        block_id="incident:1",
        response_url=rig.slack.response_url(f"incident-{user}"),
        message=rig.slack.message(thread.channel, thread.ts),
    )


def _buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_expected_clicked_in_slack_resolves_suppresses_and_updates_the_root(rig: Rig) -> None:
    from agent.slack.blocks import ACKNOWLEDGE, EXPECTED, RESOLVE
    from pipelines.monitors import feedback

    rig.start()
    assert rig.agent is not None and rig.reporter is not None
    ctx = rig.agent.ctx
    thread = rig.reporter.incident(ctx.incidents.get(1))
    assert thread is not None
    assert _buttons(rig.slack.message(CHANNEL, thread.ts)) == [(ACKNOWLEDGE, "1"), (RESOLVE, "1"), (EXPECTED, "1")]

    body = _incident_click_body(rig, EXPECTED, "U_ALICE")
    assert rig.post(body, headers=signed_headers("not-the-secret", body)).status_code == 401
    assert rig.post(body, headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 401
    assert rig.post(_incident_click_body(rig, EXPECTED, "U_MALLORY")).status_code == 200
    rig.slack.wait_for("chat.postEphemeral")
    assert "Your Slack account (U_MALLORY) is not linked to a person" in rig.slack.ephemerals(user="U_MALLORY")[0]["text"]
    assert rig.post(_incident_click_body(rig, EXPECTED, "U_VICTOR")).status_code == 200
    rig.slack.wait_for("chat.postEphemeral", count=2)
    assert "victor may not act on incidents: role viewer" in rig.slack.ephemerals(user="U_VICTOR")[0]["text"]
    assert ctx.incidents.get(1).status == "open" and feedback.suppressions(ctx) == [] and feedback.labels(ctx) == []
    assert not rig.slack.calls_to("chat.update")

    assert rig.post(body).status_code == 200
    _until(lambda: bool(rig.slack.calls_to("chat.update")))
    root = rig.slack.message(CHANNEL, thread.ts)
    assert _buttons(root) == [], "a resolved incident has no buttons"
    shown = _texts(root["blocks"])
    assert "resolved" in shown and "by alice in Slack" in shown and "marked expected in Slack by alice" in shown
    [suppression] = feedback.suppressions(ctx)
    assert (suppression.actor, suppression.channel, suppression.reason) == ("alice", "slack", "marked expected in Slack by alice")
    assert suppression.expires_at == NOW + timedelta(days=30), "30 days on the agent's (platform) clock"
    assert [(x.verdict, x.actor) for x in feedback.labels(ctx)] == [("expected", "alice")]
    assert ctx.incidents.get(1).status == "resolved"
    remembered = rig.agent.memory().get("expected-1")
    assert remembered is not None and "marked expected in Slack by alice" in remembered.root_cause


def test_operators_and_group_members_acknowledge_and_resolve_from_slack(rig: Rig, tmp_path: Path) -> None:
    from agent.slack.blocks import ACKNOWLEDGE, EXPECTED, RESOLVE

    rig.start()
    assert rig.agent is not None and rig.reporter is not None
    ctx = rig.agent.ctx
    thread = rig.reporter.incident(ctx.incidents.get(1))
    assert thread is not None

    assert rig.post(_incident_click_body(rig, ACKNOWLEDGE, "U_OLIVE")).status_code == 200  # an operator
    _until(lambda: bool(rig.slack.calls_to("chat.update")))
    root = rig.slack.message(CHANNEL, thread.ts)
    assert _buttons(root) == [(RESOLVE, "1"), (EXPECTED, "1")] and "acknowledged* by olive in Slack" in _texts(root["blocks"])

    assert rig.post(_incident_click_body(rig, RESOLVE, "U_CAROL")).status_code == 200  # in the approvers' user group
    _until(lambda: len(rig.slack.calls_to("chat.update")) >= 2)
    assert ctx.incidents.get(1).status == "resolved"
    notes = [(n["actor"], n.get("channel"), n["status"]) for n in ctx.incidents.get(1).notes]
    assert notes == [("olive", "slack", "acknowledged"), ("slack:U_CAROL", "slack", "resolved")]

    late = rig.post(_incident_click_body(rig, RESOLVE, "U_BOB"))
    assert late.status_code == 200
    rig.slack.wait_for("chat.postEphemeral")
    assert "incident 1 is resolved; it can move to open, not resolved" in rig.slack.ephemerals(user="U_BOB")[0]["text"]
