"""Diagnosis: before planning, name the incident's cause from its evidence, with a confidence and the facts behind it.

    source outage · late data · transient source failure · pipeline bug · schema drift · unit or scale
    change · duplicates with changed values · clock shift · bad publish · bad values · expected behaviour · unknown

The rules read what the platform already holds (the incident and its extent, the quarantine rows a run held,
bronze, silver's recent history, whether the pipeline is paused); nothing is fetched and nothing is written.
The runbooks key on `diagnosis.cause`, the report and the agent's memory carry it, and the audit journal
records it. A ratio to history decides a unit change (values 1000x their median are grams read as
milligrams, not weather); a day held back because its run quarantined the payload for breaking the contract
is schema drift, not late data. Missing and held data (completeness, freshness) are diagnosed in
agent/diagnose_gaps.py; what a diagnosis is, in agent/diagnosis.py.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.compute as pc
from pyiceberg.expressions import EqualTo

from agent.diagnose_gaps import completeness, shift_before_duplicates, unplaced_times
from agent.diagnose_volume import volume
from agent.diagnosis import CAUSES, Cause, Diagnosis, latest, quarantine_facts
from config.errors import DataOpsError
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.incidents import Incident
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table

log = logging.getLogger(__name__)
__all__ = ["CAUSES", "Cause", "Diagnosis", "diagnose"]

HISTORY_DAYS = 14
SCALE_RATIO = 20.0  # values this many times their history's median (or this many times smaller): a unit or scale change
TENFOLD_RATIO = 5.0  # nearer than SCALE_RATIO, a unit change only at a power of ten (within 12 %) of varying values
PAYLOAD_MARKERS = ("PayloadError", "SchemaDriftError")  # the error classes of a payload that breaks the source's contract
TRANSIENT_MARKERS = ("Transient", "503", "502", "504", "500", "429", "timed out", "Timeout", "RateLimited", "Connection")


def diagnose(ctx: PlatformContext, incident: Incident, now: datetime) -> Diagnosis:
    """Classify the incident's cause; a failing read lowers the confidence, never stops the agent."""
    rule = _RULES.get(incident.kind, _unknown)
    try:
        return rule(ctx, incident, now)
    except DataOpsError as exc:
        log.warning("diagnosis of incident %d could not read what it needed: %s", incident.id, exc)
        return Diagnosis(cause="unknown", confidence=0.2, summary=f"could not read the evidence: {exc}", extent=incident.extent)


def _schema_drift(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    detail = str(latest(incident).get("detail") or incident.title)
    return Diagnosis(
        cause="schema_drift",
        confidence=0.95,
        summary=f"the source payload no longer matches the declared contract: {detail}",
        evidence=[detail],
    )


def _run_failure(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    error = str(latest(incident).get("error") or incident.title)
    if incident.kind == "source_failure" and any(m in error for m in TRANSIENT_MARKERS):
        return Diagnosis(
            cause="transient_source_failure",
            confidence=0.8,
            summary="the source failed in a way that usually passes (server error, rate limit or timeout); retrying with backoff should finish the job",
            evidence=[error[:300]],
        )
    if incident.kind == "source_failure" and any(m in error for m in PAYLOAD_MARKERS):
        # The source answered, with a payload that breaks its contract (local times, a missing key): the same
        # request gets the same payload, so it is the contract, not an outage, and re-running cannot help.
        return Diagnosis(
            cause="schema_drift",
            confidence=0.8,
            summary="the source answered with a payload the pipeline cannot read (it breaks the declared contract), so a re-run fetches the same",
            evidence=[error[:400]],
        )
    if incident.kind == "source_failure":
        return Diagnosis(
            cause="source_outage",
            confidence=0.5,
            summary="the source refused the request with an error that is not known to pass",
            evidence=[error[:300]],
        )
    return Diagnosis(
        cause="pipeline_bug",
        confidence=0.7,
        summary="the pipeline itself failed (not the source): a code or configuration fix is needed before a re-run helps",
        evidence=[error[:300]],
    )


def _validation(ctx: PlatformContext, incident: Incident, now: datetime) -> Diagnosis:
    evidence = latest(incident)
    run_id = evidence.get("run_id")
    first = str(evidence.get("first") or incident.partition or "")[:10]
    last = str(evidence.get("last") or first)[:10]
    pipeline = lineage.owning_pipeline(ctx.inventory, incident.table)
    if not pipeline or not first:
        return _bad_values(incident, [])
    spec = ctx.inventory.pipeline(pipeline)
    if evidence.get("scope") == "table" and run_id:
        return _held_whole(ctx, incident, spec.quarantine, str(run_id))
    start = datetime.fromisoformat(first).replace(tzinfo=UTC)
    span = max(0, (datetime.fromisoformat(last).replace(tzinfo=UTC) - start).days) + 1
    days = [start + timedelta(days=i) for i in range(min(span, 31))]
    held = wap.read_days(load_table(ctx.catalog, spec.quarantine), days)
    # The finding's checks (one defect can fail several: `checks` in its evidence), else its cause alone.
    checks = set(evidence.get("checks") or ()) or {incident.cause_key}
    rows = [
        r
        for r in held.to_pylist()
        if r["target_table"] == incident.table
        and (run_id is None or r["run_id"] == run_id)
        and checks & set(str(r["expectation"]).split(","))
    ]
    if rows and all(r["expectation"] == "slot_time" for r in rows):
        return unplaced_times(incident, str(run_id or rows[0]["run_id"]), rows)
    duplicates = _changed_duplicates(ctx, spec.bronze, days, run_id)
    shifted = shift_before_duplicates(ctx, incident, pipeline, rows) if duplicates else None
    if shifted is not None:
        return shifted
    if duplicates:
        keys = ", ".join(duplicates[:3])
        return Diagnosis(
            cause="duplicates_changed",
            confidence=0.75,
            summary=f"the source sent {len(duplicates)} record(s) twice with different values (e.g. {keys}); every copy was quarantined as conflicting_duplicate, none published",
            evidence=[f"{len(duplicates)} record key(s) in bronze with more than one payload in run {run_id}", *quarantine_facts(rows)],
        )
    scale = _scale_change(ctx, incident.table, [start - timedelta(days=i) for i in range(1, HISTORY_DAYS + 1)], rows)
    if scale is not None:
        return _unit_change(
            scale,
            rows,
            level="its usual level (a unit or scale change at the source)",
            held=f"all {len(rows)} affected row(s) are held in quarantine",
            reference=f"the median of the {HISTORY_DAYS} days before",
        )
    return _bad_values(incident, rows)


def _unit_change(scale: tuple[str, float, float], rows: list[dict[str, Any]], *, level: str, held: str, reference: str) -> Diagnosis:
    """A unit change: `column` arrives at `ratio` times its `reference`, a power of ten being the surest sign."""
    column, ratio, median = scale
    factor = f"{ratio:,.0f}x" if ratio >= 1 else f"1/{1 / ratio:,.0f}"
    # A unit change is a power of ten; the held rows' median against other days' only comes near it (814x for a x1000
    # of a June day): name the power of ten, with the measured ratio beside it.
    said, measured = factor, ""
    power = 10.0 ** round(math.log10(ratio))
    exact = f"{power:,.0f}x" if power >= 1 else f"1/{1 / power:,.0f}"
    if _near_power_of_ten(ratio, within=0.15) and exact != factor:
        said, measured = f"about {exact}", f", {factor} measured"
    return Diagnosis(
        cause="unit_change",
        confidence=0.9 if _near_power_of_ten(ratio) else 0.7,
        summary=f"{column} arrives at {said} {level}{measured}; {held}",
        evidence=[f"median {column} of the held rows is {factor} {reference} ({median:,.1f})", *quarantine_facts(rows)],
    )


def _held_whole(ctx: PlatformContext, incident: Incident, quarantine: str, run_id: str) -> Diagnosis:
    """A table-scope check held a run's whole batch back (a delivered file, a window): nothing of it was published.
    A unit change when its values sit SCALE_RATIO or more from what the table publishes (annual files have no
    recent days to compare with, so the whole table is the reference)."""
    held = load_table(ctx.catalog, quarantine).scan(row_filter=EqualTo("run_id", run_id)).to_arrow().to_pylist()  # type: ignore[call-arg,arg-type]
    rows = [r for r in held if r["target_table"] == incident.table and incident.cause_key in str(r["expectation"]).split(",")]
    scale = _scale_change(ctx, incident.table, None, rows)
    if scale is not None:
        return _unit_change(
            scale,
            rows,
            level=f"the level {incident.table} publishes (a unit or scale change in the delivery)",
            held=f"held back whole ({len(rows)} row(s))",
            reference="the table's median",
        )
    return Diagnosis(
        cause="bad_values",
        confidence=0.6,
        summary=f"the delivery fails {incident.cause_key} as a whole and is held back ({len(rows)} row(s)); a person must correct it or the check",
        evidence=quarantine_facts(rows) or [incident.title],
    )


def _bad_values(incident: Incident, rows: list[dict[str, Any]]) -> Diagnosis:
    facts = quarantine_facts(rows) or [incident.title]
    return Diagnosis(
        cause="bad_values",
        confidence=0.6,
        summary=f"the source sent values that fail {incident.cause_key}; the failing rows are held in quarantine",
        evidence=facts,
    )


def _changed_duplicates(ctx: PlatformContext, bronze: str, days: list[datetime], run_id: Any) -> list[str]:
    """Record keys that bronze holds with more than one payload on these days (from the same run, when known)."""
    table = wap.read_days(load_table(ctx.catalog, bronze), days, columns=("record_key", "payload_hash", "run_id"))
    if run_id is not None and table.num_rows:
        table = table.filter(pc.equal(table.column("run_id"), str(run_id)))
    hashes: dict[str, set[str]] = {}
    for key, digest in zip(table.column("record_key").to_pylist(), table.column("payload_hash").to_pylist(), strict=True):
        hashes.setdefault(key, set()).add(digest)
    return sorted(k for k, v in hashes.items() if len(v) > 1)


def _scale_change(
    ctx: PlatformContext, table: str, days: list[datetime] | None, rows: list[dict[str, Any]]
) -> tuple[str, float, float] | None:
    """(column, ratio of the held rows' median to history's, history's median) for the most shifted numeric column;
    history is the table's `days` on main, or all of main (None)."""
    held: dict[str, list[float]] = {}
    for r in rows:
        try:
            original = json.loads(r["original"])
        except (TypeError, ValueError):
            continue
        for k, v in original.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                held.setdefault(k, []).append(float(v))
    if not held:
        return None
    published = load_table(ctx.catalog, table)
    columns = tuple(c for c in held if c in {f.name for f in published.schema().fields})
    if not columns:
        return None
    # Only the held columns; all of main only where there are no recent days to compare with (an annual file).
    history = published.scan(selected_fields=columns).to_arrow() if days is None else wap.read_days(published, days, columns=columns)
    best: tuple[str, float, float] | None = None
    for column, values in held.items():
        if column not in history.column_names:
            continue
        past = [float(v) for v in history.column(column).to_pylist() if isinstance(v, int | float) and v is not None]
        median_past, median_now = _median(past), _median(values)
        if not past or median_past is None or median_now is None or median_past <= 0 or median_now <= 0:
            continue
        ratio = median_now / median_past
        # A unit change scales a series that still varies; one impossible value repeated (95 °C or a 9999 sentinel
        # for three hours) is not one, however far from history. Closer to history than SCALE_RATIO, a unit change
        # still shows at a power of ten of it (x10 of a November temperature).
        varies = len(set(values)) > 1
        tenfold = varies and max(ratio, 1 / ratio) >= TENFOLD_RATIO and _near_power_of_ten(ratio, within=0.05)
        scaled = ((varies or len(values) < 3) and max(ratio, 1 / ratio) >= SCALE_RATIO) or tenfold
        if scaled and (best is None or abs(math.log(ratio)) > abs(math.log(best[1]))):
            best = (column, ratio, median_past)
    return best


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _near_power_of_ten(ratio: float, within: float = 0.1) -> bool:
    exponent = math.log10(ratio)
    return abs(exponent - round(exponent)) < within and round(exponent) != 0


def _bad_publish(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    evidence = latest(incident)
    facts = [incident.title]
    scaled = incident.cause_key.startswith("distribution:")  # judged against its own history, not recomputed
    if evidence.get("good_snapshot_id"):
        facts.append(f"last snapshot {'where the day was in line' if scaled else 'that reconciled'}: {evidence['good_snapshot_id']}")
    what = (
        "publishes a day out of line with its own history (a scale change)" if scaled else "publishes values that its inputs do not support"
    )
    return Diagnosis(
        cause="bad_publish",
        confidence=0.9,
        summary=f"{incident.table} {what}; rolling back to the last good snapshot undoes it",
        evidence=facts,
    )


# Patterns a value monitor names (pipelines/monitors/models.py, day_bias.py): no clean series shows them, so the values are wrong.
_RUN_RULES = {
    "stuck": "the series repeats one value far longer than it ever has: a frozen feed or sensor (or, for a forecast "
    "error stuck at 0, a forecast column copied from the actual)",
    "repeated_day": "the series repeats the day before slot for slot, which it has never done: a stale copy published as new data",
    "keyed_change": "values several times the same series' earlier value (its previous year, or what was published "
    "for the same year): a unit, decimal or keying error in the delivery; compare the file with the source",
    "bias": "the forecast missed in one direction all day, further than on any usual day: the actual (an offset, a meter "
    "drifting away) or the forecast is off for the whole day; compare both with the source",
}


def _value_anomaly(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    evidence = latest(incident)
    if (pattern := _RUN_RULES.get(str(evidence.get("rule")))) is not None:
        return Diagnosis(cause="bad_values", confidence=0.8, summary=pattern, evidence=[incident.title])
    value, expected = evidence.get("value"), evidence.get("expected")
    if isinstance(value, int | float) and isinstance(expected, int | float) and value > 0 and expected > 0:
        ratio = value / expected
        if max(ratio, 1 / ratio) >= SCALE_RATIO:
            return Diagnosis(
                cause="unit_change",
                confidence=0.6,
                summary=f"the value is {ratio:,.1f}x what the series' model expects: a scale change",
                evidence=[incident.title],
            )
    if incident.severity == "info":
        return Diagnosis(
            cause="expected_behaviour",
            confidence=0.6,
            summary="a known, harmless pattern of the series (recorded for the record, nothing to fix)",
            evidence=[incident.title],
        )
    return Diagnosis(
        cause="unknown",
        confidence=0.3,
        summary="the series left its calibrated range and no defect in the data explains it yet; a person should judge it",
        evidence=[incident.title],
    )


def _forecast_glitch(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    return Diagnosis(
        cause="bad_values",
        confidence=0.8,
        summary="the publisher's forecast jumped away from its neighbours and back while the actual did not: a glitch at the source, nothing to repair",
        evidence=[incident.title],
    )


def _forecast_degraded(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    return Diagnosis(
        cause="unknown",
        confidence=0.4,
        summary=(
            "our own day-ahead forecast was much worse than its usual band once measured; what was published is a record, "
            "not a defect: a person should look for a stale or defective input before the issue day, or a regime the model never saw"
        ),
        evidence=[incident.title],
    )


def _unknown(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    return Diagnosis(
        cause="unknown", confidence=0.3, summary=f"no rule names the cause of {incident.kind} incidents", evidence=[incident.title]
    )


_RULES: dict[str, Callable[[PlatformContext, Incident, datetime], Diagnosis]] = {
    "schema_drift": _schema_drift,
    "source_failure": _run_failure,
    "pipeline_failure": _run_failure,
    "completeness": completeness,
    "freshness": completeness,
    "validation": _validation,
    "bad_publish": _bad_publish,
    "value_anomaly": _value_anomaly,
    "forecast_glitch": _forecast_glitch,
    "forecast_degraded": _forecast_degraded,
    "volume": volume,
}
