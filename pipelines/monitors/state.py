"""What monitors remember between ticks: a watermark (the last point or day judged) and a JSON state each."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from pipelines.ledger import as_utc
from pipelines.monitors.tables import MonitorStateRow

if TYPE_CHECKING:
    from pipelines.context import PlatformContext

CLOCK_STATE = "service.replay_clock"
"""The row where `dataops serve` saves its replay clock, which other processes read as the platform's now."""


def load_state(ctx: PlatformContext, name: str) -> tuple[datetime | None, dict[str, Any]]:
    with ctx.ledger.session() as s:
        row = s.get(MonitorStateRow, name)
        return (as_utc(row.watermark), dict(row.state or {})) if row else (None, {})


def save_state(ctx: PlatformContext, name: str, watermark: datetime | None, state: dict[str, Any]) -> None:
    with ctx.ledger.session() as s, s.begin():
        row = s.get(MonitorStateRow, name)
        if row is None:
            row = MonitorStateRow(name=name)
            s.add(row)
        row.watermark, row.state = watermark, state


class MonitorStatus(BaseModel):
    """Where a monitor stands, as `dataops monitors` shows it."""

    status: str = Field(description="not evaluated yet, warming_up, active, or what the monitor last said")
    detail: str = ""
    watermark: datetime | None = Field(default=None, description="The last point or day the monitor judged")
    threshold: float | None = Field(default=None, description="value: the calibrated score threshold (-log10 p)")


def monitor_status(ctx: PlatformContext, name: str) -> MonitorStatus:
    watermark, state = load_state(ctx, name)
    if watermark is None and not state:
        return MonitorStatus(status="not evaluated yet")
    threshold = state.get("threshold")
    return MonitorStatus(
        status=str(state.get("status", "active")),
        detail=str(state.get("detail", "")),
        watermark=watermark,
        threshold=float(threshold) if isinstance(threshold, int | float) else None,
    )
