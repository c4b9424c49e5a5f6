"""Findings a finished run carries: failures, held days, quarantined rows and schema drift."""

from __future__ import annotations

from datetime import datetime

from pipelines.extent import DayExtent, Extent
from pipelines.incidents import Finding
from pipelines.run_result import RunResult


def _day_start(day: str) -> datetime:
    return datetime.fromisoformat(day + "T00:00:00+00:00")


def findings_from_run(result: RunResult, *, silver: str) -> list[Finding]:
    findings: list[Finding] = []
    if result.status == "failed":
        error_type = (result.error or "Error").split(":", 1)[0]
        transient = result.error_kind == "transient"
        findings.append(
            Finding(
                kind="source_failure" if "Source" in error_type or "Payload" in error_type else "pipeline_failure",
                severity="warning" if transient else "critical",
                table=silver,
                cause_key=f"{result.pipeline}:{error_type}",
                title=f"{result.pipeline} run failed: {error_type}",
                occurred_at=result.window_start,
                evidence={
                    "run_id": result.run_id,
                    "error": result.error,
                    "window": [result.window_start.isoformat(), result.window_end.isoformat()],
                },
                run_id=result.run_id,
            )
        )
    for group in result.quarantine:
        if group.expectation == "schema_contract":
            findings.append(
                Finding(
                    kind="schema_drift",
                    severity="critical",
                    table=group.target_table,
                    cause_key=f"{result.pipeline}:schema_contract",
                    title=f"{result.pipeline}: the source payload no longer matches the declared contract",
                    occurred_at=group.first_ts,
                    evidence={"run_id": result.run_id, "detail": "; ".join(dict.fromkeys(s.split(": ", 1)[-1] for s in group.sample))},
                    run_id=result.run_id,
                )
            )
        elif group.scope == "row":
            findings.append(
                Finding(
                    kind="validation",
                    severity="warning",
                    table=group.target_table,
                    cause_key=group.expectation,
                    title=f"{group.target_table}: {group.rows} row(s) quarantined by {group.expectation}",
                    tally=group.rows,
                    tally_title=f"{group.target_table}: {{total}} row(s) quarantined by {group.expectation}",  # "{total}" stays
                    occurred_at=group.first_ts,
                    evidence={
                        "run_id": result.run_id,
                        "rows": group.rows,
                        "first": _iso(group.first_ts),
                        "last": _iso(group.last_ts),
                        "sample": group.sample,
                    },
                    run_id=result.run_id,
                )
            )
    extents = {e.day: e for e in result.extents}
    for day in result.held_days:
        extent = extents.get(day)
        findings.append(
            Finding(
                kind="completeness",
                severity="critical",
                table=silver,
                cause_key="day_incomplete",
                partition=day,
                title=f"{silver}: day {day} held back ({_what(extent) if extent else 'incomplete or empty'})",
                occurred_at=_day_start(day),
                evidence={"run_id": result.run_id, "day": day} | ({"extent": extent.describe_day()} if extent else {}),
                extent=Extent(days=(extent,)) if extent else None,
                run_id=result.run_id,
            )
        )
    for extent in result.extents:
        if extent.disposition == "published_partial":
            findings.append(
                Finding(
                    kind="completeness",
                    severity="warning",
                    table=silver,
                    cause_key="day_partial",
                    partition=extent.day,
                    title=f"{silver}: day {extent.day} published partial ({_what(extent)}), flagged in the snapshot",
                    occurred_at=_day_start(extent.day),
                    evidence={"run_id": result.run_id, "day": extent.day, "extent": extent.describe_day()},
                    extent=Extent(days=(extent,)),
                    run_id=result.run_id,
                )
            )
    return findings


def _what(extent: DayExtent) -> str:
    if extent.present == 0:
        return f"empty: 0 of {extent.expected} slots"
    return f"{extent.present} of {extent.expected} slots; {extent.describe_day()}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
