"""A real SMTP server on 127.0.0.1 (aiosmtpd), recording what it received; for the email notifier's tests.

Nothing on our side is replaced: smtplib connects, signs in (AUTH PLAIN/LOGIN over the plain connection,
which aiosmtpd allows when told to) and sends, as to any mail server::

    with SmtpServer(user="alerts", password="s3cret") as smtp:
        ... DATAOPS_SMTP_URL=smtp.url ...
        [mail] = smtp.wait_for(1)
        assert mail["Subject"].startswith("[dataops critical]")

`down()` stops listening (connections are refused, as with a mail server that is down) and `up()` listens
again on the same port, keeping what was received: an outage and its end. `refuse_next(code)` answers the
next DATA with that SMTP code (e.g. 451, a temporary failure) before accepting again; `answer_late(s)` keeps
the next message but answers only after `s` seconds (a sender with a shorter timeout cannot know it arrived).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import time
import warnings
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# AUTH over a plain connection: aiosmtpd warns at every session; this server is a test's, on the loopback.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS", category=UserWarning)
logging.getLogger("mail.log").setLevel(logging.ERROR)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        if self.server.refusals:
            return self.server.refusals.pop(0)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.server.received.append(mail)
        self.server.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.server.slow_answers:  # took the message, answers late: the sender may time out not knowing
            await asyncio.sleep(self.server.slow_answers.pop(0))
        return "250 OK"


class SmtpServer:
    def __init__(
        self, *, user: str | None = None, password: str | None = None, port: int = 0, tls: Literal["none", "starttls", "tls"] = "none",
        certificate: tuple[Path, Path] | None = None,
    ) -> None:  # fmt: skip
        self.user = user
        self.password = password
        self.port = port or _free_port()
        self.tls = tls
        self.certificate = certificate
        self.received: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refusals: list[str] = []
        self.slow_answers: list[float] = []
        self.logins: list[str] = []
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        scheme = {"none": "smtp", "starttls": "smtp+starttls", "tls": "smtps"}[self.tls]
        return f"{scheme}://{auth}127.0.0.1:{self.port}"

    def _authenticate(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == self.user and data.password.decode() == self.password
        if ok:
            self.logins.append(self.user or "")
        return AuthResult(success=ok, handled=False)

    def up(self) -> SmtpServer:
        kwargs: dict[str, Any] = {}
        if self.user:
            # STARTTLS: no AUTH before the upgrade. aiosmtpd does not count implicit TLS as TLS for AUTH, though that
            # connection is encrypted from its first byte; a plain server takes AUTH as it is (a test's, on the loopback).
            kwargs = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": self.tls == "starttls"}
        if self.tls != "none":
            assert self.certificate is not None, "a TLS server needs a certificate: self_signed(folder)"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*self.certificate)
            kwargs |= {"ssl_context": context} if self.tls == "tls" else {"tls_context": context, "require_starttls": True}
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def refuse_next(self, answer: str = "451 4.3.0 try again later") -> None:
        self.refusals.append(answer)

    def answer_late(self, seconds: float) -> None:
        """Keep the next message, but answer its DATA only after `seconds`."""
        self.slow_answers.append(seconds)

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[EmailMessage]:
        """The received messages once there are at least `count` (or fail after `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} emails, got {len(self.received)}: {[m['Subject'] for m in self.received]}")
            time.sleep(0.02)
        return list(self.received)

    def __enter__(self) -> SmtpServer:
        return self.up()

    def __exit__(self, *_exc: object) -> None:
        self.down()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, in `folder`; trust it with SSL_CERT_FILE=<certificate>."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path
