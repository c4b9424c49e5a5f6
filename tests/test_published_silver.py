"""The published-data audit of silver: a day rewritten out of band that breaks a row check is a bad publish; how
complete a day is stays the completeness monitors' to judge (pipelines/monitors/publish_audit.py)."""

from __future__ import annotations

from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.publish_audit import audit_published
from pipelines.promotion import run_pipeline
from tests.conftest import utc, window

SILVER = "silver.carbon_intensity"
NOW = utc(2023, 3, 1, 1)


def _bad(ctx: PlatformContext, day: str, mutate: str) -> None:
    spec = faults.load_fault({"kind": "bad_publish", "table": SILVER, "day": day, "mutate": mutate, "column": "actual"})
    assert isinstance(spec, faults.LakeFault)
    faults.apply_lake_fault(ctx, spec, run_id="manual-bad")


def test_a_clean_week_of_silver_passes_and_a_nulled_day_is_a_bad_publish_naming_its_culprit(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 2, 20), (2023, 3, 1)), as_of=NOW)
    assert audit_published(ctx, SILVER, NOW) == [], "what the pipeline published passes its own suite"
    good = wap.branch_head(load_table(ctx.catalog, SILVER), wap.MAIN)
    run_pipeline(ctx, "carbon_intensity", window((2023, 2, 28), (2023, 3, 1)), as_of=NOW)  # a later good run
    _bad(ctx, "2023-02-24", "set_value")  # a day of actuals lost
    (finding,) = audit_published(ctx, SILVER, NOW)
    assert (finding.kind, finding.partition, finding.evidence["bad_run_id"]) == ("bad_publish", "2023-02-24", "manual-bad")
    assert finding.evidence["good_snapshot_id"] is not None and finding.evidence["good_snapshot_id"] != good, (
        "the later good run's snapshot"
    )


def test_a_partial_day_published_with_its_flag_is_no_bad_publish(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 2, 20), (2023, 3, 1)), as_of=NOW)
    table = load_table(ctx.catalog, SILVER)
    rows = wap.read_days(table, [utc(2023, 2, 24)])
    keep = rows.slice(0, 40)  # 40 of 48 slots, as `partial_days: publish_flagged` publishes an outage day
    wap.overwrite_days(table, keep, [utc(2023, 2, 24)], branch=wap.MAIN, properties={"run_id": "flagged-partial"})
    assert wap.count_days(load_table(ctx.catalog, SILVER), [utc(2023, 2, 24)]) == 40
    assert [f for f in audit_published(ctx, SILVER, NOW) if f.partition == "2023-02-24"] == []
