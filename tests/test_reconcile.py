"""Reconciliation and distribution monitors on the real marts, real pipelines and real pyiceberg tables."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pyarrow as pa

from agent.planner import PlanningState, ProposedCall, Turn
from agent.runbook import RunbookPlanner, load_runbooks
from config.inventory import MonitorSpec, load_inventory
from evals.scenario import SCENARIOS_DIR, load_scenario
from pipelines import remediation
from pipelines.context import PlatformContext
from pipelines.lake_faults import LakeFault, apply_lake_fault
from pipelines.lakehouse.catalog import load_table
from pipelines.lakehouse.compaction import compact_table
from pipelines.lakehouse.maintenance import expire_and_clean
from pipelines.monitors.distribution import check_distribution
from pipelines.monitors.publish_audit import audit_published
from pipelines.monitors.reconcile import EXPIRED, check_reconcile, compare
from pipelines.monitors.state import load_state
from pipelines.promotion import INPUTS_PROPERTY, run_pipeline
from tests.conftest import REPO, utc, window

HOURLY = "gold.carbon_intensity_hourly"


def reconcile_spec(table: str = HOURLY) -> MonitorSpec:
    return MonitorSpec(name=f"{table.split('.')[1]}_reconcile", kind="reconcile", table=table, history_days=7, severity="critical")


def distribution_spec() -> MonitorSpec:
    return MonitorSpec(name="hourly_distribution", kind="distribution", table=HOURLY, columns=("actual", "forecast"), history_days=28)


def head(ctx: PlatformContext, table: str) -> int:
    snapshot = load_table(ctx.catalog, table).current_snapshot()
    assert snapshot is not None
    return snapshot.snapshot_id


def day_status(ctx: PlatformContext, spec: MonitorSpec) -> dict[str, str]:
    return {day: entry["status"] for day, entry in load_state(ctx, spec.name)[1]["days"].items()}


def scale_day(ctx: PlatformContext, day: str, factor: float, column: str = "actual") -> int:
    fault = LakeFault(table=HOURLY, day=datetime.fromisoformat(day).date(), mutate="scale", column=column, factor=factor)
    return apply_lake_fault(ctx, fault)


def test_clean_runs_reconcile_for_every_mart(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 4)), as_of=utc(2023, 3, 4, 1))
    run_pipeline(ctx, "weather", window((2023, 3, 1), (2023, 3, 4)), as_of=utc(2023, 3, 4, 1))
    run_pipeline(ctx, "generation_mix", window((2019, 4, 1), (2019, 4, 4)), as_of=utc(2019, 4, 4, 1))
    silver = head(ctx, "silver.carbon_intensity")
    gold = load_table(ctx.catalog, HOURLY).current_snapshot()
    assert gold is not None and gold.summary is not None
    assert json.loads(gold.summary.additional_properties[INPUTS_PROPERTY]) == {"silver.carbon_intensity": silver}
    for table, now in (
        (HOURLY, utc(2023, 3, 4, 1)),
        ("gold.intensity_vs_temperature_daily", utc(2023, 3, 4, 1)),
        ("gold.generation_share_daily", utc(2019, 4, 4, 1)),
    ):
        spec = reconcile_spec(table)
        assert check_reconcile(ctx, spec, now) == [], table
        statuses = day_status(ctx, spec)
        assert len(statuses) == 3 and set(statuses.values()) == {"reconciled"}, (table, statuses)


def test_a_day_scaled_by_ten_is_found_named_and_rolled_back(ctx: PlatformContext) -> None:
    # 13 March 2023 was windy: hourly intensity stayed under 100 g/kWh, so x10 still passes the suite's bounds.
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 10), (2023, 3, 15)), as_of=utc(2023, 3, 15, 1))
    spec, now = reconcile_spec(), utc(2023, 3, 15, 1)
    assert check_reconcile(ctx, spec, now) == []
    good = head(ctx, HOURLY)
    bad = scale_day(ctx, "2023-03-13", 10)
    assert audit_published(ctx, HOURLY, now) == [], "the values stay within physical bounds: the row checks pass"

    (finding,) = check_reconcile(ctx, spec, now)
    assert finding.kind == "bad_publish" and finding.severity == "critical" and finding.partition == "2023-03-13"
    assert finding.cause_key == "reconcile:carbon_intensity_hourly" and "2023-03-13" in finding.title
    evidence = finding.evidence
    assert (evidence["bad_snapshot_id"], evidence["bad_run_id"], evidence["good_snapshot_id"]) == (bad, "manual-bad", good)
    assert (evidence["changed"], evidence["missing"], evidence["extra"]) == (24, 0, 0)
    assert len(evidence["rows"]) == 10
    first = evidence["rows"][0]
    assert first["key"] == {"ts": "2023-03-13T00:00:00+00:00"}
    assert first["published"]["actual"] == 10 * first["recomputed"]["actual"]
    assert first["published"]["forecast"] == first["recomputed"]["forecast"]
    assert check_reconcile(ctx, spec, now) == [], "a bad version is reported once"
    fresh = spec.model_copy(update={"name": "fresh_reconcile"})
    (again,) = check_reconcile(ctx, fresh, now)
    assert again.evidence["good_snapshot_id"] == good, "without remembered versions, older ones are recomputed"

    from agent.verify import _reconciled

    incident = {"kind": "bad_publish", "table": HOURLY, "cause_key": finding.cause_key, "evidence": [finding.evidence]}
    before = _reconciled(ctx, incident)
    assert not before["passed"] and before["detail"] == "2023-03-13: differs", "the x10 day passes its suite, not its recompute"
    remediation.rollback(ctx, HOURLY, good, reason="test", run_id="rollback-test", now=now)
    assert check_reconcile(ctx, spec, now) == []
    assert day_status(ctx, spec)["2023-03-13"] == "reconciled"
    assert _reconciled(ctx, incident)["passed"], "the agent's verification after the rollback recomputes the day"


def test_a_compacted_day_still_reconciles(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 10), (2023, 3, 12)), as_of=utc(2023, 3, 12, 1))
    spec, published = reconcile_spec(), head(ctx, HOURLY)
    assert compact_table(ctx, HOURLY, run_id="compact-test", min_files=1).days_compacted == ["2023-03-10", "2023-03-11"]
    assert check_reconcile(ctx, spec, utc(2023, 3, 12, 1)) == []
    days = load_state(ctx, spec.name)[1]["days"]
    assert {d["status"] for d in days.values()} == {"reconciled"}
    assert {d["writer"] for d in days.values()} == {published}, "the rows' writer is the publish, not the compaction"


def test_an_expired_input_snapshot_is_stated_and_opens_nothing(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 10), (2023, 3, 12)), as_of=utc(2023, 3, 12, 1))
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 12), (2023, 3, 14)), as_of=utc(2023, 3, 14, 1))
    expire_and_clean(ctx, "silver.carbon_intensity", older_than=timedelta(0), retain_last=1)
    spec = reconcile_spec()
    assert check_reconcile(ctx, spec, utc(2023, 3, 14, 1)) == []
    statuses = day_status(ctx, spec)
    assert statuses["2023-03-12"] == statuses["2023-03-13"] == "reconciled"
    for day in ("2023-03-10", "2023-03-11"):
        assert statuses[day].startswith(EXPIRED) and "silver.carbon_intensity@" in statuses[day]
    assert load_state(ctx, spec.name)[1]["detail"] == f"last 7 days: 2 {EXPIRED}, 2 reconciled"


def test_compare_keys_exactly_and_values_within_tolerance(ctx: PlatformContext) -> None:
    spec = ctx.inventory.table("gold.generation_share_daily")
    ts = utc(2019, 4, 1)

    def rows(*items: tuple[str, float]) -> pa.Table:
        return pa.table({"ts": [ts] * len(items), "fuel": [f for f, _ in items], "share_pct": [v for _, v in items]}).append_column(
            "slots", pa.array([48] * len(items), type=pa.int32())
        )

    recomputed = rows(("wind", 30.0), ("gas", 40.0), ("solar", 5.0))
    assert compare(spec, rows(("wind", 30.0 * (1 + 1e-12)), ("gas", 40.0), ("solar", 5.0)), recomputed).clean
    differs = compare(spec, rows(("wind", 30.0 + 1e-6), ("gas", 40.0), ("coal", 5.0)), recomputed)
    assert (differs.changed, differs.missing, differs.extra) == (1, 1, 1)
    assert {(r["key"]["fuel"], r["published"] is None, r["recomputed"] is None) for r in differs.rows} == {
        ("wind", False, False),
        ("solar", True, False),
        ("coal", False, True),
    }


def _without_reconcile(ctx: PlatformContext) -> None:
    """A platform where no reconcile monitor watches gold: the distribution check is the only judge."""
    monitors = {n: m for n, m in ctx.inventory.monitors.items() if m.kind != "reconcile"}
    ctx.__dict__["inventory"] = ctx.inventory.model_copy(update={"monitors": monitors})


def test_distribution_catches_a_scaled_day_and_not_a_clean_february(ctx: PlatformContext) -> None:
    _without_reconcile(ctx)
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 3, 1)), as_of=utc(2023, 3, 1, 1))
    spec, now = distribution_spec(), utc(2023, 3, 1, 1)
    assert check_distribution(ctx, spec, now) == [], "every day of February is ordinary weather"
    state = load_state(ctx, spec.name)[1]
    assert state["status"] == "active" and len(state["judged"]) == 28 and state["detail"].startswith("last judged 2023-02-28: actual")
    good = head(ctx, HOURLY)
    bad = scale_day(ctx, "2023-02-15", 10)

    (finding,) = check_distribution(ctx, spec, now)
    assert finding.kind == "bad_publish" and finding.partition == "2023-02-15" and finding.cause_key == "distribution:hourly_distribution"
    evidence = finding.evidence
    assert evidence["column"] == "actual" and evidence["statistic"] == "median" and evidence["ratio"] > 5
    assert evidence["observed"] > 5 * evidence["usual"] and evidence["threshold_ratio"] >= 2.5
    assert (evidence["bad_snapshot_id"], evidence["good_snapshot_id"]) == (bad, good)
    assert check_distribution(ctx, spec, now) == [], "the same version of a day is judged once"

    scale_day(ctx, "2023-02-20", 0.001, column="forecast")  # kg written as tonnes
    (finding,) = check_distribution(ctx, spec, now)
    assert finding.partition == "2023-02-20" and finding.evidence["column"] == "forecast" and finding.evidence["ratio"] < 0.01


def test_distribution_leaves_a_day_it_can_recompute_to_the_reconcile_monitor(ctx: PlatformContext) -> None:
    """One bad publish, one incident: inside the week the reconcile monitor recomputes, it reports the day, not both;
    an older day it will never look at is reported by the distribution monitor."""
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 3, 1)), as_of=utc(2023, 3, 1, 1))
    spec, now = distribution_spec(), utc(2023, 3, 1, 1)
    assert check_distribution(ctx, spec, now) == []
    scale_day(ctx, "2023-02-25", 10)
    assert check_distribution(ctx, spec, now) == []
    (finding,) = check_reconcile(ctx, reconcile_spec(), now)
    assert finding.partition == "2023-02-25"
    scale_day(ctx, "2023-02-15", 10)  # two weeks back: outside the reconcile monitor's 7 days
    (older,) = check_distribution(ctx, spec, now)
    assert older.partition == "2023-02-15" and older.kind == "bad_publish"


def test_distribution_warms_up_on_too_little_history(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 6)), as_of=utc(2023, 3, 6, 1))
    scale_day(ctx, "2023-03-05", 10)
    spec = distribution_spec()
    assert check_distribution(ctx, spec, utc(2023, 3, 6, 1)) == []
    state = load_state(ctx, spec.name)[1]
    assert state["status"] == "warming_up" and state["detail"].startswith("warming up: 4 of 14 days")


def test_the_runbook_escalates_a_bad_publish_without_a_good_snapshot() -> None:
    planner = RunbookPlanner(load_runbooks(REPO / "config" / "runbooks.yaml"))
    incident = {"id": 3, "kind": "bad_publish", "table": HOURLY, "title": "gold.carbon_intensity_hourly: actual on 2023-12-09 ..."}

    def state(evidence: dict[str, object], turns: list[Turn]) -> PlanningState:
        variables = {"incident": incident, "evidence": evidence, "day": "2023-12-09"}
        return PlanningState(thread_id="t", mode="incident", incident=incident, context={"vars": variables}, turns=turns)

    history = Turn(call=ProposedCall(id="t-s0-rb0", name="table_history", arguments={}), decision="allow", status="ok", result={})
    first = planner.plan(state({"good_snapshot_id": None}, []))
    assert [c.name for c in first.calls] == ["table_history"]
    done = planner.plan(state({"good_snapshot_id": None}, [history]))
    assert done.outcome == "escalated" and "nothing to roll back to" in done.message
    rollback = planner.plan(state({"good_snapshot_id": 42}, [history]))
    assert [(c.name, (c.arguments or {}).get("snapshot_id")) for c in rollback.calls] == [("rollback_table", 42)]


def test_the_clean_week_scenario_evaluates_every_monitor() -> None:
    spec = load_scenario(SCENARIOS_DIR / "039_clean_real_week_no_incident")
    assert set(spec.monitors) == set(load_inventory(REPO / "config").monitors), "039 must evaluate every monitor of monitors.yaml"
