"""One forecast run: issue the next 48 hours of carbon intensity and publish the issue with write-audit-publish.

    silver history before the issue time ──► model (refitted once its training data is refit_hours old) ──► 96 slots
        ──► audit branch (append the issue) ──► suite (ordered intervals, no gaps, horizon complete)
        ──► publish, or the whole issue to quarantine (the previous issue stays the latest published one)

Why an issue is all or nothing. A forecast with a gap or a broken interval misleads whoever plans on it, and a
half-published issue would be read back as a complete one; so every check of the suite holds back the whole issue.
Issues are appended and never overwritten: a run whose issue time is already published does nothing (`skipped`),
so accuracy by horizon can be read back from the table at any time.

No look-ahead. The history is read only before the issue time, the models truncate it again, and a fitted model is
reused only for issues at or after the end of its training data (a replay that goes back in time refits).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import TYPE_CHECKING, Literal

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, Field

from config.errors import PipelineError, PublishConflictError
from config.inventory import ForecastSpec
from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.forecast.schema import HORIZON_SLOTS, SLOT, IssuedForecast
from pipelines.quarantine import original_json, quarantine_row, row_key
from pipelines.run_result import new_run_id
from pipelines.sources.base import Window

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from pipelines.forecast.models import FittedForecaster

log = logging.getLogger(__name__)
PUBLISH_ATTEMPTS = 5
Status = Literal["published", "quarantined", "skipped", "insufficient_history"]
_fitted: dict[tuple[str, str, str], FittedForecaster] = {}  # (home, forecast, model) -> the model fitted last
_fit_lock = threading.Lock()


class ForecastRunResult(BaseModel):
    """What a forecast run did."""

    forecast: str
    run_id: str
    issued_at: datetime
    status: Status
    model: str
    model_version: str = ""
    refitted: bool = False
    rows_published: int = 0
    rows_quarantined: int = 0
    snapshot_id: int | None = None
    failed_checks: list[str] = Field(default_factory=list)
    message: str = ""
    duration_s: float = 0.0


def issue_time(as_of: datetime, every_minutes: int) -> datetime:
    """The issue time for a run at `as_of`: the last boundary of `every_minutes` (a multiple of the half-hour slot)."""
    step = max(SLOT, timedelta(minutes=every_minutes) // SLOT * SLOT)
    as_of = as_of.astimezone(UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + (as_of - epoch) // step * step


def run_forecast(
    ctx: PlatformContext, name: str = "forecast", *, as_of: datetime | None = None, model: str | None = None, run_id: str | None = None
) -> ForecastRunResult:
    """Issue forecast `name` at the issue time of `as_of` (default now) and publish it; never overwrites an issue.

    Raises PipelineError only when the lake refuses; bad data ends as a `quarantined` or `insufficient_history`
    result that says why, with nothing published.
    """
    from pipelines.forecast.models import DEFAULT_MODEL, InsufficientHistoryError, build_model
    from pipelines.forecast.store import issue_at
    from pipelines.lakehouse import wap
    from pipelines.lakehouse.catalog import load_table

    started = time.perf_counter()
    spec = ctx.inventory.forecast(name)
    model_name = model or (DEFAULT_MODEL if spec.model == "default" else spec.model)
    forecaster = build_model(model_name)  # an unknown name is a DefinitionError naming the known ones
    issued_at = issue_time(as_of or datetime.now(UTC), spec.issue_every_minutes)
    run_id = run_id or new_run_id(name)
    result = ForecastRunResult(forecast=name, run_id=run_id, issued_at=issued_at, status="skipped", model=model_name)

    def done(status: Status, message: str = "") -> ForecastRunResult:
        result.status, result.message = status, message or result.message
        result.duration_s = round(time.perf_counter() - started, 3)
        metrics.FORECAST_ISSUES.labels(name, status).inc()
        return result

    if issue_at(ctx, issued_at) is not None:
        return done("skipped", f"{spec.table} already holds the issue of {issued_at.isoformat()}; issues are never overwritten")
    history = read_history(ctx, spec, issued_at)
    temperature = read_temperature(ctx, issued_at, spec) if forecaster.perfect_prognosis else None
    try:
        fitted, result.refitted = _fitted_model(ctx, spec, model_name, history, issued_at, temperature)
        issue = fitted.predict(history, issued_at=issued_at, temperature=temperature)
    except InsufficientHistoryError as exc:
        log.info("forecast %s: %s; nothing published", name, exc)
        return done("insufficient_history", str(exc))
    result.model_version = issue.model_version
    rows = issue_rows(issue, run_id=run_id)

    table = load_table(ctx.catalog, spec.table)
    drop_abandoned_branches(ctx, table)
    branch = wap.audit_branch_name(run_id)
    properties = {"run_id": run_id, "dataops.layer": "gold", "dataops.issued_at": issued_at.isoformat(), "dataops.model": model_name}
    audited = _stage(table, branch, rows, issued_at, run_id=run_id, properties=properties)
    suite = ctx.inventory.suite(spec.suite)
    from pipelines.validation.suite import validate

    outcome = validate(suite, audited, as_of=issued_at)
    ctx.ledger.record_validation(run_id, spec.table, suite.name, outcome.outcomes)
    failed = sorted({*outcome.table_failures, *chain(*outcome.failing_rows.values()), *chain(*outcome.held_days.values())})
    if failed:
        wap.drop_branch(table, branch)
        result.failed_checks = failed
        result.rows_quarantined = quarantine_issue(ctx, spec, audited, failed, run_id=run_id)
        metrics.ROWS_QUARANTINED.labels(spec.table).inc(result.rows_quarantined)
        log.warning("forecast %s issued %s failed %s; the issue is in %s", name, issued_at.isoformat(), ", ".join(failed), spec.quarantine)
        return done("quarantined", f"the issue failed {', '.join(failed)}; it is in {spec.quarantine}, nothing was published")
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            with ctx.control.table_lock(spec.table):
                result.snapshot_id = wap.publish(table, branch)
            break
        except PublishConflictError:
            # Another issue was published meanwhile; ours touches no row of it, so stage the same rows on the new main.
            if attempt == PUBLISH_ATTEMPTS:
                raise
            if issue_at(ctx, issued_at) is not None:
                wap.drop_branch(table, branch)
                return done("skipped", f"another run published the issue of {issued_at.isoformat()} first")
            _stage(table, branch, rows, issued_at, run_id=run_id, properties=properties)
    result.rows_published = rows.num_rows
    metrics.ROWS_WRITTEN.labels(spec.table).inc(rows.num_rows)
    observe_issue(name, issue)
    return done("published")


def drop_abandoned_branches(ctx: PlatformContext, table: Table, *, now: datetime | None = None) -> list[str]:
    """Drop the audit branches of forecast runs killed before they published or quarantined (a run that ends drops
    its own), once their head is DATAOPS_AUDIT_BRANCH_RETENTION_HOURS old: forecast runs take seconds, and a branch
    left behind would keep its snapshots from expiry for ever."""
    from pipelines.lakehouse import wap

    cutoff = (now or datetime.now(UTC)) - timedelta(hours=ctx.settings.audit_branch_retention_hours)
    dropped = []
    for name in wap.audit_branches(table):
        head = table.metadata.snapshot_by_id(table.metadata.refs[name].snapshot_id)
        if head is None or datetime.fromtimestamp(head.timestamp_ms / 1000, UTC) < cutoff:
            wap.drop_branch(table, name)
            dropped.append(name)
            log.info("dropped %s of %s: its forecast run never finished", name, wap.table_name(table))
    return dropped


def _fitted_model(
    ctx: PlatformContext, spec: ForecastSpec, model_name: str, history: pd.Series, issued_at: datetime, temperature: pd.Series | None
) -> tuple[FittedForecaster, bool]:
    """The model fitted last for this forecast, or a new fit when that one's data is refit_hours old or ends after
    `issued_at` (using it would let the issue see data from after its own time)."""
    from pipelines.forecast.models import build_model

    key = (str(ctx.settings.home), spec.name, model_name)
    with _fit_lock:
        fitted = _fitted.get(key)
        fresh = fitted is not None and fitted.trained_until <= issued_at < fitted.trained_until + timedelta(hours=spec.refit_hours)
        if fitted is not None and fresh:
            return fitted, False
        fitted = build_model(model_name).fit(history, until=issued_at, temperature=temperature)
        _fitted[key] = fitted
        return fitted, True


def read_history(ctx: PlatformContext, spec: ForecastSpec, issued_at: datetime) -> pd.Series:
    """`spec.column` of `spec.input` for the history_days before `issued_at`, as a float series on a UTC index."""
    from pipelines.lakehouse import wap
    from pipelines.lakehouse.catalog import load_table

    days = Window(start=issued_at - timedelta(days=spec.history_days), end=issued_at).days()
    data = wap.read_days(load_table(ctx.catalog, spec.input), days, columns=("ts", spec.column))
    return _series(data, spec.column, before=issued_at)


def newest_measured(ctx: PlatformContext, spec: ForecastSpec) -> datetime | None:
    """The end of the newest slot of `spec.input` with a measured `spec.column`, or None when there is none."""
    import pyarrow.compute as pc

    from pipelines.lakehouse.catalog import load_table

    table = load_table(ctx.catalog, spec.input)
    if table.current_snapshot() is None:
        return None
    stamps = table.scan(row_filter=f"{spec.column} IS NOT NULL", selected_fields=("ts",)).to_arrow().column("ts")
    newest = pc.max(stamps).as_py() if len(stamps) else None
    return None if newest is None else newest.astimezone(UTC) + SLOT


def read_temperature(ctx: PlatformContext, issued_at: datetime, spec: ForecastSpec) -> pd.Series:
    """Observed hourly temperature over the history and the horizon: only the perfect-prognosis models read it."""
    from pipelines.lakehouse import wap
    from pipelines.lakehouse.catalog import load_table

    days = Window(start=issued_at - timedelta(days=spec.history_days), end=issued_at + HORIZON_SLOTS * SLOT).days()
    data = wap.read_days(load_table(ctx.catalog, "silver.weather"), days, columns=("ts", "temperature_c"))
    return _series(data, "temperature_c", before=None)


def _series(data: pa.Table, column: str, *, before: datetime | None) -> pd.Series:
    frame = data.to_pandas()
    index = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True))
    series = pd.Series(frame[column].astype("float64").to_numpy(), index=index, name=column).sort_index()
    series = series[~series.index.duplicated(keep="last")]
    return series[series.index < pd.Timestamp(before)] if before is not None else series


def issue_rows(issue: IssuedForecast, *, run_id: str) -> pa.Table:
    """The issue as rows of the forecast table."""
    slots = [s.model_dump() for s in issue.slots]
    n = len(slots)
    return pa.table(
        {
            "issued_at": pa.array([issue.issued_at] * n, type=pa.timestamp("us", tz="UTC")),
            "ts": pa.array([s["ts"] for s in slots], type=pa.timestamp("us", tz="UTC")),
            **{
                c: pa.array([float(s[c]) for s in slots], type=pa.float64()) for c in ("horizon_h", "point", "lo80", "hi80", "lo95", "hi95")
            },
            "model": pa.array([issue.model] * n, type=pa.string()),
            "model_version": pa.array([issue.model_version] * n, type=pa.string()),
            "perfect_prognosis": pa.array([issue.perfect_prognosis] * n, type=pa.bool_()),
            "run_id": pa.array([run_id] * n, type=pa.string()),
        }
    )


def _stage(table: Table, branch: str, rows: pa.Table, issued_at: datetime, *, run_id: str, properties: dict[str, str]) -> pa.Table:
    """Open `branch` at main, append the issue, and return what the branch holds for it (which the suite audits)."""
    from pyiceberg.expressions import EqualTo

    from pipelines.lakehouse import wap

    wap.open_audit_branch(table, branch, run_id=run_id)
    wap.append_to_branch(table, rows, branch=branch, properties=properties)
    head = wap.branch_head(table, branch)
    held = table.scan(row_filter=EqualTo("issued_at", issued_at.isoformat()), snapshot_id=head).to_arrow()  # type: ignore[call-arg,arg-type]
    if held.num_rows != rows.num_rows:
        raise PipelineError(
            f"{wap.table_name(table)}: audit branch {branch} holds {held.num_rows} rows of the issue; expected {rows.num_rows}"
        )
    return held.sort_by("ts")


def quarantine_issue(ctx: PlatformContext, spec: ForecastSpec, audited: pa.Table, failed: list[str], *, run_id: str) -> int:
    """Write every slot of a failed issue to the forecast's quarantine table; returns the rows written."""
    from pipelines.lakehouse import wap
    from pipelines.lakehouse.catalog import load_table

    target = ctx.inventory.table(spec.table)
    why = {e.name: e.why for e in ctx.inventory.suite(spec.suite).expectations}
    now = datetime.now(UTC)
    reason = "issue held back: " + "; ".join(f"{n}: {why.get(n, n)}" for n in failed)
    rows = [
        quarantine_row(
            ts=row["ts"],
            record_key=row_key(target, row),
            target=spec.table,
            expectation=",".join(failed),
            scope="table",
            reason=reason,
            original=original_json(row),
            run_id=run_id,
            now=now,
        )
        for row in audited.to_pylist()
    ]
    table = load_table(ctx.catalog, spec.quarantine)
    wap.append(
        table, pa.Table.from_pylist(rows, schema=table.schema().as_arrow()), properties={"run_id": run_id, "dataops.layer": "quarantine"}
    )
    return len(rows)


def observe_issue(name: str, issue: IssuedForecast) -> None:
    """Show the published issue as gauges: its time and the forecast at the horizons the dashboard plots."""
    metrics.FORECAST_ISSUED_AT.labels(name).set(issue.issued_at.timestamp())
    for slot in issue.slots:
        if slot.horizon_h in (1.0, 6.0, 24.0, 48.0):
            for bound in ("point", "lo80", "hi80", "lo95", "hi95"):
                metrics.FORECAST_INTENSITY.labels(f"{slot.horizon_h:g}", bound).set(getattr(slot, bound))
