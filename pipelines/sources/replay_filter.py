"""What stands between the replayed API and a connector: a filter every replayed response body passes through.

The replay connectors (neso.py, weather.py) hand each body through their filter before parsing it, for the
chunk [start, end) it answers. The registry gives them the source faults of the caller's context
(pipelines/fault_injection.py), or `as_recorded`. A filter may raise what a live API would
(`TransientSourceError` with its Retry-After), as the HTTP fetcher does; it never changes the body it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

ReplayFilter = Callable[[datetime, datetime, dict[str, Any]], dict[str, Any]]


def as_recorded(start: datetime, end: datetime, body: dict[str, Any]) -> dict[str, Any]:
    """The body as the bundled data has it: no faults."""
    return body
