"""The Data page on the bundled real data: carbon intensity actual vs forecast with the quarantined days and the
incidents marked over it, the generation mix and the temperature, as server-rendered SVG over a picked range."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from tests.conftest import utc, window

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.console_fixtures import Browser, Platform

pytest_plugins = ["tests.console_fixtures"]
NOW = utc(2023, 1, 28)


def _figure(page: str, title: str) -> str:
    match = re.search(rf'<figure class="chart"[^>]*>\s*<figcaption>{re.escape(title)}.*?</figure>', page, re.S)
    assert match, f"no chart {title!r} on the page"
    return match.group(0)


def _points(figure: str, css: str) -> int:
    match = re.search(rf'<path class="line {css}" d="([^"]*)"', figure)
    assert match, f"no {css} line"
    return len(re.findall(r"[ML]", match.group(1)))


def test_intensity_and_temperature_with_the_defects_marked(client: TestClient, browser: Browser, platform: Platform) -> None:
    ctx = platform.ctx
    done = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW)
    assert run_pipeline(ctx, "weather", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW).status == "succeeded"
    finding = next(f for f in findings_from_run(done, silver="silver.carbon_intensity") if f.cause_key == "actual_reported_after_slot")
    incident, _ = ctx.incidents.report(finding, now=NOW)
    browser.sign_in("vera")
    page = client.get("/data?start=2023-01-24&end=2023-01-27")
    assert page.status_code == 200
    assert "<script" not in page.text and 'style="' not in page.text  # what the CSP allows: no script, no inline style
    data = client.get("/api/data?start=2023-01-24&end=2023-01-27", headers=platform.auth("vera")).json()
    intensity = _figure(page.text, "Carbon intensity, actual and forecast")
    assert _points(intensity, "actual") == sum(p["actual"] is not None for p in data["intensity"]) > 100
    assert _points(intensity, "forecast") == sum(p["forecast"] is not None for p in data["intensity"])
    # The quarantined day shaded, each held slot ticked, the incident a line linking to it (and listed below).
    held = {q["day"]: q for q in data["quarantined"]}
    assert "actual_reported_after_slot" in held["2023-01-26"]["checks"] and sum(q["rows"] for q in held.values()) == done.rows_quarantined
    for day, q in held.items():
        assert f"<title>{day}: {q['rows']} row(s) quarantined by {', '.join(q['checks'])}</title>" in intensity
    assert intensity.count('<rect class="band" x=') == len(held)
    assert '<a href="/tables/silver.carbon_intensity?day=2023-01-26"><rect class="band"' in intensity  # to the day's rows
    assert intensity.count('<g class="mark slot">') == sum(len(q["slots"]) for q in held.values())
    assert f'<a href="/incidents/{incident.id}"><g class="mark incident warning">' in intensity
    assert f"incident {incident.id} (open): {incident.title}" in page.text
    temperature = _figure(page.text, "Temperature, UK mean at 2 m")
    assert _points(temperature, "") == len(data["temperature"]) == 72  # hourly, three days
    # No generation mix in the bundled replay for January 2023: an empty chart that says so.
    assert "no generation mix in 2023-01-24 to 2023-01-27" in _figure(page.text, "Generation mix")


def test_the_generation_mix_stacks_its_fuels(client: TestClient, browser: Browser, platform: Platform) -> None:
    # The bundled replay has the mix for a week of April 2019 (and 11-12 January 2024).
    assert run_pipeline(platform.ctx, "generation_mix", window((2019, 4, 2), (2019, 4, 4)), as_of=utc(2019, 4, 5)).status == "succeeded"
    browser.sign_in("vera")
    page = client.get("/data?start=2019-04-02&end=2019-04-03").text
    mix = _figure(page, "Generation mix")
    fuels = re.findall(r'<path class="area" d="M[^"]+ Z" fill="#[0-9a-f]{6}"><title>([a-z]+)</title>', mix)
    assert {"gas", "wind", "nuclear", "solar"} <= set(fuels) and len(fuels) == len(set(fuels)), fuels
    assert all(f"</svg> {fuel}</span>" in mix for fuel in fuels)  # each in the legend
    data = client.get("/api/data?start=2019-04-02&end=2019-04-03", headers=platform.auth("vera")).json()
    assert all(len(points) == 96 for points in data["mix"].values())  # every half-hour of two days
    assert "no carbon intensity in 2019-04-02 to 2019-04-03" in page


def test_the_range_defaults_to_the_week_before_the_clock_and_is_checked(client: TestClient, browser: Browser, platform: Platform) -> None:
    browser.sign_in("vera")
    page = client.get("/data").text
    assert 'name="start" type="date" value="2023-01-21"' in page and 'name="end" type="date" value="2023-01-27"' in page
    assert "no carbon intensity in 2023-01-21 to 2023-01-27" in page  # nothing has run: empty charts, not an error
    assert 'value="2023-02-06"' in client.get("/data?start=2023-01-31").text  # one end alone: a week
    bad = client.get("/data?start=31-01-2023&end=2023-02-01")
    assert bad.status_code == 422 and "start:" in bad.text
    backwards = client.get("/data?start=2023-02-01&end=2023-01-01")
    assert backwards.status_code == 422 and "end: Value error, 2023-01-01 is before the first day 2023-02-01" in backwards.text
    long = client.get("/api/data?start=2023-01-01&end=2023-12-31", headers=platform.auth("vera"))
    assert long.status_code == 422 and long.json()["field"] == "end" and "365 days asked; at most 93 at a time" in long.json()["detail"]
    assert client.get("/api/data").status_code == 401
