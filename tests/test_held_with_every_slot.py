"""A day held back although every slot arrived (the source sent a finer grain) is not diagnosed as a source outage.

Before, the completeness incident of such a day read "Cause: source outage: the source did not deliver no slot
missing", and the runbook backfilled the day, which fetched the same records and held it again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from agent.diagnose import diagnose
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from pipelines.sources.base import Window
from tests.conftest import utc


def test_a_day_with_five_minute_records_is_held_for_its_extra_records_not_for_missing_ones(ctx: PlatformContext) -> None:
    ctx.faults.inject(
        faults.SourceFault(kind="volume_spike", source="carbon_intensity", value=5, start=utc(2023, 3, 2), end=utc(2023, 3, 3))
    )
    result = run_pipeline(ctx, "carbon_intensity", Window(start=utc(2023, 3, 1), end=utc(2023, 3, 4)), as_of=utc(2023, 3, 4, 1))
    assert "2023-03-02" in result.held_days
    completeness = [f for f in findings_from_run(result, silver="silver.carbon_intensity") if f.kind == "completeness"]
    assert completeness, "the held day opens a completeness incident"
    incident, _ = ctx.incidents.report(completeness[0], now=datetime.now(UTC))
    assert incident.extent is not None and incident.extent.missing_count() == 0
    found = diagnose(ctx, incident, utc(2023, 3, 4, 1))
    assert found.cause == "bad_values"
    assert found.summary.startswith("day 2023-03-02 held back although every expected slot arrived")
    assert "slot_on_half_hour (240 row(s))" in found.summary and "no slot missing" not in found.summary
