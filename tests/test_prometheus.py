"""A real Prometheus server scrapes the platform's /metrics and answers PromQL with the expected values."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines import metrics
from pipelines.clock import SteppedClock
from pipelines.context import PlatformContext
from pipelines.promotion import run_pipeline
from pipelines.service import Service
from tests.conftest import REPO, utc, window

pytestmark = pytest.mark.slow
PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """Prometheus scraping a /metrics endpoint of this process every second; yields (prometheus, metrics) ports."""
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed: .ci/run installs Debian's prometheus package (apt-get install prometheus)")
    metrics_port, prom_port = free_port(), free_port()
    server = metrics.serve_metrics(metrics_port)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: dataops\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
    )
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        yield prom_port, metrics_port
    finally:
        process.terminate()
        process.wait(timeout=30)
        server.shutdown()  # type: ignore[attr-defined]


def promql(port: int, query: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def wait_for(port: int, query: str, timeout: float = 60.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = promql(port, query)
            if result:
                return result
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prometheus returned nothing for {query} within {timeout}s")


def test_prometheus_scrapes_run_metrics(ctx: PlatformContext, prometheus: tuple[int, int]) -> None:
    prom_port, _ = prometheus
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)))
    assert result.rows_quarantined == 6
    expected_runs = metrics.REGISTRY.get_sample_value(
        "dataops_pipeline_runs_total", {"pipeline": "carbon_intensity", "status": "succeeded"}
    )
    expected_quarantined = metrics.REGISTRY.get_sample_value("dataops_rows_quarantined_total", {"table": "silver.carbon_intensity"})
    assert expected_runs is not None and expected_runs >= 1 and expected_quarantined is not None and expected_quarantined >= 6

    runs = wait_for(prom_port, 'dataops_pipeline_runs_total{pipeline="carbon_intensity",status="succeeded"}')
    assert float(runs[0]["value"][1]) == expected_runs  # type: ignore[index]
    held = wait_for(prom_port, 'dataops_rows_quarantined_total{table="silver.carbon_intensity"}')
    assert float(held[0]["value"][1]) == expected_quarantined  # type: ignore[index]
    score = wait_for(prom_port, 'dataops_data_quality_score{table="silver.carbon_intensity"}')
    assert float(score[0]["value"][1]) == pytest.approx((144 - 6) / 144)  # type: ignore[index]
    durations = wait_for(prom_port, 'sum(dataops_pipeline_run_duration_seconds_count{pipeline="carbon_intensity"})')
    assert float(durations[0]["value"][1]) >= 1  # type: ignore[index]


def test_the_dashboards_carbon_gauge_answers_after_a_service_run(ctx: PlatformContext, prometheus: tuple[int, int]) -> None:
    prom_port, _ = prometheus
    Service(ctx, clock=SteppedClock(current=utc(2023, 1, 3, 10, 20)), sleep=lambda _s: None).tick("carbon_intensity")
    exported = {
        kind: metrics.REGISTRY.get_sample_value("dataops_carbon_intensity_gco2_per_kwh", {"kind": kind}) for kind in ("actual", "forecast")
    }
    assert None not in exported.values()
    dashboard = json.loads((REPO / "config" / "grafana" / "dataops_dashboard.json").read_text())
    gauge = next(p for p in dashboard["panels"] if p["type"] == "gauge")
    answer = wait_for(prom_port, gauge["targets"][0]["expr"])
    assert {r["metric"]["kind"]: float(r["value"][1]) for r in answer} == exported  # type: ignore[index]
