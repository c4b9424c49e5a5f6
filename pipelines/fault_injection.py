"""The source faults one caller injects, served as a filter on the replayed responses of the sources it builds.

A test, an eval scenario or the demo owns a `SourceFaults` (usually its context's, `ctx.faults`) and injects
faults into it. `build_source` (pipelines/sources/registry.py) hands each replay connector
`faults.filter_for(source)`, so every fetch through that context sees them (pipeline runs, the agent's re-runs,
backfills) and nothing else does: another context, a scenario in another thread, a service, has its own set.

The set counts how often each fault fired, shared by every fetch through it in any thread: "503 three times,
then recovers" counts the scheduler's retries and the agent's re-runs alike. Error kinds raise before any
body is changed; the other kinds change a copy of the body, in the order they were injected.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from config.errors import TransientSourceError
from pipelines.source_faults import SourceFault

if TYPE_CHECKING:
    from pipelines.sources.replay_filter import ReplayFilter

_ERRORS = frozenset({"transient_error", "rate_limited"})


class SourceFaults:
    """Injected source faults and how often each has fired; safe to share between threads."""

    def __init__(self, faults: Iterable[SourceFault] = ()) -> None:
        self._lock = threading.Lock()
        self._active: list[SourceFault] = list(faults)
        self._fired: dict[int, int] = {}  # index in _active -> fetches it was consulted on

    def __repr__(self) -> str:
        return f"SourceFaults({', '.join(f'{f.kind}@{f.source}' for f in self.active)})"

    @property
    def active(self) -> tuple[SourceFault, ...]:
        with self._lock:
            return tuple(self._active)

    def inject(self, fault: SourceFault) -> None:
        with self._lock:
            self._active.append(fault)

    def clear(self) -> None:
        """Remove every fault and forget how often each fired."""
        with self._lock:
            self._active.clear()
            self._fired.clear()

    def filter_for(self, source: str) -> ReplayFilter:
        """The filter a replay connector of `source` passes its bodies through; faults injected later apply too."""
        return partial(self.apply, source)

    def apply(self, source: str, start: datetime, end: datetime, body: dict[str, Any]) -> dict[str, Any]:
        """The body after the faults of `source` for the chunk [start, end); raises for error faults. `body` is not changed."""
        with self._lock:
            overlapping = [(i, f) for i, f in enumerate(self._active) if f.source == source and _overlaps(f, start, end)]
            for i, fault in overlapping:
                if fault.kind in _ERRORS and _acts(fault, self._fired.get(i, 0)):
                    self._fired[i] = self._fired.get(i, 0) + 1
                    raise _error(source, fault)
            acting = []
            for i, fault in overlapping:
                if fault.kind not in _ERRORS:
                    if _acts(fault, self._fired.get(i, 0)):
                        acting.append(fault)
                    self._fired[i] = self._fired.get(i, 0) + 1  # every fetch counts: late_revision acts on the later ones
        if not acting:
            return body
        # Imported here: the transforms need pipelines.sources.base (and pyarrow), which a context that never
        # fetches (`dataops status`, `incidents`) should not pay for.
        from pipelines.faulty_responses import transform

        body = copy.deepcopy(body)  # replay bodies share the cached records
        for fault in acting:
            body = transform(source, fault, body)
        return body


def _overlaps(fault: SourceFault, start: datetime, end: datetime) -> bool:
    return (fault.start is None or end > fault.start) and (fault.end is None or start < fault.end)


def _acts(fault: SourceFault, fired: int) -> bool:
    if fault.kind == "outage":
        return True
    if fault.kind == "late_revision":
        return fired >= (1 if fault.times is None else fault.times)
    return fault.times is None or fired < fault.times


def _error(source: str, fault: SourceFault) -> TransientSourceError:
    if fault.kind == "rate_limited":
        retry_after = 60 if fault.value is None else fault.value
        return TransientSourceError(
            f"{source}: 429 Too Many Requests with Retry-After {retry_after} from the source (injected fault)",
            retry_after_s=float(retry_after),
        )
    with_header = f" with Retry-After {fault.retry_after_s:g}" if fault.retry_after_s is not None else ""
    return TransientSourceError(
        f"{source}: 503 Service Unavailable{with_header} from the source (injected fault)", retry_after_s=fault.retry_after_s
    )
