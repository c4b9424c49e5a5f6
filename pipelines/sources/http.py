"""HTTP with timeouts, retries with exponential backoff on 5xx/429/timeouts, and Retry-After honoured.

The waits follow the platform's one backoff rule (`pipelines/retry.py` `retrying`, on tenacity), from the
`http_*` settings and without jitter. When the attempts run out, the `TransientSourceError` carries the last
Retry-After, so the run's retry (serve, the re-run tools) can honour it too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState

from config.errors import PayloadError, PermanentSourceError, TransientSourceError
from config.settings import DataopsSettings
from pipelines.retry import Backoff, retrying

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpFetcher:
    """Gets JSON over HTTP; transient failures are retried, permanent ones raised at once."""

    def __init__(
        self,
        settings: DataopsSettings,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(settings.http_timeout_s),
            headers={"Accept": "application/json", "User-Agent": "dataops/0.1 (+sustainability DataOps)"},
            follow_redirects=True,
        )
        self._sleep = sleep
        self.retries = 0
        self.requests = 0

    def close(self) -> None:
        self._client.close()

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """The decoded JSON body of GET url; raises TransientSourceError once attempts are exhausted."""
        attempts = self._settings.http_max_attempts
        backoff = Backoff(
            first_s=self._settings.http_backoff_s,
            max_wait_s=max(self._settings.http_max_backoff_s, self._settings.http_backoff_s),
            jitter=0.0,
        )

        def log_retry(state: RetryCallState) -> None:
            self.retries += 1
            error = state.outcome.exception() if state.outcome is not None else None
            sleep_for = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning("attempt %d/%d: %s; retrying in %.1fs", state.attempt_number, attempts, error, sleep_for)

        controller = retrying(
            backoff,
            attempts=attempts,
            # A cut connection can deliver half a body: invalid JSON is retried, then called a payload error.
            retry_on=lambda exc: isinstance(exc, TransientSourceError | PayloadError),
            wait=self._sleep,
            before_sleep=log_retry,
        )
        try:
            return controller(self._get_once, url, params)
        except PayloadError as last:
            raise PayloadError(f"{last} after {attempts} attempts") from None
        except TransientSourceError as last:
            raise TransientSourceError(f"{last}; gave up after {attempts} attempts", retry_after_s=last.retry_after_s) from None

    def _get_once(self, url: str, params: dict[str, Any] | None) -> Any:
        """One GET: the JSON body, or TransientSourceError (with the Retry-After sent), PayloadError, PermanentSourceError."""
        self.requests += 1
        try:
            response = self._client.get(url, params=params)
        except httpx.TimeoutException as exc:
            raise TransientSourceError(f"GET {url} timed out after {self._settings.http_timeout_s}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise TransientSourceError(f"GET {url} failed in transport: {type(exc).__name__}: {exc}") from None
        if response.status_code in RETRY_STATUSES:
            raise TransientSourceError(
                f"GET {response.url} answered {response.status_code}"
                + (f" with Retry-After {response.headers['Retry-After']}" if "Retry-After" in response.headers else "")
                + f": {response.text[:200]!r}",
                retry_after_s=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if response.status_code >= 400:
            raise PermanentSourceError(
                f"GET {response.url} answered {response.status_code}: {response.text[:300]!r}; check the window and the base URL setting"
            )
        try:
            return json.loads(response.content)
        except json.JSONDecodeError as exc:
            raise PayloadError(
                f"GET {response.url} returned invalid JSON ({exc.msg} at char {exc.pos} of {len(response.content)})"
            ) from None
