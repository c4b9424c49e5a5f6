"""The CLI imports what the command needs: `--help` none of the heavy libraries, the ops-database commands not the lake
or the agent. Checked by the modules a fresh process has loaded, not by the clock (benchmarks/cli_startup.py times it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO

HEAVY = (
    "pyiceberg",
    "pyarrow",
    "duckdb",
    "great_expectations",
    "sklearn",
    "scipy",
    "pandas",
    "langgraph",
    "chromadb",
    "openai",
    "slack_bolt",
)
LAKE = ("pyiceberg", "pyarrow", "duckdb", "great_expectations", "sklearn", "scipy", "pandas")
AGENT = ("langgraph", "chromadb", "openai", "slack_bolt")


def loaded_by(argv: list[str], home: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages a fresh `dataops ARGV` process had imported when it exited, and the process."""
    probe = (
        "import json, sys\n"
        "from evals.cli import app\n"
        "try:\n"
        "    app(prog_name='dataops')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")} | {"DATAOPS_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    modules = set(json.loads(done.stderr.strip().splitlines()[-1]))
    return modules, done


def test_help_and_version_import_no_heavy_library(tmp_path: Path) -> None:
    for argv in (["--help"], ["--version"], ["run", "--help"], ["incident", "--help"], ["users", "--help"], ["eval", "--help"]):
        modules, done = loaded_by(argv, tmp_path)
        assert "Usage" in done.stdout or "dataops " in done.stdout, done.stdout + done.stderr
        assert not modules & set(HEAVY), f"`dataops {' '.join(argv)}` imported {sorted(modules & set(HEAVY))}"


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    from evals.cli import app

    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0 and done.output.strip() == f"dataops {version('dataops')}"


@pytest.mark.parametrize("argv", [["incidents"], ["approvals"], ["audit"], ["monitors", "--help"]])
def test_ops_database_commands_load_neither_the_lake_nor_the_agent(argv: list[str], tmp_path: Path) -> None:
    modules, done = loaded_by(argv, tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert not modules & set(LAKE + AGENT), f"`dataops {' '.join(argv)}` imported {sorted(modules & set(LAKE + AGENT))}"


def test_lake_commands_do_not_load_the_agent_or_great_expectations(tmp_path: Path) -> None:
    for argv in (["status"], ["query", "select 1 as one"]):
        modules, done = loaded_by(argv, tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 0, done.stderr
        if argv == ["status"]:
            assert "pyiceberg" in modules  # it did reach the lake: on an empty home, opening the catalog creates the tables
        else:
            assert "one" in done.stdout  # a statement that names no table reads none (and imports no pyiceberg)
        assert not modules & {"great_expectations", "sklearn", *AGENT}, (
            f"`dataops {' '.join(argv)}` imported {sorted(modules & {'great_expectations', 'sklearn', *AGENT})}"
        )


def test_status_and_query_on_an_existing_lake_load_neither_pyiceberg_nor_pyarrow(tmp_path: Path) -> None:
    """Once the tables exist, `status` and `query` read the catalog and the data files without pyiceberg, pyarrow or
    pandas (pipelines/lakehouse/current.py); the first command on an empty home creates the tables through pyiceberg."""
    modules, done = loaded_by(["status"], tmp_path)
    assert "pyiceberg" in modules and "Traceback" not in done.stderr, done.stderr
    for argv in (["status", "--json"], ["query", "select count(*) as slots from silver.carbon_intensity", "--json"]):
        modules, done = loaded_by(argv, tmp_path)
        assert done.returncode == 0, done.stderr
        assert not modules & {"pyiceberg", "pyarrow", "pandas", "sklearn", "great_expectations", *AGENT}, (
            f"`dataops {' '.join(argv)}` imported {sorted(modules & {'pyiceberg', 'pyarrow', 'pandas', 'sklearn', *AGENT})}"
        )
    assert json.loads(done.stdout)["rows"] == [[0]]
    assert "sqlalchemy" not in modules, "`query` does not open the ops database"


def test_one_module_assembles_every_command() -> None:
    """Every command module is plain functions: none creates a Typer app or registers on one; evals/cli.py does it all."""
    modules = [
        p for layer in ("pipelines", "agent", "evals") for p in (REPO / layer).glob("*.py") if p.stem == "cli" or p.stem.endswith("_cli")
    ]
    modules = [p for p in modules if p != REPO / "evals" / "cli.py"]
    assert len(modules) >= 7, modules  # pipelines: cli, backfill_cli, incident_cli; agent: cli, people_cli, deferred_cli; evals: eval_cli
    for path in modules:
        text = path.read_text()
        assert "typer.Typer(" not in text and ".command(" not in text and ".add_typer(" not in text, f"{path} assembles commands"
    import typer.main

    from evals.cli import app

    names = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert {"run", "backfill", "serve", "status", "query", "incident", "monitors", "approve", "chat", "users", "eval"} <= names


def test_backfill_help_names_every_executor() -> None:
    from evals.cli import app
    from pipelines.partition_runs import EXECUTORS

    done = CliRunner().invoke(app, ["backfill", "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0
    assert all(name in done.output for name in EXECUTORS), done.output
