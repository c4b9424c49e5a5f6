"""The shipped alert rules and Alertmanager routing mean something on both clocks: the freshness lag they read is
judged where the pipelines looked (as the monitor judges it), a healthy platform fires none of them, a stale
table fires DataopsDataStale, and Alertmanager routes it to the console and by severity to email.

promtool and amtool come from Debian's prometheus and prometheus-alertmanager packages (`make system-deps`).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import metrics
from pipelines.clock import SteppedClock
from pipelines.context import PlatformContext
from pipelines.faults import SourceFault
from pipelines.incidents import Finding
from pipelines.monitors.checks import check_freshness
from pipelines.service import Service
from tests.conftest import REPO, utc

RULES = REPO / "config" / "prometheus" / "alerts.yml"
ALERTMANAGER = REPO / "config" / "alertmanager" / "alertmanager.yml"
TABLE = "silver.carbon_intensity"
TARGET = {"job": "dataops", "instance": "dataops:9108"}


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `make system-deps` installs Debian's prometheus and prometheus-alertmanager")
    return found


def exported(name: str, table: str = TABLE) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"table": table})


def test_the_freshness_lag_is_judged_where_the_pipeline_looked_not_at_the_clock(ctx: PlatformContext) -> None:
    """Under replay the clock runs ahead of the pipelines: that is no lag. A source that stops delivering is."""
    clock = SteppedClock(current=utc(2023, 1, 1))
    service = Service(ctx, clock=clock, sleep=lambda _s: None)
    freshness = ctx.inventory.monitors["carbon_intensity_freshness"]
    clock.advance_to(utc(2023, 1, 4))
    service.tick("carbon_intensity")
    assert check_freshness(ctx, freshness, utc(2023, 1, 6), stall_after_s=3600) == []
    lag, limit = exported("dataops_freshness_lag_seconds"), exported("dataops_freshness_limit_seconds")
    assert limit == 3 * 3600 and lag is not None and lag < limit, "two days ahead of the pipeline, but nothing is stale"

    ctx.faults.inject(SourceFault(source="carbon_intensity", kind="outage", start=utc(2023, 1, 4), end=utc(2023, 1, 5)))
    clock.advance_to(utc(2023, 1, 4, 12))
    service.tick("carbon_intensity")  # the pipeline looks up to 12:00; the source delivered nothing after midnight
    [stale] = check_freshness(ctx, freshness, utc(2023, 1, 4, 12), stall_after_s=3600)
    lag = exported("dataops_freshness_lag_seconds")
    assert lag == stale.evidence["lag_s"] == 12 * 3600, "the metric says what the monitor says"
    assert lag > limit

    check_freshness(ctx, freshness, utc(2024, 6, 1), stall_after_s=3600)  # past the bundled data: nothing is expected
    assert exported("dataops_freshness_lag_seconds") is None and exported("dataops_freshness_limit_seconds") is None


def _freshness_at_noon(ctx: PlatformContext, held_until: datetime, *faults: SourceFault) -> list[Finding]:
    """Carbon intensity run up to noon of 4 January with its actuals impossible from 02:00 to `held_until` (those
    slots fail validation and are quarantined) and `faults`; the freshness findings of the stale-data kind."""
    service = Service(ctx, clock=SteppedClock(current=utc(2023, 1, 4, 12)), sleep=lambda _s: None)
    bad = SourceFault(
        source="carbon_intensity", kind="impossible_values", field="intensity.actual", value=-50, start=utc(2023, 1, 4, 2), end=held_until
    )
    for fault in (bad, *faults):
        ctx.faults.inject(fault)
    service.tick("carbon_intensity")
    freshness = ctx.inventory.monitors["carbon_intensity_freshness"]
    assert freshness.severity == "critical"
    return [f for f in check_freshness(ctx, freshness, utc(2023, 1, 4, 12), stall_after_s=3600) if f.cause_key == freshness.name]


def test_slots_held_by_validation_make_a_warning_that_says_so_not_an_outage(ctx: PlatformContext) -> None:
    """Every slot after 02:00 is quarantined: readers' data is stale, but the source delivered. The finding says
    what is held and warns (the validation incident names the cause) instead of paging an outage."""
    [stale] = _freshness_at_noon(ctx, utc(2023, 1, 5))
    assert stale.severity == "warning"
    assert stale.evidence["newest_slot"] == "2023-01-04T01:30:00+00:00" and stale.evidence["held_slots"] >= 19
    assert "the source did deliver" in stale.title and "failed validation and are held in quarantine" in stale.title
    assert exported("dataops_freshness_held_slots") == stale.evidence["held_slots"], "the alert rules see what the monitor sees"


def test_an_outage_after_held_slots_still_pages(ctx: PlatformContext) -> None:
    """Two slots failed validation, then the source stopped: the held slots do not soften the outage's page."""
    outage = SourceFault(source="carbon_intensity", kind="outage", start=utc(2023, 1, 4, 3), end=utc(2023, 1, 5))
    [stale] = _freshness_at_noon(ctx, utc(2023, 1, 4, 3), outage)
    assert (stale.severity, stale.evidence["held_slots"]) == ("critical", 0)
    assert "the source did deliver" not in stale.title
    assert exported("dataops_freshness_held_slots") == 0, "DataopsDataStale pages, as the monitor does"


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    shown = ",".join(f'{k}="{v}"' for k, v in (TARGET | labels).items())
    return {"series": f"{name}{{{shown}}}", "values": values}


HEALTHY = [
    series("up", "1x30"),
    series("dataops_freshness_lag_seconds", "1800x30", table=TABLE),
    series("dataops_freshness_limit_seconds", "10800x30", table=TABLE),
    series("dataops_pipeline_runs_total", "0+2x30", pipeline="carbon_intensity", status="succeeded"),
    series("dataops_pipeline_runs_total", "0x30", pipeline="carbon_intensity", status="failed"),
    series("dataops_rows_written_total", "0+100x30", table=TABLE),
    series("dataops_rows_quarantined_total", "0 1x30", table=TABLE),  # the bundled data's real defects: one row
    series("dataops_open_incidents", "0x30", severity="critical"),
    series("dataops_anomaly_score", "1.5x30", monitor="carbon_intensity_values"),
    series("dataops_anomaly_threshold", "4x30", monitor="carbon_intensity_values"),
]
ALERTS = [r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def promtool_test(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    spec = tmp_path / "alerts_test.yml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run([tool("promtool"), "test", "rules", str(spec)], capture_output=True, text=True, timeout=60)


def test_a_healthy_platform_fires_no_rule(tmp_path: Path) -> None:
    done = promtool_test(
        tmp_path, [{"interval": "1m", "input_series": HEALTHY, "alert_rule_test": [{"eval_time": "30m", "alertname": a} for a in ALERTS]}]
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stale_table_fires_data_stale_after_five_minutes(tmp_path: Path) -> None:
    stale = [s for s in HEALTHY if "freshness_lag" not in s["series"]]
    stale.append(series("dataops_freshness_lag_seconds", "1800 1800 18000x30", table=TABLE))
    expected = {
        "exp_labels": {"severity": "critical", "table": TABLE} | TARGET,
        "exp_annotations": {
            "summary": f"{TABLE} is stale",
            "description": "Its newest slot ended 5h 0m 0s (platform clock) before the point its pipelines have processed up to, "
            "beyond the freshness monitor's limit.",
        },
        "alertname": "DataopsDataStale",
    }
    checks = [
        {"eval_time": "6m", "alertname": "DataopsDataStale", "exp_alerts": []},  # stale since 2m: not yet 5 minutes
        {"eval_time": "8m", "alertname": "DataopsDataStale", "exp_alerts": [{k: v for k, v in expected.items() if k != "alertname"}]},
        *({"eval_time": "8m", "alertname": a} for a in ALERTS if a != "DataopsDataStale"),
    ]
    done = promtool_test(tmp_path, [{"interval": "1m", "input_series": stale, "alert_rule_test": checks}])
    assert done.returncode == 0, done.stdout + done.stderr


def test_stale_because_validation_holds_the_newest_slots_warns_instead_of_paging(tmp_path: Path) -> None:
    """The rules agree with the freshness monitor: held slots turn the critical page into a warning."""
    held = [s for s in HEALTHY if "freshness_lag" not in s["series"]]
    held.append(series("dataops_freshness_lag_seconds", "1800 1800 18000x30", table=TABLE))
    held.append(series("dataops_freshness_held_slots", "0 0 7x30", table=TABLE))
    warning = {
        "exp_labels": {"severity": "warning", "table": TABLE} | TARGET,
        "exp_annotations": {
            "summary": f"{TABLE} is stale: its newest slots are held by validation",
            "description": "Its newest published slot ended 5h 0m 0s (platform clock) before the point its pipelines have processed "
            "up to; the source delivered later slots, which validation holds in quarantine (see the validation incident).",
        },
    }
    checks = [
        {"eval_time": "8m", "alertname": "DataopsDataStale", "exp_alerts": []},
        {"eval_time": "8m", "alertname": "DataopsDataHeld", "exp_alerts": [warning]},
    ]
    done = promtool_test(tmp_path, [{"interval": "1m", "input_series": held, "alert_rule_test": checks}])
    assert done.returncode == 0, done.stdout + done.stderr


def test_quality_low_fires_on_the_share_quarantined_in_the_last_hour(tmp_path: Path) -> None:
    bad = [s for s in HEALTHY if "rows_quarantined" not in s["series"]]
    bad.append(series("dataops_rows_quarantined_total", "0+10x30", table=TABLE))  # 10 held back for every 100 published
    checks = [
        {"eval_time": "10m", "alertname": "DataopsQualityLow", "exp_alerts": []},
        {
            "eval_time": "20m",
            "alertname": "DataopsQualityLow",
            "exp_alerts": [
                {
                    "exp_labels": {"severity": "warning", "table": TABLE},
                    "exp_annotations": {
                        "summary": f"{TABLE}: 9.091% of audited rows quarantined in the last hour",
                        "description": "Rows are being quarantined; query quarantine.<source> for the reasons, "
                        "`dataops incidents` for the checks.",
                    },
                }
            ],
        },
    ]
    done = promtool_test(tmp_path, [{"interval": "1m", "input_series": bad, "alert_rule_test": checks}])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alertmanager_config_is_valid_and_routes_by_severity() -> None:
    amtool = tool("amtool")
    check = subprocess.run([amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    def receiver(*labels: str) -> str:
        done = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels], capture_output=True, text=True, timeout=60
        )
        return done.stdout.strip()

    assert receiver("alertname=DataopsDataStale", "severity=critical") == "console-and-oncall"
    assert receiver("alertname=DataopsQualityLow", "severity=warning") == "console-and-team"
    assert receiver("alertname=Other", "severity=info") == "console"
    config = yaml.safe_load(ALERTMANAGER.read_text())
    for r in config["receivers"]:
        [hook] = r["webhook_configs"]
        assert hook["url"] == "http://dataops:8400/api/alerts" and hook["send_resolved"], f"{r['name']} does not reach the console"
        assert hook["http_config"]["authorization"]["credentials_file"].startswith("/run/secrets/")


def test_prometheus_sends_alerts_to_the_composed_alertmanager() -> None:
    config = yaml.safe_load((REPO / "config" / "prometheus" / "prometheus.yml").read_text())
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    am = compose["services"]["alertmanager"]
    assert targets == ["alertmanager:9093"] and "./config/alertmanager:/etc/alertmanager:ro" in am["volumes"]
    assert set(am["secrets"]) == set(compose["secrets"]), "the SMTP password and console token come from .env"
    shown = yaml.safe_load(ALERTMANAGER.read_text())
    files = {
        shown["global"]["smtp_auth_password_file"],
        shown["receivers"][0]["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"],
    }
    assert files == {f"/run/secrets/{name}" for name in am["secrets"]}
