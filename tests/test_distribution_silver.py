"""The distribution monitor on silver: a day rewritten out of band, which no other monitor rescores, on the real 2023 data."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from agent.planner import PlanningState, ProposedCall, Turn
from agent.runbook import RunbookPlanner, load_runbooks
from agent.verify import verify
from config.errors import DefinitionError
from config.inventory import MonitorSpec, load_inventory
from pipelines import remediation
from pipelines.context import PlatformContext
from pipelines.incidents import Incident
from pipelines.lake_faults import bad_publish, scale
from pipelines.monitors.checks import evaluate
from pipelines.monitors.state import load_state
from pipelines.promotion import run_pipeline
from tests.conftest import REPO, utc, window
from tests.test_reconcile import head

SILVER = "silver.carbon_intensity"
MONITOR = "carbon_intensity_silver_distribution"
NOW = utc(2023, 3, 1, 1)


def silver_spec(ctx: PlatformContext) -> MonitorSpec:
    return ctx.inventory.monitors[MONITOR]


def clean_history(ctx: PlatformContext) -> None:
    """January and February 2023 through the pipeline: 59 clean days, more than the monitor's 14 of history."""
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 3, 1)), as_of=NOW)


def times_ten(ctx: PlatformContext, day: str) -> int:
    """One day's actual and forecast x10, written straight to silver's main in one overwrite (no pipeline, no audit)."""

    def mutate(rows: pa.Table) -> pa.Table:
        return scale("forecast", 10)(scale("actual", 10)(rows))

    return bad_publish(ctx, SILVER, datetime.fromisoformat(day).replace(tzinfo=NOW.tzinfo), mutate, run_id="manual-bad")


def open_incidents(ctx: PlatformContext) -> list[Incident]:
    """Evaluate the silver distribution monitor the way the service does, and report what it finds."""
    for finding in evaluate(ctx, [silver_spec(ctx)], NOW):
        ctx.incidents.report(finding, now=NOW)
    return ctx.incidents.list()


def test_the_shipped_monitor_watches_silver_carbon_intensity(ctx: PlatformContext) -> None:
    spec = silver_spec(ctx)
    assert (spec.kind, spec.table, spec.columns, spec.severity) == ("distribution", SILVER, ("actual", "forecast"), "critical")


def test_a_clean_january_and_february_of_silver_open_nothing(ctx: PlatformContext) -> None:
    clean_history(ctx)
    assert open_incidents(ctx) == [], "every day of February is ordinary weather"
    state = load_state(ctx, MONITOR)[1]
    assert state["status"] == "active" and len(state["judged"]) == 28 and state["flagged"] == {}
    assert state["detail"].startswith("last judged 2023-02-28: actual")
    assert state["statistics"] == {"actual": "median", "forecast": "median", "actual/forecast": "median"}, "by their daily medians"


def test_a_silver_day_rewritten_times_ten_out_of_band_opens_one_incident(ctx: PlatformContext) -> None:
    clean_history(ctx)
    assert open_incidents(ctx) == []
    good = head(ctx, SILVER)
    bad = times_ten(ctx, "2023-02-15")

    (incident,) = open_incidents(ctx)
    assert incident.kind == "bad_publish" and incident.table == SILVER and incident.severity == "critical"
    assert incident.partition == "2023-02-15" and incident.cause_key == f"distribution:{MONITOR}"
    assert incident.title.startswith(f"{SILVER}: ") and " on 2023-02-15 is " in incident.title
    (evidence,) = incident.evidence
    assert evidence["day"] == "2023-02-15" and evidence["days"] == ["2023-02-15"]
    assert {c["column"] for c in evidence["columns"]} == {"actual", "forecast"}, "both scaled columns are named"
    assert evidence["column"] in incident.title and evidence["statistic"] == "median"
    assert evidence["ratio"] > 5 and evidence["observed"] > evidence["usual_range"][1] * evidence["threshold_ratio"]
    assert (evidence["bad_snapshot_id"], evidence["bad_run_id"], evidence["good_snapshot_id"]) == (bad, "manual-bad", good)
    assert evidence["feeds"] == ["gold.carbon_intensity_hourly", "gold.intensity_vs_temperature_daily"]
    assert open_incidents(ctx) == [incident], "the same bad version is judged once: no second incident, no new occurrence"


def test_one_column_halved_alone_is_caught_by_its_ratio_to_the_other(ctx: PlatformContext) -> None:
    """x0.5 keeps a day's forecast inside the range windy and calm days span, but not its ratio to the actual."""
    clean_history(ctx)
    assert open_incidents(ctx) == []
    bad_publish(ctx, SILVER, utc(2023, 2, 15), scale("forecast", 0.5), run_id="manual-half")

    (incident,) = open_incidents(ctx)
    (evidence,) = incident.evidence
    assert [c["column"] for c in evidence["columns"]] == ["actual/forecast"], "the forecast alone stays within its own range"
    assert evidence["column"] == "actual/forecast" and 1.8 < evidence["ratio"] < 2.6  # 15 Feb is 1.21x its usual already
    assert evidence["threshold_ratio"] == 1.5, "the pair's floor: clean days stay within 1.21x of their previous weeks"
    assert incident.title.startswith(f"{SILVER}: actual/forecast on 2023-02-15 is 2")


def test_a_ratio_must_name_two_of_the_monitors_columns() -> None:
    base = {"name": "d", "kind": "distribution", "table": SILVER, "columns": ["actual", "forecast"]}
    assert MonitorSpec.model_validate(base | {"ratios": [["actual", "forecast"]]}).ratios == (("actual", "forecast"),)
    for bad in ([["actual", "index"]], [["actual", "actual"]]):
        with pytest.raises(ValueError, match=r"ratio \[.*\] must name two different columns of \['actual', 'forecast'\]"):
            MonitorSpec.model_validate(base | {"ratios": bad})
    with pytest.raises(ValueError, match="ratios are for distribution monitors"):
        MonitorSpec.model_validate(base | {"kind": "volume", "ratios": [["actual", "forecast"]]})


def test_the_agent_rolls_silver_back_and_verifies_the_day_against_its_history(ctx: PlatformContext) -> None:
    """The bad_publish runbook's path works for silver: rollback to the good snapshot, then a verification that
    re-judges the day (the gold path recomputes from a mart, which silver does not have)."""
    clean_history(ctx)
    assert open_incidents(ctx) == []
    good = head(ctx, SILVER)
    times_ten(ctx, "2023-02-15")
    (incident,) = open_incidents(ctx)
    planner = RunbookPlanner(load_runbooks(REPO / "config" / "runbooks.yaml"))
    record = incident.model_dump(mode="json")
    variables = {"incident": record, "evidence": incident.evidence[-1], "day": "2023-02-15"}
    history = Turn(call=ProposedCall(id="t-s0-rb0", name="table_history", arguments={}), decision="allow", status="ok", result={})
    state = PlanningState(thread_id="t", mode="incident", incident=record, context={"vars": variables}, turns=[history])
    (call,) = planner.plan(state).calls
    assert (call.name, (call.arguments or {}).get("table"), (call.arguments or {}).get("snapshot_id")) == ("rollback_table", SILVER, good)

    turn = {"status": "ok", "effect": "destructive", "call": {"name": "rollback_table", "arguments": call.arguments}, "result": {}}
    before = verify(ctx, turns=[turn], incident=record, vars=variables, now=NOW)
    assert not before["passed"] and before["method"] == "distribution" and before["detail"].startswith("2023-02-15: actual")
    rolled = remediation.rollback(ctx, SILVER, good, reason="test", run_id="rollback-test", now=NOW)
    turn["result"] = rolled.model_dump(mode="json")
    after = verify(ctx, turns=[turn], incident=record, vars=variables, now=NOW)
    assert after == {
        "passed": True,
        "method": "distribution",
        "detail": f"{SILVER} 2023-02-15 back in line with their history; the marts built from it (gold.carbon_intensity_hourly, "
        "gold.intensity_vs_temperature_daily) are marked to be rebuilt for 2023-02-15 at the next pipeline run",
    }


def test_a_distribution_monitor_on_bronze_is_refused_with_the_layers_named(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monitors = config / "monitors.yaml"
    text = monitors.read_text()
    old = "    table: silver.carbon_intensity\n    columns: [actual, forecast]\n    ratios: [[actual, forecast]]\n"
    assert old in text
    monitors.write_text(text.replace(old, "    table: bronze.carbon_intensity\n    columns: [payload_hash]\n"))
    with pytest.raises(DefinitionError, match=rf"monitor '{MONITOR}' names 'bronze.carbon_intensity' where a silver or gold table"):
        load_inventory(config)
