"""The tool inventory: every tool the issue asks for, each with an input the model can read and a target the policy can judge."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from config.errors import ToolError
from pipelines.context import PlatformContext
from tests.conftest import utc
from tools.base import EFFECTS, Target, ToolContext, ToolInput
from tools.registry import REGISTRY, get_tool

# The issue's tool list, with the effect each must declare: it is the spec, whatever is registered today.
REQUIRED = {
    "list_incidents": "read",
    "get_incident": "read",
    "list_runs": "read",
    "get_run": "read",
    "query_lake": "read",
    "profile_partition": "read",
    "table_history": "read",
    "diff_snapshots": "read",
    "refetch_and_diff": "read",
    "refetch_range": "read",
    "current_metrics": "read",
    "table_lineage": "read",
    "search_memory": "read",
    "rerun_window": "write",
    "backfill_range": "write",
    "quarantine_partition": "write",
    "release_partition": "write",
    "rollback_table": "write",
    "pause_pipeline": "write",
    "resume_pipeline": "write",
    "annotate_incident": "write",
    "resolve_incident": "write",
    "escalate_incident": "write",
    "expire_snapshots": "destructive",
    "delete_partition": "destructive",
    "compact_table": "write",
}
VERBS = {
    "list", "get", "query", "profile", "diff", "refetch", "rerun", "backfill", "quarantine", "release", "rollback", "pause",
    "resume", "annotate", "resolve", "escalate", "expire", "delete", "search", "current", "validate", "compact", "find",
}  # fmt: skip
NOUN_FIRST = {"table_history", "table_lineage"}  # read as "the table's history": allowed as they stand
LAYERS = {"bronze", "silver", "gold", "quarantine", "ops", "source", "memory"}

# One valid call per tool: what the model would send.
EXAMPLES: dict[str, dict[str, Any]] = {
    "list_incidents": {"status": "unresolved", "table": "silver.carbon_intensity"},
    "get_incident": {"incident_id": 1},
    "annotate_incident": {"incident_id": 1, "note": "48 slots missing on 2026-03-01; the source serves them now"},
    "resolve_incident": {"incident_id": 1, "note": "re-run filled the gap; validate_partition passed"},
    "escalate_incident": {"incident_id": 1, "reason": "the source still lacks 2026-03-01"},
    "list_runs": {"pipeline": "carbon_intensity"},
    "list_approvals": {"status": "pending"},
    "list_actions": {"writes_only": True, "limit": 10},
    "get_run": {"run_id": "run-1"},
    "rerun_window": {"pipeline": "carbon_intensity", "start": "2026-03-01", "end": "2026-03-04"},
    "backfill_range": {"pipeline": "weather", "start": "2026-02-01", "end": "2026-03-01"},
    "query_lake": {"sql": "SELECT count(*) FROM silver.carbon_intensity"},
    "profile_partition": {"table": "silver.carbon_intensity", "day": "2026-03-01"},
    "table_history": {"table": "silver.carbon_intensity"},
    "diff_snapshots": {"table": "silver.carbon_intensity", "day": "2026-03-01"},
    "refetch_and_diff": {"pipeline": "carbon_intensity", "day": "2026-03-01"},
    "refetch_range": {"pipeline": "carbon_intensity", "start": "2026-03-01", "end": "2026-03-04"},
    "current_metrics": {},
    "table_lineage": {"table": "gold.carbon_intensity_hourly"},
    "search_memory": {"text": "missing slots in silver.carbon_intensity"},
    "validate_partition": {"table": "silver.carbon_intensity", "day": "2026-03-01"},
    "quarantine_partition": {"table": "gold.carbon_intensity_hourly", "day": "2026-03-01", "reason": "incident 1: doubled forecast"},
    "release_partition": {"table": "silver.carbon_intensity", "day": "2026-03-01"},
    "delete_partition": {"table": "silver.carbon_intensity", "day": "2026-03-01", "reason": "incident 1: rows from a test feed"},
    "rollback_table": {"table": "silver.carbon_intensity", "snapshot_id": 1, "reason": "incident 1: a bad publish"},
    "pause_pipeline": {"pipeline": "carbon_intensity", "reason": "schema drift: intensity.forecast renamed"},
    "resume_pipeline": {"pipeline": "carbon_intensity"},
    "expire_snapshots": {"table": "bronze.carbon_intensity", "dry_run": True},
    "compact_table": {"table": "bronze.carbon_intensity", "min_files": 4},
    "find_greenest_window": {"hours": 3, "within_hours": 24},
}
# What the policy engine sees of each example call that changes something.
CI = "carbon_intensity"  # the pipeline feeding silver.carbon_intensity, and through it gold.carbon_intensity_hourly
TARGETS = {
    "annotate_incident": Target(layer="ops", table="ops.incidents", partition="1"),
    "resolve_incident": Target(layer="ops", table="ops.incidents", partition="1"),
    "escalate_incident": Target(layer="ops", table="ops.incidents", partition="1"),
    "rerun_window": Target(
        layer="silver", table="silver.carbon_intensity", pipeline="carbon_intensity", partition="2026-03-01", span_days=3
    ),
    "backfill_range": Target(layer="silver", table="silver.weather", pipeline="weather", partition="2026-02-01", span_days=28),
    "quarantine_partition": Target(layer="gold", table="gold.carbon_intensity_hourly", pipeline=CI, partition="2026-03-01", span_days=1),
    "release_partition": Target(layer="silver", table="silver.carbon_intensity", pipeline=CI, partition="2026-03-01", span_days=1),
    "delete_partition": Target(layer="silver", table="silver.carbon_intensity", pipeline=CI, partition="2026-03-01", span_days=1),
    "rollback_table": Target(layer="silver", table="silver.carbon_intensity", pipeline=CI),
    "pause_pipeline": Target(layer="ops", table="ops.schedules", pipeline="carbon_intensity"),
    "resume_pipeline": Target(layer="ops", table="ops.schedules", pipeline="carbon_intensity"),
    "expire_snapshots": Target(layer="bronze", table="bronze.carbon_intensity"),
    "compact_table": Target(layer="bronze", table="bronze.carbon_intensity"),
}
TOOL_NAMES = sorted(REGISTRY)
CHANGING = sorted(name for name, spec in REGISTRY.items() if spec.effect != "read")


def test_the_issue_tools_are_all_registered_with_their_effects() -> None:
    missing = sorted(set(REQUIRED) - set(REGISTRY))
    assert not missing, f"tools the issue requires are not registered: {missing}"
    assert {name: REGISTRY[name].effect for name in REQUIRED} == REQUIRED


def test_every_tool_has_an_example_call() -> None:
    assert set(EXAMPLES) == set(REGISTRY), "add a valid example call for each new tool to EXAMPLES"


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_tool_declares_what_the_model_and_the_policy_read(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.name == name
    assert spec.description.strip(), f"{name} has no description"
    assert spec.effect in EFFECTS == ("read", "write", "destructive")
    assert issubclass(spec.input, ToolInput)
    assert spec.input.model_config.get("extra") == "forbid"
    assert isinstance(spec.result, type) and issubclass(spec.result, BaseModel)
    spec.input.model_json_schema()
    spec.result.model_json_schema()


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_every_input_field_is_described_for_the_model(name: str) -> None:
    spec = REGISTRY[name]
    undescribed = [field for field, info in spec.input.model_fields.items() if not (info.description or "").strip()]
    assert not undescribed, f"{name}: fields without a Field(description=...): {undescribed}"
    properties = spec.input.model_json_schema().get("properties", {})
    assert all(prop.get("description") for prop in properties.values())


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_tool_names_are_snake_case_verb_phrases(name: str) -> None:
    assert re.fullmatch(r"[a-z]+(_[a-z]+)+", name), f"{name} is not a snake_case phrase"
    assert name.split("_")[0] in VERBS or name in NOUN_FIRST, f"{name} does not start with a verb ({', '.join(sorted(VERBS))})"


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_example_call_parses(name: str) -> None:
    spec = REGISTRY[name]
    assert isinstance(spec.parse(EXAMPLES[name]), spec.input)


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_unknown_argument_is_refused_by_name(name: str) -> None:
    spec = REGISTRY[name]
    with pytest.raises(ToolError, match=rf"invalid arguments for {name}: bogus: Extra inputs are not permitted\. Its fields: "):
        spec.parse({**EXAMPLES[name], "bogus": 1})


def test_unknown_tool_lists_the_known_ones() -> None:
    with pytest.raises(ToolError, match=r"unknown tool 'nope'; known: annotate_incident, backfill_range, compact_table, current_metrics, "):
        get_tool("nope")
    assert get_tool("rerun_window") is REGISTRY["rerun_window"]


@pytest.mark.parametrize("name", CHANGING)
def test_changing_tool_names_its_target(ctx: PlatformContext, name: str) -> None:
    spec = REGISTRY[name]
    tool_ctx = ToolContext(platform=ctx, now=utc(2026, 3, 10, 12))
    if name == "rollback_table":
        # A rollback's target checks the snapshot exists, so an impossible one is refused before anyone approves it.
        with pytest.raises(ToolError, match=r"not in the history of silver\.carbon_intensity"):
            spec.target(tool_ctx, spec.parse(EXAMPLES[name]))
        return
    target = spec.target(tool_ctx, spec.parse(EXAMPLES[name]))
    assert isinstance(target, Target)
    assert target.layer in LAYERS, f"{name} declares no layer, so the policy cannot tell gold from silver"
    assert target == TARGETS[name]


def test_targets_name_unknown_tables(ctx: PlatformContext) -> None:
    spec = REGISTRY["quarantine_partition"]
    tool_ctx = ToolContext(platform=ctx, now=utc(2026, 3, 10, 12))
    with pytest.raises(ToolError, match=r"silver\.carbon\b.*silver\.carbon_intensity"):
        spec.target(tool_ctx, spec.parse({**EXAMPLES["quarantine_partition"], "table": "silver.carbon"}))


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_idempotency_key_is_stable_for_equal_arguments(name: str) -> None:
    spec = REGISTRY[name]
    key = spec.idempotency_key(spec.parse(EXAMPLES[name]))
    reordered = dict(reversed(list(EXAMPLES[name].items())))
    assert key == spec.idempotency_key(spec.parse(reordered))
    assert re.fullmatch(rf"{name}:[0-9a-f]{{16}}", key)


def test_idempotency_key_differs_for_different_arguments() -> None:
    def key(name: str, **changes: Any) -> str:
        spec = REGISTRY[name]
        return spec.idempotency_key(spec.parse({**EXAMPLES[name], **changes}))

    assert key("rerun_window") != key("rerun_window", end="2026-03-05")
    assert key("rerun_window") != key("rerun_window", pipeline="weather")
    assert key("quarantine_partition") != key("quarantine_partition", day="2026-03-02")
    assert key("rollback_table") != key("rollback_table", snapshot_id=2)
    assert key("annotate_incident") != key("resolve_incident")  # same arguments, different tool
    # Equal after parsing is equal: a default spelt out is the same call.
    assert key("list_runs") == key("list_runs", limit=10)
    assert key("rerun_window") == key("rerun_window", start="2026-03-01")
