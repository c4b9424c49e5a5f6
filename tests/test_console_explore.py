"""The console's read-only pages over a real run: Runs (timeline, one run with its validation report), Tables
(schema, snapshots with their runs, quarantined rows, a day as of an older snapshot) and Lineage (SVG)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pipelines.promotion import run_pipeline
from tests.conftest import utc, window

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from tests.console_fixtures import Browser, Platform

pytest_plugins = ["tests.console_fixtures"]
SILVER = "silver.carbon_intensity"


def test_runs_tables_and_time_travel_over_a_real_run(client: TestClient, browser: Browser, platform: Platform) -> None:
    ctx = platform.ctx
    first = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 26)), as_of=utc(2023, 1, 28))
    second = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 26), (2023, 1, 27)), as_of=utc(2023, 1, 28))
    assert second.rows_quarantined > 0, "the real defects of 26 January 2023 are quarantined"
    browser.sign_in("vera")

    overview = client.get("/").text  # the scorecard: each data day its runs validated, over the last 30 days
    assert 'title="2023-01-24: 1.000"' in overview and 'title="2023-01-23: not validated"' in overview
    assert re.search(r'class="(fair|poor)" title="2023-01-26: 0\.\d{3}"', overview), "the 26th's quarantined rows lower its score"

    runs = client.get("/runs?pipeline=carbon_intensity").text
    assert first.run_id in runs and second.run_id in runs and 'class="timeline"' in runs
    assert client.get("/runs?pipeline=nope").status_code == 422

    run = client.get(f"/runs/{second.run_id}")
    assert run.status_code == 200
    assert "Validation report" in run.text and "actual_reported_after_slot" in run.text and "✗" in run.text
    report = client.get(f"/api/runs/{second.run_id}", headers=platform.auth("vera")).json()
    assert report["run"]["rows_quarantined"] == second.rows_quarantined
    failing = [c for c in report["validation"][SILVER] if not c["success"]]
    assert failing and all(c["unexpected_count"] > 0 for c in failing)
    assert client.get("/runs/no-such-run").status_code == 404
    assert client.get("/api/runs/no-such-run", headers=platform.auth("vera")).status_code == 404

    table = client.get(f"/tables/{SILVER}").text
    assert "Schema" in table and "gCO2/kWh" in table
    assert f'href="/runs/{first.run_id}"' in table and f'href="/runs/{second.run_id}"' in table
    assert "actual_reported_after_slot" in table  # a quarantined row with its check
    snapshots = client.get(f"/api/tables/{SILVER}/snapshots", headers=platform.auth("vera")).json()["snapshots"]
    made_by_first = next(s["snapshot_id"] for s in snapshots if s["run_id"] == first.run_id)

    # The 26th did not exist in the table as the first run left it; it does now.
    before = client.get(f"/tables/{SILVER}?day=2023-01-26&snapshot={made_by_first}").text
    assert "0 row(s) on 2023-01-26 as of snapshot" in before
    now = client.get(f"/tables/{SILVER}?day=2023-01-26").text
    assert "row(s) on 2023-01-26" in now and "0 row(s) on 2023-01-26" not in now
    assert client.get(f"/tables/{SILVER}?day=26-01-2023").status_code == 422
    assert client.get(f"/tables/{SILVER}?day=2023-01-26&snapshot=abc").status_code == 422
    assert "has no snapshot 1" in client.get(f"/tables/{SILVER}?day=2023-01-26&snapshot=1").text
    assert client.get("/tables/silver.nothing").status_code == 404


def test_tables_before_any_run_have_no_snapshots(client: TestClient, browser: Browser, platform: Platform) -> None:
    browser.sign_in("vera")
    listed = client.get("/tables").text
    assert all(f'href="/tables/{name}"' in listed for name in platform.ctx.inventory.tables)
    page = client.get(f"/tables/{SILVER}")
    assert page.status_code == 200 and "no snapshots" in page.text
    assert "0 row(s) on 2023-01-26" in client.get(f"/tables/{SILVER}?day=2023-01-26").text


def test_lineage_is_svg_linking_every_table(client: TestClient, browser: Browser, platform: Platform) -> None:
    from pipelines.lineage import edges

    browser.sign_in("vera")
    page = client.get("/lineage")
    assert page.status_code == 200 and "<svg" in page.text
    for upstream, downstream in edges(platform.ctx.inventory):
        for name in (upstream, downstream):
            assert name in page.text
            if not name.startswith("source:"):
                assert f'href="/tables/{name}"' in page.text
    assert page.text.count('class="edge"') == len(edges(platform.ctx.inventory))
