"""What the console shows of the platform's own carbon-intensity forecast (gold.carbon_intensity_forecast): the
latest published issue, what has been measured over its slots so far, and the realised accuracy of the last week.

    GET /data            the issue drawn over the picked range and on its own chart, the accuracy table below
    GET /api/forecast    ForecastView as JSON

Read as `pipelines/forecast/store.py` and `accuracy.py` read it, once per page. Before the first issue, or when the
table cannot be read, the view holds no issue and says so plainly: an empty chart would look like a broken one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from agent.console.series import DayRange, IntensityPoint, intensity_points
from config.errors import DataOpsError
from pipelines.context import PlatformContext
from pipelines.forecast.accuracy import RealisedAccuracy
from pipelines.forecast.schema import SLOT, ForecastSlot, IssuedForecast

FORECAST = "forecast"  # the forecast of config/pipelines.yaml the console shows
ACCURACY_DAYS = 7
NO_FORECAST = "No forecast issued yet; it is issued after each carbon-intensity run"


class ForecastView(BaseModel):
    """The latest issue as of `as_of`, the measurements over its slots, and the accuracy of the week before."""

    as_of: datetime = Field(description="The platform clock the view was read at")
    issue: IssuedForecast | None = Field(description="The newest issue made at or before as_of; None before the first")
    measured: list[IntensityPoint] = Field(description="Actual and NESO-forecast intensity over the issue's slots, as far as known")
    accuracy: RealisedAccuracy | None = Field(description=f"Realised accuracy of the issues of the {ACCURACY_DAYS} days before as_of")
    message: str = Field(default="", description="What to tell a reader when there is no issue")
    problems: list[str] = Field(default_factory=list, description="What could not be read")

    @property
    def label(self) -> str:
        """The issue's one-line caption: when it was issued and by which model."""
        if self.issue is None:
            return self.message
        prognosis = "; perfect prognosis (observed weather used as if forecast): not a headline" if self.issue.perfect_prognosis else ""
        return f"issued {self.issue.issued_at:%Y-%m-%d %H:%M} UTC by {self.issue.model} {self.issue.model_version}{prognosis}"


def forecast_view(ctx: PlatformContext, now: datetime) -> ForecastView:
    """The latest issue as of `now`, what was measured over it, and the realised accuracy of the week before `now`."""
    problems: list[str] = []
    issue = latest_issue(ctx, now, problems)
    measured: list[IntensityPoint] = []
    if issue is not None and issue.slots:
        first, last = issue.slots[0].ts, issue.slots[-1].ts
        span = DayRange(start=first.astimezone(UTC).date(), end=last.astimezone(UTC).date())
        measured = [p for p in intensity_points(ctx, span, problems) if first <= p.ts <= last]
    return ForecastView(
        as_of=now,
        issue=issue,
        measured=measured,
        accuracy=_accuracy(ctx, now, problems),
        message="" if issue is not None else NO_FORECAST,
        problems=problems,
    )


def issue_over(ctx: PlatformContext, picked: DayRange, view: ForecastView) -> IssuedForecast | None:
    """The issue to draw over the picked days: the newest made by their end (or by the clock, if that is sooner),
    so a past week shows what was forecast for it, not a forecast made after it."""
    if picked.until >= view.as_of:
        return view.issue
    return latest_issue(ctx, picked.until - SLOT, view.problems)  # an issue made at the very end has no slot in the days


def latest_issue(ctx: PlatformContext, as_of: datetime, problems: list[str]) -> IssuedForecast | None:
    """The newest issue made at or before `as_of`; None before the first, or when the table cannot be read (said in `problems`)."""
    from pipelines.forecast import store

    try:
        return store.latest_issue(ctx, as_of=as_of)
    except (DataOpsError, OSError, ValueError) as exc:  # the page's other charts still help
        problems.append(f"{store.FORECAST_TABLE} could not be read: {exc}")
        return None


def slots_within(issue: IssuedForecast | None, since: datetime, until: datetime) -> list[ForecastSlot]:
    """The issue's slots that start in [since, until)."""
    return [] if issue is None else [s for s in issue.slots if since <= s.ts < until]


def issue_end(issue: IssuedForecast) -> datetime:
    """The end of the issue's last slot (its issue time when it has none)."""
    return issue.slots[-1].ts + SLOT if issue.slots else issue.issued_at


def _accuracy(ctx: PlatformContext, now: datetime, problems: list[str]) -> RealisedAccuracy | None:
    from pipelines.forecast.accuracy import realised_accuracy

    if FORECAST not in ctx.inventory.forecasts:
        return None
    try:
        return realised_accuracy(ctx, FORECAST, until=now, days=ACCURACY_DAYS)
    except (DataOpsError, OSError, ValueError, KeyError) as exc:
        problems.append(f"the forecast's accuracy could not be read: {exc}")
        return None
