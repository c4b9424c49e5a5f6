"""Mail addressing in settings: the SMTP server URL (`smtp_url`), email addresses and the routes of alert emails.

`smtp_address` turns `smtp_url` into the host, port, security and login the email notifier connects with
(pipelines/email_delivery.py); `parse_email_routes` reads `alert_emails` ('critical=a@x;warning=b@x,c@x').
Both raise ValueError naming the expected form, which settings validation reports with the setting's name.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

SMTP_SCHEMES: dict[str, tuple[Literal["none", "starttls", "tls"], int]] = {
    "smtp": ("none", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
SMTP_FORMS = "smtp://host:25, smtp+starttls://host:587 or smtps://host:465, with user:password@ before the host to sign in"
EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")
"""One email address, as `alert_emails` and `email_from` accept it."""


class SmtpAddress(BaseModel):
    """Where and how the email notifier reaches its mail server, from `smtp_url`."""

    model_config = ConfigDict(frozen=True)

    url: str
    host: str
    port: int
    security: Literal["none", "starttls", "tls"]
    username: str | None = None
    password: str | None = Field(default=None, repr=False)


def smtp_address(url: str) -> SmtpAddress:
    """Parse `smtp_url`; raises ValueError naming the expected form."""
    try:
        parsed = urlsplit(url)
        port = parsed.port
    except ValueError as exc:
        raise ValueError(f"the URL's port is not valid ({exc}); valid: 1-65535") from None
    scheme = parsed.scheme.lower()
    if scheme not in SMTP_SCHEMES or not parsed.hostname:
        raise ValueError(f"not an SMTP URL with a host; valid: {SMTP_FORMS}")
    if parsed.path not in ("", "/") or parsed.query:
        raise ValueError(f"an SMTP URL has no path or query; valid: {SMTP_FORMS}")
    security, default_port = SMTP_SCHEMES[scheme]
    return SmtpAddress(
        url=url,
        host=parsed.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
    )


def parse_email_routes(text: str) -> dict[str, tuple[str, ...]]:
    """'critical=a@x;warning=b@x,c@x' (or a plain 'a@x,b@x', meaning every severity) as severity -> addresses."""
    routes: dict[str, tuple[str, ...]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        severity, _, addresses = part.rpartition("=") if "=" in part else ("info", "=", part)
        severity = severity.strip().lower()
        if not severity:
            raise ValueError(f"{part!r} names no severity; valid: 'critical=a@x.org;warning=b@x.org' or 'a@x.org,b@x.org'")
        found = tuple(a.strip() for a in addresses.split(",") if a.strip())
        routes[severity] = tuple(dict.fromkeys([*routes.get(severity, ()), *found]))
    return routes
