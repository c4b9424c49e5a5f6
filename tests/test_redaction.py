"""One redaction for every log line and error: planted secrets never reach stdout, stderr or a log file."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import redact as redaction
from config.redact import RedactingFilter, install_redaction, redact, register_secrets
from config.settings import SECRET_SETTINGS, load_settings
from pipelines.context import PlatformContext
from tests.conftest import REPO
from tests.fakes.slack_api import FakeSlack

CLI = str(Path(sys.executable).with_name("dataops"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("START event not delivered to http://user:PASSWORD@host/api", "START event not delivered to http://user:***@host/api"),
        ("postgresql+psycopg2://dataops:p%40ss@db:5432/ops", "postgresql+psycopg2://dataops:***@db:5432/ops"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "Authorization: Bearer ***"),
        ("token xoxb-1234-5678-abcdefgh and xapp-1-A0-xyz", "token xoxb-*** and xapp-***"),
        ("key sk-proj-abcdefghijklmnop", "key sk-***"),
        ("id AKIAIOSFODNN7EXAMPLE here", "id AKIA*** here"),
        ("GET /x?password=hunter2&api_key=k3y&day=1", "GET /x?password=***&api_key=***&day=1"),
        ('{"slack_signing_secret": "two words", "rows": 3}', '{"slack_signing_secret": "***", "rows": 3}'),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key=***"),
    ],
)
def test_redact_masks_credentials_wherever_they_appear(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize(
    "text", ["tokens=1234 over the token budget", "basic validation passed", "xoxb-... is a bot token", "task-queue sk-eval"]
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def registered() -> Iterator[None]:
    before = set(redaction._secrets)
    yield
    redaction._secrets.clear()
    redaction._secrets.update(before)


def test_the_values_of_configured_secrets_are_masked_verbatim_and_url_quoted(registered: None) -> None:
    settings = load_settings(
        slack_signing_secret="f00d plain words", lineage_target="http://ol:c0rn%2Fflakes@lineage:5000", llm_api_key="local-key-42"
    )
    register_secrets(settings.secret_values())
    assert redact("signing f00d plain words; key local-key-42; pw c0rn/flakes or c0rn%2Fflakes") == "signing ***; key ***; pw *** or ***"


def test_the_filter_masks_child_loggers_messages_and_tracebacks(registered: None) -> None:
    register_secrets(["planted-traceback-secret"])
    stream = io.StringIO()
    root = logging.getLogger("redaction-test-root")
    root.propagate = False
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    try:
        install_redaction(root)
        assert install_redaction(root) in root.filters and len(handler.filters) == 1, "idempotent"
        try:
            raise ConnectionError("POST http://user:s3cr3tpw@lineage/api failed with planted-traceback-secret")
        except ConnectionError:
            logging.getLogger("redaction-test-root.child").warning(
                "event not delivered to %s", "http://user:s3cr3tpw@lineage", exc_info=True
            )
    finally:
        root.removeHandler(handler)
    logged = stream.getvalue()
    assert "event not delivered to http://user:***@lineage" in logged and "Traceback" in logged
    assert "s3cr3tpw" not in logged and "planted-traceback-secret" not in logged
    assert isinstance(handler.filters[0], RedactingFilter)


# -- end to end: every secret setting planted, then a run, a serve session and the error cases ------------------------
PLANTED = {
    "DATAOPS_SLACK_BOT_TOKEN": "xoxb-planted-bot-0451",
    "DATAOPS_SLACK_APP_TOKEN": "xapp-planted-app-0452",
    "DATAOPS_SLACK_SIGNING_SECRET": "plantedsigning0453",
    "DATAOPS_LLM_API_KEY": "planted-llm-key-0454",
    "DATAOPS_REST_CATALOG_CREDENTIAL": "client:planted-rest-0455",
    "DATAOPS_S3_ACCESS_KEY_ID": "planted-s3-id-0456",
    "DATAOPS_S3_SECRET_ACCESS_KEY": "planted-s3-secret-0457",
    "DATAOPS_TOKEN": "planted-person-token-0460",
}
LINEAGE_PASSWORD = "planted-lineage-0458"
DB_PASSWORD = "planted-db-0459"
SECRETS = [*PLANTED.values(), LINEAGE_PASSWORD, DB_PASSWORD, "planted-rest-0455"]


def test_every_secret_setting_is_planted() -> None:
    assert {f"DATAOPS_{name.upper()}" for name in SECRET_SETTINGS} == set(PLANTED)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    # Every run also tries to deliver lineage to a closed port, with credentials in the URL: the defect of the issue.
    lineage = f"http://marquez:{LINEAGE_PASSWORD}@127.0.0.1:{free_port()}"
    return env | PLANTED | {"DATAOPS_HOME": str(home), "DATAOPS_LINEAGE_TARGET": lineage} | extra


def _scan(texts: dict[str, str], homes: list[Path]) -> dict[str, list[str]]:
    """Where each planted secret showed up: in the captured output, or in a text file under a home."""
    for home in homes:
        for path in home.rglob("*") if home.exists() else []:
            if path.is_file() and path.suffix in (".log", ".jsonl", ".txt", ".out"):
                texts[str(path)] = path.read_text(errors="replace")
    return {
        secret: [where for where, text in texts.items() if secret in text] for secret in SECRETS if any(secret in t for t in texts.values())
    }


@pytest.mark.slow
def test_no_planted_secret_in_a_run_a_serve_session_or_an_error(tmp_path: Path) -> None:
    texts: dict[str, str] = {}
    homes: list[Path] = []

    def cli(name: str, *args: str, code: int | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        home = tmp_path / name
        homes.append(home)
        done = subprocess.run([CLI, *args], cwd=REPO, env=_env(home, **extra), capture_output=True, text=True, timeout=600)
        texts[f"{name} stdout"], texts[f"{name} stderr"] = done.stdout, done.stderr
        if code is not None:
            assert done.returncode == code, done.stdout + done.stderr
        return done

    run = cli("run", "--verbose", "run", "weather", "--start", "2023-01-01", "--end", "2023-01-03", "--json", code=0)
    assert json.loads(run.stdout)["runs"][0]["status"] == "succeeded"
    assert "not delivered" in run.stderr and "127.0.0.1" in run.stderr, "the lineage failure was logged (the scan below: masked)"
    cli("bad-port", "status", code=2, DATAOPS_METRICS_PORT="abc")
    cli("bad-url", "status", code=2, DATAOPS_CATALOG_URI=f"postgresql+psycopg2://dataops:{DB_PASSWORD}@127.0.0.1:99999/cat")
    closed = free_port()
    cli("postgres-down", "status", code=2, DATAOPS_OPS_DB_URL=f"postgresql+psycopg2://dataops:{DB_PASSWORD}@127.0.0.1:{closed}/ops")
    cli("rest-down", "status", code=2, DATAOPS_CATALOG_TYPE="rest", DATAOPS_REST_CATALOG_URI=f"http://127.0.0.1:{closed}")
    cli("s3-down", "status", code=2, DATAOPS_WAREHOUSE="s3://lake/wh", DATAOPS_S3_ENDPOINT=f"http://127.0.0.1:{closed}")
    model_down = {"DATAOPS_LLM_BASE_URL": f"http://127.0.0.1:{closed}/v1", "DATAOPS_LLM_MODEL": "m"}
    cli("model-down", "chat", "-m", "hello", code=1, DATAOPS_TOKEN="", **model_down)  # the OS login asks
    cli("unknown-token", "chat", "-m", "hello", **model_down)  # refused: nobody holds the planted token

    # serve: Slack in HTTP mode against the fake Web API (which knows the planted bot token), lineage to a closed port
    home = tmp_path / "serve"
    homes.append(home)
    with FakeSlack(bot_token=PLANTED["DATAOPS_SLACK_BOT_TOKEN"]) as slack:
        env = _env(
            home,
            DATAOPS_SLACK_APP_TOKEN="",  # Socket Mode would dial Slack's websocket; the value is planted in every other case
            DATAOPS_SLACK_API_URL=slack.api_url,
            DATAOPS_SLACK_CHANNEL="C1",
            DATAOPS_SLACK_PORT=str(free_port()),
            DATAOPS_METRICS_PORT=str(free_port()),
            DATAOPS_MONITOR_INTERVAL_S="1",
            DATAOPS_REPLAY_SPEED="43200",
        )
        log = tmp_path / "serve.out"
        with log.open("w") as sink:
            process = subprocess.Popen([CLI, "--verbose", "serve"], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
            try:
                ctx = PlatformContext.open(load_settings(home=home))
                deadline = time.monotonic() + 240
                while time.monotonic() < deadline and len([r for r in ctx.ledger.runs(limit=50) if r.status != "running"]) < 3:
                    assert process.poll() is None, log.read_text()
                    time.sleep(1)
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=120)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    texts["serve"] = log.read_text()
    assert "serving" in texts["serve"], texts["serve"]

    assert _scan(texts, homes) == {}


def test_masked_json_stays_json() -> None:
    import json

    from config.redact import redact

    text = json.dumps({"token": 1234567, "api_key": None, "has_token": True, "password": "hunter22", "tokens": 12})
    masked = json.loads(redact(text))
    assert masked == {"token": "***", "api_key": None, "has_token": True, "password": "***", "tokens": 12}
