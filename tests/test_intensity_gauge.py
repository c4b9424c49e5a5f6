"""What the service exports for the Grafana dashboard: the carbon-intensity gauges, set from what a carbon-intensity run
just published (absent before), and the count of incidents opened behind its annotations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pytest
from prometheus_client import generate_latest

from pipelines import intensity_gauge, metrics
from pipelines.clock import SteppedClock
from pipelines.context import PlatformContext
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.service import Service
from tests.conftest import utc

GAUGE = "dataops_carbon_intensity_gco2_per_kwh"
SLOT = "dataops_carbon_intensity_slot_timestamp_seconds"


def sample(name: str, kind: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"kind": kind})


def metrics_text() -> str:
    return generate_latest(metrics.REGISTRY).decode()


def silver_slot(ctx: PlatformContext, ts: datetime) -> dict[str, float]:
    rows = load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow().to_pylist()
    row = next(r for r in rows if r["ts"] == ts)
    return {"actual": row["actual"], "forecast": row["forecast"]}


@pytest.fixture
def fresh_gauges() -> Iterator[None]:
    """The registry is the process's: start from a process that has published nothing yet."""
    metrics.CARBON_INTENSITY.clear()
    metrics.CARBON_INTENSITY_SLOT.clear()
    yield
    metrics.CARBON_INTENSITY.clear()
    metrics.CARBON_INTENSITY_SLOT.clear()


def test_the_service_sets_the_gauge_from_the_slot_a_carbon_run_published(
    ctx: PlatformContext, fresh_gauges: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SteppedClock(current=utc(2023, 1, 3, 10, 20))
    svc = Service(ctx, clock=clock, sleep=lambda _s: None)
    assert sample(GAUGE, "actual") is None and sample(GAUGE, "forecast") is None, "absent, not 0, before the first publish"
    assert f"{GAUGE}{{" not in metrics_text()

    svc.tick("weather")  # another pipeline publishes nothing the gauge shows
    assert sample(GAUGE, "actual") is None

    svc.tick("carbon_intensity")
    newest = utc(2023, 1, 3, 9, 30)  # the last slot that ended by 10:20
    expected = silver_slot(ctx, newest)
    assert None not in expected.values()
    assert {kind: sample(GAUGE, kind) for kind in expected} == expected
    assert sample(SLOT, "actual") == sample(SLOT, "forecast") == newest.timestamp()

    read: list[list[datetime]] = []
    real_read = wap.read_days_in_parts

    def recording(table: object, days: list[datetime], **kwargs: object) -> Iterator[pa.Table]:
        read.append(list(days))
        return real_read(table, days, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(wap, "read_days_in_parts", recording)
    clock.current = utc(2023, 1, 3, 12, 0)
    svc.tick("carbon_intensity")
    newest = utc(2023, 1, 3, 11, 30)
    assert {kind: sample(GAUGE, kind) for kind in expected} == silver_slot(ctx, newest)
    assert sample(SLOT, "actual") == newest.timestamp()
    assert read == [[utc(2023, 1, 3)]], "the gauge reads the day the run published, not the table"


def test_the_newest_value_of_each_kind_started_by_the_clock_wins() -> None:
    rows = pa.table(
        {
            "ts": [utc(2023, 1, 3, 9), utc(2023, 1, 3, 9, 30), utc(2023, 1, 3, 10)],
            "actual": [150.0, None, 90.0],
            "forecast": [140.0, 130.0, 95.0],
        }
    )
    latest = intensity_gauge.latest_values(rows, as_of=utc(2023, 1, 3, 9, 45))
    assert latest == {"actual": (utc(2023, 1, 3, 9), 150.0), "forecast": (utc(2023, 1, 3, 9, 30), 130.0)}
    assert intensity_gauge.latest_values(rows.slice(0, 0), as_of=utc(2023, 1, 3)) == {}


def test_the_service_counts_incidents_it_opens_for_the_dashboards_annotations(ctx: PlatformContext) -> None:
    svc = Service(ctx, clock=SteppedClock(current=utc(2023, 1, 1)), sleep=lambda _s: None)

    def opened(severity: str) -> float:
        return metrics.REGISTRY.get_sample_value("dataops_incidents_opened_total", {"severity": severity}) or 0.0

    before = opened("warning")
    finding = Finding(kind="freshness", severity="warning", table="silver.weather", cause_key="weather_freshness", title="stale")
    svc.report([finding], utc(2023, 1, 1))
    svc.report([finding], utc(2023, 1, 1, 1))  # folded into the open incident: not a new one
    assert opened("warning") == before + 1
