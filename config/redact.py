"""One redaction for every line the platform writes: log records, CLI errors, tables and `--json` output.

`redact(text)` masks what looks like a credential wherever it appears, then the literal value of every secret
setting currently configured (registered with `register_secrets`, which the CLI does at start):

- the password of a URL: ``scheme://user:pass@host`` → ``scheme://user:***@host``
- bearer and basic authorization values, Slack tokens (``xoxb-``, ``xapp-``, ``xoxp-``...), OpenAI-style keys
  (``sk-...``), AWS access key ids (``AKIA...``)
- the value of any key=value pair, JSON member or query parameter whose key names a password, token, secret,
  API key, access key or credential (``password=``, ``"slack_bot_token": ``, ``?api_key=``)

`RedactingFilter` applies it to a log record's message and its formatted traceback; `install_redaction()` puts
the filter on the root logger and on each of its handlers (a logger's own filters never see records that
propagate up from child loggers; a handler's do).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

MASK = "***"
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words and numbers all over the output

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/:@]*:)(?P<secret>[^\s@/]+)(?P<tail>@)")
_AUTHORIZATION = re.compile(
    r"(?P<head>\b(?:bearer\s+|authorization[\"']?\s*[:=]\s*[\"']?(?:basic|token|digest)\s+))(?P<secret>[A-Za-z0-9._~+/=\-]{8,})",
    re.IGNORECASE,
)
_SLACK = re.compile(r"(?P<head>\bx(?:ox[abposre]|app)-)(?P<secret>[A-Za-z0-9\-]+)")
_OPENAI = re.compile(r"(?P<head>(?<![A-Za-z0-9])sk-)(?P<secret>[A-Za-z0-9_\-]{8,})")
_AWS_KEY_ID = re.compile(r"(?P<head>(?<![A-Z0-9])(?:AKIA|ASIA))(?P<secret>[A-Z0-9]{16})(?![A-Z0-9])")
_SECRET_KEY = (
    r"(?<![A-Za-z0-9])[A-Za-z0-9_\-]*?"
    r"(?:password|passwd|pwd|passphrase|token|secret|api[_\-]?key|apikey|secret[_\-]?access[_\-]?key|access[_\-]?key[_\-]?id"
    r"|credentials?|private[_\-]?key)"
)
_QUOTED_KEY_VALUE = re.compile(
    rf"(?P<head>{_SECRET_KEY}[\"']?\s*[=:]\s*(?P<quote>[\"']))(?P<secret>[^\"'\n]+)(?P<tail>(?P=quote))", re.IGNORECASE
)
_KEY_VALUE = re.compile(rf"(?P<head>{_SECRET_KEY}[\"']?\s*[=:]\s*)(?P<secret>[^\s&\"',;}}\]]+)", re.IGNORECASE)
_PATTERNS = (_URL_PASSWORD, _AUTHORIZATION, _SLACK, _OPENAI, _AWS_KEY_ID, _QUOTED_KEY_VALUE, _KEY_VALUE)

_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Mask these literal values (and their URL-quoted forms) from now on; empty and very short values are ignored."""
    for value in values:
        if value and len(value) >= _MIN_SECRET_LENGTH:
            _secrets.add(value)
            _secrets.add(quote(value, safe=""))


def register_secrets_from_env() -> None:
    """Mask the values of the secret settings as the environment holds them, before (or without) validating settings.

    Also the credentials the platform's libraries read on their own: OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN, and DATAOPS_TOKEN (a person's CLI token)."""
    from config.settings import SECRET_SETTINGS, URL_SETTINGS

    names = [f"DATAOPS_{name.upper()}" for name in SECRET_SETTINGS]
    names += ["DATAOPS_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    register_secrets(os.environ.get(name) for name in names)
    for name in URL_SETTINGS:
        register_secrets([_url_password(os.environ.get(f"DATAOPS_{name.upper()}"))])


def _url_password(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:  # a malformed URL (its settings error says so); the URL pattern of `redact` still masks it
        return None
    return unquote(password) if password else None


def registered_secrets() -> frozenset[str]:
    return frozenset(_secrets)


def _mask(match: re.Match[str]) -> str:
    secret = match.group("secret")
    if secret == MASK or secret.startswith(MASK):
        return match.group(0)
    tail = match.groupdict().get("tail") or ""
    head = match.group("head")
    if match.re is _KEY_VALUE and re.search(r"[\"']\s*:\s*$", head):
        # A JSON member with an unquoted value: null, true and false hide nothing; anything else stays valid JSON as a string.
        if secret in ("null", "true", "false"):
            return match.group(0)
        return f'{head}"{MASK}"'
    return head + MASK + tail


def redact(text: str) -> str:
    """`text` with every credential-looking value and every registered secret replaced by ***."""
    if not text:
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    for secret in sorted(_secrets, key=len, reverse=True):  # longest first: a secret may contain a shorter one
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (arguments merged) and its traceback text through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Put one `RedactingFilter` on `logger` (default: the root logger) and each of its handlers; idempotent."""
    logger = logger or logging.getLogger()
    existing = next((f for f in logger.filters if isinstance(f, RedactingFilter)), None)
    installed = existing or RedactingFilter()
    if existing is None:
        logger.addFilter(installed)
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(installed)
    return installed


class RedactingStream:
    """A text stream that writes `redact(text)` to the current sys.stdout or sys.stderr (looked up at each write,
    so a test runner's capture still sees it); everything else (isatty, encoding, fileno) is the real stream's."""

    def __init__(self, name: Literal["stdout", "stderr"]) -> None:
        self._name = name

    @property
    def _target(self) -> Any:
        return getattr(sys, self._name)

    def write(self, text: str) -> int:
        self._target.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._target, attr)
