"""Errors, not tracebacks: a bad setting, an unreachable service or a read-only home is one line and exit 2.

The cases run the installed `dataops` as separate processes (started together, since each spends seconds on
imports), with an environment holding no DATAOPS_* but the case's own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from config.errors import SettingsError
from config.settings import load_settings
from pipelines.error_report import ReportingGroup, explain
from tests.conftest import REPO

CLI = str(Path(sys.executable).with_name("dataops"))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Case:
    env: dict[str, str]
    says: tuple[str, ...]  # each must appear in the one line
    command: tuple[str, ...] = ("status",)
    code: int = 2


PORT = closed_port()
CASES: dict[str, Case] = {
    "metrics_port_not_a_number": Case({"DATAOPS_METRICS_PORT": "abc"}, ("DATAOPS_METRICS_PORT='abc'", "an integer from 1 to 65535")),
    "replay_speed_zero": Case({"DATAOPS_REPLAY_SPEED": "0"}, ("DATAOPS_REPLAY_SPEED='0'", "a number above 0")),
    "slack_port_out_of_range": Case({"DATAOPS_SLACK_PORT": "70000"}, ("DATAOPS_SLACK_PORT='70000'", "from 1 to 65535")),
    "query_timeout_negative": Case({"DATAOPS_QUERY_TIMEOUT_S": "-5"}, ("DATAOPS_QUERY_TIMEOUT_S='-5'", "above 0")),
    "query_memory_limit_syntax": Case(
        {"DATAOPS_QUERY_MEMORY_LIMIT": "lots"}, ("DATAOPS_QUERY_MEMORY_LIMIT='lots'", "not a DuckDB memory limit", "1GB")
    ),
    "source_mode_enum": Case({"DATAOPS_SOURCE_MODE": "live"}, ("DATAOPS_SOURCE_MODE='live'", "one of 'replay', 'http'")),
    "llm_url_without_scheme": Case({"DATAOPS_LLM_BASE_URL": "localhost:8000"}, ("DATAOPS_LLM_BASE_URL='localhost:8000'", "http(s) URL")),
    "replay_start_not_an_instant": Case({"DATAOPS_REPLAY_START": "yesterday"}, ("DATAOPS_REPLAY_START='yesterday'", "ISO 8601")),
    "postgres_ops_db_closed_port": Case(
        {"DATAOPS_OPS_DB_URL": f"postgresql+psycopg2://dataops:pw@127.0.0.1:{PORT}/ops"},
        ("DATAOPS_OPS_DB_URL", f"127.0.0.1:{PORT}", "Connection refused"),
    ),
    "postgres_catalog_closed_port": Case(
        {"DATAOPS_CATALOG_URI": f"postgresql+psycopg2://dataops:pw@127.0.0.1:{PORT}/catalog"},
        ("DATAOPS_CATALOG_URI", f"127.0.0.1:{PORT}"),
    ),
    "rest_catalog_closed_port": Case(
        {"DATAOPS_CATALOG_TYPE": "rest", "DATAOPS_REST_CATALOG_URI": f"http://127.0.0.1:{PORT}"},
        ("DATAOPS_REST_CATALOG_URI", f"127.0.0.1:{PORT}"),
    ),
    "s3_endpoint_closed_port": Case(
        {"DATAOPS_WAREHOUSE": "s3://lake/warehouse", "DATAOPS_S3_ENDPOINT": f"http://127.0.0.1:{PORT}"},
        ("DATAOPS_S3_ENDPOINT", f"127.0.0.1:{PORT}"),
    ),
    "http_attempts_zero_on_run": Case({"DATAOPS_HTTP_MAX_ATTEMPTS": "0"}, ("DATAOPS_HTTP_MAX_ATTEMPTS='0'",), command=("run", "weather")),
}


def clean_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    return env | {"DATAOPS_HOME": str(home)} | extra


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("settings-errors")
    running = {
        name: subprocess.Popen(
            ["nice", "-n", "19", CLI, *case.command],
            cwd=REPO,
            env=clean_env(root / name, case.env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, case in CASES.items()
    }
    done = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_setting_or_an_unreachable_service_is_one_line_and_exit_2(
    name: str, outcomes: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    case, done = CASES[name], outcomes[name]
    assert done.returncode == case.code, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    for words in case.says:
        assert words in lines[0], lines[0]


def _read_only(home: Path) -> list[str] | None:
    """A command prefix under which `home` is read-only, or None when this machine cannot make one."""
    home.mkdir(parents=True)
    if os.geteuid() != 0:
        home.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        return None
    # root writes through permissions: make the folder a read-only bind mount in a private mount namespace
    script = f"mount --bind '{home}' '{home}' && mount -o remount,ro,bind '{home}' && exec \"$@\""
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    probe = subprocess.run([*prefix, "touch", str(home / "probe")], capture_output=True, text=True)
    return prefix if probe.returncode != 0 and not (home / "probe").exists() else None


@pytest.mark.slow
def test_a_read_only_home_says_so(tmp_path: Path) -> None:
    home = tmp_path / "home"
    prefix = _read_only(home)
    if prefix is None:
        # root without mount namespaces writes through permissions; /proc/sys refuses new files even to root
        home, prefix = Path("/proc/sys"), []
    done = subprocess.run([*prefix, CLI, "status"], cwd=REPO, env=clean_env(home, {}), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: DATAOPS_HOME={home} is not writable"), line
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_chat_exits_1_when_the_model_endpoint_is_down(tmp_path: Path) -> None:
    env = clean_env(
        tmp_path / "home",
        {"DATAOPS_LLM_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1", "DATAOPS_LLM_MODEL": "m", "DATAOPS_LLM_MAX_RETRIES": "0"},
    )
    done = subprocess.run(
        [CLI, "chat", "-m", "how many rows has silver.weather?"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: cannot reach the model endpoint" in done.stderr and "DATAOPS_LLM_BASE_URL" in done.stderr
    assert "Traceback" not in done.stderr


def test_settings_errors_name_every_bad_setting_and_hide_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAOPS_METRICS_PORT", "0")
    monkeypatch.setenv("DATAOPS_BACKFILL_EXECUTOR", "spark")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    said = str(caught.value)
    assert "DATAOPS_METRICS_PORT='0' is not valid" in said and "DATAOPS_BACKFILL_EXECUTOR='spark'" in said
    assert "one of 'local', 'ray'" in said and "\n" not in said


@pytest.mark.parametrize(
    ("value", "valid"), [("1GB", True), ("512MB", True), ("2GiB", True), ("25%", True), ("1000", False), ("0GB", False), ("150%", False)]
)
def test_query_memory_limit_takes_duckdb_syntax(value: str, valid: bool) -> None:
    if valid:
        assert load_settings(query_memory_limit=value).query_memory_limit == value
    else:
        with pytest.raises(SettingsError, match="DATAOPS_QUERY_MEMORY_LIMIT"):
            load_settings(query_memory_limit=value)


@pytest.fixture
def buggy() -> Iterator[typer.Typer]:
    app = typer.Typer(cls=ReportingGroup, pretty_exceptions_enable=False)

    @app.command()
    def boom() -> None:
        raise RuntimeError("a bug with password=hunter22 inside")

    @app.command()
    def other() -> None:
        pass

    yield app


def test_a_bug_is_named_as_one_and_its_traceback_needs_debug(buggy: typer.Typer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATAOPS_DEBUG", raising=False)
    quiet = CliRunner().invoke(buggy, ["boom"])
    assert quiet.exit_code == 1
    assert "internal error: RuntimeError: a bug with password=*** inside; this is a bug" in quiet.output
    assert "Traceback" not in quiet.output and "hunter22" not in quiet.output
    monkeypatch.setenv("DATAOPS_DEBUG", "1")
    loud = CliRunner().invoke(buggy, ["boom"])
    assert loud.exit_code == 1 and "Traceback" in loud.output and "hunter22" not in loud.output


def test_a_database_error_past_the_connect_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy

    port = closed_port()
    url = f"postgresql+psycopg2://dataops:pw@127.0.0.1:{port}/ops"
    monkeypatch.setenv("DATAOPS_OPS_DB_URL", url)
    with pytest.raises(sqlalchemy.exc.OperationalError) as caught:
        sqlalchemy.create_engine(url).connect()
    said = explain(caught.value)
    assert said is not None and f"DATAOPS_OPS_DB_URL at 127.0.0.1:{port}" in said and "\n" not in said


def test_output_cut_short_by_its_reader_is_not_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dataops run --help | head -30`: head leaves, the next write fails with EPIPE. That is the reader's choice,
    not a bug: no "internal error" line, no traceback even with --debug, and click's exit 1 for a closed pipe."""
    app = typer.Typer(cls=ReportingGroup, pretty_exceptions_enable=False)

    @app.command()
    def long() -> None:
        raise BrokenPipeError(32, "Broken pipe")  # what the write after `head` left raises

    @app.command()
    def other() -> None:
        pass

    monkeypatch.setenv("DATAOPS_DEBUG", "1")
    done = CliRunner().invoke(app, ["long"])
    assert done.exit_code == 1
    assert "internal error" not in done.output and "Traceback" not in done.output, done.output


def test_ctrl_c_wrapped_by_a_library_is_an_interrupt_not_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while pydantic serialises a result reaches the CLI as pydantic's error naming KeyboardInterrupt (the
    interrupt is not chained): exit 130 like any Ctrl-C, no "internal error"."""
    app = typer.Typer(cls=ReportingGroup, pretty_exceptions_enable=False)

    @app.command()
    def dump() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ValueError("Error calling function `ser`: KeyboardInterrupt:") from None

    @app.command()
    def other() -> None:
        pass

    monkeypatch.delenv("DATAOPS_DEBUG", raising=False)
    done = CliRunner().invoke(app, ["dump"])
    assert done.exit_code == 130
    assert "internal error" not in done.output
