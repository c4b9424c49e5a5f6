"""The runbook planner end to end on real data: each runbook's fix or escalation, chat, and the serve hand-off."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.report import ConsoleReporter
from agent.runbook import holds, load_runbooks, render
from agent.runtime import Agent
from config.errors import DefinitionError
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from policies.audit import AuditLog
from tests.conftest import REPO, operator, utc, window
from tools.registry import REGISTRY


def _incidents(ctx: PlatformContext, pipeline: str, start: tuple[int, ...], end: tuple[int, ...], now: object) -> list[int]:
    result = run_pipeline(ctx, pipeline, window(start, end), as_of=now)  # type: ignore[arg-type]
    ids = []
    for finding in findings_from_run(result, silver=ctx.inventory.pipeline(pipeline).silver):
        incident, opened = ctx.incidents.report(finding, now=now)  # type: ignore[arg-type]
        if opened:
            ids.append(incident.id)
    return ids


def _agent(ctx: PlatformContext, now: object, lines: list[str] | None = None) -> Agent:
    return Agent(ctx, clock=lambda: now, reporter=ConsoleReporter((lines if lines is not None else []).append))  # type: ignore[arg-type,return-value]


def _tools_called(ctx: PlatformContext, incident_id: int) -> list[tuple[str, str]]:
    return [(e.tool, e.status) for e in AuditLog(ctx.ledger).entries(incident_id=incident_id)]


# -- the runbooks file -----------------------------------------------------------------------------------


def test_the_shipped_runbooks_load_and_cover_the_issue_kinds() -> None:
    books = load_runbooks(REPO / "config" / "runbooks.yaml", tools=set(REGISTRY))
    kinds = {k for b in books.values() for k in b.kinds}
    assert {"validation", "completeness", "freshness", "source_failure", "schema_drift", "bad_publish", "volume", "value_anomaly"} <= kinds


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("runbooks:\n  a:\n    kinds: [x]\n    steps:\n      - tool: nuke_everything\n", "unknown tool 'nuke_everything'"),
        (
            "runbooks:\n  a:\n    kinds: [x]\n    steps: [{finish: resolved}]\n  b:\n    kinds: [x]\n    steps: [{finish: resolved}]\n",
            "claimed by runbooks 'a' and 'b'",
        ),
        ("runbooks:\n  a:\n    kinds: [x]\n    steps: [{tool: list_runs, finish: resolved}]\n", "either `tool` or `finish`"),
        ("runbooks:\n  a:\n    kinds: [x]\n    stepz: []\n", "is invalid"),
    ],
)
def test_bad_runbooks_are_refused_when_loading(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "runbooks.yaml"
    path.write_text(body)
    with pytest.raises(DefinitionError, match=message):
        load_runbooks(path, tools=set(REGISTRY))


def test_templates_and_conditions() -> None:
    scope = {"incident": {"id": 7, "table": "silver.weather"}, "source": {"missing": 0, "verdict": "lacks"}, "verification": {}}
    assert render({"incident_id": "{incident.id}", "text": "on {incident.table}: {source.verdict}"}, scope) == {
        "incident_id": 7,
        "text": "on silver.weather: lacks",
    }
    assert render("{nothing.here}", scope) is None and render("x {nothing}", scope) == "x ?"
    assert holds("source.missing == 0", scope) and not holds("source.missing > 0", scope)
    assert holds("not verification.passed", scope) and not holds("verification.passed", scope)
    assert holds("source.missing == 0 and not verification.passed", scope) and not holds(
        "source.missing == 0 and verification.passed", scope
    )
    with pytest.raises(DefinitionError, match="is not"):
        holds("source.missing ~ 3", scope)
    quoted = {"evidence": {"note": "rain and wind"}, "ok": True}
    assert holds("evidence.note == 'rain and wind' and ok", quoted), "an 'and' inside quotes is part of the value"
    assert not holds("evidence.note == 'rain and wind' and not ok", quoted)
    runs = {"item": {"run_id": "r2"}, "evidence": {"bad_run_id": "r1"}}
    assert holds("item.run_id != {evidence.bad_run_id}", runs), "{path} on the right is that path's value, not a literal"
    assert not holds("item.run_id == {evidence.bad_run_id}", runs)


def test_a_foreach_step_calls_only_for_the_items_its_condition_admits() -> None:
    from agent.runbook import RunbookStepSpec, _items

    step = RunbookStepSpec(tool="rerun_window", foreach="rollback.runs_undone", only="item.run_id != {evidence.bad_run_id}")
    scope = {"rollback": {"runs_undone": [{"run_id": "bad"}, {"run_id": "later"}]}, "evidence": {"bad_run_id": "bad"}}
    assert _items(step, scope) == [{"run_id": "later"}]


def test_a_malformed_condition_fails_when_the_runbooks_load(tmp_path: Path) -> None:
    book = tmp_path / "runbooks.yaml"
    book.write_text("runbooks:\n  r:\n    kinds: [validation]\n    steps:\n      - when: source.missing ~ 3\n        finish: escalated\n")
    with pytest.raises(DefinitionError, match=r"(?s)runbooks file .* is invalid: .*steps.0.when.*condition 'source.missing ~ 3' is not"):
        load_runbooks(book)


# -- the runbooks on real data ----------------------------------------------------------------------------


def test_real_outage_day_is_escalated_because_the_source_lacks_it(ctx: PlatformContext) -> None:
    now = utc(2023, 10, 23, 1)
    ids = _incidents(ctx, "carbon_intensity", (2023, 10, 21), (2023, 10, 22), now)
    agent = _agent(ctx, now)
    try:
        incident = next(i for i in (ctx.incidents.get(n) for n in ids) if i.kind == "completeness")
        outcome = agent.handle_incident(incident.id)
    finally:
        agent.close()
    assert outcome.outcome == "escalated"
    assert (
        "still lacks data for silver.carbon_intensity: 48 half-hours missing 2023-10-21 00:00–23:30" in outcome.message
        and "runbook planner" in outcome.message
    )
    assert "Cause: source outage" in outcome.message
    assert ctx.incidents.get(incident.id).status == "escalated"
    assert ("backfill_range", "ok") not in _tools_called(ctx, incident.id), "no write when the source cannot fill the gap"


def test_late_data_is_backfilled_verified_and_resolved(ctx: PlatformContext) -> None:
    ctx.faults.inject(
        faults.SourceFault(kind="late_slots", source="carbon_intensity", start=utc(2023, 1, 5, 12), end=utc(2023, 1, 5, 18), times=1)
    )
    now = utc(2023, 1, 6, 1)
    ids = _incidents(ctx, "carbon_intensity", (2023, 1, 5), (2023, 1, 6), now)
    held = [i for i in (ctx.incidents.get(n) for n in ids) if i.kind == "completeness"]
    assert [i.partition for i in held] == ["2023-01-05"]
    silver = load_table(ctx.catalog, "silver.carbon_intensity")
    assert wap.read_days(silver, [utc(2023, 1, 5)]).num_rows == 0
    agent = _agent(ctx, now)
    try:
        outcome = agent.handle_incident(held[0].id)
    finally:
        agent.close()
    assert outcome.outcome == "resolved", outcome.message
    silver.refresh()
    assert wap.read_days(silver, [utc(2023, 1, 5)]).num_rows == 48
    entries = AuditLog(ctx.ledger).entries(incident_id=held[0].id)
    backfill = next(e for e in entries if e.tool == "backfill_range")
    assert (backfill.decision, backfill.rule, backfill.status) == ("allow", "listed_writes", "ok")
    assert ctx.incidents.get(held[0].id).status == "resolved"


def test_transient_failure_is_rerun_and_resolved(ctx: PlatformContext) -> None:
    ctx.faults.inject(faults.SourceFault(kind="transient_error", source="carbon_intensity", times=1))
    now = utc(2023, 1, 3, 1)
    ids = _incidents(ctx, "carbon_intensity", (2023, 1, 1), (2023, 1, 3), now)
    failure = ctx.incidents.get(ids[0])
    assert failure.kind == "source_failure" and failure.severity == "warning"
    agent = _agent(ctx, now)
    try:
        outcome = agent.handle_incident(failure.id)
    finally:
        agent.close()
    assert outcome.outcome == "resolved"
    assert ("rerun_window", "ok") in _tools_called(ctx, failure.id)
    assert wap.read_days(load_table(ctx.catalog, "silver.carbon_intensity"), [utc(2023, 1, 1), utc(2023, 1, 2)]).num_rows == 96


def test_schema_drift_pauses_the_pipeline_and_escalates_with_the_diff(ctx: PlatformContext) -> None:
    ctx.faults.inject(faults.SourceFault(kind="rename_field", source="carbon_intensity", field="intensity.actual", new_name="measured"))
    now = utc(2023, 1, 3, 1)
    ids = _incidents(ctx, "carbon_intensity", (2023, 1, 1), (2023, 1, 3), now)
    drift = next(i for i in (ctx.incidents.get(n) for n in ids) if i.kind == "schema_drift")
    agent = _agent(ctx, now)
    try:
        outcome = agent.handle_incident(drift.id)
    finally:
        agent.close()
    assert outcome.outcome == "escalated" and "measured" in outcome.message
    assert ctx.control.is_paused("carbon_intensity")


def test_a_second_handling_of_a_finished_incident_changes_nothing(ctx: PlatformContext) -> None:
    now = utc(2023, 1, 28)
    ids = _incidents(ctx, "carbon_intensity", (2023, 1, 26), (2023, 1, 27), now)
    agent = _agent(ctx, now)
    try:
        first = agent.handle_incident(ids[0])
        calls = len(AuditLog(ctx.ledger).entries())
        second = agent.handle_incident(ids[0])
    finally:
        agent.close()
    assert first.outcome == second.outcome == "resolved"
    assert len(AuditLog(ctx.ledger).entries()) == calls


# -- chat with the runbook planner ----------------------------------------------------------------------------


def test_chat_answers_questions_and_routes_actions_through_policy(ctx: PlatformContext) -> None:
    now = utc(2023, 1, 28, 9)
    _incidents(ctx, "carbon_intensity", (2023, 1, 25), (2023, 1, 28), now)
    lines: list[str] = []
    agent = _agent(ctx, now, lines)
    try:
        value = agent.chat("chat-a", "what was the carbon intensity yesterday at 18:00?", user=operator())
        assert value.outcome == "answered" and "ts=2023-01-27T18:00:00+00:00" in value.message and "actual=249.0" in value.message
        opened = agent.chat("chat-a", "what is open?", user=operator())
        assert "unresolved incident(s)" in opened.message and "actual_reported_after_slot" in opened.message
        refused = agent.chat("chat-b", "backfill carbon_intensity from 2023-01-01 to 2023-03-01", user=operator())
        assert refused.outcome == "answered" and "refused" in refused.message and "31-day limit" in refused.message
        assert not [r for r in ctx.ledger.runs(limit=100) if r.window_start == utc(2023, 1, 1)]
        asked = agent.chat("chat-c", "rollback gold.carbon_intensity_hourly to 1", user=operator())
        assert asked.status == "done" and "rollback_table" in asked.message  # an unknown snapshot is refused by the tool's target check
        unknown = agent.chat("chat-d", "tell me a joke", user=operator())
        assert "runbook planner" in unknown.message and "DATAOPS_LLM_BASE_URL" in unknown.message
    finally:
        agent.close()


def test_chat_waits_for_a_pending_approval_before_a_new_turn(ctx: PlatformContext) -> None:
    now = utc(2023, 1, 28, 9)
    _incidents(ctx, "carbon_intensity", (2023, 1, 25), (2023, 1, 27), now)
    snapshot = load_table(ctx.catalog, "gold.carbon_intensity_hourly").current_snapshot()
    assert snapshot is not None
    agent = _agent(ctx, now)
    try:
        asked = agent.chat("chat-r", f"rollback gold.carbon_intensity_hourly to {snapshot.snapshot_id}", user=operator())
        assert asked.status == "waiting" and asked.approval_id
        busy = agent.chat("chat-r", "what is open?", user=operator())
        assert busy.status == "busy" and asked.approval_id in busy.message
        agent.decide(asked.approval_id, approve=True, user="oncall")
        again = agent.chat("chat-r", "what is open?", user=operator())
        assert again.status == "done"
    finally:
        agent.close()


# -- serve hands incidents to the agent ------------------------------------------------------------------------


def test_serve_hands_every_new_incident_to_the_agent(ctx: PlatformContext) -> None:
    from agent.service_hook import AgentExtension
    from pipelines.clock import ReplayClock
    from pipelines.service import Service

    now = utc(2023, 1, 28)
    service = Service(ctx, clock=ReplayClock(start=now, speed=1.0))
    lines: list[str] = []
    extension = AgentExtension(service, reporter=ConsoleReporter(lines.append))
    service.extensions = [extension]
    try:
        assert service.run_window("carbon_intensity", utc(2023, 1, 26), utc(2023, 1, 27))
        deadline = time.monotonic() + 120
        while not extension.idle() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        extension.stop()
    incident = ctx.incidents.list(status=None)[0]
    assert incident.status == "resolved", lines
    assert any("incident 1 resolved" in line for line in lines)


def test_memory_holds_the_runbooks_and_what_the_agent_learned(ctx: PlatformContext) -> None:
    now = utc(2023, 1, 28)
    ids = _incidents(ctx, "carbon_intensity", (2023, 1, 26), (2023, 1, 27), now)
    agent = _agent(ctx, now)
    try:
        agent.handle_incident(ids[0])
        memory = agent.memory()
        assert memory.count("runbook") == len(load_runbooks(REPO / "config" / "runbooks.yaml"))
        learned = memory.get(f"incident-{ids[0]}")
        assert learned is not None and learned.outcome.startswith("resolved") and learned.table == "silver.carbon_intensity"
        hits = memory.search("actual intensity missing for several slots on silver.carbon_intensity", k=3, kind="incident")
        assert hits and hits[0].record.id == f"incident-{ids[0]}"
        books = memory.search("the source renamed a field and the payload no longer matches the contract", k=1, kind="runbook")
        assert books[0].record.id == "runbook-schema_drift"
    finally:
        agent.close()
