"""The shipped Prometheus config, alert rules and Grafana dashboard are valid and speak of real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from pipelines import metrics
from tests.conftest import REPO

PROMETHEUS_DIR = REPO / "config" / "prometheus"
KNOWN = {m.name for m in metrics.REGISTRY.collect()}
KNOWN_SERIES = (
    KNOWN
    | {s.name for m in metrics.REGISTRY.collect() for s in m.samples}
    | {f"{n}_total" for n in KNOWN}
    | {f"{n}_bucket" for n in KNOWN}
    | {f"{n}_count" for n in KNOWN}
)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(dataops_[a-z_]+)", expr))


def test_alert_rules_and_config_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    rules = subprocess.run([promtool, "check", "rules", str(PROMETHEUS_DIR / "alerts.yml")], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS_DIR / "prometheus.yml")], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr


def test_rules_and_dashboard_only_use_metrics_we_export() -> None:
    exprs = re.findall(r"expr: (.+)", (PROMETHEUS_DIR / "alerts.yml").read_text())
    dashboard = json.loads((REPO / "config" / "grafana" / "dataops_dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used and used <= KNOWN_SERIES, f"unknown metrics: {sorted(used - KNOWN_SERIES)}"
    assert {"dataops_freshness_lag_seconds", "dataops_open_incidents", "dataops_anomaly_score"} <= used
