"""`dataops serve` as a real process: data flows on the replay clock, /metrics answers, SIGTERM stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from config.settings import load_settings
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_ingests_on_the_replay_clock_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    env |= {
        "DATAOPS_HOME": str(home),
        "DATAOPS_METRICS_PORT": str(port),
        "DATAOPS_MONITOR_INTERVAL_S": "1",
        "DATAOPS_REPLAY_SPEED": "43200",
    }
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "evals.cli", "serve", "--no-agent"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        ctx = PlatformContext.open(load_settings(home=home))
        deadline = time.monotonic() + 120
        runs = []
        while time.monotonic() < deadline:
            time.sleep(1)
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            runs = [r for r in ctx.ledger.runs(limit=200) if r.status in ("succeeded", "quarantined")]
            if {r.pipeline for r in runs} >= {"carbon_intensity", "weather"} and len(runs) >= 4:
                break
        assert {r.pipeline for r in runs} >= {"carbon_intensity", "weather"}, (tmp_path / "serve.log").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'dataops_pipeline_runs_total{pipeline="carbon_intensity",status="succeeded"}' in body
        assert "dataops_clock_timestamp_seconds" in body
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "stopped at clock 2023-" in output
    assert not [r for r in ctx.ledger.runs(limit=500) if r.status == "running"], "SIGTERM let the running job finish"
    for name in ("silver.carbon_intensity", "gold.carbon_intensity_hourly", "silver.weather"):
        table = load_table(ctx.catalog, name)
        assert table.scan().to_arrow().num_rows > 0
        assert wap.audit_branches(table) == [], "no half-published audit branch left behind"
    newest = max(load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow().column("ts").to_pylist())
    assert newest.year == 2023, "replay served only data before the clock's now"
