"""Two causes the diagnosis used to miss, found by probe scenarios.

- Records whose times carry no UTC offset (local wall-clock times on a clock-change day) are held as slot_time:
  the day was then "empty at the source, a source outage", and the held rows "bad values". Both are now schema
  drift in the times, and the completeness runbook escalates instead of backfilling what would be held again.
- A weather day delivered x10 (a November day at 50-120 °C) was "bad values": nearer its history than the x20 a
  unit change needed. Varying values at a power of ten of their history now read as a unit change; one
  impossible value repeated does not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agent.diagnose import diagnose
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from pipelines.sources.base import Window
from tests.conftest import utc


def _diagnosed(ctx: PlatformContext, pipeline: str, silver: str, window: Window, as_of: datetime) -> dict[str, Any]:
    result = run_pipeline(ctx, pipeline, window, as_of=as_of)
    found = {}
    for finding in findings_from_run(result, silver=silver):
        incident, _ = ctx.incidents.report(finding, now=datetime.now(UTC))
        found[incident.kind] = diagnose(ctx, incident, as_of)
    return found


def test_times_without_an_offset_on_the_autumn_clock_change_are_schema_drift_not_an_outage(ctx: PlatformContext) -> None:
    ctx.faults.inject(faults.SourceFault(kind="local_time", source="carbon_intensity", start=utc(2023, 10, 29), end=utc(2023, 10, 30)))
    found = _diagnosed(
        ctx, "carbon_intensity", "silver.carbon_intensity", Window(start=utc(2023, 10, 27), end=utc(2023, 10, 31)), utc(2023, 10, 31, 1)
    )
    assert set(found) == {"completeness", "validation"}
    for diagnosis in found.values():
        assert diagnosis.cause == "schema_drift"
        assert "48 record(s) with times without a UTC offset" in diagnosis.summary and "'2023-10-29T01:00'" in diagnosis.summary


@pytest.mark.parametrize(
    ("kind", "value", "cause"),
    [
        ("unit_change", 10, "unit_change"),
        ("impossible_values", 95, "bad_values"),
        ("impossible_values", 9999, "bad_values"),  # a sentinel: far beyond SCALE_RATIO, but one value repeated
        ("unit_change", 1000, "unit_change"),
    ],
)
def test_a_weather_day_at_ten_times_is_a_unit_change_and_a_repeated_impossible_value_is_not(
    ctx: PlatformContext, kind: str, value: float, cause: str
) -> None:
    ctx.faults.inject(
        faults.SourceFault(kind=kind, source="weather", field="temperature_2m", value=value, start=utc(2023, 11, 2), end=utc(2023, 11, 3))
    )
    found = _diagnosed(ctx, "weather", "silver.weather", Window(start=utc(2023, 10, 20), end=utc(2023, 11, 4)), utc(2023, 11, 4, 1))
    assert found["validation"].cause == cause, found["validation"]
    if cause == "unit_change":
        said = "10x" if value == 10 else "about 1,000x"
        assert found["validation"].summary.startswith(f"temperature_c arrives at {said} its usual level")
        assert value == 10 or "), 997x measured;" in found["validation"].summary
