"""The outbox's worker: a daemon thread that drains one channel of the outbox (pipelines/outbox.py).

It drains when kicked (something was queued) and when the next retry is due, else every `idle_s`; a failing
ops database never ends the thread. Stopping waits for the message in flight; what is still queued stays in
the database for the next start. Made as `OutboxWorker(outbox, channel, send, ...)`.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from pipelines.outbox import DrainResult, Outbox, Reconcile, Send
from pipelines.outbox_backoff import DEFAULT_BACKOFF
from pipelines.retry import Backoff

# The outbox's logger: one for the queue and its workers.
log = logging.getLogger("pipelines.outbox")


class OutboxWorker:
    """Drains one channel on a daemon thread: when kicked (something was queued) and when a retry is due."""

    def __init__(
        self, outbox: Outbox, channel: str, send: Send, *, reconcile: Reconcile | None = None, backoff: Backoff | None = None,
        idle_s: float = 30.0,
    ) -> None:  # fmt: skip
        self.outbox = outbox
        self.channel = channel
        self.send = send
        self.reconcile = reconcile
        self.backoff = backoff or DEFAULT_BACKOFF
        self.idle_s = idle_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"outbox-{channel}", daemon=True)

    def start(self) -> OutboxWorker:
        self._thread.start()
        return self

    def kick(self) -> None:
        """Something was queued: drain now rather than at the next retry."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the message in flight; what is still queued waits in the database for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def drain(self, *, block: bool = True) -> DrainResult:
        return self.outbox.drain(self.channel, self.send, reconcile=self.reconcile, backoff=self.backoff, block=block)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            wait = self.idle_s
            try:
                result = self.drain()
                if result.next_attempt_at is not None:
                    wait = min(wait, max(0.05, (result.next_attempt_at - datetime.now(UTC)).total_seconds()))
            except Exception:  # the ops database itself failing: try again later, never end the thread
                log.exception("outbox %s: draining failed; trying again in %.0f s", self.channel, wait)
            self._wake.wait(wait)
