"""Findings a finished run carries: failures, held days, quarantined rows, batches held back whole and schema drift."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from pipelines.extent import DayExtent, Extent
from pipelines.incidents import Finding
from pipelines.run_result import QuarantineGroup, RunResult

if TYPE_CHECKING:  # the forecast package pulls in pandas: only its result's type is needed here
    from pipelines.forecast.run import ForecastRunResult


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
    held = [g for g in result.quarantine if g.scope == "row" and g.expectation != "schema_contract"]
    findings += [_rows_held(result, event) for event in _events(held)]
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
        elif group.scope == "table":
            findings.append(_held_whole(result, group))
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


class _Event(BaseModel):
    """Row-scope quarantine groups of one run and table that share a check: one defect, one finding."""

    table: str
    by_check: dict[str, int] = Field(description="Rows held per check, most first (a row failing two counts for both)")
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    sample: list[str]

    @property
    def cause(self) -> str:
        return next(iter(self.by_check))


def _events(groups: list[QuarantineGroup]) -> list[_Event]:
    """Groups joined when they share a check: a burst of 95 °C fails temperature_physical on every row and
    temperature_changes_smoothly on its first, which is one defect, not two incidents. Groups are keyed by the
    combination of checks a row failed ("temperature_changes_smoothly,temperature_physical")."""
    components: list[list[QuarantineGroup]] = []
    for group in groups:
        names = set(group.expectation.split(","))
        joined = [
            c for c in components if c[0].target_table == group.target_table and names & {n for g in c for n in g.expectation.split(",")}
        ]
        merged = [group, *(g for c in joined for g in c)]
        components = [c for c in components if not any(c is j for j in joined)] + [merged]
    events = []
    for component in components:
        counts: dict[str, int] = {}
        # Ties go to the check named first where a row failed several: rows name their checks in suite order, so the
        # key is the same whatever order the groups come in.
        rank: dict[str, int] = {}
        for group in component:
            listed = group.expectation.split(",")
            for position, name in enumerate(listed):
                counts[name] = counts.get(name, 0) + group.rows
                if len(listed) > 1:
                    rank[name] = min(rank.get(name, position), position)
        stamps = [t for g in component for t in (g.first_ts, g.last_ts) if t is not None]
        events.append(
            _Event(
                table=component[0].target_table,
                by_check=dict(sorted(counts.items(), key=lambda kv: (-kv[1], rank.get(kv[0], len(counts)), kv[0]))),
                rows=sum(g.rows for g in component),
                first_ts=min(stamps, default=None),
                last_ts=max(stamps, default=None),
                sample=[s for g in sorted(component, key=lambda g: g.first_ts or datetime.min.replace(tzinfo=UTC)) for s in g.sample][:5],
            )
        )
    return sorted(events, key=lambda e: (e.table, e.first_ts or datetime.min.replace(tzinfo=UTC)))


def _rows_held(result: RunResult, event: _Event) -> Finding:
    checks = " and ".join(event.by_check)
    return Finding(
        kind="validation",
        severity="warning",
        table=event.table,
        cause_key=event.cause,
        title=f"{event.table}: {event.rows} row(s) quarantined by {checks}",
        tally=event.rows,
        tally_title=f"{event.table}: {{total}} row(s) quarantined by {checks}",  # "{total}" stays for the incident store
        occurred_at=event.first_ts,
        evidence={
            "run_id": result.run_id,
            "rows": event.rows,
            "checks": event.by_check,
            "first": _iso(event.first_ts),
            "last": _iso(event.last_ts),
            "sample": event.sample,
        },
        run_id=result.run_id,
    )


def _held_whole(result: RunResult, group: QuarantineGroup) -> Finding:
    """A table-scope check failed: the run's whole batch for the table (a delivered file, a window, a forecast issue)
    went to quarantine and nothing of it was published.

    Critical, where a row-scope quarantine is a warning: a few bad rows held back leave the rest of the data
    published, but a batch held whole is missing data (every row of it), like a day held back, and it stays
    missing until a person fixes the source or re-delivers the file: re-running reads the same data again."""
    span = _span(group.first_ts, group.last_ts)
    return Finding(
        kind="validation",
        severity="critical",
        table=group.target_table,
        cause_key=group.expectation,
        title=f"{group.target_table}: whole batch of {group.rows} row(s){span} held back by {group.expectation}; none published",
        tally=group.rows,
        tally_title=f"{group.target_table}: {{total}} row(s) held back whole by {group.expectation}; none published",
        occurred_at=group.first_ts,
        evidence={
            "run_id": result.run_id,
            "scope": "table",
            "rows": group.rows,
            "first": _iso(group.first_ts),
            "last": _iso(group.last_ts),
            "window": [result.window_start.isoformat(), result.window_end.isoformat()],
            "sample": group.sample,
            "published": f"nothing: {group.target_table} still shows what it showed before run {result.run_id}",
            "next_step": (
                f"Read the held rows in quarantine (run_id {result.run_id}) and why {group.expectation} exists (config/suites.yaml). "
                "If the source delivered the batch wrongly (e.g. a dropped file in other units), correct the file and drop it "
                "again; if the check is wrong, fix the suite and re-run the window. Re-running the same data holds it again."
            ),
        },
        run_id=result.run_id,
    )


def _span(first: datetime | None, last: datetime | None) -> str:
    if first is None:
        return ""
    if last is None or last.date() == first.date():
        return f" dated {first.date().isoformat()}"
    return f" dated {first.date().isoformat()} to {last.date().isoformat()}"


def _what(extent: DayExtent) -> str:
    if extent.present == 0:
        return f"empty: 0 of {extent.expected} slots"
    return f"{extent.present} of {extent.expected} slots; {extent.describe_day()}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def findings_from_forecast(result: ForecastRunResult, *, table: str) -> list[Finding]:
    """A forecast issue that failed its suite went to quarantine whole: the previous issue stays the latest published
    forecast, so readers (greenest windows, deferred upkeep) plan on an older one. A warning: nothing wrong was
    published, and the next issue is made at the next run of the pipeline it follows."""
    if result.status != "quarantined":
        return []
    checks = ", ".join(result.failed_checks) or "its suite"
    return [
        Finding(
            kind="validation",
            severity="warning",
            table=table,
            cause_key=f"forecast_issue:{result.forecast}",
            title=f"{table}: the {result.forecast} issue of {result.issued_at.isoformat()} failed {checks}; none of it published",
            occurred_at=result.issued_at,
            evidence={
                "run_id": result.run_id,
                "scope": "table",
                "rows": result.rows_quarantined,
                "first": result.issued_at.isoformat(),
                "failed_checks": result.failed_checks,
                "model": f"{result.model} {result.model_version}".strip(),
                "published": f"nothing: the previous issue stays the latest of {table}",
                "next_step": (
                    f"Read the held issue in quarantine (run_id {result.run_id}): the model ({result.model}) produced a forecast "
                    "its own checks refuse. The next issue is made at the next run; if it fails too, the model or its input needs a fix."
                ),
            },
            run_id=result.run_id,
        )
    ]
