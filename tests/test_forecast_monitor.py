"""Realised forecast accuracy and the forecast monitor: a day whose forecasts were far worse than usual opens one
`forecast_degraded` incident; ordinary days and days not yet measured do not; too few days is warming up."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.forecast.accuracy import observe_accuracy, realised_accuracy
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.forecast_accuracy import check_forecast, day_score
from pipelines.monitors.state import load_state
from tests.conftest import utc
from tests.test_forecast_run import seed_silver

DEGRADED = utc(2023, 2, 3)


def write_issues(ctx: PlatformContext, first: datetime, days: int, *, degraded: datetime | None = None) -> None:
    """One issue a day at 00:00: the real actual plus an error of 20 gCO2/kWh (sd) per slot, 80 on `degraded`."""
    actual = {r["ts"]: r["actual"] for r in load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow().to_pylist()}
    rng = np.random.default_rng(7)
    rows: dict[str, list[object]] = {k: [] for k in ("issued_at", "ts", "horizon_h", "point", "lo80", "hi80", "lo95", "hi95")}
    for d in range(days):
        issued = first + timedelta(days=d)
        sd = 80.0 if issued == degraded else 20.0
        for k in range(96):
            ts = issued + timedelta(minutes=30 * k)
            point = max(float(actual.get(ts) or 200.0) + rng.normal(0, sd), 5.0)
            for key, value in zip(rows, (issued, ts, (k + 1) / 2, point, point * 0.9, point * 1.1, point * 0.8, point * 1.2), strict=True):
                rows[key].append(value)
    n = len(rows["ts"])
    data = pa.table(
        {
            **rows,
            "model": ["test"] * n,
            "model_version": ["1"] * n,
            "perfect_prognosis": [False] * n,
            "run_id": ["seed"] * n,
        }
    )
    table = load_table(ctx.catalog, "gold.carbon_intensity_forecast")
    table.append(data.cast(table.schema().as_arrow()))


def test_realised_accuracy_joins_measured_slots_only(ctx: PlatformContext) -> None:
    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 1, 20))
    write_issues(ctx, utc(2023, 1, 17), 2)
    accuracy = realised_accuracy(ctx, until=utc(2023, 1, 18, 12))
    assert accuracy.issues == 2
    # Issued 17 Jan 00:00 and 18 Jan 00:00, measured up to 18 Jan 12:00: 48 + 24 slots, then 24 of the second issue.
    assert accuracy.slots == 72 + 24
    one_hour = next(h for h in accuracy.by_horizon if h.horizon_h == 1.0)
    assert one_hour.slots == 2 and one_hour.mae is not None
    assert next(h for h in accuracy.by_horizon if h.horizon_h == 48.0).mae is None  # not measured yet
    observe_accuracy(ctx, until=utc(2023, 1, 18, 12))
    assert metrics.REGISTRY.get_sample_value("dataops_forecast_abs_error", {"horizon": "1"}) == one_hour.mae


def test_a_degraded_day_opens_one_finding_and_ordinary_days_none(ctx: PlatformContext) -> None:
    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 12))
    write_issues(ctx, utc(2023, 1, 1), 40, degraded=DEGRADED)
    spec = ctx.inventory.monitors["forecast_accuracy"]
    early = check_forecast(ctx, spec, utc(2023, 1, 6))
    assert early == [] and load_state(ctx, spec.name)[1]["status"] == "warming_up"
    findings = check_forecast(ctx, spec, utc(2023, 2, 11))
    assert [f.partition for f in findings] == ["2023-02-03"]
    (finding,) = findings
    assert finding.kind == "forecast_degraded" and finding.table == "gold.carbon_intensity_forecast"
    assert "2023-02-03" in finding.title and finding.evidence["day_ahead_mae"] > 3 * finding.evidence["usual_mae"]
    assert check_forecast(ctx, spec, utc(2023, 2, 11, 12)) == []  # judged once


def test_the_score_is_one_sided() -> None:
    history = np.array([10.0, 11, 9, 12, 10, 11, 9, 10])
    assert day_score(history, 5.0)[0] < 0.5  # better than usual is no alarm
    assert day_score(history, 30.0)[0] > 3 > day_score(history, 12.0)[0]


def test_the_agent_escalates_a_degraded_forecast_with_the_evidence(ctx: PlatformContext) -> None:
    """The forecast monitor's incident reaches the runbook planner, which records it and tells a person."""
    from agent.report import ConsoleReporter
    from agent.runtime import Agent

    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 12))
    write_issues(ctx, utc(2023, 1, 1), 40, degraded=DEGRADED)
    now = utc(2023, 2, 11)
    (finding,) = check_forecast(ctx, ctx.inventory.monitors["forecast_accuracy"], now)
    incident, opened = ctx.incidents.report(finding, now=now)
    assert opened
    lines: list[str] = []
    agent = Agent(ctx, clock=lambda: now, reporter=ConsoleReporter(lines.append))
    try:
        outcome = agent.handle_incident(incident.id)
    finally:
        agent.close()
    assert outcome.outcome == "escalated"
    assert "2023-02-03" in outcome.message and "check silver.carbon_intensity" in outcome.message


def test_value_monitors_can_score_the_actual_against_our_forecast(ctx: PlatformContext) -> None:
    """`forecast:` on a value monitor offers our forecast as a column: each slot's point from the latest issue made at
    or before it, so the monitor scores the actual against what was expected when it happened."""
    from config.inventory import FalseAlarmBudget, MonitorSpec
    from pipelines.monitors.value import check_value, read_series

    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 12))
    write_issues(ctx, utc(2023, 1, 1), 40)
    spec = MonitorSpec(
        name="actual_vs_our_forecast",
        kind="value",
        table="silver.carbon_intensity",
        expression="actual - our_forecast",
        reference="our_forecast",
        forecast="forecast",
        model="seasonal",
        budget=FalseAlarmBudget(incidents=1, per_days=90),
    )
    frame = read_series(ctx, spec, utc(2023, 1, 2), utc(2023, 1, 3))
    issues = load_table(ctx.catalog, "gold.carbon_intensity_forecast").scan().to_arrow().to_pylist()
    actual = {r["ts"]: r["actual"] for r in load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow().to_pylist()}
    for ts, x, ref in zip(frame.ts.to_pydatetime(), frame.x, frame.ref, strict=True):  # type: ignore[arg-type]
        made = [r for r in issues if r["ts"] == ts and r["issued_at"] <= ts]
        latest = max(made, key=lambda r: r["issued_at"])
        assert latest["issued_at"] == utc(2023, 1, 2)  # the 1 January issue also covers the day; the newer one wins
        assert ref == latest["point"] and x == actual[ts] - latest["point"]
    table = load_table(ctx.catalog, "silver.carbon_intensity")
    rows = table.scan().to_arrow()
    spike_at = utc(2023, 2, 5, 12)
    values = [
        a + 400 if ts == spike_at else a for ts, a in zip(rows.column("ts").to_pylist(), rows.column("actual").to_pylist(), strict=True)
    ]
    table.overwrite(rows.set_column(rows.schema.get_field_index("actual"), "actual", pa.array(values, pa.float64())))
    findings = check_value(ctx, spec, utc(2023, 2, 10))
    assert spike_at.isoformat() in [f.evidence["start"] for f in findings]


def test_a_monitor_naming_an_unknown_forecast_is_refused(tmp_path: Path) -> None:
    import shutil

    from config.errors import DefinitionError
    from config.inventory import load_inventory
    from tests.conftest import REPO

    shutil.copytree(REPO / "config", tmp_path / "config", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monitors = tmp_path / "config" / "monitors.yaml"
    monitors.write_text(
        monitors.read_text()
        + "  bad:\n    kind: value\n    table: silver.carbon_intensity\n    expression: actual\n    forecast: tomorrow\n"
    )
    with pytest.raises(DefinitionError, match="monitor 'bad' names unknown forecast 'tomorrow'; known: forecast"):
        load_inventory(tmp_path / "config")
