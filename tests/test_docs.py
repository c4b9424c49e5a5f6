"""Docs are tested: every setting and every pipeline appears in the README."""

from __future__ import annotations

from config.inventory import load_inventory
from config.settings import DataopsSettings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [f"DATAOPS_{name.upper()}" for name in DataopsSettings.model_fields if f"DATAOPS_{name.upper()}" not in README]
    assert not missing, f"README.md does not document {', '.join(missing)}"


def test_every_pipeline_is_documented_and_scheduled() -> None:
    inventory = load_inventory(REPO / "config")
    for name, pipeline in inventory.pipelines.items():
        assert f"`{name}`" in README, f"README.md does not mention pipeline {name}"
        assert pipeline.schedule.manual or pipeline.schedule.cron or pipeline.schedule.interval_minutes


def test_readme_starts_with_the_two_setup_commands() -> None:
    head = README[:1500]
    assert "make run" in head and "make test" in head
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")


def test_every_tool_has_a_readme_row() -> None:
    from tools.registry import REGISTRY

    missing = [name for name, spec in REGISTRY.items() if f"| `{name}` | {spec.effect} |" not in README]
    assert not missing, f"README.md's tools table lacks {', '.join(missing)}"


def test_every_command_is_documented() -> None:
    from evals.cli import app

    names = [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]
    missing = [n for n in names if f"`dataops {n}" not in README]
    assert not missing, f"README.md does not document dataops {', '.join(missing)}"
