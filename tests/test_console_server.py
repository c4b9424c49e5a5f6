"""The console served for real: uvicorn on a free port spoken to over HTTP with httpx, inside `dataops serve`
as a service extension and alone as `dataops console`; its settings; and the `dataops users` commands it needs.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from typer.testing import CliRunner

from agent.console.app import create_app
from agent.console.server import ConsoleServer, bind
from config.errors import SettingsError
from config.settings import load_settings
from pipelines.context import PlatformContext
from pipelines.service import Service
from tests.conftest import REPO

if TYPE_CHECKING:
    from tests.console_fixtures import Platform

pytest_plugins = ["tests.console_fixtures"]
DATAOPS = str(Path(sys.executable).parent / "dataops")


@pytest.fixture
def served(platform: Platform) -> Iterator[str]:
    server = ConsoleServer(create_app(platform.ctx, clock=lambda: platform.now), bind("127.0.0.1", 0)).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_the_console_over_real_http(served: str, platform: Platform) -> None:
    platform.incident(1)
    with httpx.Client(base_url=served, timeout=30) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/api/incidents").status_code == 401
        assert http.get("/", follow_redirects=False).status_code == 303
        assert [i["id"] for i in http.get("/api/incidents", headers=platform.auth("vera")).json()] == [1]
        assert http.post("/api/incidents/1/ack", json={"reason": "mine"}, headers=platform.auth("vera")).status_code == 403
        assert http.post("/api/incidents/1/ack", json={"reason": "mine"}, headers=platform.auth("otto")).status_code == 200
        # A browser's round trip: the sign-in form, its cookie, a page, a form with the session's CSRF token.
        page = http.get("/signin")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = http.post("/signin", data={"csrf": csrf, "name": "otto", "password": platform.password}, follow_redirects=False)
        assert signed.status_code == 303
        incident = http.get("/incidents/1")
        assert incident.status_code == 200 and "otto via console" in incident.text
        assert "server" not in incident.headers  # uvicorn's banner is off
    assert platform.ctx.incidents.get(1).status == "acknowledged"


def test_alertmanager_posts_alerts_with_an_operators_token(served: str, platform: Platform) -> None:
    alert = {
        "version": "4",
        "status": "firing",
        "receiver": "console",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "DataopsStale", "severity": "critical", "table": "silver.carbon_intensity"},
                "annotations": {"summary": "silver.carbon_intensity is stale"},
                "startsAt": "2023-01-28T00:00:00Z",
                "fingerprint": "abc123",
            }
        ],
    }
    with httpx.Client(base_url=served, timeout=30) as http:
        assert http.post("/api/alerts", json=alert).status_code == 401
        assert http.post("/api/alerts", json=alert, headers=platform.auth("vera")).status_code == 403
        bad = http.post("/api/alerts", json={"version": "3"}, headers=platform.auth("otto"))
        assert bad.status_code == 422 and bad.json()["field"] == "body"
        done = http.post("/api/alerts", json=alert, headers=platform.auth("otto"))
        assert done.status_code == 200, done.text
        [incident_id] = done.json()["incidents"]
    incident = platform.ctx.incidents.get(int(incident_id))
    assert incident.severity == "critical" and incident.table == "silver.carbon_intensity"


def _service(platform: Platform, port: int) -> Service:
    from agent.console.cli import attach_console

    ctx = PlatformContext.open(platform.ctx.settings.model_copy(update={"console_port": port}))
    return Service(ctx, extensions=[attach_console])


def test_dataops_serve_runs_the_console_as_an_extension(platform: Platform) -> None:
    from tests.console_fixtures import free_port

    port = free_port()
    service = _service(platform, port)
    service.attach_extensions()
    try:
        assert len(service.extensions) == 1
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/api/me", headers=platform.auth("alice")).json() == {"name": "alice", "role": "approver"}
    finally:
        service.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_console_port_0_turns_it_off(platform: Platform) -> None:
    service = _service(platform, 0)
    service.attach_extensions()
    assert service.extensions == []


def test_a_port_in_use_leaves_the_console_out_and_the_service_running(platform: Platform, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        service = _service(platform, port)
        service.attach_extensions()
    assert service.extensions == []
    assert f"the console cannot listen on 127.0.0.1:{port}" in caplog.text
    assert "set DATAOPS_CONSOLE_PORT (0 turns the console off) or DATAOPS_CONSOLE_ADDR" in caplog.text


def test_bind_names_the_settings() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(SettingsError, match="set DATAOPS_CONSOLE_PORT"):
            bind("127.0.0.1", taken.getsockname()[1])


@pytest.mark.parametrize(
    ("value", "wording"),
    [
        (
            "70000",
            "DATAOPS_CONSOLE_PORT='70000' is not valid: Input should be less than or equal to 65535; valid: an integer from 0 to 65535",
        ),
        ("-1", "DATAOPS_CONSOLE_PORT='-1' is not valid"),
        ("web", "DATAOPS_CONSOLE_PORT='web' is not valid"),
    ],
)
def test_a_bad_console_port_is_named_with_its_valid_range(monkeypatch: pytest.MonkeyPatch, value: str, wording: str) -> None:
    monkeypatch.setenv("DATAOPS_CONSOLE_PORT", value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert wording in str(raised.value)
    assert "an integer from 0 to 65535" in str(raised.value)


def test_the_console_settings_default_to_localhost_8400(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("DATAOPS_CONSOLE_PORT", "DATAOPS_CONSOLE_ADDR"):
        monkeypatch.delenv(key, raising=False)
    settings = load_settings()
    assert (settings.console_addr, settings.console_port) == ("127.0.0.1", 8400)


# -- the commands ------------------------------------------------------------------------------------------------------
def test_users_add_json_prints_name_role_and_a_token_that_works(platform: Platform) -> None:
    from evals.cli import app
    from tests.console_fixtures import dataops_env

    home = platform.ctx.settings.home
    runner = CliRunner()
    done = runner.invoke(app, ["users", "add", "olga", "--role", "operator", "--json"], env=dataops_env(home))
    assert done.exit_code == 0, done.output
    printed = json.loads(done.stdout)
    assert set(printed) == {"name", "role", "token"}
    assert (printed["name"], printed["role"]) == ("olga", "operator")
    assert printed["token"].startswith("dop_")
    from fastapi.testclient import TestClient

    with TestClient(create_app(platform.ctx)) as client:
        assert client.get("/api/me", headers={"Authorization": f"Bearer {printed['token']}"}).json() == {"name": "olga", "role": "operator"}


def test_users_password_sets_an_argon2_hash_and_ends_sessions(platform: Platform) -> None:
    from sqlalchemy import select

    from agent.console.sessions import SessionStore
    from evals.cli import app
    from policies.passwords import PasswordRow, PasswordStore
    from tests.console_fixtures import dataops_env

    home, runner = platform.ctx.settings.home, CliRunner()
    sessions = SessionStore(platform.ctx.ledger)
    secret, _ = sessions.open("vera", signed_in_by="password")
    short = runner.invoke(app, ["users", "password", "vera", "--stdin"], input="short\n", env=dataops_env(home))
    assert short.exit_code == 2 and "the password has 5 characters; at least 12 are needed" in short.output
    typed = runner.invoke(app, ["users", "password", "vera"], input="a new long passphrase\na new long passphrase\n", env=dataops_env(home))
    assert typed.exit_code == 0, typed.output
    assert "vera's console password is set; 1 console session(s) ended" in typed.output
    assert sessions.get(secret) is None
    with platform.ctx.ledger.session() as s:
        stored = s.scalars(select(PasswordRow).where(PasswordRow.person == "vera")).one().hash
    assert stored.startswith("$argon2id$") and "a new long passphrase" not in stored
    assert PasswordStore(platform.ctx.ledger).check("vera", "a new long passphrase")
    assert not PasswordStore(platform.ctx.ledger).check("vera", platform.password)
    nobody = runner.invoke(app, ["users", "password", "nobody", "--stdin"], input="whatever whatever\n", env=dataops_env(home))
    assert nobody.exit_code == 2 and "no person 'nobody'" in nobody.output
    listed = json.loads(runner.invoke(app, ["users", "list", "--json"], env=dataops_env(home)).stdout)
    assert "password" in next(p for p in listed["people"] if p["name"] == "vera")["authenticates_by"]


def test_removing_a_person_removes_their_password(platform: Platform) -> None:
    from evals.cli import app
    from policies.passwords import PasswordStore
    from tests.console_fixtures import dataops_env

    runner = CliRunner()
    assert runner.invoke(app, ["users", "remove", "otto"], env=dataops_env(platform.ctx.settings.home)).exit_code == 0
    assert not PasswordStore(platform.ctx.ledger).has("otto")


@pytest.mark.slow
def test_dataops_console_serves_alone_and_stops_on_sigterm(platform: Platform) -> None:
    from tests.console_fixtures import dataops_env, free_port, wait_for

    port = free_port()
    home = platform.ctx.settings.home
    process = subprocess.Popen(
        [DATAOPS, "console", "--port", str(port)],
        env=dataops_env(home),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/healthz", process)
        assert httpx.get(f"http://127.0.0.1:{port}/api/me", headers=platform.auth("vera"), timeout=10).json()["name"] == "vera"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert f"console on http://127.0.0.1:{port}" in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--console", "--no-console"])
def test_dataops_serve_serves_the_console_unless_told_not_to(platform: Platform, flag: str) -> None:
    from tests.console_fixtures import dataops_env, free_port

    port = free_port()
    home = platform.ctx.settings.home
    env = dataops_env(home, DATAOPS_CONSOLE_PORT=str(port), DATAOPS_METRICS_PORT=str(free_port()))
    done = subprocess.run(
        [DATAOPS, "serve", "--until", "2023-01-01T00:00:00Z", "--no-agent", "--no-metrics", flag],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (f"console on http://127.0.0.1:{port}" in done.stdout) is (flag == "--console"), done.stdout + done.stderr


def test_help_imports_neither_the_web_stack_nor_argon2(tmp_path: Path) -> None:
    from tests.test_cli_startup import loaded_by

    web = {"fastapi", "starlette", "uvicorn", "jinja2", "multipart", "python_multipart", "argon2"}
    for argv in (["--help"], ["console", "--help"], ["serve", "--help"], ["users", "password", "--help"]):
        modules, done = loaded_by(argv, tmp_path)
        assert "Usage" in done.stdout, done.stdout + done.stderr
        assert not modules & web, f"`dataops {' '.join(argv)}` imported {sorted(modules & web)}"
    assert "--no-console" in loaded_by(["serve", "--help"], tmp_path)[1].stdout


def test_a_new_or_revoked_token_ends_console_sessions(platform: Platform) -> None:
    from agent.console.sessions import SessionStore
    from evals.cli import app
    from tests.console_fixtures import dataops_env

    sessions = SessionStore(platform.ctx.ledger)
    secret, _ = sessions.open("vera", signed_in_by="token")
    done = CliRunner().invoke(app, ["users", "token", "vera", "--revoke"], env=dataops_env(platform.ctx.settings.home))
    assert done.exit_code == 0, done.output
    assert sessions.get(secret) is None


@pytest.mark.slow
def test_the_console_keeps_working_while_slack_and_smtp_are_down(platform: Platform) -> None:
    """`dataops serve` with Slack and an SMTP server configured, neither of them answering: the console serves
    its pages and acts on an incident, and the service keeps running."""
    from tests.console_fixtures import dataops_env, free_port, wait_for

    incident = platform.incident()
    port, dead = free_port(), free_port()  # nothing listens on `dead`
    env = dataops_env(
        platform.ctx.settings.home,
        DATAOPS_CONSOLE_PORT=str(port),
        DATAOPS_METRICS_PORT=str(free_port()),
        DATAOPS_SLACK_BOT_TOKEN="xoxb-test-token",
        DATAOPS_SLACK_SIGNING_SECRET="test-signing-secret",
        DATAOPS_SLACK_CHANNEL="C0DATAOPS",
        DATAOPS_SLACK_API_URL=f"http://127.0.0.1:{dead}/api/",
        DATAOPS_SLACK_PORT=str(free_port()),
        DATAOPS_SMTP_URL=f"smtp://127.0.0.1:{dead}",
        DATAOPS_ALERT_EMAILS="oncall@example.org",
        DATAOPS_OUTBOX_BACKOFF_S="60",
    )
    process = subprocess.Popen(
        [DATAOPS, "serve", "--speed", "60"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/healthz", process)
        listed = httpx.get(f"{base}/api/incidents", headers=platform.auth("vera"), timeout=30)
        assert listed.status_code == 200 and incident.id in [i["id"] for i in listed.json()]
        resolved = httpx.post(  # resolve: the service's agent may have acknowledged it already
            f"{base}/api/incidents/{incident.id}/resolve", json={"reason": "fixed upstream"}, headers=platform.auth("otto"), timeout=60
        )
        assert resolved.status_code == 200, resolved.text
        signin = httpx.get(f"{base}/signin", timeout=30)
        assert signin.status_code == 200 and 'name="csrf"' in signin.text
        assert process.poll() is None, "the service is still running"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
    assert platform.ctx.incidents.get(incident.id).status == "resolved"
