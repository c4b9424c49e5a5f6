"""The email notifier against a real SMTP server (aiosmtpd on 127.0.0.1): each email arrives once, routed by
severity, through an outage, within the hourly limit, with the daily digest listing what was held back."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.email_reporter import EmailReporter
from config.errors import SettingsError
from config.redact import redact
from config.settings import DataopsSettings, load_settings
from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.email_delivery import CHANNEL, message_id
from pipelines.email_notifier import HELD, ApprovalNotice, EmailNotifier
from pipelines.incidents import Finding, Incident, Severity
from pipelines.service import Service
from policies.approvals import ApprovalStore
from tests.fakes.smtp_server import SmtpServer, self_signed

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
PASSWORD = "s3cret-smtp-pw"
LATER = datetime.now(UTC) + timedelta(days=1)  # a drain "now" by which every retry is due


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(user="alerts", password=PASSWORD) as server:
        yield server


def open_ctx(tmp_path: Path, smtp: SmtpServer, **overrides: Any) -> PlatformContext:
    defaults: dict[str, Any] = {
        "alert_emails": "critical=oncall@example.org;warning=team@example.org,lead@example.org",
        "email_from": "dataops@example.org",
        "outbox_backoff_s": 0.1,
    }
    settings = load_settings(home=tmp_path / "home", smtp_url=smtp.url, **(defaults | overrides))
    return PlatformContext.open(settings)


@pytest.fixture
def ctx(tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[PlatformContext]:
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    context = open_ctx(tmp_path, smtp)
    yield context
    context.ledger.engine.dispose()


def incident(ctx: PlatformContext, n: int, severity: Severity = "critical") -> Incident:
    finding = Finding(
        kind="freshness",
        severity=severity,
        table=f"silver.t{n}",
        cause_key=f"m{n}",
        title=f"silver.t{n} is stale",
        evidence={"lag_s": 4 * 3600},
    )
    opened, _ = ctx.incidents.report(finding, now=datetime(2023, 1, 2, tzinfo=UTC))
    return opened


def drain(notifier: EmailNotifier) -> Any:
    return notifier.outbox.drain(CHANNEL, notifier.delivery.send, now=LATER, backoff=notifier.backoff)


def test_an_opened_incident_is_emailed_once_with_its_console_link(ctx: PlatformContext, smtp: SmtpServer) -> None:
    notifier = EmailNotifier(ctx)
    opened = incident(ctx, 1)
    notifier.on_incident(opened, True)
    notifier.on_incident(opened, True)  # the same event twice
    notifier.catch_up()  # and found again in the ops database
    assert drain(notifier).sent == 1
    assert drain(notifier).sent == 0
    [mail] = smtp.wait_for(1)
    assert mail["Subject"] == f"[dataops critical] incident {opened.id} opened: silver.t1 is stale"
    assert mail["From"] == "dataops@example.org"
    assert mail["Message-ID"] == message_id(f"email:incident-{opened.id}:opened")
    body = mail.get_content()
    assert f"http://127.0.0.1:8400/incidents/{opened.id}" in body
    assert "Table: silver.t1" in body and "lag_s: 14400" in body
    assert smtp.logins == ["alerts"], "it signs in with the user and password of DATAOPS_SMTP_URL"
    assert metrics.NOTIFIER_UP.labels(CHANNEL)._value.get() == 1


def test_emails_are_routed_by_lowest_severity(ctx: PlatformContext, smtp: SmtpServer) -> None:
    notifier = EmailNotifier(ctx)
    assert notifier.recipients("critical") == ("oncall@example.org", "team@example.org", "lead@example.org")
    assert notifier.recipients("warning") == ("team@example.org", "lead@example.org")
    assert notifier.recipients("info") == ()
    notifier.on_incident(incident(ctx, 1, "critical"), True)
    notifier.on_incident(incident(ctx, 2, "warning"), True)
    notifier.on_incident(incident(ctx, 3, "info"), True)
    drain(notifier)
    smtp.wait_for(2)
    assert [sorted(rcpts) for _sender, rcpts in smtp.envelopes] == [
        ["lead@example.org", "oncall@example.org", "team@example.org"],
        ["lead@example.org", "team@example.org"],
    ]
    assert notifier.outbox.pending(CHANNEL) == 0 and len(notifier.outbox.messages(CHANNEL)) == 2, "nobody listed for info: nothing queued"


def test_smtp_down_then_up_every_email_arrives_once_in_order(ctx: PlatformContext, smtp: SmtpServer) -> None:
    notifier = EmailNotifier(ctx)
    smtp.down()
    for n in range(1, 4):
        notifier.on_incident(incident(ctx, n), True)
    failed = notifier.outbox.drain(CHANNEL, notifier.delivery.send, backoff=notifier.backoff)
    assert (failed.sent, failed.pending) == (0, 3), "a server that is down delays, never drops"
    assert metrics.NOTIFIER_UP.labels(CHANNEL)._value.get() == 0
    [head] = [m for m in notifier.outbox.messages(CHANNEL) if m.last_error]
    assert "Connection refused" in (head.last_error or "") or "111" in (head.last_error or "")
    smtp.up()
    smtp.refuse_next("451 4.3.0 mailbox busy")  # and a temporary refusal on the way back
    notifier.start()  # the worker retries on its own, with backoff
    try:
        mails = smtp.wait_for(3)
    finally:
        notifier.stop()
    assert [m["Subject"].split(":")[0] for m in mails] == [f"[dataops critical] incident {n} opened" for n in range(1, 4)]
    assert drain(notifier).sent == 0 and len(smtp.received) == 3
    assert metrics.NOTIFIER_UP.labels(CHANNEL)._value.get() == 1


def test_the_hourly_limit_holds_and_the_digest_lists_the_held_emails(tmp_path: Path, smtp: SmtpServer) -> None:
    ctx = open_ctx(tmp_path, smtp, email_max_per_hour=2, alert_emails="warning=team@example.org")
    notifier = EmailNotifier(ctx)
    for n in range(1, 6):
        notifier.on_incident(incident(ctx, n), True)
    drain(notifier)
    assert [m["Subject"] for m in smtp.wait_for(2)] == [f"[dataops critical] incident {n} opened: silver.t{n} is stale" for n in (1, 2)]
    assert [m.key for m in notifier.outbox.messages(HELD, status="pending")] == [f"email:incident-{n}:opened:held" for n in (3, 4, 5)]
    notifier.on_incident(ctx.incidents.get(3), True)  # a held email is not held (or sent) twice
    assert len(notifier.outbox.messages(HELD)) == 3

    digest = notifier.digest(day=date.today())
    assert notifier.digest(day=date.today()).key == digest.key == f"email:digest:{date.today().isoformat()}"
    drain(notifier)
    mails = smtp.wait_for(3)
    assert len(mails) == 3, "the digest is not limited, and goes once"
    body = mails[2].get_content()
    assert "Not emailed on their own (at most 2 alert emails per address an hour):" in body
    for n in (3, 4, 5):
        assert f"to team@example.org: [dataops critical] incident {n} opened: silver.t{n} is stale" in body
    assert notifier.outbox.messages(HELD, status="pending") == [], "held emails are delivered by the digest"
    assert notifier.digest(day=date.today() + timedelta(days=1)).payload["text"].count("Not emailed on their own") == 0
    ctx.ledger.engine.dispose()


def test_the_digest_tells_what_happened_and_what_waits(ctx: PlatformContext, smtp: SmtpServer) -> None:
    notifier = EmailNotifier(ctx)
    first, second = incident(ctx, 1), incident(ctx, 2, "warning")
    ctx.incidents.transition(first.id, "escalated", note="runbook stale_source ran out of steps", actor="agent")
    ctx.incidents.transition(second.id, "resolved", note="backfilled", actor="alice")
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    notifier.pending_approvals = lambda: [
        ApprovalNotice(id="A-1", tool="backfill", arguments={}, reason="writes 9 days", rule="r", approvers=("bob",), expires_at=expires)
    ]
    digest = notifier.digest(day=date.today())
    assert digest.payload["to"] == ["oncall@example.org", "team@example.org", "lead@example.org"], "every address gets the digest"
    assert digest.payload["subject"] == "[dataops] digest: 2 opened, 1 escalated, 1 unresolved, 1 approvals waiting"
    drain(notifier)
    text = smtp.wait_for(1)[0].get_content()
    assert "Unresolved incidents: 1 (1 critical, 0 warning, 0 info)" in text
    assert f"  #{first.id} [critical] escalated: silver.t1 is stale  http://127.0.0.1:8400/incidents/{first.id}" in text
    assert "Opened since the last digest: 2" in text and f"#{second.id} [warning] resolved" in text
    assert "Escalated since the last digest: 1" in text
    assert "  A-1 backfill: writes 9 days  http://127.0.0.1:8400/approvals/A-1" in text


def test_ticks_email_escalations_and_the_digest_once(ctx: PlatformContext, smtp: SmtpServer) -> None:
    wall = [datetime(2026, 3, 2, 6, 0, tzinfo=UTC)]  # before the digest hour (7 UTC)
    notifier = EmailNotifier(ctx, clock=lambda: wall[0])
    opened = incident(ctx, 1)
    ctx.incidents.transition(opened.id, "escalated", note="the fix was not verified", actor="agent")
    notifier.tick()
    notifier.tick()
    drain(notifier)
    mails = smtp.wait_for(2)
    assert [m["Subject"].split(":")[0] for m in mails] == [f"[dataops critical] incident {opened.id} {e}" for e in ("opened", "escalated")]
    assert "Why: the fix was not verified" in mails[1].get_content()
    wall[0] = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
    notifier.tick()
    notifier.tick()
    drain(notifier)
    assert [m["Subject"].split(":")[0] for m in smtp.wait_for(3)] == [
        f"[dataops critical] incident {opened.id} {e}" for e in ("opened", "escalated")
    ] + ["[dataops] digest"]
    assert len(smtp.received) == 3


def test_an_approval_request_is_emailed_with_its_console_page(ctx: PlatformContext, smtp: SmtpServer) -> None:
    notifier = EmailNotifier(ctx)
    about = incident(ctx, 1, "warning")
    store = ApprovalStore(ctx.ledger)
    approval, _ = store.request(
        call_id="c1", thread_id=f"incident-{about.id}", tool="backfill", arguments={"pipeline": "carbon_intensity"}, target={},
        reason="writes 9 days", rule="backfill_needs_approval", approvers=["bob"], requested_by="agent", ttl=timedelta(hours=4),
        incident_id=about.id,
    )  # fmt: skip
    reporter = EmailReporter(notifier, store)
    reporter.approval_requested(approval)
    reporter.approval_requested(approval)
    drain(notifier)
    [mail] = smtp.wait_for(1)
    assert mail["Subject"] == f"[dataops warning] approval {approval.id} needed: backfill(pipeline=carbon_intensity)"
    assert sorted(smtp.envelopes[0][1]) == ["lead@example.org", "team@example.org"], "the incident's severity routes it"
    body = mail.get_content()
    assert f"http://127.0.0.1:8400/approvals/{approval.id}" in body and f"dataops approve {approval.id}" in body
    assert "Who may decide: bob" in body and "policy rule backfill_needs_approval" in body
    assert [a.id for a in notifier.pending_approvals()] == [approval.id] if notifier.pending_approvals else False


def test_serve_starts_the_notifier_when_smtp_is_set(ctx: PlatformContext, smtp: SmtpServer) -> None:
    service = Service(ctx)
    service.attach_extensions()
    [notifier] = service.extensions
    assert isinstance(notifier, EmailNotifier) and notifier.worker is not None
    try:
        service.report([Finding(kind="volume", severity="critical", table="bronze.x", cause_key="v", title="no rows")], datetime.now(UTC))
        [mail] = smtp.wait_for(1)
        assert mail["Subject"] == "[dataops critical] incident 1 opened: no rows"
    finally:
        service.stop()


def test_serve_refuses_smtp_without_recipients(tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAOPS_ALERT_EMAILS", raising=False)
    ctx = PlatformContext.open(load_settings(home=tmp_path / "home", smtp_url=smtp.url))
    with pytest.raises(SettingsError, match="DATAOPS_SMTP_URL is set but DATAOPS_ALERT_EMAILS names nobody"):
        Service(ctx).attach_extensions()
    ctx.ledger.engine.dispose()


def test_the_smtp_password_is_masked_everywhere(ctx: PlatformContext, smtp: SmtpServer, caplog: pytest.LogCaptureFixture) -> None:
    url = f"smtp+starttls://alerts:{PASSWORD}@mail.example.org:587"
    assert PASSWORD not in redact(f"connecting to {url}") and "alerts:***@mail.example.org" in redact(url)
    assert PASSWORD in DataopsSettings(smtp_url=url).secret_values(), "registered as a secret: masked wherever it shows"
    smtp.password = "another"  # the server no longer takes ours: sign-in refused
    notifier = EmailNotifier(ctx)
    notifier.on_incident(incident(ctx, 1), True)
    with caplog.at_level(logging.INFO):
        result = drain(notifier)
    assert result.pending == 1, "a refused sign-in keeps emails waiting until it is fixed"
    [message] = notifier.outbox.messages(CHANNEL)
    assert "sign-in as 'alerts' refused (535); check DATAOPS_SMTP_URL" in (message.last_error or "")
    assert PASSWORD not in caplog.text + (message.last_error or "")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("http://mail.example.org", "not an SMTP URL with a host"),
        ("smtp://", "not an SMTP URL with a host"),
        (f"smtps://alerts:{PASSWORD}@mail.example.org:70000", "the URL's port is not valid"),
        ("smtp://mail.example.org/inbox", "an SMTP URL has no path or query"),
    ],
)
def test_a_bad_smtp_url_is_refused_at_settings_load(value: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAOPS_SMTP_URL", value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"DATAOPS_SMTP_URL={redact(repr(value))} is not valid: {says}")
    assert PASSWORD not in message
    if "port" not in says:
        assert message.endswith(
            "valid: smtp://host:25, smtp+starttls://host:587 or smtps://host:465, with user:password@ before the host to sign in"
        )


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (
            "urgent=a@example.org",
            "DATAOPS_ALERT_EMAILS='urgent=a@example.org' is not valid: unknown severity 'urgent'; valid: info, warning, critical",
        ),
        ("critical=oncall", "'oncall' is not an email address; valid: name@example.org"),
        ("=a@example.org", "names no severity"),
    ],
)
def test_bad_email_routes_are_refused_at_settings_load(value: str, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAOPS_ALERT_EMAILS", value)
    with pytest.raises(SettingsError, match=says.replace("(", r"\(").replace(")", r"\)")):
        load_settings()


def test_a_bad_smtp_url_stops_the_cli_with_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    env |= {"DATAOPS_HOME": str(tmp_path / "home"), "DATAOPS_SMTP_URL": f"smtp://alerts:{PASSWORD}@mail.example.org:0x19"}
    done = subprocess.run([str(Path(sys.executable).with_name("dataops")), "status"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "DATAOPS_SMTP_URL='smtp://alerts:***@mail.example.org:0x19' is not valid" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr and "Traceback" not in done.stderr


def test_the_agent_in_serve_emails_its_approval_requests(ctx: PlatformContext, smtp: SmtpServer) -> None:
    from agent.report import Reporters
    from agent.service_hook import AgentExtension

    service = Service(ctx)
    service.attach_extensions()  # the email notifier, as `dataops serve` starts it
    agent = AgentExtension(service, reporter=Reporters(), slack=False)
    try:
        approval, _ = ApprovalStore(ctx.ledger).request(
            call_id="c2", thread_id="chat-1", tool="pause_pipeline", arguments={"pipeline": "weather"}, target={},
            reason="pauses a schedule", rule="pause_needs_approval", approvers=["bob"], requested_by="alice",
            ttl=timedelta(hours=1),
        )  # fmt: skip
        agent.agent.reporter.approval_requested(approval)  # what the graph's review node calls
        [mail] = smtp.wait_for(1)
        assert mail["Subject"] == f"[dataops warning] approval {approval.id} needed: pause_pipeline(pipeline=weather)"
    finally:
        agent.stop()
        service.stop()


def test_a_lost_answer_sends_the_email_again_as_the_same_message(ctx: PlatformContext, smtp: SmtpServer) -> None:
    """SMTP cannot be asked whether a message arrived: after a timeout it is sent again, with the same Message-ID,
    so a mail client shows it once. Nothing is lost."""
    notifier = EmailNotifier(ctx)
    notifier.delivery.timeout_s = 0.5
    notifier.on_incident(incident(ctx, 1), True)
    smtp.answer_late(1.5)
    first = notifier.outbox.drain(CHANNEL, notifier.delivery.send, backoff=notifier.backoff)
    assert first.pending == 1
    [waiting] = notifier.outbox.messages(CHANNEL)
    assert waiting.uncertain, "the server may have taken it"
    assert drain(notifier).sent == 1
    copies = smtp.wait_for(2)
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"] == message_id("email:incident-1:opened")


@pytest.mark.parametrize("tls", ["starttls", "tls"])
def test_smtps_and_starttls_sign_in_over_a_verified_tls_connection(
    tls: Literal["starttls", "tls"], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust the test's certificate, as a system CA would be
    with SmtpServer(user="alerts", password=PASSWORD, tls=tls, certificate=certificate) as server:
        ctx = open_ctx(tmp_path, server)
        notifier = EmailNotifier(ctx)
        notifier.on_incident(incident(ctx, 1), True)
        assert drain(notifier).sent == 1
        assert server.logins == ["alerts"] and len(server.wait_for(1)) == 1
        ctx.ledger.engine.dispose()


def test_a_certificate_that_does_not_verify_keeps_emails_waiting(tmp_path: Path) -> None:
    with SmtpServer(tls="tls", certificate=self_signed(tmp_path)) as server:
        ctx = open_ctx(tmp_path, server)
        notifier = EmailNotifier(ctx)
        notifier.on_incident(incident(ctx, 1), True)
        result = notifier.outbox.drain(CHANNEL, notifier.delivery.send, backoff=notifier.backoff)
        assert (result.sent, result.pending) == (0, 1) and server.received == []
        assert "CERTIFICATE_VERIFY_FAILED" in (notifier.outbox.messages(CHANNEL)[0].last_error or "")
        ctx.ledger.engine.dispose()
