"""The Data page's charts as server-rendered SVG: the geometry is computed here, templates/_chart.html draws it.

No JavaScript and no inline styles (the console's Content-Security-Policy allows neither): colours are SVG
presentation attributes or classes of console.css, tooltips are SVG `<title>` elements, links are SVG `<a>`.

    Chart          one plot: axes with ticks, lines, stacked areas, defect bands and marks, a legend
    TimeScale      data time → x;   ValueScale   a value → y (ticks on round numbers)

Our forecast is drawn as its point line over two shaded polygons, the 95 % interval under the 80 % one: on the
intensity chart where its slots fall in the picked days, and on a chart of its own over the whole issue.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from pydantic import BaseModel

from agent.console.forecasts import ForecastView, issue_end, slots_within
from agent.console.series import INTENSITY, GridData
from pipelines.forecast.schema import ForecastSlot, IssuedForecast

WIDTH, HEIGHT = 1000.0, 260.0
LEFT, RIGHT, TOP, BOTTOM = 56.0, 984.0, 14.0, 232.0
# Fuels as the grid's own dashboards colour them, roughly; an unknown fuel is grey.
FUEL_COLOURS = {
    "gas": "#f79009", "coal": "#344054", "nuclear": "#7f56d9", "wind": "#12b76a", "solar": "#fdb022",
    "hydro": "#2e90fa", "biomass": "#6b8e23", "imports": "#98a2b3", "other": "#d0d5dd",
}  # fmt: skip
ISSUED_COLOUR, INTERVAL_COLOURS = "#1570ef", {80: "#84caff", 95: "#d1e9ff"}


class Tick(BaseModel):
    at: float
    label: str


class Series(BaseModel):
    """A line (`d` is an open path) or a filled area (a closed one), with its legend entry; `css` classes it."""

    name: str
    d: str
    colour: str
    css: str = ""


class Band(BaseModel):
    """A shaded stretch of time (a quarantined day), its words on hover, and where it leads."""

    x: float
    width: float
    label: str
    href: str | None = None


class Mark(BaseModel):
    """A moment (a quarantined slot, an incident) drawn as a tick or a line, its words on hover, where it leads."""

    x: float
    label: str
    text: str = ""
    href: str | None = None
    css: str = "slot"


class Chart(BaseModel):
    title: str
    unit: str
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    lines: list[Series] = []
    areas: list[Series] = []
    bands: list[Band] = []
    marks: list[Mark] = []
    empty: str = ""
    width: float = WIDTH
    height: float = HEIGHT
    left: float = LEFT
    right: float = RIGHT
    top: float = TOP
    bottom: float = BOTTOM


class TimeScale:
    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.span = start, max((end - start).total_seconds(), 1.0)

    def x(self, ts: datetime) -> float:
        return round(LEFT + (ts - self.start).total_seconds() / self.span * (RIGHT - LEFT), 1)

    def ticks(self, days: int) -> list[Tick]:
        """One tick a day, or fewer so that at most about 14 are labelled."""
        step = max(1, math.ceil(days / 14))
        return [
            Tick(at=self.x(self.start + timedelta(days=d)), label=f"{self.start + timedelta(days=d):%d %b}") for d in range(0, days, step)
        ]

    def hour_ticks(self, every: int = 6) -> list[Tick]:
        """A tick on each whole `every` hours (UTC) of the span, for a chart of a day or two."""
        step = timedelta(hours=every)
        epoch = datetime(1970, 1, 1, tzinfo=self.start.tzinfo)
        at = epoch + -((epoch - self.start) // step) * step  # the first boundary at or after the start
        ticks = []
        while at < self.start + timedelta(seconds=self.span):  # none at the very end: its label would leave the plot
            ticks.append(Tick(at=self.x(at), label=f"{at:%d %b %H:%M}"))
            at += step
        return ticks


class ValueScale:
    """`lo`..`hi` widened to round numbers, onto the plot's height."""

    def __init__(self, lo: float, hi: float, count: int = 5) -> None:
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        raw = (hi - lo) / count
        magnitude = 10 ** math.floor(math.log10(raw))
        self.step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
        self.lo, self.hi = math.floor(lo / self.step) * self.step, math.ceil(hi / self.step) * self.step

    def y(self, value: float) -> float:
        return round(BOTTOM - (value - self.lo) / (self.hi - self.lo) * (BOTTOM - TOP), 1)

    def ticks(self, unit: str = "") -> list[Tick]:
        count = round((self.hi - self.lo) / self.step)
        values = [self.lo + i * self.step for i in range(count + 1)]
        return [Tick(at=self.y(v), label=f"{v:g}{unit}") for v in values]


def path(points: list[tuple[datetime, float | None]], time: TimeScale, value: ValueScale, gap: timedelta) -> str:
    """An SVG path through the points, lifted over missing values and over holes longer than `gap`."""
    parts: list[str] = []
    previous: datetime | None = None
    for ts, v in points:
        if v is None:
            previous = None
            continue
        move = previous is None or ts - previous > gap
        parts.append(f"{'M' if move else 'L'}{time.x(ts)},{value.y(v)}")
        previous = ts
    return " ".join(parts)


def _frame(data: GridData) -> TimeScale:
    return TimeScale(data.range.since, data.range.until)


def intensity_chart(data: GridData, issue: IssuedForecast | None = None) -> Chart:
    """Actual and NESO-forecast carbon intensity, our forecast `issue` where its slots fall in the range, the
    quarantined days shaded, their slots ticked, incidents marked."""
    time = _frame(data)
    ours = slots_within(issue, data.range.since, data.range.until)
    values = [v for p in data.intensity for v in (p.actual, p.forecast) if v is not None] + [s.hi95 for s in ours]
    value = ValueScale(0.0, max(values, default=300.0))
    gap = timedelta(minutes=45)
    chart = Chart(
        title="Carbon intensity, actual and forecast",
        unit="gCO2/kWh",
        x_ticks=time.ticks(_days(data)),
        y_ticks=value.ticks(),
        lines=[
            Series(
                name="NESO forecast",
                d=path([(p.ts, p.forecast) for p in data.intensity], time, value, gap),
                colour="#98a2b3",
                css="forecast",
            ),
            Series(name="actual", d=path([(p.ts, p.actual) for p in data.intensity], time, value, gap), colour="#1f6f4a", css="actual"),
        ],
        empty="" if data.intensity or ours else f"no carbon intensity in {_range_words(data)}",
    )
    if issue is not None and ours:
        areas, line = _issued(issue, ours, time, value)
        chart.areas.extend(areas)
        chart.lines.insert(1, line)
    day = timedelta(days=1)
    for q in data.quarantined:
        start = datetime.combine(q.day, datetime.min.time(), tzinfo=data.range.since.tzinfo)
        x = time.x(start)
        chart.bands.append(
            Band(
                x=x,
                width=round(time.x(start + day) - x, 1),
                label=f"{q.day}: {q.rows} row(s) quarantined by {', '.join(q.checks)}",
                href=f"/tables/{INTENSITY}?day={q.day}",  # the day's rows, and the table's quarantined ones
            )
        )
        chart.marks.extend(Mark(x=time.x(ts), label=f"{ts:%Y-%m-%d %H:%M} quarantined") for ts in q.slots)
    for incident in data.incidents:
        if incident.occurred_at is not None:
            chart.marks.append(
                Mark(
                    x=time.x(incident.occurred_at),
                    label=f"incident {incident.id} [{incident.severity}, {incident.status}]: {incident.title}",
                    text=f"#{incident.id}",
                    href=f"/incidents/{incident.id}",
                    css=f"incident {incident.severity}",
                )
            )
    return chart


def forecast_chart(view: ForecastView) -> Chart | None:
    """The latest issue over its whole horizon: its intervals and point, with what was measured (and NESO's forecast)
    over the same slots so far; None when there is no issue (the page says so instead)."""
    issue = view.issue
    if issue is None or not issue.slots:
        return None
    time = TimeScale(issue.issued_at, issue_end(issue))
    measured = view.measured
    values = [s.hi95 for s in issue.slots] + [v for p in measured for v in (p.actual, p.forecast) if v is not None]
    value = ValueScale(0.0, max(values))
    gap = timedelta(minutes=45)
    areas, line = _issued(issue, list(issue.slots), time, value)
    return Chart(
        title="Our forecast, the latest issue",
        unit="gCO2/kWh",
        x_ticks=time.hour_ticks(),
        y_ticks=value.ticks(),
        areas=areas,
        lines=[
            Series(
                name="NESO forecast", d=path([(p.ts, p.forecast) for p in measured], time, value, gap), colour="#98a2b3", css="forecast"
            ),
            line,
            Series(name="actual", d=path([(p.ts, p.actual) for p in measured], time, value, gap), colour="#1f6f4a", css="actual"),
        ],
    )


def interval_polygon(slots: list[ForecastSlot], lo: str, hi: str, time: TimeScale, value: ValueScale) -> str:
    """A closed SVG path along the slots' upper bound `hi` and back along their lower bound `lo`."""
    upper = [f"{time.x(s.ts)},{value.y(getattr(s, hi))}" for s in slots]
    lower = [f"{time.x(s.ts)},{value.y(getattr(s, lo))}" for s in reversed(slots)]
    return f"M{' L'.join(upper)} L{' L'.join(lower)} Z"


def _issued(issue: IssuedForecast, slots: list[ForecastSlot], time: TimeScale, value: ValueScale) -> tuple[list[Series], Series]:
    """The 95 % and 80 % interval polygons (wider first, so the narrower lies on top) and the point line of `slots`."""
    areas = [
        Series(
            name=f"our {interval} % interval",
            d=interval_polygon(slots, f"lo{interval}", f"hi{interval}", time, value),
            colour=INTERVAL_COLOURS[interval],
            css=f"interval i{interval}",
        )
        for interval in (95, 80)
    ]
    point = path([(s.ts, s.point) for s in slots], time, value, timedelta(minutes=45))
    label = f"our forecast (issued {issue.issued_at:%Y-%m-%d %H:%M} UTC, {issue.model} {issue.model_version})"
    return areas, Series(name=label, d=point, colour=ISSUED_COLOUR, css="issued")


def mix_chart(data: GridData) -> Chart:
    """The generation mix as stacked areas, the biggest share at the bottom."""
    time = _frame(data)
    stamps = sorted({ts for points in data.mix.values() for ts, _ in points})
    totals = dict.fromkeys(stamps, 0.0)
    value = ValueScale(0.0, 100.0)
    areas = []
    for fuel, points in data.mix.items():
        share = dict(points)
        below = [totals[ts] for ts in stamps]
        for ts in stamps:
            totals[ts] += share.get(ts, 0.0)
        above = [totals[ts] for ts in stamps]
        upper = [f"{time.x(ts)},{value.y(min(v, 100.0))}" for ts, v in zip(stamps, above, strict=True)]
        lower = [f"{time.x(ts)},{value.y(min(v, 100.0))}" for ts, v in zip(reversed(stamps), reversed(below), strict=True)]
        areas.append(Series(name=fuel, d=f"M{' L'.join(upper)} L{' L'.join(lower)} Z", colour=FUEL_COLOURS.get(fuel, "#d0d5dd")))
    return Chart(
        title="Generation mix",
        unit="% of generation",
        x_ticks=time.ticks(_days(data)),
        y_ticks=value.ticks("%"),
        areas=areas,
        empty="" if stamps else f"no generation mix in {_range_words(data)}",
    )


def temperature_chart(data: GridData) -> Chart:
    time = _frame(data)
    values = [v for _, v in data.temperature]
    value = ValueScale(min(values, default=0.0), max(values, default=10.0))
    return Chart(
        title="Temperature, UK mean at 2 m",
        unit="°C",
        x_ticks=time.ticks(_days(data)),
        y_ticks=value.ticks(),
        lines=[Series(name="temperature", d=path(list(data.temperature), time, value, timedelta(minutes=90)), colour="#b54708")],  # type: ignore[arg-type]
        empty="" if values else f"no temperature in {_range_words(data)}",
    )


def _days(data: GridData) -> int:
    return (data.range.end - data.range.start).days + 1


def _range_words(data: GridData) -> str:
    return f"{data.range.start} to {data.range.end}"
