"""The inventory loads, cross-checks, and refuses bad declarations with helpful words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from config.errors import DefinitionError
from config.inventory import load_inventory
from tests.conftest import REPO


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_shipped_inventory_loads_and_cross_references() -> None:
    inventory = load_inventory(REPO / "config")
    assert set(inventory.pipelines) == {"carbon_intensity", "generation_mix", "weather", "country_intensity"}
    assert inventory.table("silver.carbon_intensity").key == ("ts",)
    assert [c.name for c in inventory.table("silver.carbon_intensity").columns][:4] == ["ts", "forecast", "actual", "index"]
    for pipeline in inventory.pipelines.values():
        assert inventory.table(pipeline.bronze).layer == "bronze"
        assert inventory.table(pipeline.quarantine).layer == "quarantine"
        assert pipeline.schedule.manual or pipeline.schedule.cron or pipeline.schedule.interval_minutes
    assert {"gold.carbon_intensity_hourly", "gold.intensity_vs_temperature_daily", "gold.generation_share_daily"} <= set(inventory.tables)


def test_unknown_table_is_named_with_the_known_ones(config_copy: Path) -> None:
    _edit(config_copy / "pipelines.yaml", "silver: silver.weather", "silver: silver.wether")
    with pytest.raises(DefinitionError, match=r"unknown table 'silver.wether'; known: .*silver.weather"):
        load_inventory(config_copy)


def test_unknown_table_lookup_lists_known_tables() -> None:
    inventory = load_inventory(REPO / "config")
    with pytest.raises(DefinitionError, match=r"unknown table 'silver.carbon'; known: bronze.carbon_intensity, "):
        inventory.table("silver.carbon")


def test_duplicate_names_are_refused(config_copy: Path) -> None:
    text = (config_copy / "sources.yaml").read_text()
    (config_copy / "sources.yaml").write_text(text + "\n  weather:\n    kind: weather\n    cadence_minutes: 60\n    contract: [time]\n")
    with pytest.raises(DefinitionError, match="duplicate name 'weather'"):
        load_inventory(config_copy)


def test_bad_column_type_names_the_valid_types(config_copy: Path) -> None:
    _edit(config_copy / "tables.yaml", "{name: temperature_c, type: double", "{name: temperature_c, type: float64")
    with pytest.raises(DefinitionError, match=r"table 'silver.weather' is invalid: .*'timestamptz', 'date', 'double'.*got 'float64'"):
        load_inventory(config_copy)


def test_expectation_on_unknown_column_is_refused(config_copy: Path) -> None:
    _edit(config_copy / "suites.yaml", "kwargs: {column: temperature_c, min_value: -30", "kwargs: {column: temp, min_value: -30")
    with pytest.raises(DefinitionError, match=r"suite 'weather' expectation 'temperature_physical' uses unknown column 'temp'"):
        load_inventory(config_copy)


def test_unknown_pipeline_lists_known() -> None:
    inventory = load_inventory(REPO / "config")
    with pytest.raises(DefinitionError, match=r"unknown pipeline 'carbon'; known: carbon_intensity, country_intensity"):
        inventory.pipeline("carbon")


def test_missing_declaration_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match=r"missing declaration file .*sources\.yaml"):
        load_inventory(tmp_path)
