"""The email notifier: incident opened or escalated, approval needed, and a daily digest, by severity.

Every email is a row in the outbox first (channel "email", delivered by pipelines/email_delivery.py), so a
mail server that is down delays emails and never loses or repeats them. `dataops serve` runs the notifier
as a service extension when `DATAOPS_SMTP_URL` is set; the agent hands it approval requests
(agent/email_reporter.py), since approvals belong to an upper layer.

Routing (`DATAOPS_ALERT_EMAILS`): an address listed under a severity gets emails of that severity and
above (`warning=team@x` gets warning and critical); the digest goes to every address. Approval requests
take the severity of their incident (warning without one).

Deduplication: one outbox key per event, so queueing an event twice sends one email::

    email:incident-12:opened             email:incident-12:escalated:<escalated at>
    email:approval-A-1f2e3d:request      email:digest:<wall-clock day>

Rate limit: an address receives at most `DATAOPS_EMAIL_MAX_PER_HOUR` alert emails per real hour. What it
would have received beyond that is queued on the channel "email-held" instead, listed in the next digest
and then marked delivered (by that digest); the digest itself is never limited.

The notifier also looks at the ops database on every monitor tick, so incidents escalated by the agent
(or opened by another process) since it started are emailed too, and the day's digest goes out once the
wall clock passes `DATAOPS_EMAIL_DIGEST_HOUR` (UTC). Real time, not the replay clock: people read email
in real days. Incidents that Alertmanager's alerts opened (pipelines/alert_intake.py) are not emailed when
opened: Alertmanager emails those itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from config.email_settings import smtp_address
from config.errors import SettingsError
from config.settings import SEVERITIES
from pipelines.alert_intake import ALERT_KIND
from pipelines.context import PlatformContext
from pipelines.email_delivery import CHANNEL, EmailKind, EmailPayload, SmtpDelivery
from pipelines.incidents import Incident, IncidentRow
from pipelines.ledger import as_utc
from pipelines.outbox import Outbox, OutboxMessage, OutboxRow
from pipelines.outbox_backoff import outbox_backoff
from pipelines.outbox_worker import OutboxWorker


class _Hosting(Protocol):
    """What the notifier needs of the service that starts it (`pipelines.service.Service`)."""

    ctx: PlatformContext


log = logging.getLogger(__name__)
HELD = "email-held"
CATCH_UP_GRACE = timedelta(minutes=5)  # events just before the notifier started (a restart) are still emailed


class ApprovalNotice(BaseModel):
    """What an approval email says about a request (built by the agent layer from its `Approval`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    tool: str
    arguments: dict[str, Any]
    reason: str
    rule: str
    approvers: tuple[str, ...]
    expires_at: datetime
    incident_id: int | None = None


class EmailNotifier:
    """Queues the platform's emails and delivers them on a worker thread; a `dataops serve` extension."""

    def __init__(self, ctx: PlatformContext, *, clock: Callable[[], datetime] | None = None) -> None:
        s = ctx.settings
        if not s.smtp_url:
            raise SettingsError("the email notifier needs DATAOPS_SMTP_URL (e.g. smtp+starttls://mail.example.org:587)")
        if not s.alert_emails:
            raise SettingsError(
                "DATAOPS_SMTP_URL is set but DATAOPS_ALERT_EMAILS names nobody; e.g. 'critical=oncall@x.org;warning=team@x.org'"
            )
        self.ctx = ctx
        self.routes = s.alert_emails
        self.console_url = s.console_url
        self.max_per_hour = s.email_max_per_hour
        self.digest_hour = s.email_digest_hour
        self.clock = clock or (lambda: datetime.now(UTC))
        self.outbox = Outbox(ctx.ledger)
        self.delivery = SmtpDelivery(smtp_address(s.smtp_url), sender=s.email_from)
        self.backoff = outbox_backoff(s)
        self.started_at = self.clock()
        self.worker: OutboxWorker | None = None
        self.pending_approvals: Callable[[], list[ApprovalNotice]] | None = None  # set by the agent layer, for the digest
        self._budget = threading.Lock()

    # -- the service extension -----------------------------------------------------------------------------
    def start(self) -> EmailNotifier:
        if self.worker is None:
            a = self.delivery.address
            log.info("email: via %s:%d (%s) to %d address(es)", a.host, a.port, a.security, len(self.everyone()))
            self.worker = OutboxWorker(self.outbox, CHANNEL, self.delivery.send, backoff=self.backoff).start()
        return self

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def on_incident(self, incident: Incident, opened: bool) -> None:
        if opened and incident.kind != ALERT_KIND:
            self.incident_opened(incident)

    def tick(self) -> None:
        self.catch_up()
        self.digest_if_due()

    # -- routing -------------------------------------------------------------------------------------------
    def recipients(self, severity: str) -> tuple[str, ...]:
        """Addresses that get emails of `severity`: those listed under it or a lower one."""
        rank = _rank(severity)
        return tuple(dict.fromkeys(a for level, addresses in self.routes.items() if _rank(level) <= rank for a in addresses))

    def everyone(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a for addresses in self.routes.values() for a in addresses))

    # -- events --------------------------------------------------------------------------------------------
    def incident_opened(self, incident: Incident) -> OutboxMessage | None:
        text = f"Incident {incident.id} opened: {incident.title}\n\n{self._incident_facts(incident)}"
        return self._alert(
            f"email:incident-{incident.id}:opened",
            "incident_opened",
            incident.severity,
            f"incident {incident.id} opened: {incident.title}",
            text,
        )

    def incident_escalated(self, incident: Incident, *, at: datetime) -> OutboxMessage | None:
        last = next((n for n in reversed(incident.notes) if n.get("status") == "escalated"), None)
        why = f"\nWhy: {last['note']}\n" if last and last.get("note") else ""
        text = (
            f"Incident {incident.id} was escalated: the agent did not fix it, a person must look.{why}\n"
            f"{incident.title}\n\n{self._incident_facts(incident)}"
        )
        key = f"email:incident-{incident.id}:escalated:{as_utc(at):%Y%m%dT%H%M%S%f}"
        return self._alert(key, "incident_escalated", incident.severity, f"incident {incident.id} escalated: {incident.title}", text)

    def approval_needed(self, notice: ApprovalNotice) -> OutboxMessage | None:
        severity = "warning"
        if notice.incident_id is not None:
            severity = self.ctx.incidents.get(notice.incident_id).severity
        call = f"{notice.tool}({', '.join(f'{k}={v}' for k, v in notice.arguments.items())})"
        about = f"Incident: {self.console_url}/incidents/{notice.incident_id}\n" if notice.incident_id is not None else ""
        text = (
            f"The agent asks to run {call}.\n\n"
            f"Why: {notice.reason} (policy rule {notice.rule})\n"
            f"Who may decide: {', '.join(notice.approvers) or 'nobody listed'}\n"
            f"Expires: {notice.expires_at:%Y-%m-%d %H:%M} UTC\n{about}\n"
            f"Approve or deny in the console: {self.console_url}/approvals/{notice.id}\n"
            f"or in a shell: dataops approve {notice.id}   |   dataops deny {notice.id} --reason TEXT\n"
        )
        return self._alert(f"email:approval-{notice.id}:request", "approval_needed", severity, f"approval {notice.id} needed: {call}", text)

    def catch_up(self) -> list[OutboxMessage]:
        """Email incidents opened or escalated since the notifier started that no hook announced (other processes, the agent)."""
        since = self.started_at - CATCH_UP_GRACE
        with self.ctx.ledger.session() as s:
            opened = list(s.scalars(select(IncidentRow.id).where(IncidentRow.opened_wall_at >= since, IncidentRow.kind != ALERT_KIND)))
            escalated = list(
                s.execute(
                    select(IncidentRow.id, IncidentRow.escalated_at).where(
                        IncidentRow.status == "escalated", IncidentRow.escalated_at >= since
                    )
                )
            )
        queued = [self.incident_opened(self.ctx.incidents.get(i)) for i in opened]
        queued += [self.incident_escalated(self.ctx.incidents.get(i), at=at) for i, at in escalated if at is not None]
        return [m for m in queued if m is not None]

    # -- the digest ----------------------------------------------------------------------------------------
    def digest_if_due(self) -> OutboxMessage | None:
        now = self.clock()
        if now.hour < self.digest_hour:
            return None
        return self.digest(day=now.date())

    def digest(self, *, day: date) -> OutboxMessage:
        """Queue the digest of `day` (once): what happened since the previous digest, what is still open or waiting."""
        key = f"email:digest:{day.isoformat()}"
        existing = self.outbox.get(key)
        if existing is not None:
            return existing
        until = self.clock()
        previous = self.outbox.get(f"email:digest:{(day - timedelta(days=1)).isoformat()}")
        since = previous.created_at if previous else datetime.combine(day - timedelta(days=1), time(self.digest_hour), UTC)
        with self._budget:  # no email is held between listing the held ones and marking them delivered
            held = self.outbox.messages(HELD, status="pending")
            lines, subject = self._digest_text(since, until, held)
            message = self._enqueue(key, EmailPayload(kind="digest", to=self.everyone(), subject=f"[dataops] {subject}", text=lines))
            self.outbox.drain(HELD, lambda m: {"in_digest": key}, now=datetime.now(UTC) + timedelta(minutes=1))  # delivered by this digest
        return message

    def _digest_text(self, since: datetime, until: datetime, held: list[OutboxMessage]) -> tuple[str, str]:
        with self.ctx.ledger.session() as s:
            opened = list(s.scalars(select(IncidentRow.id).where(IncidentRow.opened_wall_at >= since, IncidentRow.opened_wall_at < until)))
            escalated = list(s.scalars(select(IncidentRow.id).where(IncidentRow.escalated_at >= since, IncidentRow.escalated_at < until)))
        unresolved = self.ctx.incidents.list(status="unresolved", limit=1000)
        approvals = self.pending_approvals() if self.pending_approvals is not None else []
        counts = {sev: sum(1 for i in unresolved if i.severity == sev) for sev in reversed(SEVERITIES)}
        out = [
            f"Daily digest of the dataops platform: {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC.",
            "",
            f"Unresolved incidents: {len(unresolved)} ({', '.join(f'{n} {sev}' for sev, n in counts.items())})",
            *(self._incident_line(i) for i in unresolved[:50]),
            "",
            f"Opened since the last digest: {len(opened)}",
            *(self._incident_line(self.ctx.incidents.get(i)) for i in opened[:50]),
            "",
            f"Escalated since the last digest: {len(escalated)}",
            *(self._incident_line(self.ctx.incidents.get(i)) for i in escalated[:50]),
            "",
            f"Approvals waiting: {len(approvals)}",
            *(f"  {a.id} {a.tool}: {a.reason}  {self.console_url}/approvals/{a.id}" for a in approvals),
        ]
        if held:
            out += ["", f"Not emailed on their own (at most {self.max_per_hour} alert emails per address an hour):"]
            out += [f"  to {', '.join(m.payload['to'])}: {m.payload['subject']}" for m in held]
        subject = (
            f"digest: {len(opened)} opened, {len(escalated)} escalated, {len(unresolved)} unresolved, {len(approvals)} approvals waiting"
        )
        return "\n".join(out) + "\n", subject

    # -- queueing ------------------------------------------------------------------------------------------
    def _alert(self, key: str, kind: EmailKind, severity: str, subject: str, text: str) -> OutboxMessage | None:
        """Queue one alert email to its severity's addresses, within each address's hourly budget."""
        existing = self.outbox.get(key)
        if existing is not None:
            return existing
        if self.outbox.get(f"{key}:held") is not None:
            return None
        to = self.recipients(severity)
        if not to:
            return None
        subject = _cut(f"[dataops {severity}] {subject}", 180)
        with self._budget:  # two threads queueing at once must not both take the last slot
            allowed, over = self._within_budget(to)
            if over:
                log.warning("email %s: rate limit reached for %s; it goes into the next digest", key, ", ".join(over))
                held = EmailPayload(kind=kind, to=over, subject=subject, text=text, severity=severity)
                self.outbox.enqueue(HELD, f"{key}:held", held.model_dump(mode="json"))
            if not allowed:
                return None
            payload = EmailPayload(kind=kind, to=allowed, subject=subject, text=text, severity=severity)
            return self._enqueue(key, payload)

    def _within_budget(self, to: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        cutoff = datetime.now(UTC) - timedelta(hours=1)
        with self.ctx.ledger.session() as s:
            recent = s.scalars(select(OutboxRow.payload).where(OutboxRow.channel == CHANNEL, OutboxRow.created_at >= cutoff))
            sent = [p.get("to", []) for p in recent if p.get("kind") != "digest"]
        counts = {a: sum(1 for t in sent if a in t) for a in to}
        return tuple(a for a in to if counts[a] < self.max_per_hour), tuple(a for a in to if counts[a] >= self.max_per_hour)

    def _enqueue(self, key: str, payload: EmailPayload) -> OutboxMessage:
        message = self.outbox.enqueue(CHANNEL, key, payload.model_dump(mode="json"))
        if self.worker is not None:
            self.worker.kick()
        return message

    # -- wording -------------------------------------------------------------------------------------------
    def _incident_facts(self, incident: Incident) -> str:
        evidence = incident.evidence[-1] if incident.evidence else {}
        shown = "\n".join(f"  {k}: {v}" for k, v in list(evidence.items())[:12])
        return (
            f"Severity: {incident.severity}\n"
            f"Table: {incident.table or '-'}\n"
            f"Kind: {incident.kind} (cause {incident.cause_key})\n"
            f"Status: {incident.status}; seen {incident.occurrences} time(s), detected {incident.detected_at.isoformat()} (platform clock)\n"
            + (f"Latest evidence:\n{shown}\n" if shown else "")
            + f"\nOpen it in the console: {self.console_url}/incidents/{incident.id}\n"
            f"or in a shell: dataops incident ack {incident.id} (or resolve, expected)\n"
        )

    def _incident_line(self, incident: Incident) -> str:
        return f"  #{incident.id} [{incident.severity}] {incident.status}: {_cut(incident.title, 120)}  {self.console_url}/incidents/{incident.id}"


def email_extension(service: _Hosting) -> EmailNotifier | None:
    """The notifier alongside `dataops serve` when DATAOPS_SMTP_URL is set (started), else None."""
    if not service.ctx.settings.smtp_url:
        return None
    return EmailNotifier(service.ctx).start()


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else SEVERITIES.index("warning")


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
