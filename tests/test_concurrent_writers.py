"""Concurrent writers on one table: commit conflicts are re-committed, validation conflicts re-planned.

Runs here are forced to interleave (a barrier inside validation, a write slipped in between audit and
publish), so each test meets the conflict it is about every time, not by luck of timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyarrow as pa
import pytest

from config.settings import DataopsSettings
from pipelines import metrics, promotion, table_promotion
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import RunResult, run_pipeline
from pipelines.validation.suite import SuiteOutcome
from tests.conftest import utc, window

AS_OF = utc(2024, 1, 1)
VALUE_COLUMNS = ("ts", "forecast", "actual", "index")


def silver(ctx: PlatformContext) -> list[dict[str, Any]]:
    table = load_table(ctx.catalog, "silver.carbon_intensity")
    return sorted(table.scan(selected_fields=VALUE_COLUMNS).to_arrow().to_pylist(), key=lambda r: r["ts"])


def overwrite_main(ctx: PlatformContext, name: str, data: pa.Table, day: datetime) -> None:
    """Another writer publishes `data` over `day` of `name`."""
    table = load_table(ctx.catalog, name)
    wap.open_audit_branch(table, "audit-intruder", run_id="intruder")
    wap.overwrite_days(table, data, [day], branch="audit-intruder", properties={"run_id": "intruder"})
    wap.publish(table, "audit-intruder")


def hook_validation(monkeypatch: pytest.MonkeyPatch, suite: str, before_return: Callable[[], None]) -> None:
    real = table_promotion.validate

    def validate(s: Any, rows: pa.Table, *, as_of: datetime) -> SuiteOutcome:
        outcome = real(s, rows, as_of=as_of)
        if s.name == suite:
            before_return()
        return outcome

    monkeypatch.setattr(table_promotion, "validate", validate)


def test_runs_on_disjoint_days_both_publish_by_re_committing(settings: DataopsSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    exported = ("dataops_lake_conflicts_total", {"pipeline": "carbon_intensity", "kind": "commit_retry"})
    exported_before = metrics.REGISTRY.get_sample_value(*exported) or 0.0
    barrier = threading.Barrier(2, timeout=60)
    hook_validation(monkeypatch, "carbon_intensity", lambda: barrier.wait())  # both audited before either publishes
    results: dict[int, RunResult] = {}
    errors: list[BaseException] = []

    def run(day: int) -> None:
        ctx = PlatformContext.open(settings)  # its own catalog and ledger connections, as a separate worker has
        try:
            results[day] = run_pipeline(ctx, "carbon_intensity", window((2023, 3, day), (2023, 3, day + 1)), as_of=AS_OF)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(day,)) for day in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert [results[d].status for d in (1, 2)] == ["succeeded", "succeeded"], [results[d].error for d in (1, 2)]
    assert sum(r.commit_retries for r in results.values()) >= 1, "the later publisher found main moved and re-committed"
    assert sum(r.replans for r in results.values()) == 0, "other days changing is no reason to validate again"
    assert metrics.REGISTRY.get_sample_value(*exported) == exported_before + sum(r.commit_retries for r in results.values())

    monkeypatch.undo()
    concurrent = silver(PlatformContext.open(settings))
    sequential_ctx = PlatformContext.open(settings.model_copy(update={"home": settings.home.parent / "sequential"}))
    run_pipeline(sequential_ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 3)), as_of=AS_OF)
    assert len(concurrent) == 96
    assert concurrent == silver(sequential_ctx), "interleaved runs publish exactly what one run over both days does"


def test_a_write_to_the_audited_day_makes_the_run_plan_again(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    day = utc(2023, 3, 1)
    intruded: list[bool] = []

    def intrude() -> None:
        if intruded:
            return
        intruded.append(True)
        rows = pa.table(
            {
                "ts": [day],
                "forecast": [999.0],
                "actual": [999.0],
                "index": ["very high"],
                "run_id": ["intruder"],
                "fetched_at": [day],
                "payload_hash": ["x"],
            }
        )
        overwrite_main(ctx, "silver.carbon_intensity", rows, day)

    hook_validation(monkeypatch, "carbon_intensity", intrude)
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 2)), as_of=AS_OF)
    assert result.status == "succeeded", result.error
    assert result.replans == 1, "the audited day changed under the run: what it validated was stale"
    rows = silver(ctx)
    assert len(rows) == 48 and 999.0 not in {r["forecast"] for r in rows}, "the second plan published over the intruder"


def test_an_input_changed_after_the_mart_was_computed_makes_it_plan_again(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    day = utc(2023, 3, 1)
    run_pipeline(ctx, "weather", window((2023, 3, 1), (2023, 3, 2)), as_of=AS_OF)
    real_compute = promotion.compute_mart
    computed: list[str] = []

    def compute_mart(mart: Any, target: Any, inputs: dict[str, pa.Table], *, days: list[datetime]) -> pa.Table:
        rows = real_compute(mart, target, inputs, days=days)
        if mart.name == "intensity_vs_temperature_daily" and not computed:
            computed.append(mart.name)  # the weather pipeline publishes new temperatures for the day right now
            weather = inputs["silver.weather"]
            warmer = weather.set_column(
                weather.schema.get_field_index("temperature_c"), "temperature_c", pa.array([20.0] * weather.num_rows)
            )
            overwrite_main(ctx, "silver.weather", warmer, day)
        return rows

    monkeypatch.setattr(promotion, "compute_mart", compute_mart)
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 2)), as_of=AS_OF)
    assert result.status == "succeeded", result.error
    assert result.replans == 1
    gold = load_table(ctx.catalog, "gold.intensity_vs_temperature_daily").scan().to_arrow().to_pylist()
    assert [r["mean_temperature_c"] for r in gold] == [20.0], "the mart was recomputed from the temperatures published meanwhile"


def test_days_changed_sees_only_the_named_days(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "weather", window((2023, 3, 1), (2023, 3, 3)), as_of=AS_OF)
    table = load_table(ctx.catalog, "silver.weather")
    before = wap.branch_head(table, wap.MAIN)
    day2 = wap.read_days(table, [utc(2023, 3, 2)])
    overwrite_main(ctx, "silver.weather", day2, utc(2023, 3, 2))
    assert not wap.days_changed(table, [utc(2023, 3, 1)], since=before), "a rewrite of another day is a commit conflict only"
    assert wap.days_changed(table, [utc(2023, 3, 2)], since=before)
    assert wap.days_changed(table, [utc(2023, 3, 1), utc(2023, 3, 2)], since=before)

    assert wap.days_changed(table, [utc(2023, 3, 1)], since=987654321), "a snapshot no longer known proves nothing: re-plan"
