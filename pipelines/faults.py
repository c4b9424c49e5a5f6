"""Fault injection for the demo and the eval suite: faults at the source and bad publishes to the lake.

Source faults act on the replay path only (the bundled data as the APIs would serve it): a fault named
for a source and a window changes the response body or raises the error a live API would cause. They
are process-local and explicit (`inject`, `clear`), so a test or a scenario says exactly what it breaks.
Lake faults write straight to `main`, bypassing write-audit-publish, the way a buggy manual job would.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from config.errors import TransientSourceError
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table

FaultKind = Literal["transient_error", "rename_field", "late_slots"]


class SourceFault(BaseModel):
    """One fault at a source: what, where (source and window) and how many times."""

    model_config = ConfigDict(frozen=True)

    kind: FaultKind
    source: str
    start: datetime | None = Field(default=None, description="Only responses for chunks overlapping [start, end)")
    end: datetime | None = None
    times: int | None = Field(
        default=None, description="transient_error, late_slots: act on this many fetches, then recover; None = always"
    )
    field: str | None = Field(default=None, description="rename_field: dotted path of the field, e.g. intensity.actual")
    new_name: str | None = None


_lock = threading.Lock()
_active: list[SourceFault] = []
_fired: dict[int, int] = {}


def inject(fault: SourceFault) -> None:
    with _lock:
        _active.append(fault)


def clear() -> None:
    with _lock:
        _active.clear()
        _fired.clear()


def _overlaps(fault: SourceFault, start: datetime, end: datetime) -> bool:
    return (fault.start is None or end > fault.start) and (fault.end is None or start < fault.end)


def apply(source: str, start: datetime, end: datetime, body: dict[str, Any]) -> dict[str, Any]:
    """The body after the active faults of `source` for this chunk; raises for error faults."""
    with _lock:
        faults = [(i, f) for i, f in enumerate(_active) if f.source == source and _overlaps(f, start, end)]
        for i, fault in faults:
            if fault.kind == "transient_error" and (fault.times is None or _fired.get(i, 0) < fault.times):
                _fired[i] = _fired.get(i, 0) + 1
                raise TransientSourceError(f"{source}: 503 Service Unavailable from the source (injected fault)")
            if fault.kind == "late_slots" and (fault.times is None or _fired.get(i, 0) < fault.times):
                _fired[i] = _fired.get(i, 0) + 1
                body = _without_slots(body, fault)
    for _, fault in faults:
        if fault.kind == "rename_field" and fault.field and fault.new_name:
            body = _rename(body, fault.field, fault.new_name)
    return body


def _without_slots(body: dict[str, Any], fault: SourceFault) -> dict[str, Any]:
    """The body without the records whose slot lies in the fault's window: data the publisher has not sent yet."""
    if not isinstance(body.get("data"), list):
        return body
    kept = []
    for record in body["data"]:
        slot = datetime.strptime(str(record.get("from")), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC) if isinstance(record, dict) else None
        if slot is None or not ((fault.start is None or slot >= fault.start) and (fault.end is None or slot < fault.end)):
            kept.append(record)
    return {**body, "data": kept}


def _rename(body: dict[str, Any], path: str, new_name: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    *parents, leaf = path.split(".")
    data = body.get("data")
    records: list[Any] = data if isinstance(data, list) else [body.get("hourly") or {}]
    for record in records:
        node = record
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[new_name] = node.pop(leaf)
    return body


def bad_publish(ctx: PlatformContext, table_name: str, day: datetime, mutate: Callable[[pa.Table], pa.Table], *, run_id: str) -> int | None:
    """Overwrite `day` of `table_name` on main with mutated rows, without an audit: a bad publish to find later."""
    table = load_table(ctx.catalog, table_name)
    with ctx.control.table_lock(table_name):
        rows = wap.read_days(table, [day])
        bad = mutate(rows).cast(rows.schema)
        table.overwrite(bad, overwrite_filter=wap.days_filter([day]), snapshot_properties={"run_id": run_id})
        table.refresh()
        snapshot = table.current_snapshot()
        return snapshot.snapshot_id if snapshot else None
