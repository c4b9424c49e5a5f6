"""The monitors' tables in the ops database: their state, people's labels and the suppressions they set.

Row classes only, so the platform context can have them created without importing the monitors' logic
(which needs the context: `state.py`, `feedback.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pipelines.ledger import Base


class MonitorStateRow(Base):
    __tablename__ = "monitor_state"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SuppressionRow(Base):
    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True, doc="the incident people marked expected")
    kind: Mapped[str] = mapped_column(String(40))
    cause_key: Mapped[str] = mapped_column(String(200), index=True)
    table_name: Mapped[str] = mapped_column(String(120))
    direction: Mapped[str | None] = mapped_column(String(20), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True, doc="strongest score of the labelled incident")
    max_score: Mapped[float | None] = mapped_column(Float, nullable=True, doc="findings scoring above this still alert")
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), doc="platform clock")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), doc="platform clock")
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), doc="wall clock")
    hits: Mapped[int] = mapped_column(Integer, default=0)
    last_hit_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, doc="wall clock")
    lifted_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


class LabelRow(Base):
    __tablename__ = "incident_labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(Integer, index=True)
    verdict: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(40))
    cause_key: Mapped[str] = mapped_column(String(200), index=True)
    table_name: Mapped[str] = mapped_column(String(120))
    actor: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), doc="platform clock")
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), doc="wall clock")
