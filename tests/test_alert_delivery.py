"""Prometheus and Alertmanager for real (Debian's binaries) on the shipped rules and routing: a stale table's alert
reaches the console's webhook (recorded as an incident by `record_alerts`) and the mail server (aiosmtpd), its
resolution closes the incident, and a healthy table reaches neither.

Test-only timings: scrape and evaluation every second, `for:` of one second, Alertmanager grouping within a
second. Everything else (expressions, labels, routes, receivers, authorization) is the shipped configuration.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from pipelines.alert_intake import record_alerts
from pipelines.context import PlatformContext
from tests.conftest import REPO
from tests.fakes.smtp_server import SmtpServer
from tests.test_serve_process import free_port

pytestmark = pytest.mark.slow
TOKEN = "alertmanager-console-token"
STALE, HEALTHY = "silver.carbon_intensity", "silver.weather"


class ConsoleWebhook:
    """POST /api/alerts as the console serves it: a bearer token, then `record_alerts`; remembers what came."""

    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx
        self.bodies: list[dict[str, Any]] = []
        self.refused = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/api/alerts" or self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    owner.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                ids = record_alerts(owner.ctx, body)
                owner.bodies.append(body)
                answer = json.dumps({"incidents": ids}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        return [a for b in self.bodies for a in b["alerts"]]


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def rules(tmp_path: Path) -> Path:
    shipped = yaml.safe_load((REPO / "config" / "prometheus" / "alerts.yml").read_text())
    for group in shipped["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "1s"
    path = tmp_path / "alerts.yml"
    path.write_text(yaml.safe_dump(shipped))
    return path


def alertmanager_config(tmp_path: Path, smtp: SmtpServer, webhook: ConsoleWebhook) -> Path:
    shipped = yaml.safe_load((REPO / "config" / "alertmanager" / "alertmanager.yml").read_text())
    token = tmp_path / "console_token"
    token.write_text(TOKEN)
    shipped["global"] = {
        "smtp_smarthost": f"127.0.0.1:{smtp.port}",
        "smtp_from": "alertmanager@example.org",
        "smtp_require_tls": False,
    }
    shipped["route"] |= {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"}
    for receiver in shipped["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook.url
            hook["http_config"]["authorization"]["credentials_file"] = str(token)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(shipped))
    return path


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_stale_table_alerts_the_console_and_email_and_a_healthy_one_neither(
    ctx: PlatformContext, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prometheus, alertmanager = shutil.which("prometheus"), shutil.which("prometheus-alertmanager")
    if prometheus is None or alertmanager is None:
        pytest.fail("prometheus or prometheus-alertmanager is missing: `make system-deps` installs Debian's packages")
    registry = CollectorRegistry()
    lag = Gauge("dataops_freshness_lag_seconds", "lag", ["table"], registry=registry)
    limit = Gauge("dataops_freshness_limit_seconds", "limit", ["table"], registry=registry)
    lag.labels(STALE).set(5 * 3600)
    limit.labels(STALE).set(3 * 3600)
    lag.labels(HEALTHY).set(1800)
    limit.labels(HEALTHY).set(6 * 3600)
    metrics_port = free_port()
    server, _thread = start_http_server(metrics_port, addr="127.0.0.1", registry=registry)

    with SmtpServer() as smtp:
        webhook = ConsoleWebhook(ctx)
        am_port, prom_port = free_port(), free_port()
        am_log, prom_log = (tmp_path / "alertmanager.log").open("wb"), (tmp_path / "prometheus.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    alertmanager, f"--config.file={alertmanager_config(tmp_path, smtp, webhook)}", f"--storage.path={tmp_path / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address=",
                ],
                stdout=am_log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules(tmp_path))],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "dataops", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        processes.append(
            subprocess.Popen(
                [
                    prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'prom'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=prom_log, stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        try:
            wait_until(
                "Alertmanager and Prometheus to be ready", lambda: all(ready(f"http://127.0.0.1:{p}/-/ready") for p in (am_port, prom_port))
            )
            wait_until("the stale table's alert at the console", lambda: bool(webhook.alerts()))
            wait_until("the stale table's alert by email", lambda: bool(smtp.received))
            time.sleep(4)  # several more evaluations and group intervals: the healthy table stays quiet

            alerts = webhook.alerts()
            assert {(a["labels"]["alertname"], a["labels"]["table"], a["status"]) for a in alerts} == {
                ("DataopsDataStale", STALE, "firing")
            }
            assert webhook.refused == 0, "the shipped config sends the console's bearer token"
            [incident] = ctx.incidents.list()
            assert (incident.kind, incident.table, incident.severity, incident.status) == ("alert", STALE, "critical", "open")
            [mail] = smtp.received
            assert "DataopsDataStale" in mail["Subject"] and HEALTHY not in mail.as_string()
            assert smtp.envelopes[0][1] == ["oncall@example.org"], "critical: the on-call address of the shipped route"

            lag.labels(STALE).set(1800)  # the source delivers again
            wait_until("the resolution at the console", lambda: any(a["status"] == "resolved" for a in webhook.alerts()))
            resolved = ctx.incidents.get(incident.id)
            assert resolved.status == "resolved" and resolved.notes[-1]["actor"] == "alertmanager"
            assert len(ctx.incidents.list()) == 1
        finally:
            server.shutdown()
            webhook.server.shutdown()
            am_log.close()
            prom_log.close()
