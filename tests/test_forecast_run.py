"""The forecast pipeline: an issue is published whole through write-audit-publish, a malformed one goes to quarantine
whole, too little history publishes nothing and says how much is needed, and issues are never overwritten."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from evals.cli import app
from pipelines.context import PlatformContext
from pipelines.forecast import run as forecast_run
from pipelines.forecast.models import build_model
from pipelines.forecast.run import issue_time, run_forecast
from pipelines.forecast.schema import IssuedForecast
from pipelines.forecast.store import latest_issue
from pipelines.lakehouse.catalog import load_table
from pipelines.sources.replay import intensity_versions
from tests.conftest import utc

FAST = "seasonal_naive"  # the pipeline's behaviour does not depend on the model; this one fits in milliseconds


def seed_silver(ctx: PlatformContext, start: datetime, end: datetime) -> int:
    """Real 2023 actuals of [start, end) written straight into silver.carbon_intensity (the pipeline is tested elsewhere)."""
    rows = {v.slot: v.record for v in intensity_versions() if start <= v.slot < end and v.captured_at.year == 2023}
    slots = sorted(rows)
    table = load_table(ctx.catalog, "silver.carbon_intensity")
    data = pa.table(
        {
            "ts": pa.array(slots, type=pa.timestamp("us", tz="UTC")),
            "forecast": pa.array([float(rows[s]["intensity"]["forecast"] or 0) or None for s in slots], type=pa.float64()),
            "actual": pa.array([rows[s]["intensity"]["actual"] for s in slots], type=pa.float64()),
            "index": pa.array([rows[s]["intensity"]["index"] for s in slots], type=pa.string()),
            "run_id": pa.array(["seed"] * len(slots), type=pa.string()),
            "fetched_at": pa.array([end] * len(slots), type=pa.timestamp("us", tz="UTC")),
            "payload_hash": pa.array(["x"] * len(slots), type=pa.string()),
        }
    )
    table.append(data.cast(table.schema().as_arrow()))
    return len(slots)


def published_rows(ctx: PlatformContext) -> pa.Table:
    table = load_table(ctx.catalog, "gold.carbon_intensity_forecast")
    return table.scan().to_arrow() if table.current_snapshot() is not None else table.schema().as_arrow().empty_table()


def test_issue_time_is_the_last_boundary() -> None:
    assert issue_time(utc(2023, 1, 31, 6, 17), 30) == utc(2023, 1, 31, 6, 0)
    assert issue_time(utc(2023, 1, 31, 6, 47), 30) == utc(2023, 1, 31, 6, 30)
    assert issue_time(utc(2023, 1, 31, 7, 47), 360) == utc(2023, 1, 31, 6, 0)


def test_an_issue_is_published_once_and_never_overwritten(ctx: PlatformContext) -> None:
    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 1))
    result = run_forecast(ctx, as_of=utc(2023, 1, 25, 6, 10), model=FAST)
    assert result.status == "published", result.message
    assert result.issued_at == utc(2023, 1, 25, 6) and result.rows_published == 96 and result.snapshot_id is not None
    issue = latest_issue(ctx)
    assert issue is not None and issue.issued_at == utc(2023, 1, 25, 6) and len(issue.slots) == 96
    assert issue.slots[0].ts == utc(2023, 1, 25, 6) and issue.slots[-1].horizon_h == 48.0

    again = run_forecast(ctx, as_of=utc(2023, 1, 25, 6, 20), model=FAST)
    assert again.status == "skipped" and "never overwritten" in again.message
    later = run_forecast(ctx, as_of=utc(2023, 1, 25, 6, 40), model=FAST)
    assert later.status == "published"
    rows = published_rows(ctx)
    assert rows.num_rows == 192 and len(set(rows.column("issued_at").to_pylist())) == 2
    table = load_table(ctx.catalog, "gold.carbon_intensity_forecast")
    assert not [r for r in table.metadata.refs if r.startswith("audit-")]  # published branches are gone
    assert latest_issue(ctx, as_of=utc(2023, 1, 25, 6, 30)).issued_at == utc(2023, 1, 25, 6, 30)  # type: ignore[union-attr]
    assert latest_issue(ctx, as_of=utc(2023, 1, 25, 6, 29)).issued_at == utc(2023, 1, 25, 6)  # type: ignore[union-attr]


def test_the_pipeline_reads_no_data_from_after_the_issue_time(ctx: PlatformContext) -> None:
    """The lake holds the future too; the issue equals one made from the real series cut at the issue time."""
    issued_at = utc(2023, 1, 25, 6)
    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 1))
    result = run_forecast(ctx, as_of=issued_at, model=FAST)
    assert result.status == "published"
    versions = {v.slot: v.record["intensity"]["actual"] for v in intensity_versions() if v.captured_at.year == 2023}
    past = {ts: float(a) for ts, a in versions.items() if utc(2023, 1, 1) <= ts < issued_at and a is not None}
    series = pd.Series(list(past.values()), index=pd.DatetimeIndex(list(past), tz="UTC")).sort_index()
    expected = build_model(FAST).fit(series, until=issued_at).predict(series, issued_at=issued_at)
    published = published_rows(ctx).sort_by("ts")
    assert published.column("point").to_pylist() == pytest.approx([s.point for s in expected.slots])
    assert published.column("hi95").to_pylist() == pytest.approx([s.hi95 for s in expected.slots])


def test_a_malformed_issue_goes_to_quarantine_whole(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 1))
    good = run_forecast(ctx, as_of=utc(2023, 1, 25, 6), model=FAST)
    assert good.status == "published"
    key = (str(ctx.settings.home), "forecast", FAST)
    fitted = forecast_run._fitted[key]

    class Broken:
        """The fitted model, with a slot whose 80 % interval starts above its point and a slot left out."""

        name, version, trained_until = fitted.name, fitted.version, fitted.trained_until

        def predict(self, history: pd.Series, *, issued_at: datetime, temperature: pd.Series | None = None) -> IssuedForecast:
            issue = fitted.predict(history, issued_at=issued_at, temperature=temperature)
            slots = list(issue.slots)
            slots[10] = slots[10].model_copy(update={"lo80": slots[10].point + 5})
            del slots[40]
            return issue.model_copy(update={"slots": tuple(slots)})

    monkeypatch.setitem(forecast_run._fitted, key, Broken())
    bad = run_forecast(ctx, as_of=utc(2023, 1, 25, 7), model=FAST)
    assert bad.status == "quarantined" and bad.rows_published == 0 and bad.rows_quarantined == 95
    assert {"intervals_ordered", "horizon_complete", "no_gaps"} <= set(bad.failed_checks)
    assert "nothing was published" in bad.message
    assert latest_issue(ctx).issued_at == utc(2023, 1, 25, 6)  # type: ignore[union-attr]  # the previous issue stays the latest
    held = load_table(ctx.catalog, "quarantine.carbon_intensity_forecast").scan().to_arrow()
    assert held.num_rows == 95 and set(held.column("scope").to_pylist()) == {"table"}
    assert set(held.column("run_id").to_pylist()) == {bad.run_id}
    assert "intervals_ordered" in held.column("reason")[0].as_py()
    table = load_table(ctx.catalog, "gold.carbon_intensity_forecast")
    assert not [r for r in table.metadata.refs if r.startswith("audit-")]


def test_too_little_history_publishes_nothing_and_says_how_much_is_needed(ctx: PlatformContext) -> None:
    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 1, 4))
    result = run_forecast(ctx, as_of=utc(2023, 1, 4))
    assert result.status == "insufficient_history"
    assert "needs" in result.message and "days" in result.message and "2023-01-04" in result.message
    assert published_rows(ctx).num_rows == 0


def test_dataops_run_forecast_issues_as_of_the_end_of_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAOPS_HOME", str(tmp_path / "home"))
    ctx = PlatformContext.open()
    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 1))
    runner = CliRunner()
    result = runner.invoke(app, ["run", "forecast", "--json"])
    assert result.exit_code == 0, result.output
    assert '"status": "published"' in result.output and '"issued_at": "2023-02-01T00:00:00Z"' in result.output
    shown = runner.invoke(app, ["forecast", "show", "--as-of", "2023-02-01T00:00Z"])
    assert shown.exit_code == 0, shown.output
    assert "Forecast issued 2023-02-01T00:00Z" in shown.output
    short = runner.invoke(app, ["forecast", "run", "--as-of", "2023-01-03T00:00Z"])
    assert short.exit_code == 1 and "Not published" in short.output and "needs" in short.output


def test_the_service_issues_after_the_carbon_pipeline(ctx: PlatformContext) -> None:
    from pipelines.clock import ReplayClock
    from pipelines.service import Service

    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 1))
    service = Service(ctx, clock=ReplayClock(start=utc(2023, 1, 31, 12, 5), speed=1.0))
    service.forecast_tick()
    issue = latest_issue(ctx)
    assert issue is not None and issue.issued_at == utc(2023, 1, 31, 12)
    assert datetime.now(UTC) - issue.issued_at > timedelta(days=365)


def test_a_forecast_run_killed_before_its_publish_leaves_main_valid_and_its_branch_is_dropped(
    ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed between staging and publishing: main never shows the issue, the next run publishes it, and the
    branch the dead run left is dropped once its retention passed."""
    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 1))

    def killed(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after it runs

    monkeypatch.setattr("pipelines.lakehouse.wap.publish", killed)
    with pytest.raises(KeyboardInterrupt):
        run_forecast(ctx, as_of=utc(2023, 1, 25, 6), model=FAST)
    monkeypatch.undo()
    table = load_table(ctx.catalog, "gold.carbon_intensity_forecast")
    (left,) = [r for r in table.metadata.refs if r.startswith("audit-")]
    assert published_rows(ctx).num_rows == 0 and latest_issue(ctx) is None

    assert forecast_run.drop_abandoned_branches(ctx, table) == []  # younger than the retention: it may be live
    result = run_forecast(ctx, as_of=utc(2023, 1, 25, 6), model=FAST)
    assert result.status == "published" and published_rows(ctx).num_rows == 96
    later = datetime.now(UTC) + timedelta(hours=ctx.settings.audit_branch_retention_hours + 1)
    assert forecast_run.drop_abandoned_branches(ctx, load_table(ctx.catalog, "gold.carbon_intensity_forecast"), now=later) == [left]


def test_a_quarantined_issue_opens_an_incident_the_agent_escalates(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service reports a held issue: readers plan on an older forecast until the next issue passes."""
    from pipelines.monitors.findings import findings_from_forecast

    seed_silver(ctx, utc(2023, 1, 1), utc(2023, 2, 1))
    assert findings_from_forecast(run_forecast(ctx, as_of=utc(2023, 1, 25, 6), model=FAST), table="gold.carbon_intensity_forecast") == []
    key = (str(ctx.settings.home), "forecast", FAST)
    fitted = forecast_run._fitted[key]

    class Gappy:
        name, version, trained_until = fitted.name, fitted.version, fitted.trained_until

        def predict(self, history: pd.Series, *, issued_at: datetime, temperature: pd.Series | None = None) -> IssuedForecast:
            issue = fitted.predict(history, issued_at=issued_at, temperature=temperature)
            return issue.model_copy(update={"slots": issue.slots[:50]})

    monkeypatch.setitem(forecast_run._fitted, key, Gappy())
    bad = run_forecast(ctx, as_of=utc(2023, 1, 25, 7), model=FAST)
    (finding,) = findings_from_forecast(bad, table="gold.carbon_intensity_forecast")
    assert (finding.kind, finding.severity, finding.table) == ("validation", "warning", "gold.carbon_intensity_forecast")
    assert finding.title.startswith("gold.carbon_intensity_forecast: the forecast issue of 2023-01-25T07:00:00+00:00 failed ")
    assert (
        finding.evidence["scope"] == "table" and finding.evidence["rows"] == 50 and "horizon_complete" in finding.evidence["failed_checks"]
    )
    incident, opened = ctx.incidents.report(finding, now=utc(2023, 1, 25, 7))
    assert opened

    from agent.report import ConsoleReporter
    from agent.runtime import Agent

    agent = Agent(ctx, clock=lambda: utc(2023, 1, 25, 7), reporter=ConsoleReporter(lambda _line: None))
    try:
        outcome = agent.handle_incident(incident.id)
    finally:
        agent.close()
    assert outcome.outcome == "escalated" and "The whole batch of 50 row(s) of run" in outcome.message
    assert "The next issue is made at the next run" in outcome.message, "the note says what happens next"
