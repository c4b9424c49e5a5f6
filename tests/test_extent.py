"""An incident's whole extent: the slots each day lacks, grouped across days, the partial-day policy, the diagnosis."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.diagnose import diagnose
from agent.planner import PlanningState, ProposedCall, Turn
from agent.runbook import RunbookPlanner, RunbookSpec
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.extent import DayExtent, Extent, SlotRange, day_extent
from pipelines.incidents import Finding
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.ledger import Ledger
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import PARTIAL_PROPERTY, run_pipeline
from tests.conftest import utc, window
from tools import names


def _slots(day: datetime, first: int, last: int) -> list[datetime]:
    return [day + timedelta(minutes=30 * i) for i in range(first, last)]


def test_a_three_day_outage_reads_as_one_range_with_its_partial_days() -> None:
    d0 = datetime(2023, 10, 20, tzinfo=UTC)
    first = day_extent(d0, _slots(d0, 0, 44), cadence_minutes=30, disposition="held")
    middle = day_extent(d0 + timedelta(days=1), [], cadence_minutes=30, disposition="held")
    last = day_extent(d0 + timedelta(days=2), _slots(d0 + timedelta(days=2), 39, 48), cadence_minutes=30, disposition="held")
    extent = Extent(days=(first,)).merge(Extent(days=(last, middle)))
    assert extent.day_names == ["2023-10-20", "2023-10-21", "2023-10-22"]
    assert (extent.first_day, extent.end_day, extent.missing_count()) == ("2023-10-20", "2023-10-23", 4 + 48 + 39)
    assert extent.describe() == (
        "91 half-hours missing 2023-10-20 22:00–2023-10-22 19:00; "
        "partial days 2023-10-20 (44 of 48 slots) and 2023-10-22 (9 of 48 slots) held back; day 2023-10-21 empty at the source"
    )
    assert middle.disposition == "empty" and first.partial and not middle.partial
    # A day seen again takes its latest state, and says it changed.
    fixed = day_extent(d0, _slots(d0, 0, 48), cadence_minutes=30, disposition="held")
    assert extent.added_by(Extent(days=(fixed,))) == ["2023-10-20"]
    assert extent.merge(Extent(days=(fixed,))).missing_count() == 48 + 39


def test_gaps_inside_a_day_are_separate_ranges_and_hourly_days_count_hours() -> None:
    d0 = datetime(2023, 3, 2, tzinfo=UTC)
    present = [d0 + timedelta(hours=h) for h in range(24) if h not in (3, 4, 17)]
    day = day_extent(d0, present, cadence_minutes=60, disposition="held")
    assert day.describe_day() == "3 hours missing 2023-03-02 03:00–04:00, at 2023-03-02 17:00"


def test_grouped_findings_extend_the_incident_and_say_what_each_added(ctx: PlatformContext) -> None:
    d0 = datetime(2023, 10, 20, tzinfo=UTC)
    days = [
        day_extent(d0, _slots(d0, 0, 44), cadence_minutes=30, disposition="held"),
        day_extent(d0 + timedelta(days=1), [], cadence_minutes=30, disposition="held"),
    ]
    ids = set()
    for n, day in enumerate(days):
        finding = Finding(
            kind="completeness", severity="critical", table="silver.carbon_intensity", cause_key="day_incomplete",
            partition=day.day, title=f"day {day.day} held back", extent=Extent(days=(day,)),
        )  # fmt: skip
        incident, _ = ctx.incidents.report(finding, now=d0 + timedelta(days=2, hours=n))
        ids.add(incident.id)
    [incident_id] = ids
    incident = ctx.incidents.get(incident_id)
    assert incident.extent is not None and incident.extent.day_names == ["2023-10-20", "2023-10-21"]
    assert incident.evidence[-1]["added_days"] == ["2023-10-21"]


def test_an_ops_database_from_before_extents_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "ops.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE incidents (id INTEGER PRIMARY KEY, kind VARCHAR(40), table_name VARCHAR(120))")
        db.execute("INSERT INTO incidents (kind, table_name) VALUES ('completeness', 'silver.carbon_intensity')")
    Ledger(f"sqlite:///{path}")
    Ledger(f"sqlite:///{path}")  # a second start finds it there
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(incidents)")}
        assert "extent" in columns
        assert db.execute("SELECT kind FROM incidents").fetchall() == [("completeness",)]


def _outage(ctx: PlatformContext, start: str, end: str) -> None:
    ctx.faults.inject(faults.SourceFault(kind="outage", source="carbon_intensity", start=start, end=end))  # type: ignore[arg-type]


def test_a_held_partial_day_reports_its_missing_slots(ctx: PlatformContext) -> None:
    _outage(ctx, "2023-03-02T06:00:00Z", "2023-03-02T09:00:00Z")
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 4)), as_of=utc(2023, 3, 4, 1))
    assert result.held_days == ["2023-03-02"]
    [extent] = result.extents
    assert (extent.day, extent.present, extent.disposition) == ("2023-03-02", 42, "held")
    [finding] = [f for f in findings_from_run(result, silver="silver.carbon_intensity") if f.kind == "completeness"]
    assert "42 of 48 slots; 6 half-hours missing 2023-03-02 06:00–08:30" in finding.title
    assert finding.extent is not None and finding.extent.missing_count() == 6


def test_publish_flagged_publishes_what_a_partial_day_has_and_flags_it(ctx: PlatformContext) -> None:
    spec = ctx.inventory.pipelines["carbon_intensity"].model_copy(update={"partial_days": "publish_flagged"})
    ctx.inventory = ctx.inventory.model_copy(update={"pipelines": {**ctx.inventory.pipelines, "carbon_intensity": spec}})
    _outage(ctx, "2023-03-02T06:00:00Z", "2023-03-02T09:00:00Z")
    _outage(ctx, "2023-03-03T00:00:00Z", "2023-03-04T00:00:00Z")
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 3, 1), (2023, 3, 4)), as_of=utc(2023, 3, 4, 1))
    assert result.held_days == ["2023-03-03"], "an empty day has nothing to publish; only the partial one is published"
    by_day = {e.day: e for e in result.extents}
    assert (by_day["2023-03-02"].disposition, by_day["2023-03-03"].disposition) == ("published_partial", "empty")
    silver = load_table(ctx.catalog, "silver.carbon_intensity")
    assert wap.read_days(silver, [utc(2023, 3, 2)]).num_rows == 42
    flags = json.loads(silver.current_snapshot().summary.additional_properties[PARTIAL_PROPERTY])  # type: ignore[union-attr]
    assert flags == {"2023-03-02": ["day_has_48_slots"]}
    found = {(f.cause_key, f.severity, f.partition) for f in findings_from_run(result, silver="silver.carbon_intensity")}
    assert ("day_partial", "warning", "2023-03-02") in found and ("day_incomplete", "critical", "2023-03-03") in found


def test_diagnosis_names_a_unit_change_by_its_ratio_to_history(ctx: PlatformContext) -> None:
    run_pipeline(ctx, "carbon_intensity", window((2023, 2, 20), (2023, 3, 2)), as_of=utc(2023, 3, 2, 1))
    ctx.faults.inject(
        faults.SourceFault(
            kind="unit_change",
            source="carbon_intensity",
            field="intensity.actual",
            value=1000,  # type: ignore[arg-type]
            start="2023-03-02T12:00:00Z",
            end="2023-03-02T15:00:00Z",
        )
    )
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 3, 2), (2023, 3, 3)), as_of=utc(2023, 3, 3, 1))
    [finding] = [f for f in findings_from_run(result, silver="silver.carbon_intensity") if "actual_positive_and_physical" in f.cause_key]
    incident, _ = ctx.incidents.report(finding, now=utc(2023, 3, 3, 1))
    diagnosis = diagnose(ctx, incident, utc(2023, 3, 3, 1))
    assert diagnosis.cause == "unit_change" and diagnosis.confidence >= 0.7
    assert "actual arrives at" in diagnosis.summary and "x its usual level" in diagnosis.summary


def test_diagnosis_tells_a_long_outage_from_late_data(ctx: PlatformContext) -> None:
    d0 = datetime(2023, 3, 2, tzinfo=UTC)
    partial = day_extent(d0, _slots(d0, 0, 40), cadence_minutes=30, disposition="held")
    finding = Finding(
        kind="completeness", severity="critical", table="silver.carbon_intensity", cause_key="day_incomplete",
        partition="2023-03-02", title="day held back", extent=Extent(days=(partial,)),
    )  # fmt: skip
    incident, _ = ctx.incidents.report(finding, now=d0 + timedelta(days=1, hours=2))
    assert diagnose(ctx, incident, d0 + timedelta(days=1, hours=2)).cause == "late_data"
    assert diagnose(ctx, incident, d0 + timedelta(days=3)).cause == "source_outage"


def test_a_foreach_step_plans_one_call_per_range_and_saves_every_result() -> None:
    book = RunbookSpec.model_validate(
        {
            "name": "ranges",
            "kinds": ["completeness"],
            "steps": [
                {
                    "tool": names.BACKFILL_RANGE,
                    "foreach": "ranges",
                    "args": {"pipeline": "p", "start": "{item.0}", "end": "{item.1}"},
                    "save": "runs",
                },
                {"when": "runs", "finish": "resolved", "note": "ran {runs.1.status}"},
            ],
        }
    )
    planner = RunbookPlanner({"ranges": book})
    vars = {"ranges": [["2023-03-02", "2023-03-04"], ["2023-03-06", "2023-03-07"]]}
    state = PlanningState(thread_id="t", mode="incident", incident={"kind": "completeness"}, context={"vars": vars})
    first = planner.plan(state)
    assert [c.arguments for c in first.calls] == [{"pipeline": "p", "start": "2023-03-02", "end": "2023-03-04"}]
    turns = [Turn(call=first.calls[0], decision="allow", status="ok", result={"status": "succeeded"})]
    second = planner.plan(state.model_copy(update={"turns": turns, "step": 1}))
    assert [c.arguments for c in second.calls] == [{"pipeline": "p", "start": "2023-03-06", "end": "2023-03-07"}]
    turns.append(Turn(call=second.calls[0], decision="allow", status="ok", result={"status": "quarantined"}))
    done = planner.plan(state.model_copy(update={"turns": turns, "step": 2}))
    assert done.outcome == "resolved" and done.message.endswith("ran quarantined")
    assert isinstance(first.calls[0], ProposedCall)


def test_the_agent_journals_its_diagnosis_and_reports_the_whole_extent(ctx: PlatformContext) -> None:
    from agent.report import ConsoleReporter
    from agent.runtime import Agent
    from policies.audit import AuditLog

    now = utc(2023, 10, 24, 1)
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 10, 19), (2023, 10, 23)), as_of=now)
    opened = {ctx.incidents.report(f, now=now)[0].id for f in findings_from_run(result, silver="silver.carbon_intensity")}
    [incident_id] = [i for i in opened if ctx.incidents.get(i).kind == "completeness"]
    assert ctx.incidents.get(incident_id).extent.day_names == ["2023-10-20", "2023-10-21", "2023-10-22"]  # type: ignore[union-attr]
    lines: list[str] = []
    agent = Agent(ctx, clock=lambda: now, reporter=ConsoleReporter(lines.append))
    try:
        outcome = agent.handle_incident(incident_id)
    finally:
        agent.close()
    assert outcome.outcome == "escalated"
    assert "91 half-hours missing 2023-10-20 22:00–2023-10-22 19:00" in outcome.message
    assert "2023-10-20 (44 of 48 slots) and 2023-10-22 (9 of 48 slots) held back" in outcome.message
    [journal] = AuditLog(ctx.ledger).diagnoses(incident_id=incident_id)
    assert journal.cause == "source_outage" and any("91 half-hours" in fact for fact in journal.evidence)
    assert any("diagnosis: source_outage" in line for line in lines)
    assert [c for c, _ in [(e.tool, e.status) for e in AuditLog(ctx.ledger).entries(incident_id=incident_id)] if c == names.REFETCH_RANGE]


def test_the_hour_skipped_by_the_spring_clock_change_is_named_as_such() -> None:
    """One hour missing at 01:00 UTC on 26 March 2023 is what a source labelling Europe/London time as UTC leaves;
    the same gap a day earlier, or on the autumn change (an hour repeats, none is skipped), is only a gap."""

    def gap(day: str, hours: int = 1) -> str:
        start = datetime.fromisoformat(f"{day}T01:00:00+00:00")
        missing = SlotRange(start=start, end=start + timedelta(hours=hours))
        extent = DayExtent(day=day, cadence_minutes=30, expected=48, present=48 - 2 * hours, missing=(missing,), disposition="held")
        return Extent(days=(extent,)).describe_missing()

    assert gap("2023-03-26") == (
        "2 half-hours missing 2023-03-26 01:00–01:30 (the hour Europe/London skipped when its clocks went forward: a source "
        "that labels local time as UTC leaves exactly this gap, and its later slots an hour off)"
    )
    assert gap("2023-03-25") == "2 half-hours missing 2023-03-25 01:00–01:30"
    assert gap("2023-10-29") == "2 half-hours missing 2023-10-29 01:00–01:30"
    assert "clocks went forward" not in gap("2023-03-26", hours=2), "two hours missing is more than the clock change"


def test_a_fixable_stretch_longer_than_a_backfill_is_offered_in_pieces_the_policy_can_allow() -> None:
    from datetime import date, timedelta

    from pipelines.source_extent import PIECE_DAYS, _ranges

    days = [(date(2023, 3, 2) + timedelta(days=i)).isoformat() for i in range(40)]
    assert _ranges(days) == [["2023-03-02", "2023-04-02"], ["2023-04-02", "2023-04-11"]]
    assert (date(2023, 4, 2) - date(2023, 3, 2)).days == PIECE_DAYS
    assert _ranges(["2023-03-02", "2023-03-03", "2023-03-05"]) == [["2023-03-02", "2023-03-04"], ["2023-03-05", "2023-03-06"]]
