"""A day held back by schema drift is diagnosed as schema drift, and the report's sentences end with one full stop.

The `dataops demo` tour ends with a renamed field: the agent pauses the pipeline for the drift, and the day
the drift held back opens a completeness incident. Its cause is the drift (the run quarantined the payload
whole), not late data, and the report says so, with who paused the pipeline and why.
"""

from __future__ import annotations

import re

from agent.diagnose import Diagnosis
from agent.report import ConsoleReporter, with_cause
from agent.runtime import Agent
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from tests.conftest import utc, window

DOUBLED = re.compile(r"\.\.(\s|$)")  # a doubled full stop, not a range such as 2023-01-01..2023-01-03
SOURCE_MESSAGE = "the declared contract is from, to, intensity.actual: update the contract, or fix the source."


def test_a_summary_quoting_a_sentence_is_reported_with_one_full_stop() -> None:
    diagnosis = Diagnosis(cause="schema_drift", confidence=0.95, summary=f"the payload no longer matches: {SOURCE_MESSAGE}")
    reported = with_cause("The pipeline is paused.", diagnosis.model_dump(mode="json"))
    assert reported.endswith("or fix the source.") and not DOUBLED.search(reported)


def test_a_cause_the_actions_settled_replaces_the_diagnosis_made_before_acting() -> None:
    """A refetch that now has the slots refutes the outage guessed before acting: the report names one cause, its own."""
    from agent.report import final_text

    before = Diagnosis(cause="source_outage", confidence=0.65, summary="the source did not deliver 3 hours missing").model_dump(mode="json")
    settled = "Backfilled 2023-03-02. Cause: late data: the source published these slots after the first fetch."
    assert with_cause(settled, before) == settled
    assert with_cause("Backfilled 2023-03-02.", before).endswith("Cause: source outage (65%): the source did not deliver 3 hours missing.")
    text = final_text({"message": settled, "context": {"vars": {"diagnosis": before}}})
    assert "diagnosis before acting (the outcome above settles it): source outage (65%)" in text


def test_the_day_a_schema_drift_held_back_is_diagnosed_as_drift_not_late_data(ctx: PlatformContext) -> None:
    ctx.faults.inject(faults.SourceFault(kind="rename_field", source="carbon_intensity", field="intensity.actual", new_name="measured"))
    now = utc(2023, 1, 3, 1)
    result = run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 1, 3)), as_of=now)
    incidents = [ctx.incidents.report(f, now=now)[0] for f in findings_from_run(result, silver="silver.carbon_intensity")]
    drift = next(i for i in incidents if i.kind == "schema_drift")
    held = next(i for i in incidents if i.kind == "completeness")
    lines: list[str] = []
    agent = Agent(ctx, clock=lambda: now, reporter=ConsoleReporter(lines.append))
    try:
        paused = agent.handle_incident(drift.id)
        outcome = agent.handle_incident(held.id)
    finally:
        agent.close()
    assert paused.outcome == outcome.outcome == "escalated"
    assert (
        "Cause: schema drift (90%): days 2023-01-01, 2023-01-02 were held back because the source payload no longer matches"
        in outcome.message
    )
    assert "late data" not in outcome.message
    assert not DOUBLED.search(paused.message) and not DOUBLED.search(outcome.message)
    report = next(line for line in lines if line.startswith(f"[incident-{held.id}] incident {held.id} escalated"))
    assert "lacks contract field(s) intensity.actual" in report
    assert f"carbon_intensity is paused by agent: schema drift on silver.carbon_intensity: incident {drift.id}" in report
