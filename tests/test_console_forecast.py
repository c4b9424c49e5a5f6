"""Our carbon-intensity forecast where people look: on the Data page (the issue's point and 80 % / 95 % bands over
the picked days and on a chart of its own, the realised accuracy below) and as JSON at /api/forecast.

Issues are appended to gold.carbon_intensity_forecast directly, as the forecast pipeline's publish leaves them, so
these tests do not depend on a model."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from agent.console.forecasts import NO_FORECAST
from pipelines.context import PlatformContext
from pipelines.forecast.schema import HORIZON_SLOTS, SLOT
from pipelines.forecast.store import FORECAST_TABLE
from pipelines.promotion import run_pipeline
from tests.conftest import utc, window

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.console_fixtures import Browser, Platform

pytest_plugins = ["tests.console_fixtures"]
NOW = utc(2023, 1, 28)
EARLIER, LATEST = utc(2023, 1, 24), utc(2023, 1, 25)


def publish(ctx: PlatformContext, issued_at: datetime, *, model: str, point: float) -> None:
    """One issue of HORIZON_SLOTS flat slots (80 % bounds ±20, 95 % bounds ±40), appended as a publish leaves it."""
    from pipelines.lakehouse.catalog import arrow_schema, load_table

    rows = [
        {
            "issued_at": issued_at,
            "ts": issued_at + n * SLOT,
            "horizon_h": (n + 1) / 2,
            "point": point,
            "lo80": point - 20,
            "hi80": point + 20,
            "lo95": point - 40,
            "hi95": point + 40,
            "model": model,
            "model_version": "1",
            "perfect_prognosis": False,
            "run_id": f"test-{model}",
        }
        for n in range(HORIZON_SLOTS)
    ]
    schema = arrow_schema(ctx.inventory.table(FORECAST_TABLE))
    load_table(ctx.catalog, FORECAST_TABLE).append(pa.Table.from_pylist(rows, schema=schema))


def _figure(page: str, title: str) -> str:
    match = re.search(rf'<figure class="chart"[^>]*>\s*<figcaption>{re.escape(title)}.*?</figure>', page, re.S)
    assert match, f"no chart {title!r} on the page"
    return match.group(0)


def _path(figure: str, css: str) -> str:
    match = re.search(rf'<path class="{css}" d="([^"]*)"', figure)
    assert match, f"no path of class {css!r}"
    return match.group(1)


def _points(d: str) -> int:
    return len(re.findall(r"[ML]", d))


def _expected_mae(measured: dict[str, float]) -> dict[float, float]:
    """MAE by reported horizon over both issues, from the actuals the API reports: one slot per issue and horizon."""
    found = {}
    for horizon in (1.0, 6.0, 24.0, 48.0):
        errors = []
        for issued_at, point in ((EARLIER, 150.0), (LATEST, 200.0)):
            ts = (issued_at + (int(horizon * 2) - 1) * SLOT).isoformat().replace("+00:00", "Z")
            if ts in measured:
                errors.append(abs(measured[ts] - point))
        if errors:
            found[horizon] = round(sum(errors) / len(errors), 3)
    return found


def test_the_data_page_draws_our_latest_issue_with_its_bands_and_accuracy(client: TestClient, browser: Browser, platform: Platform) -> None:
    ctx = platform.ctx
    assert run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW).status == "succeeded"
    publish(ctx, EARLIER, model="seasonal_naive", point=150.0)
    publish(ctx, LATEST, model="gbm", point=200.0)
    browser.sign_in("vera")
    page = client.get("/data?start=2023-01-24&end=2023-01-27")
    assert page.status_code == 200
    assert "<script" not in page.text and 'style="' not in page.text  # what the CSP allows
    label = "our forecast (issued 2023-01-25 00:00 UTC, gbm 1)"

    # Over the picked days: the latest issue's point line and both intervals as closed polygons, NESO's beside it.
    intensity = _figure(page.text, "Carbon intensity, actual and forecast")
    assert _points(_path(intensity, "line issued")) == HORIZON_SLOTS
    for interval in (80, 95):
        polygon = _path(intensity, f"area interval i{interval}")
        assert polygon.endswith(" Z") and _points(polygon) == 2 * HORIZON_SLOTS
        assert f"<title>our {interval} % interval</title>" in intensity and f"</svg> our {interval} % interval</span>" in intensity
    assert f"<title>{label}</title>" in intensity and f"</svg> {label}</span>" in intensity
    assert _path(intensity, "line forecast") and "<title>NESO forecast</title>" in intensity

    # On its own chart: the whole issue, with what was measured over it.
    ours = _figure(page.text, "Our forecast, the latest issue")
    assert _points(_path(ours, "line issued")) == HORIZON_SLOTS and _path(ours, "area interval i95").endswith(" Z")
    data = client.get("/api/data?start=2023-01-25&end=2023-01-26", headers=platform.auth("vera")).json()
    measured = {p["ts"]: p["actual"] for p in data["intensity"] if p["actual"] is not None}
    assert _points(_path(ours, "line actual")) == len(measured) > 80  # a few slots of the 26th are quarantined
    assert re.findall(r'class="xtick"[^>]*>([^<]+)<', ours)[::4] == ["25 Jan 00:00", "26 Jan 00:00"]  # every 6 hours
    assert "The latest issue, issued 2023-01-25 00:00 UTC by gbm 1: 96 half-hour slots" in page.text

    # The accuracy table: MAE by horizon, from the measured slots of both issues of the last 7 days.
    forecast = client.get("/api/forecast", headers=platform.auth("vera")).json()
    assert forecast["issue"]["issued_at"] == "2023-01-25T00:00:00Z" and forecast["issue"]["model"] == "gbm"
    assert len(forecast["issue"]["slots"]) == HORIZON_SLOTS and forecast["message"] == ""
    accuracy = forecast["accuracy"]
    assert accuracy["issues"] == 2 and accuracy["slots"] > 150
    table = re.search(r'<table class="grid" id="forecast-accuracy">.*?</table>', page.text, re.S)
    assert table, "no accuracy table"
    for h in accuracy["by_horizon"]:
        assert f"<td>{h['horizon_h']:g} h</td><td>{h['mae']:.1f} gCO2/kWh</td>" in table.group(0)
    everything = client.get("/api/data?start=2023-01-24&end=2023-01-27", headers=platform.auth("vera")).json()["intensity"]
    expected = _expected_mae({p["ts"]: p["actual"] for p in everything if p["actual"] is not None})
    assert {h["horizon_h"]: h["mae"] for h in accuracy["by_horizon"]} == expected and len(expected) == 4
    for interval in (80, 95):
        held = accuracy[f"coverage_{interval}"]
        assert f"held {held * 100:.0f} % of the measured values (should hold {interval} %)" in table.group(0)
    assert [p["ts"] for p in forecast["measured"]][:1] == ["2023-01-25T00:00:00Z"] and len(forecast["measured"]) == len(measured)


def test_a_past_range_shows_the_issue_made_for_it(client: TestClient, browser: Browser, platform: Platform) -> None:
    publish(platform.ctx, EARLIER, model="seasonal_naive", point=150.0)
    publish(platform.ctx, LATEST, model="gbm", point=200.0)
    browser.sign_in("vera")
    page = client.get("/data?start=2023-01-24&end=2023-01-24").text
    intensity = _figure(page, "Carbon intensity, actual and forecast")
    assert "<title>our forecast (issued 2023-01-24 00:00 UTC, seasonal_naive 1)</title>" in intensity
    assert _points(_path(intensity, "line issued")) == 48  # the day of the issue's 96 slots that is shown
    assert "no carbon intensity in" not in intensity  # the forecast is there to see, though no actual is
    # The section below still shows the latest issue as of the clock.
    assert "<title>our forecast (issued 2023-01-25 00:00 UTC, gbm 1)</title>" in _figure(page, "Our forecast, the latest issue")
    # A week before any issue: no band over it.
    earlier = _figure(client.get("/data?start=2023-01-10&end=2023-01-16").text, "Carbon intensity, actual and forecast")
    assert "line issued" not in earlier and "interval" not in earlier


def test_no_forecast_yet_is_said_plainly(client: TestClient, browser: Browser, platform: Platform) -> None:
    browser.sign_in("vera")
    page = client.get("/data").text
    assert f"{NO_FORECAST}." in page
    assert "Our forecast, the latest issue" not in page and "interval" not in page  # no empty chart
    assert "not measured yet" in page
    answer = client.get("/api/forecast", headers=platform.auth("vera"))
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    assert body["issue"] is None and body["message"] == NO_FORECAST and body["measured"] == []
    assert body["accuracy"]["slots"] == 0 and all(h["mae"] is None for h in body["accuracy"]["by_horizon"])
    assert body["as_of"] == "2023-01-28T00:00:00Z" and body["problems"] == []
    assert client.get("/api/forecast").status_code == 401  # a token, as for the rest of the API
