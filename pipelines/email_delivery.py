"""Delivering the platform's emails from the outbox (pipelines/outbox.py) over SMTP, once each.

`SmtpDelivery.send` turns one queued `EmailPayload` into one SMTP transaction on `DATAOPS_SMTP_URL`
(smtp://, smtp+starttls:// or smtps://, signing in when the URL names a user). SMTP's answers are sorted
into `DeliveryError`s the outbox acts on:

- a server that cannot be reached, refuses the sign-in or the sender, or answers 4xx: transient, so messages
  wait (in order) until someone fixes the cause or the server is back;
- every recipient refused, or a 5xx to the message itself: permanent, so the queue moves on;
- the connection lost (or timed out) after the message's content was handed over: transient and
  `maybe_delivered`, because the server may have taken it.

SMTP cannot be asked whether a message arrived, so there is no `reconcile`: after a crash between hand-over
and the outbox's mark, or a lost answer, the message is sent once more (the outbox logs it). Each message
carries a Message-ID made from its outbox key, so the copy is the same message to a mail client, which
shows it once.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import socket
import ssl
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from config.email_settings import SmtpAddress
from pipelines.outbox import DeliveryError, OutboxMessage

log = logging.getLogger(__name__)
CHANNEL = "email"
TIMEOUT_S = 30.0
# SMTP's line limit, not the 78 of the default: Python folds a long Subject onto its own line, and some readers
# then show it with a leading blank.
POLICY = policy.SMTP.clone(max_line_length=998)
EmailKind = Literal["incident_opened", "incident_escalated", "approval_needed", "digest"]


class EmailPayload(BaseModel):
    """One queued email: who gets it and what it says, fixed when it was queued."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EmailKind
    to: tuple[str, ...]
    subject: str
    text: str
    severity: str | None = None


def message_id(key: str) -> str:
    """The same outbox key always makes the same Message-ID: a re-sent copy is the same message."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@dataops>"


def build_message(payload: EmailPayload, *, key: str, sender: str, queued_at: Any) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender
    msg["To"] = ", ".join(payload.to)
    msg["Subject"] = payload.subject
    msg["Date"] = format_datetime(queued_at)
    msg["Message-ID"] = message_id(key)
    msg["X-Dataops-Key"] = key
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the platform
    msg.set_content(payload.text)
    return msg


class SmtpDelivery:
    """`send` of the outbox's "email" channel."""

    def __init__(self, address: SmtpAddress, *, sender: str, timeout_s: float = TIMEOUT_S) -> None:
        self.address = address
        self.sender = sender
        self.timeout_s = timeout_s

    def send(self, message: OutboxMessage) -> dict[str, Any]:
        payload = EmailPayload.model_validate(message.payload)
        email = build_message(payload, key=message.key, sender=self.sender, queued_at=message.created_at)
        handed_over = False
        try:
            with self._connect() as smtp:
                if self.address.username:
                    smtp.login(self.address.username, self.address.password or "")
                handed_over = True  # from here the server may take the message whatever we hear back
                refused = smtp.send_message(email, from_addr=parseaddr(self.sender)[1], to_addrs=list(payload.to))
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP refused every recipient of {message.key}: {_codes(exc.recipients)}", transient=False) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP sign-in as {self.address.username!r} refused ({exc.smtp_code}); check DATAOPS_SMTP_URL; emails wait until fixed"
            ) from exc
        except smtplib.SMTPSenderRefused as exc:
            raise DeliveryError(f"SMTP refused the sender {exc.sender!r} ({exc.smtp_code}); check DATAOPS_EMAIL_FROM") from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500 and handed_over:
                raise DeliveryError(f"SMTP refused {message.key}: {exc.smtp_code} {_text(exc.smtp_error)}", transient=False) from exc
            raise DeliveryError(f"SMTP answered {exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            unreached = isinstance(exc, ConnectionRefusedError | socket.gaierror | smtplib.SMTPConnectError)
            where = f"{self.address.host}:{self.address.port}"
            raise DeliveryError(f"SMTP server {where}: {exc!r}", maybe_delivered=handed_over and not unreached) from exc
        log.info("email %s sent to %s", message.key, ", ".join(payload.to))
        return {"message_id": email["Message-ID"], "to": list(payload.to), "refused": _codes(refused)}

    def _connect(self) -> smtplib.SMTP:
        a = self.address
        context = ssl.create_default_context()
        if a.security == "tls":
            return smtplib.SMTP_SSL(a.host, a.port, timeout=self.timeout_s, context=context)
        smtp = smtplib.SMTP(a.host, a.port, timeout=self.timeout_s)
        try:
            if a.security == "starttls":
                smtp.starttls(context=context)
        except Exception:
            smtp.close()
            raise
        return smtp


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _codes(refused: dict[str, tuple[int, bytes]]) -> dict[str, str]:
    return {rcpt: f"{code} {_text(text)}" for rcpt, (code, text) in refused.items()}
