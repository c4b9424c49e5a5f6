"""What monitors remember between ticks: a watermark (the last point or day judged) and a JSON state each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from pipelines.context import PlatformContext
from pipelines.ledger import Base, _aware

CLOCK_STATE = "service.replay_clock"
"""The row where `dataops serve` saves its replay clock, which other processes read as the platform's now."""


class MonitorStateRow(Base):
    __tablename__ = "monitor_state"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def load_state(ctx: PlatformContext, name: str) -> tuple[datetime | None, dict[str, Any]]:
    with ctx.ledger.session() as s:
        row = s.get(MonitorStateRow, name)
        return (_aware(row.watermark), dict(row.state or {})) if row else (None, {})


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
