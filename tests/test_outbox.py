"""The outbox: idempotent queueing, in-order delivery with backoff, nothing sent twice across a crash, and
`dataops serve` outliving a Slack outage with every message delivered once, in order.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from agent.slack.delivery import CHANNEL, SlackDelivery, SlackPayload
from agent.slack.store import SlackStore
from pipelines import metrics
from pipelines.ledger import Ledger
from pipelines.outbox import LEASE, DeliveryError, Outbox, OutboxMessage
from pipelines.retry import Backoff
from policies.approvals import ApprovalStore
from tests.conftest import REPO
from tests.fakes.slack_api import FakeSlack, events_api_body, signed_headers
from tests.test_serve_process import free_port

T0 = datetime.now(UTC) + timedelta(days=1)  # every message queued by a test (however slow the suite before it) is due by then
FAST = Backoff(first_s=1.0, factor=2.0, max_wait_s=60.0, jitter=0.2)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ops.db'}")
    yield ledger
    ledger.engine.dispose()


class Neighbour:
    """A far side that records what it received and fails when told to."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.failures: list[DeliveryError] = []

    def send(self, message: OutboxMessage) -> dict[str, Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.received.append(message.key)
        return {"n": len(self.received)}


def test_enqueue_is_idempotent_on_the_key(ledger: Ledger) -> None:
    outbox = Outbox(ledger)
    first = outbox.enqueue("hook", "run-1:start", {"event": "START"})
    again = outbox.enqueue("hook", "run-1:start", {"event": "START, but queued again"})
    assert again.id == first.id and again.payload == {"event": "START"}
    assert [m.key for m in outbox.messages("hook")] == ["run-1:start"]
    neighbour = Neighbour()
    outbox.drain("hook", neighbour.send, now=T0)
    outbox.enqueue("hook", "run-1:start", {"event": "START"})  # after delivery too
    assert outbox.drain("hook", neighbour.send, now=T0).sent == 0
    assert neighbour.received == ["run-1:start"]


def test_delivery_is_in_order_and_waits_behind_a_failing_message(ledger: Ledger) -> None:
    outbox = Outbox(ledger)
    for key in ("a", "b", "c"):
        outbox.enqueue("hook", key, {"k": key})
    neighbour = Neighbour()
    neighbour.failures = [DeliveryError("down")]
    first = outbox.drain("hook", neighbour.send, now=T0, backoff=FAST)
    assert (first.sent, first.pending, neighbour.received) == (0, 3, [])
    assert first.next_attempt_at is not None and first.next_attempt_at > T0
    early = outbox.drain("hook", neighbour.send, now=first.next_attempt_at - timedelta(seconds=0.01), backoff=FAST)
    assert early.sent == 0, "nothing is attempted before the backoff is over"
    done = outbox.drain("hook", neighbour.send, now=first.next_attempt_at, backoff=FAST)
    assert (done.sent, done.pending, neighbour.received) == (3, 0, ["a", "b", "c"])
    assert [(m.key, m.status, m.attempts) for m in outbox.messages("hook")] == [("a", "sent", 2), ("b", "sent", 1), ("c", "sent", 1)]
    assert [m.result for m in outbox.messages("hook")] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_waits_grow_by_the_one_backoff_rule_and_honour_retry_after(ledger: Ledger) -> None:
    outbox = Outbox(ledger)
    outbox.enqueue("hook", "m", {})
    neighbour = Neighbour()
    neighbour.failures = [DeliveryError("down") for _ in range(4)] + [DeliveryError("slow down", retry_after_s=45)]
    now, waits = T0, []
    for _ in range(5):
        result = outbox.drain("hook", neighbour.send, now=now, backoff=FAST)
        assert result.next_attempt_at is not None
        waits.append((result.next_attempt_at - now).total_seconds())
        now = result.next_attempt_at
    assert waits[:4] == [pytest.approx(FAST.wait(n, seed="m"), abs=1e-3) for n in range(1, 5)]
    for n, wait in enumerate(waits[:4], start=1):
        assert 0.8 * 2 ** (n - 1) <= wait <= 1.2 * 2 ** (n - 1), "exponential, with at most 20% jitter"
    assert waits[4] == pytest.approx(45), "Retry-After wins over a shorter backoff"
    assert outbox.drain("hook", neighbour.send, now=now, backoff=FAST).sent == 1


def test_a_permanent_refusal_is_marked_failed_and_the_queue_moves_on(ledger: Ledger) -> None:
    outbox = Outbox(ledger)
    outbox.enqueue("hook", "bad", {})
    outbox.enqueue("hook", "good", {})
    neighbour = Neighbour()
    neighbour.failures = [DeliveryError("msg_too_long", transient=False)]
    result = outbox.drain("hook", neighbour.send, now=T0)
    assert (result.sent, result.failed, neighbour.received) == (1, 1, ["good"])
    [bad] = outbox.messages("hook", status="failed")
    assert bad.key == "bad" and bad.last_error == "msg_too_long"


def test_notifier_up_and_outbox_pending_follow_the_channel(ledger: Ledger) -> None:
    def sample(name: str) -> float | None:
        return metrics.REGISTRY.get_sample_value(name, {"channel": "gauge-test"})

    outbox = Outbox(ledger)
    outbox.enqueue("gauge-test", "m1", {})
    outbox.enqueue("gauge-test", "m2", {})
    assert sample("dataops_outbox_pending") == 2
    neighbour = Neighbour()
    neighbour.failures = [DeliveryError("connection refused")]
    retry_at = outbox.drain("gauge-test", neighbour.send, now=T0).next_attempt_at
    assert sample("dataops_notifier_up") == 0 and sample("dataops_outbox_pending") == 2
    outbox.drain("gauge-test", neighbour.send, now=retry_at)
    assert sample("dataops_notifier_up") == 1 and sample("dataops_outbox_pending") == 0


def test_a_maybe_delivered_failure_is_reconciled_before_it_is_sent_again(ledger: Ledger) -> None:
    outbox = Outbox(ledger)
    outbox.enqueue("hook", "m", {})
    arrived: list[str] = []
    asked: list[str] = []

    def send(message: OutboxMessage) -> dict[str, Any]:
        if not arrived:
            arrived.append(message.key)  # it got there, but the answer was lost
            raise DeliveryError("read timed out", maybe_delivered=True)
        arrived.append(message.key)
        return {}

    def reconcile(message: OutboxMessage) -> dict[str, Any] | None:
        asked.append(message.key)
        return {"found": True} if message.key in arrived else None

    retry_at = outbox.drain("hook", send, reconcile=reconcile, now=T0).next_attempt_at
    assert [m.uncertain for m in outbox.messages("hook")] == [True]
    assert outbox.drain("hook", send, reconcile=reconcile, now=retry_at).sent == 1
    assert arrived == ["m"] and asked == ["m"]
    [sent] = outbox.messages("hook")
    assert (sent.status, sent.result, sent.uncertain) == ("sent", {"found": True}, False)

    outbox.enqueue("hook", "n", {})
    refused = Neighbour()
    refused.failures = [DeliveryError("connection refused")]  # nothing left this host: no need to check
    retry_at = outbox.drain("hook", refused.send, reconcile=reconcile, now=T0).next_attempt_at
    outbox.drain("hook", refused.send, reconcile=reconcile, now=retry_at)
    assert asked == ["m"] and refused.received == ["n"]


_CRASHING_SENDER = """
import os, signal, sys
from pipelines.ledger import Ledger
from pipelines.outbox import Outbox

url, log = sys.argv[1], sys.argv[2]
outbox = Outbox(Ledger(url))
outbox.enqueue("hook", "first", {})
outbox.enqueue("hook", "second", {})

def send(message):
    with open(log, "a") as f:
        f.write(message.key + "\\n")
    os.kill(os.getpid(), signal.SIGKILL)  # killed after the send, before the mark

outbox.drain("hook", send)
"""


@pytest.mark.parametrize("can_check", [True, False], ids=["reconciled", "no-reconcile"])
def test_a_process_killed_between_send_and_mark_sends_nothing_twice(tmp_path: Path, can_check: bool) -> None:
    url, log = f"sqlite:///{tmp_path / 'ops.db'}", tmp_path / "received.log"
    child = subprocess.run([sys.executable, "-c", _CRASHING_SENDER, url, str(log)], cwd=REPO, timeout=120)
    assert child.returncode == -signal.SIGKILL
    assert log.read_text().split() == ["first"]
    ledger = Ledger(url)
    outbox = Outbox(ledger)
    assert [(m.key, m.status) for m in outbox.messages("hook")] == [("first", "sending"), ("second", "pending")]

    def send(message: OutboxMessage) -> dict[str, Any]:
        with log.open("a") as f:
            f.write(message.key + "\n")
        return {}

    def reconcile(message: OutboxMessage) -> dict[str, Any] | None:
        return {"reconciled": True} if message.key in log.read_text().split() else None

    result = outbox.drain("hook", send, reconcile=reconcile if can_check else None)
    assert result.sent == 2
    if can_check:
        assert log.read_text().split() == ["first", "second"], "the first message arrived once"
        assert outbox.get("first") is not None and outbox.get("first").result == {"reconciled": True}  # type: ignore[union-attr]
    else:  # the documented window of a channel that cannot check: one duplicate, in order
        assert log.read_text().split() == ["first", "first", "second"]
    ledger.engine.dispose()


def test_two_drains_of_one_queue_send_each_message_once_in_order(ledger: Ledger) -> None:
    import threading

    outboxes = [Outbox(ledger), Outbox(ledger)]  # two processes' worth: separate locks, one database
    for n in range(30):
        outboxes[0].enqueue("hook", f"m{n:02d}", {})
    received: list[str] = []
    guard = threading.Lock()

    def send(message: OutboxMessage) -> dict[str, Any]:
        with guard:
            received.append(message.key)
        time.sleep(0.002)
        return {}

    def drain(outbox: Outbox) -> None:
        deadline = time.monotonic() + 30
        while outbox.pending("hook") and time.monotonic() < deadline:
            outbox.drain("hook", send)

    threads = [threading.Thread(target=drain, args=(o,)) for o in outboxes for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert received == [f"m{n:02d}" for n in range(30)]


# -- Slack ---------------------------------------------------------------------------------------------------------
class _Crash(BaseException):
    """The process dying right after Slack took a post."""


class _CrashingClient(WebClient):
    crash = True

    def chat_postMessage(self, **kwargs: Any) -> Any:  # type: ignore[override]
        answer = super().chat_postMessage(**kwargs)
        if self.crash:
            raise _Crash
        return answer


def test_a_slack_post_whose_mark_was_lost_is_found_by_its_key_not_posted_again(ledger: Ledger) -> None:
    with FakeSlack() as slack:
        client = _CrashingClient(token=slack.bot_token, base_url=slack.api_url)
        store = SlackStore(ledger)
        delivery = SlackDelivery(client, channel="C_OPS", store=store, approvals=ApprovalStore(ledger))
        outbox = Outbox(ledger)
        outbox.enqueue(CHANNEL, "incident-1:root", SlackPayload(kind="incident", thread="incident-1", text="root").model_dump())
        outbox.enqueue(CHANNEL, "incident-1:reply", SlackPayload(kind="reply", thread="incident-1", text="step").model_dump())
        start = datetime.now(UTC)
        for restart in (1, 2):  # the root, then (after a restart) its reply: each crashes right after the post
            with pytest.raises(_Crash):  # a claim whose lease is over is taken over as uncertain
                outbox.drain(CHANNEL, delivery.send, reconcile=delivery.reconcile, now=start + 2 * restart * LEASE)
        client.crash = False
        assert outbox.drain(CHANNEL, delivery.send, reconcile=delivery.reconcile, now=start + 6 * LEASE).sent == 1  # the reply
        assert [(m.key, m.status) for m in outbox.messages(CHANNEL)] == [("incident-1:root", "sent"), ("incident-1:reply", "sent")]

        posts = slack.calls_to("chat.postMessage")
        assert [p.params["text"] for p in posts] == ["root", "step"], "each posted once"
        thread = store.thread("incident-1")
        assert thread is not None and thread.ts == posts[0].response["ts"], "the root's ts was recovered from the history"
        assert posts[1].params["thread_ts"] == thread.ts
        assert [c.method for c in slack.calls if c.method.startswith("conversations.")] == [
            "conversations.history",
            "conversations.replies",
        ]


# -- dataops serve through an outage ------------------------------------------------------------------------------
SECRET = "s3cret-signing"


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _gauge(body: str, name: str, channel: str = "slack") -> float | None:
    prefix = f'{name}{{channel="{channel}"}} '
    return next((float(line.removeprefix(prefix)) for line in body.splitlines() if line.startswith(prefix)), None)


def _until(check: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert process.poll() is None, f"serve exited {process.returncode}:\n{log.read_text()[-4000:]}"
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def _mention(slack_port: int, text: str, ts: str) -> int:
    body = events_api_body("app_mention", channel="C_OPS", user="U_DAVE", text=f"<@UBOT> {text}", ts=ts)
    request = urllib.request.Request(
        f"http://127.0.0.1:{slack_port}/slack/events", data=body.encode(), headers=signed_headers(SECRET, body), method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


@pytest.mark.slow
@pytest.mark.parametrize("outage_s", [6.0])
def test_serve_outlives_a_slack_outage_and_every_message_arrives_once_in_order(tmp_path: Path, outage_s: float) -> None:
    from config.settings import load_settings
    from pipelines.context import PlatformContext
    from pipelines.incidents import Finding

    home, metrics_port, slack_port = tmp_path / "home", free_port(), free_port()
    ctx = PlatformContext.open(load_settings(home=home))
    finding = Finding(kind="freshness", severity="warning", table="silver.carbon_intensity", cause_key="outage-test", title="no new slots")
    ctx.incidents.report(finding, now=datetime(2023, 1, 1, tzinfo=UTC))
    with FakeSlack() as slack:
        slack.down()  # unreachable from the start
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")} | {
            "DATAOPS_HOME": str(home), "DATAOPS_METRICS_PORT": str(metrics_port), "DATAOPS_MONITOR_INTERVAL_S": "1",
            "DATAOPS_REPLAY_SPEED": "3600", "DATAOPS_SLACK_BOT_TOKEN": slack.bot_token, "DATAOPS_SLACK_SIGNING_SECRET": SECRET,
            "DATAOPS_SLACK_CHANNEL": "C_OPS", "DATAOPS_SLACK_PORT": str(slack_port), "DATAOPS_SLACK_API_URL": slack.api_url,
            "DATAOPS_OUTBOX_BACKOFF_S": "0.2",
        }  # fmt: skip
        log = tmp_path / "serve.log"
        with log.open("w") as out:
            dataops = str(Path(sys.executable).with_name("dataops"))  # the whole command: the agent and Slack attach to serve
            process = subprocess.Popen([dataops, "serve"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            outbox = Outbox(ctx.ledger)
            finished = lambda: [r.run_id for r in ctx.ledger.runs(limit=500) if r.status in ("succeeded", "quarantined")]  # noqa: E731

            # Down at start: serve runs pipelines, the incident's thread waits in the outbox, the gauge says down.
            _until(lambda: outbox.pending(CHANNEL) > 0, "messages queued while Slack is down", process, log)
            _until(lambda: _gauge(_scrape(metrics_port), "dataops_notifier_up") == 0, "notifier_up 0", process, log)
            runs_before = len(finished())
            time.sleep(outage_s)
            _until(lambda: len(finished()) > runs_before, "a pipeline run finished during the outage", process, log)
            assert not slack.calls, "nothing reached Slack while it was down"

            slack.up()
            _until(lambda: outbox.pending(CHANNEL) == 0, "the queue delivered after Slack came back", process, log)
            _until(lambda: _gauge(_scrape(metrics_port), "dataops_notifier_up") == 1, "notifier_up 1", process, log)
            assert _gauge(_scrape(metrics_port), "dataops_outbox_pending") == 0

            # Down later: a question asked in Slack just before the outage is answered once it ends.
            assert _mention(slack_port, "what is open?", "1700000100.000100") == 200
            _until(lambda: bool(slack.replies("C_OPS", "1700000100.000100")), "the first answer", process, log)
            slack.down()
            assert _mention(slack_port, "status", "1700000200.000100") == 200  # Slack's request reaches us; our answer cannot
            _until(lambda: _gauge(_scrape(metrics_port), "dataops_notifier_up") == 0, "notifier_up 0 again", process, log)
            runs_before = len(finished())
            time.sleep(outage_s)
            _until(lambda: len(finished()) > runs_before, "a pipeline run finished during the second outage", process, log)
            slack.up()
            _until(lambda: bool(slack.replies("C_OPS", "1700000200.000100")), "the answer held back", process, log)
            _until(lambda: outbox.pending(CHANNEL) == 0, "an empty queue", process, log)
            _until(lambda: _gauge(_scrape(metrics_port), "dataops_notifier_up") == 1, "notifier_up 1 again", process, log)

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=120) == 0, log.read_text()[-4000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

        queued = outbox.messages(CHANNEL)
        assert queued and all(m.status == "sent" for m in queued), [(m.key, m.status, m.last_error) for m in queued]
        posts = [c for c in slack.calls_to("chat.postMessage") if c.response.get("ok")]
        keys = [c.params["metadata"]["event_payload"]["key"] for c in posts]
        assert len(keys) == len(set(keys)), "no message was posted twice"
        posted_in_order = [m.key for m in queued if m.result and m.key in set(keys)]
        assert keys == posted_in_order, "posted in the order queued"
        assert {m.key for m in queued if m.payload["kind"] in ("reply", "approval")} <= set(keys), "every reply arrived"
        roots = {c.response["ts"] for c in posts if "thread_ts" not in c.params}
        incidents = {m.group for m in queued if m.payload["kind"] == "incident"}
        assert "incident-1" in incidents and len(roots) == len(incidents), "one thread root per incident"
        questions = {"1700000100.000100", "1700000200.000100"}
        into_roots = [c.params["thread_ts"] in roots for c in posts if c.params.get("thread_ts") not in questions | {None}]
        assert into_roots and all(into_roots), "the incidents' replies went into their roots"


def test_serve_works_on_with_the_model_endpoint_down_and_the_incident_says_so(ctx: Any) -> None:
    from agent.report import Reporters
    from agent.service_hook import AgentExtension
    from pipelines.clock import SteppedClock
    from pipelines.incidents import Finding
    from pipelines.service import Service

    ctx.settings = ctx.settings.model_copy(
        update={"llm_base_url": f"http://127.0.0.1:{free_port()}/v1", "llm_model": "m", "llm_max_retries": 0}
    )
    now = datetime(2023, 1, 3, 10, 20, tzinfo=UTC)
    service = Service(ctx, clock=SteppedClock(current=now), sleep=lambda _s: None)
    extension = AgentExtension(service, reporter=Reporters(), slack=False)
    service.extensions = [extension]
    try:
        finding = Finding(kind="freshness", severity="warning", table="silver.carbon_intensity", cause_key="model-down", title="late")
        [incident] = service.report([finding], now)
        deadline = time.monotonic() + 60
        while not extension.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        escalated = ctx.incidents.get(incident.id)
        assert escalated.status == "escalated" and escalated.notes[-1]["note"].startswith("the model failed: ")
        service.tick("carbon_intensity")  # the pipelines run on
        assert [r.status for r in service.results] == ["succeeded"]
    finally:
        extension.stop()
