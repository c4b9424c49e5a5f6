"""Where OpenLineage events go: a file appended under a lock, or an HTTP endpoint through the outbox.

    emit(settings, event) ──file──► one JSON line, appended under `<file>.lock` (filelock) and fsynced
                          └─http──► Outbox.enqueue("openlineage", key, event)   (once per key, ever)
                                      └─► drain now, without waiting for the channel: POST {url}/api/v1/lineage
                                          quick blips retried (pipelines/retry.py `retrying`: 5xx, 429, refused)
                                          still down: the event waits in the outbox; a background worker
                                          retries with the outbox's backoff, and later events queue behind it

An endpoint that is down never blocks a run for more than one attempt: once something is queued, runs only
enqueue and wake the worker, which delivers in order when the endpoint answers again. A process that exits
first leaves the events in the ops database, and the next one to emit (or `flush`) delivers them. An event
is sent twice only when a POST timed out after the endpoint may have received it (OpenLineage endpoints
offer no way to ask); the outbox logs that case.

The target URL may carry credentials (`http://user:password@host`): they are sent as basic authentication
and never written to a log line or an error message, which name the endpoint without them.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

import httpx
from filelock import FileLock

from config.settings import DataopsSettings
from pipelines.ledger import Ledger
from pipelines.outbox import DeliveryError, DrainResult, Outbox, OutboxMessage
from pipelines.outbox_backoff import outbox_backoff
from pipelines.outbox_worker import OutboxWorker
from pipelines.retry import Backoff, retrying
from pipelines.sources.http import retry_after_seconds

log = logging.getLogger("pipelines.openlineage")  # one logger for everything lineage, as operators filter on it
CHANNEL = "openlineage"
HTTP_TIMEOUT_S = 5.0
HTTP_ATTEMPTS = 3  # one try and two quick retries within a delivery; longer outages are the outbox's
HTTP_BACKOFF_S = 0.5


def file_path(target: str) -> Path:
    """The file a `file://` URL or a plain path names."""
    if not target.startswith("file://"):
        return Path(target)
    parsed = urlparse(target)
    host = "" if parsed.netloc in ("", "localhost") else parsed.netloc  # file://relative/x: a relative path
    return Path(unquote(host + parsed.path))


def endpoint(url: str) -> str:
    """The lineage endpoint of a base URL: `{url}/api/v1/lineage`, unless the URL already ends there."""
    url = url.rstrip("/")
    return url if url.endswith("/api/v1/lineage") else f"{url}/api/v1/lineage"


def shown(url: str) -> str:
    """The URL as logs may name it: without the user and password it may carry."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def emit(settings: DataopsSettings, event: dict[str, Any], *, key: str | None = None, ledger: Ledger | None = None) -> bool:
    """Send `event` to `lineage_target`; True when it was written or delivered now. Never raises.

    HTTP targets go through the outbox under `key` (default: a hash of the event), on `ledger` (default: the
    settings' ops database); False then means queued for later, with a warning in the log.
    """
    target = settings.lineage_target
    if target is None:
        return False
    if not target.startswith(("http://", "https://")):
        return _append(file_path(target), event)
    delivery = _delivery(settings, ledger)
    return delivery.emit(event, key=key or f"{CHANNEL}:{_digest(event)}")


def flush(settings: DataopsSettings, *, ledger: Ledger | None = None) -> DrainResult | None:
    """Deliver what waits in the outbox for the HTTP `lineage_target` now, waits not yet due included."""
    target = settings.lineage_target
    if target is None or not target.startswith(("http://", "https://")):
        return None
    delivery = _delivery(settings, ledger)
    # "Now" is when the last waiting message is due: all are tried, and a failure schedules its retry from there.
    due = [m.next_attempt_at for m in delivery.outbox.messages(CHANNEL) if m.status in ("pending", "sending")]
    return delivery.outbox.drain(CHANNEL, delivery.send, backoff=delivery.backoff, now=max([datetime.now(UTC), *due]))


def close() -> None:
    """Stop the background delivery workers of this process; what they had not sent stays queued."""
    with _GUARD:
        deliveries = list(_DELIVERIES.values())
        _DELIVERIES.clear()
    for delivery in deliveries:
        delivery.stop()


def _append(path: Path, event: dict[str, Any]) -> bool:
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND alone may split a long line between writers; the lock file sits beside the events file.
        with FileLock(path.with_name(path.name + ".lock"), fallback_to_soft=False):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        log.warning("OpenLineage %s event not written to %s: %s", event.get("eventType"), path, exc)
        return False
    return True


class _Unavailable(Exception):
    """The endpoint answered 5xx or 429: worth another attempt."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}: {response.text[:300]}")
        self.response = response


class _HttpDelivery:
    """The outbox channel of one endpoint in this process: one `Outbox` (its channel lock) and, after a failure, one worker."""

    def __init__(self, url: str, ledger: Ledger, backoff: Backoff) -> None:
        # The credentials leave the URL here, so no URL that carries them is ever handed on (httpx logs its URLs).
        parts = urlsplit(url)
        self.auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else None
        self.url = self.display = shown(endpoint(url))
        self.outbox = Outbox(ledger)
        self.backoff = backoff
        self._worker: OutboxWorker | None = None
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any], *, key: str) -> bool:
        kind = event.get("eventType")
        waiting = self.outbox.pending(CHANNEL)
        message = self.outbox.enqueue(CHANNEL, key, event)
        if message.status == "sent":
            return True  # emitted before (a replayed call): the endpoint has it
        if waiting:  # the endpoint was failing: do not make this run wait for it
            self._wake()
            log.warning(
                "OpenLineage %s event queued behind %d undelivered for %s; delivery retries in the background", kind, waiting, self.display
            )
            return False
        result = self.outbox.drain(CHANNEL, self.send, backoff=self.backoff, block=False)
        found = self.outbox.get(key)
        if found is not None and found.status == "sent":
            return True
        if result.busy:  # the worker is delivering right now; it takes this one too
            self._wake()
            return False
        if found is not None and found.status == "failed":
            log.warning("OpenLineage %s event refused by %s: %s", kind, self.display, found.last_error)
            return False
        self._wake()
        log.warning("OpenLineage %s event queued, not delivered to %s: %s", kind, self.display, found.last_error if found else "?")
        return False

    def send(self, message: OutboxMessage) -> dict[str, Any]:
        """POST one event; DeliveryError when the endpoint stays down (transient) or refuses it (permanent)."""

        def post() -> httpx.Response:
            response = httpx.post(self.url, json=message.payload, auth=self.auth, timeout=HTTP_TIMEOUT_S)
            if response.status_code >= 500 or response.status_code == 429:
                raise _Unavailable(response)
            return response

        backoff = Backoff(first_s=HTTP_BACKOFF_S, factor=2.0, max_wait_s=HTTP_BACKOFF_S * 2, jitter=0.0)
        # Retried at once: an answered 5xx/429 and a refused connection, which took nothing. Not a timeout (the
        # endpoint hangs, and the run would hang with it) nor a broken answer (the event may have arrived).
        quick = retrying(
            backoff,
            attempts=HTTP_ATTEMPTS,
            retry_on=lambda exc: isinstance(exc, _Unavailable | httpx.ConnectError),
            wait=time.sleep,
        )
        try:
            response = quick(post)
        except _Unavailable as exc:
            retry_after = retry_after_seconds(exc.response.headers.get("Retry-After"))
            raise DeliveryError(f"after {HTTP_ATTEMPTS} attempt(s): {exc}", retry_after_s=retry_after) from None
        except httpx.TransportError as exc:
            # A connection never made delivered nothing; any later failure may have delivered the event.
            maybe = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            raise DeliveryError(f"{type(exc).__name__}: {exc}", maybe_delivered=maybe) from None
        if not response.is_success:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:300]}", transient=False)
        return {"status": response.status_code}

    def _wake(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = OutboxWorker(self.outbox, CHANNEL, self.send, backoff=self.backoff).start()
            self._worker.kick()

    def stop(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(timeout=HTTP_TIMEOUT_S + 1.0)  # a send in flight ends within its timeout


def _digest(event: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(event, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


_DELIVERIES: dict[tuple[str, str], _HttpDelivery] = {}
_GUARD = threading.Lock()


def _delivery(settings: DataopsSettings, ledger: Ledger | None) -> _HttpDelivery:
    """The process's one delivery per (ops database, target): drains of one channel must share one Outbox's lock."""
    assert settings.lineage_target is not None
    key = (settings.ops_db, settings.lineage_target)
    with _GUARD:
        delivery = _DELIVERIES.get(key)
        if delivery is None:
            if ledger is None:
                settings.ensure_home()
                ledger = Ledger(settings.ops_db)
            delivery = _DELIVERIES[key] = _HttpDelivery(settings.lineage_target, ledger, outbox_backoff(settings))
        return delivery


atexit.register(close)
