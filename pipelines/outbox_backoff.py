"""How long the outbox waits between attempts at a message: the platform's one backoff rule (pipelines/retry.py).

Waits double from a first wait, with jitter, up to a longest wait; a neighbour's Retry-After is honoured within
it (`Backoff.wait`). The channels use `outbox_backoff(settings)`; `DEFAULT_BACKOFF` is for a caller that passes none.
"""

from __future__ import annotations

from config.settings import DataopsSettings
from pipelines.retry import Backoff

DEFAULT_BACKOFF = Backoff(first_s=2.0, factor=2.0, max_wait_s=300.0, jitter=0.2)
LONGEST_WAIT_S = 300.0


def outbox_backoff(settings: DataopsSettings) -> Backoff:
    """The outbox's waits between attempts: `outbox_backoff_s` doubling, with jitter, at most 5 minutes (or `outbox_backoff_s`)."""
    first = settings.outbox_backoff_s
    return Backoff(first_s=first, factor=2.0, max_wait_s=max(LONGEST_WAIT_S, first), jitter=0.2)
