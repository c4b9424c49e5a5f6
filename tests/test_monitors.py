"""Volume and schema monitors on real data, and failures that must not be retried."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pipelines.context import PlatformContext
from pipelines.monitors.checks import check_schema, check_volume
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from pipelines.sources import neso
from tests.conftest import utc, window


def test_volume_monitor_flags_the_october_outage_once_per_day(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 9, 15), (2023, 10, 24)))
    spec = ctx.inventory.monitors["carbon_intensity_volume"]
    assert check_volume(ctx, spec, utc(2023, 10, 20, 6)) == [], "19 October is a normal day"
    (low,) = check_volume(ctx, spec, utc(2023, 10, 21, 6))
    assert low.partition == "2023-10-20" and low.evidence["observed"] == 44 and low.evidence["median"] == 48
    assert check_volume(ctx, spec, utc(2023, 10, 21, 9)) == [], "the same day is judged once"
    (empty,) = check_volume(ctx, spec, utc(2023, 10, 22, 6))
    assert empty.evidence["observed"] == 0 and empty.occurred_at == utc(2023, 10, 21)


def test_schema_monitor_names_added_and_retyped_fields(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ctx.inventory.monitors["carbon_intensity_schema"]
    run_pipeline(ctx, "carbon_intensity", window((2023, 2, 1), (2023, 2, 2)))
    assert check_schema(ctx, spec, utc(2023, 2, 2)) == [], "the first shape is the baseline"
    original = neso._REPLAY["carbon_intensity"]

    def drifted(*args: Any) -> dict[str, Any]:
        body = original(*args)
        for record in body["data"]:
            record["intensity"]["forecast"] = str(record["intensity"]["forecast"])
            record["intensity"]["region"] = "GB"
        return body

    monkeypatch.setitem(neso._REPLAY, "carbon_intensity", drifted)
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 2, 2), (2023, 2, 3)))
    assert result.status == "succeeded", "numeric strings still conform; the shape change is the monitor's to report"
    (finding,) = check_schema(ctx, spec, utc(2023, 2, 3))
    assert finding.kind == "schema_drift" and finding.severity == "critical"
    assert finding.evidence["added"] == ["intensity.region"]
    assert finding.evidence["retyped"] == {"intensity.forecast": {"was": ["int"], "now": ["str"]}}
    assert "added intensity.region" in finding.title and "retyped intensity.forecast" in finding.title


def test_permanent_source_failures_become_critical_findings(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    from config.errors import PermanentSourceError

    def gone(*_args: Any) -> dict[str, Any]:
        raise PermanentSourceError("GET /intensity answered 404: not found; check the window and the base URL setting")

    monkeypatch.setitem(neso._REPLAY, "carbon_intensity", gone)
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 2, 2), (2023, 2, 3)))
    assert result.status == "failed" and result.error_kind == "permanent"
    (finding,) = findings_from_run(result, silver="silver.carbon_intensity")
    assert finding.kind == "source_failure" and finding.severity == "critical"
    assert finding.cause_key == "carbon_intensity:PermanentSourceError"


def test_a_lagging_pipeline_is_one_behind_finding_not_empty_days(ctx: PlatformContext) -> None:
    """The clock runs four days ahead of what the pipeline processed and no run succeeds: no "0 records" days,
    no stale source, one "behind by N h" finding, grouped into one incident however often the monitors look."""
    from pipelines.clock import SteppedClock
    from pipelines.monitors.checks import check_freshness
    from pipelines.service import Service

    clock = SteppedClock(current=utc(2023, 1, 1))
    service = Service(ctx, clock=clock, sleep=lambda _s: None)
    clock.advance_to(utc(2023, 2, 1))
    service.tick("carbon_intensity")  # processes January; the watermark is 1 February
    assert ctx.control.watermark("carbon_intensity") == utc(2023, 2, 1)
    volume = ctx.inventory.monitors["carbon_intensity_volume"]
    freshness = ctx.inventory.monitors["carbon_intensity_freshness"]
    assert check_freshness(ctx, freshness, utc(2023, 2, 3), stall_after_s=3600) == [], "runs still succeed: a speed matter"
    for hours in (2, 30, 54, 78, 102):
        now = utc(2023, 2, 1) + timedelta(hours=hours)
        assert check_volume(ctx, volume, now) == [], f"days after the watermark are not judged ({now})"
        findings = check_freshness(ctx, freshness, now, stall_after_s=0)
        if hours <= 3:
            assert findings == []
            continue
        (behind,) = findings
        assert behind.cause_key == "carbon_intensity_freshness:behind"
        assert behind.title.startswith(
            f"pipeline carbon_intensity is behind by {hours:.1f} h: it has processed up to 2023-02-01T00:00:00+00:00"
        )
        service.report(findings, now)
    behind_incidents = [i for i in ctx.incidents.list() if i.kind == "freshness" or i.kind == "volume"]
    assert [(i.cause_key, i.occurrences) for i in behind_incidents] == [("carbon_intensity_freshness:behind", 4)]
    ctx.incidents.transition(behind_incidents[0].id, "escalated", note="test")
    later = utc(2023, 2, 6, 8)  # 26 h after it was last seen
    service.report(check_freshness(ctx, freshness, later, stall_after_s=0), later)
    (escalated,) = [i for i in ctx.incidents.list() if i.kind == "freshness"]
    assert escalated.occurrences == 5, "an escalated incident takes its cause in however long after, instead of paging again"


def test_a_validation_incident_title_counts_every_occurrence(ctx: PlatformContext) -> None:
    """Rows quarantined by one check over several runs fold into one incident whose title states the total, not the
    first run's count."""
    from pipelines.incidents import Finding

    def quarantined(rows: int) -> Finding:
        return Finding(
            kind="validation",
            severity="warning",
            table="silver.carbon_intensity",
            cause_key="actual_positive_and_physical",
            title=f"silver.carbon_intensity: {rows} row(s) quarantined by actual_positive_and_physical",
            tally=rows,
            tally_title="silver.carbon_intensity: {total} row(s) quarantined by actual_positive_and_physical",
            evidence={"rows": rows},
        )

    now = utc(2023, 3, 2)
    first, opened = ctx.incidents.report(quarantined(18), now=now)
    assert opened and first.title.startswith("silver.carbon_intensity: 18 row(s)")
    ctx.incidents.report(quarantined(200), now=now + timedelta(hours=1))
    folded, opened = ctx.incidents.report(quarantined(81), now=now + timedelta(hours=2))
    assert not opened and folded.id == first.id and folded.occurrences == 3
    assert folded.title == "silver.carbon_intensity: 299 row(s) quarantined by actual_positive_and_physical"
    [finding] = [f for f in findings_from_run(_run_quarantining(ctx), silver="silver.carbon_intensity") if f.kind == "validation"][:1]
    assert finding.tally_title is not None and "{total}" in finding.tally_title and finding.tally


def test_an_incident_opened_before_titles_were_tallied_keeps_its_earlier_rows(ctx: PlatformContext) -> None:
    """Its evidence has each occurrence's rows but no running sum: the next occurrence adds to their sum."""
    from pipelines.incidents import Finding

    legacy = Finding(
        kind="validation", severity="warning", table="silver.weather", cause_key="temperature_physical",
        title="silver.weather: 18 row(s) quarantined by temperature_physical", evidence={"rows": 18},
    )  # fmt: skip
    first, _ = ctx.incidents.report(legacy, now=utc(2023, 3, 2))
    ctx.incidents.report(
        legacy.model_copy(update={"title": "silver.weather: 4 row(s) ...", "evidence": {"rows": 4}}), now=utc(2023, 3, 2, 1)
    )
    tallied = legacy.model_copy(
        update={"evidence": {"rows": 5}, "tally": 5, "tally_title": "silver.weather: {total} row(s) quarantined by temperature_physical"}
    )
    folded, _ = ctx.incidents.report(tallied, now=utc(2023, 3, 2, 2))
    assert folded.id == first.id and folded.title == "silver.weather: 27 row(s) quarantined by temperature_physical"


def _run_quarantining(ctx: PlatformContext) -> Any:
    """A real run over 31 January 2023, whose zero actual at 01:00 the suite quarantines."""
    return run_pipeline(ctx, "carbon_intensity", window((2023, 1, 31), (2023, 2, 1)), as_of=utc(2023, 2, 2))


def test_two_monitors_proving_one_bad_publish_of_a_day_open_one_incident(ctx: PlatformContext) -> None:
    """The published-data audit and the reconciliation both see a negated gold day: one incident, one rollback.
    Another day of the same table is another incident."""
    from pipelines.incidents import Finding

    def bad(monitor: str, day: str) -> Finding:
        return Finding(
            kind="bad_publish",
            severity="critical",
            table="gold.carbon_intensity_hourly",
            cause_key=f"{monitor}:carbon_intensity_hourly",
            partition=day,
            title=f"gold.carbon_intensity_hourly: {day} found bad by {monitor}",
            evidence={"good_snapshot_id": 7},
        )

    now = utc(2023, 11, 6)
    first, opened = ctx.incidents.report(bad("published", "2023-11-05"), now=now)
    folded, again = ctx.incidents.report(bad("reconcile", "2023-11-05"), now=now)
    assert opened and not again and folded.id == first.id and folded.occurrences == 2
    other, opened_other = ctx.incidents.report(bad("reconcile", "2023-11-07"), now=now)
    assert opened_other and other.id != first.id
    assert ctx.incidents.report(bad("published", "2023-11-07"), now=now)[0].id == other.id
