"""The shipped Prometheus config, alert rules and Grafana dashboard are valid and speak of real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines import metrics
from tests.conftest import REPO

PROMETHEUS_DIR = REPO / "config" / "prometheus"
DASHBOARD = REPO / "config" / "grafana" / "dataops_dashboard.json"
DATASOURCE_VARIABLE = {"type": "prometheus", "uid": "${datasource}"}
KNOWN = {m.name for m in metrics.REGISTRY.collect()}
KNOWN_SERIES = (
    KNOWN
    | {s.name for m in metrics.REGISTRY.collect() for s in m.samples}
    | {f"{n}_total" for n in KNOWN}
    | {f"{n}_bucket" for n in KNOWN}
    | {f"{n}_count" for n in KNOWN}
)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(dataops_[a-z0-9_]+)", expr))


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def annotation_queries() -> list[dict[str, Any]]:
    return [a for a in dashboard()["annotations"]["list"] if not a.get("builtIn")]


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]] + [a["expr"] for a in annotation_queries()]


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
    exprs += dashboard_exprs()
    used = set().union(*(metric_names(e) for e in exprs))
    assert used and used <= KNOWN_SERIES, f"unknown metrics: {sorted(used - KNOWN_SERIES)}"
    assert {"dataops_freshness_lag_seconds", "dataops_open_incidents", "dataops_anomaly_score"} <= used


def test_dashboard_queries_are_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
    rules = [{"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_panel_has_a_unit_a_legend_and_the_datasource_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert panels()
    for panel in panels():
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE_VARIABLE, title
        assert panel["targets"] and all(t["datasource"] == DATASOURCE_VARIABLE for t in panel["targets"]), title
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert all(t.get("legendFormat") for t in panel["targets"]), f"{title}: a query without a legend"
        if panel["type"] == "timeseries":
            assert panel["options"]["legend"]["showLegend"] is True, f"{title}: legend hidden"
        assert panel.get("description"), f"{title}: no description"


def test_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    items = dashboard()["panels"]
    assert len({p["id"] for p in items}) == len(items), "duplicate panel ids"
    for p in items:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_dashboard_shows_carbon_intensity_conflicts_freshness_and_notifiers() -> None:
    def exprs_of(kind: str) -> set[str]:
        return set().union(*(metric_names(t["expr"]) for p in panels() if p["type"] == kind for t in p["targets"]))

    gauge = next(p for p in panels() if p["type"] == "gauge")
    assert metric_names(gauge["targets"][0]["expr"]) == {"dataops_carbon_intensity_gco2_per_kwh"}
    assert "gCO₂/kWh" in gauge["fieldConfig"]["defaults"]["unit"]
    bands = [s["value"] for s in gauge["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert bands == [None, 40, 120, 200, 290], "NESO's 2023 index bands, as the carbon_intensity suite judges them"
    assert "dataops_carbon_intensity_gco2_per_kwh" in exprs_of("timeseries")
    assert {
        "dataops_pipeline_runs_total",
        "dataops_rows_written_total",
        "dataops_rows_quarantined_total",
        "dataops_lake_conflicts_total",
        "dataops_outbox_pending",
    } <= exprs_of("timeseries")
    assert {"dataops_notifier_up", "dataops_open_incidents"} <= exprs_of("stat")
    freshness = [set().union(*(metric_names(t["expr"]) for t in p["targets"])) for p in panels()]
    assert {"dataops_freshness_lag_seconds", "dataops_freshness_limit_seconds"} in freshness, "lag and its limit on one panel"


def test_dashboard_shows_our_forecast_beside_the_actual_and_its_accuracy() -> None:
    def targets(panel: dict[str, Any]) -> dict[str, str]:
        return {t["legendFormat"]: t["expr"] for t in panel["targets"]}

    versus = next(p for p in panels() if "dataops_forecast_intensity_gco2_per_kwh" in str(targets(p)))
    exprs = targets(versus)
    assert exprs["actual"] == 'dataops_carbon_intensity_gco2_per_kwh{kind="actual"}'
    assert exprs["day-ahead forecast"] == 'dataops_forecast_intensity_gco2_per_kwh{horizon="24",bound="point"} offset 24h'
    fills = {
        o["matcher"]["options"]: p["value"]
        for o in versus["fieldConfig"]["overrides"]
        for p in o["properties"]
        if p["id"] == "custom.fillBelowTo"
    }
    assert fills == {"80 % high": "80 % low"} and {"80 % high", "80 % low"} <= set(exprs), "the 80 % interval as a band"
    # The gauge's labels as pipelines/forecast/run.py sets them: horizon "24" (hours, %g), bound "point"/"lo80"/"hi80".
    assert all(re.search(r'horizon="24",bound="(point|lo80|hi80)"', e) for k, e in exprs.items() if k != "actual")
    accuracy = next(p for p in panels() if "dataops_forecast_abs_error" in str(targets(p)))
    assert set().union(*(metric_names(e) for e in targets(accuracy).values())) == {
        "dataops_forecast_abs_error",
        "dataops_forecast_interval_coverage",
    }
    coverage = next(o for o in accuracy["fieldConfig"]["overrides"] if o["matcher"]["options"] == ".* coverage")
    assert {"id": "unit", "value": "percentunit"} in coverage["properties"], "coverage is a share, on its own axis"


def test_incidents_opened_are_annotations_from_prometheus() -> None:
    (incidents,) = annotation_queries()
    assert incidents["datasource"] == DATASOURCE_VARIABLE and incidents["enable"] is True
    assert metric_names(incidents["expr"]) == {"dataops_incidents_opened_total"}
    assert incidents["titleFormat"] and incidents["step"]
    # Every severity exists from the start at 0, so increase() also sees the first incident of one.
    for severity in metrics.SEVERITIES:
        assert metrics.REGISTRY.get_sample_value("dataops_incidents_opened_total", {"severity": severity}) is not None
