"""What an issued forecast is, as every part of the forecasting code sees it.

models.py (fit and predict from history) ──► IssuedForecast ──► run.py (write-audit-publish into
    gold.carbon_intensity_forecast) ──► store.py (read back the latest issue) ──► greenest.py, tools, CLI
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

SLOT = timedelta(minutes=30)
HORIZON_SLOTS = 96  # 48 hours of half-hour slots
INTERVALS = (80, 95)  # central prediction intervals, percent


class ForecastSlot(BaseModel):
    """One half-hour slot of a forecast: a point and two central intervals, gCO2/kWh."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ts: datetime = Field(description="Slot start, UTC")
    horizon_h: float = Field(description="Hours from the issue time to the end of the slot (0.5 for the first slot)")
    point: float = Field(description="Expected intensity, gCO2/kWh")
    lo80: float
    hi80: float
    lo95: float
    hi95: float


class IssuedForecast(BaseModel):
    """One forecast issue: the next 48 hours from `issued_at`, made only from data before it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issued_at: datetime = Field(description="Issue time, UTC, on a half-hour boundary; the first slot starts here")
    model: str = Field(description="Model name, e.g. seasonal_naive or gbm")
    model_version: str
    slots: tuple[ForecastSlot, ...]
    perfect_prognosis: bool = Field(
        default=False, description="True when the model used observed weather as if it had been forecast: never a headline"
    )
