"""Prometheus metrics of the platform, on one registry served at /metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

PIPELINE_RUNS = Counter("dataops_pipeline_runs", "Pipeline runs by final status.", ["pipeline", "status"], registry=REGISTRY)
RUN_DURATION = Histogram(
    "dataops_pipeline_run_duration_seconds",
    "Wall-clock duration of pipeline runs.",
    ["pipeline"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
    registry=REGISTRY,
)
ROWS_WRITTEN = Counter("dataops_rows_written", "Rows published to a table.", ["table"], registry=REGISTRY)
ROWS_QUARANTINED = Counter("dataops_rows_quarantined", "Rows held back from a table into quarantine.", ["table"], registry=REGISTRY)
LAKE_CONFLICTS = Counter(
    "dataops_lake_conflicts",
    "Conflicts runs met with concurrent writers: kind=commit_retry (committed again on fresh metadata) or replan (validated again).",
    ["pipeline", "kind"],
    registry=REGISTRY,
)
MART_PENDING_DAYS = Gauge(
    "dataops_mart_pending_days",
    "Days of a gold mart that an input changed and no refresh has built yet (0 once its coalesced refresh published).",
    ["table"],
    registry=REGISTRY,
)
QUALITY_SCORE = Gauge(
    "dataops_data_quality_score", "Share of audited rows published in the last promotion (0..1).", ["table"], registry=REGISTRY
)
FRESHNESS_LAG = Gauge(
    "dataops_freshness_lag_seconds",
    "Platform-clock seconds from the end of the table's newest slot to the instant its pipelines have processed up to: "
    "what the freshness monitor judges, so a replay clock running ahead of the pipelines does not count.",
    ["table"],
    registry=REGISTRY,
)
FRESHNESS_HELD = Gauge(
    "dataops_freshness_held_slots",
    "Slots the source delivered after the table's newest published slot that validation holds in quarantine, while the "
    "table is stale (0 otherwise, and 0 when the source stopped delivering after them): the freshness monitor then warns "
    "instead of paging an outage, and so do the alert rules.",
    ["table"],
    registry=REGISTRY,
)
FRESHNESS_LIMIT = Gauge(
    "dataops_freshness_limit_seconds",
    "The freshness monitor's limit of the lag (max_lag_minutes), platform-clock seconds.",
    ["table"],
    registry=REGISTRY,
)
ANOMALY_SCORE = Gauge(
    "dataops_anomaly_score",
    "Largest score (-log10 of the tail probability) of the points a value monitor last judged.",
    ["monitor"],
    registry=REGISTRY,
)
ANOMALY_THRESHOLD = Gauge(
    "dataops_anomaly_threshold",
    "Calibrated threshold of a value monitor's score, from its false-alarm budget.",
    ["monitor"],
    registry=REGISTRY,
)
FINDINGS_SUPPRESSED = Counter(
    "dataops_findings_suppressed",
    "Findings dropped by a suppression people set by marking an incident expected, by monitor (cause key).",
    ["monitor"],
    registry=REGISTRY,
)
OPEN_INCIDENTS = Gauge("dataops_open_incidents", "Incidents not yet resolved, by severity.", ["severity"], registry=REGISTRY)
INCIDENTS_OPENED = Counter(
    "dataops_incidents_opened",
    "Incidents the service or an Alertmanager alert opened (not folded into an open one), by severity; the dashboard's incident annotations.",
    ["severity"],
    registry=REGISTRY,
)
NOTIFIER_UP = Gauge(
    "dataops_notifier_up",
    "1 when the last delivery attempt to a channel (slack, openlineage, ...) was answered, 0 while it fails; messages wait in the outbox meanwhile.",
    ["channel"],
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge("dataops_outbox_pending", "Messages in the outbox not yet delivered, by channel.", ["channel"], registry=REGISTRY)
CARBON_INTENSITY = Gauge(
    "dataops_carbon_intensity_gco2_per_kwh",
    "GB carbon intensity in gCO2/kWh of the newest half-hour slot published to silver.carbon_intensity that started by "
    "the platform clock, kind=actual (measured) or forecast; absent until a carbon-intensity run publishes under this process.",
    ["kind"],
    registry=REGISTRY,
)
CARBON_INTENSITY_SLOT = Gauge(
    "dataops_carbon_intensity_slot_timestamp_seconds",
    "Start of the half-hour slot dataops_carbon_intensity_gco2_per_kwh shows, by kind, Unix seconds.",
    ["kind"],
    registry=REGISTRY,
)
FORECAST_ISSUES = Counter(
    "dataops_forecast_issues",
    "Forecast runs by outcome: published, quarantined (a malformed issue held back whole), skipped (already issued), "
    "insufficient_history, failed.",
    ["forecast", "status"],
    registry=REGISTRY,
)
FORECAST_INTENSITY = Gauge(
    "dataops_forecast_intensity_gco2_per_kwh",
    "The latest published forecast issue of GB carbon intensity, gCO2/kWh, at each horizon (hours from the issue to the slot's "
    "end), by bound: point, lo80, hi80, lo95, hi95.",
    ["horizon", "bound"],
    registry=REGISTRY,
)
FORECAST_ISSUED_AT = Gauge(
    "dataops_forecast_issued_timestamp_seconds",
    "Issue time of the latest published forecast, Unix seconds.",
    ["forecast"],
    registry=REGISTRY,
)
FORECAST_ABS_ERROR = Gauge(
    "dataops_forecast_abs_error",
    "Realised mean absolute error of the published forecasts, gCO2/kWh, by horizon (hours), over the issues of the last "
    "7 days whose slot at that horizon has been measured.",
    ["horizon"],
    registry=REGISTRY,
)
FORECAST_COVERAGE = Gauge(
    "dataops_forecast_interval_coverage",
    "Share of measured slots (last 7 days of issues, all horizons) inside the forecast's interval, by interval: 80 or 95.",
    ["interval"],
    registry=REGISTRY,
)
UPKEEP_INTENSITY = Gauge(
    "dataops_upkeep_intensity_gco2_per_kwh",
    "GB carbon intensity of the slot the last table upkeep ran in, gCO2/kWh (measured, else forecast); upkeep is deferred "
    "to the greenest window within DATAOPS_UPKEEP_GREEN_DEADLINE_HOURS.",
    registry=REGISTRY,
)
CLOCK = Gauge("dataops_clock_timestamp_seconds", "The platform clock (simulated under replay), Unix seconds.", registry=REGISTRY)
SEVERITIES = ("info", "warning", "critical")
for _severity in SEVERITIES:
    # Present at 0 from the start, so `increase()` sees the first incident of a severity too.
    INCIDENTS_OPENED.labels(_severity)

if TYPE_CHECKING:
    from pipelines.run_result import RunResult


def observe_run(result: RunResult) -> None:
    """Count a finished run."""
    PIPELINE_RUNS.labels(result.pipeline, result.status).inc()
    RUN_DURATION.labels(result.pipeline).observe(result.duration_s)
    LAKE_CONFLICTS.labels(result.pipeline, "commit_retry").inc(result.commit_retries)
    LAKE_CONFLICTS.labels(result.pipeline, "replan").inc(result.replans)
    for t in result.tables:
        if t.table.startswith("quarantine."):
            continue
        ROWS_WRITTEN.labels(t.table).inc(t.rows_written)
        ROWS_QUARANTINED.labels(t.table).inc(t.rows_quarantined)
        if t.quality_score is not None:
            QUALITY_SCORE.labels(t.table).set(t.quality_score)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> object:
    """Start the /metrics HTTP endpoint in a background thread; returns the server."""
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return server
