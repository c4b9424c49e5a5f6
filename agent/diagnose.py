"""Diagnosis: before planning, name the incident's cause from its evidence, with a confidence and the facts behind it.

    source outage · late data · transient source failure · pipeline bug · schema drift · unit or scale
    change · duplicates with changed values · clock shift · bad publish · bad values · expected behaviour · unknown

The rules read what the platform already holds (the incident and its extent, the quarantine rows a run held,
bronze, silver's recent history, whether the pipeline is paused); nothing is fetched and nothing is written.
The runbooks key on `diagnosis.cause`, the report and the agent's memory carry it, and the audit journal
records it. A ratio to history decides a unit change (values 1000x their median are grams read as
milligrams, not weather); a day held back because its run quarantined the payload for breaking the contract
is schema drift, not late data.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyiceberg.expressions import EqualTo

from agent.clock_shift import ClockShift, find_shift
from config.errors import DataOpsError
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.extent import Extent
from pipelines.incidents import Incident
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.ledger import as_utc
from tools.schedule import paused_note

log = logging.getLogger(__name__)

Cause = Literal[
    "source_outage",
    "late_data",
    "transient_source_failure",
    "pipeline_bug",
    "schema_drift",
    "unit_change",
    "duplicates_changed",
    "clock_shift",
    "bad_publish",
    "bad_values",
    "expected_behaviour",
    "unknown",
]
CAUSES: tuple[str, ...] = Cause.__args__  # type: ignore[attr-defined]
HISTORY_DAYS = 14
SCALE_RATIO = 20.0  # values this many times their history's median (or this many times smaller): a unit or scale change
TENFOLD_RATIO = 5.0  # nearer than SCALE_RATIO, a unit change only at a power of ten (within 12 %) of varying values
SHIFT_SEARCH_DAYS = 31  # how far from changed duplicates the gap of a clock shift is looked for
LATE_HOURS = 6.0  # a day that ended less than this long ago and lacks slots is more likely late than out
TRANSIENT_MARKERS = ("Transient", "503", "502", "504", "500", "429", "timed out", "Timeout", "RateLimited", "Connection")


class Diagnosis(BaseModel):
    """The cause the agent settled on before planning, with what it rests on."""

    model_config = ConfigDict(frozen=True)

    cause: Cause
    confidence: float = Field(ge=0.0, le=1.0)
    summary: str = Field(description="One sentence a person can act on, without its full stop (reports add it)")
    evidence: list[str] = Field(default_factory=list, description="The facts behind it, each with its numbers")
    extent: Extent | None = None

    @field_validator("summary")
    @classmethod
    def _no_full_stop(cls, value: str) -> str:
        # Reports end the sentence themselves ("Cause: ...: {summary}."); a summary quoting a source's
        # message that ends in a full stop would otherwise print two.
        return value.rstrip().rstrip(".").rstrip()

    def line(self) -> str:
        return f"{self.cause.replace('_', ' ')} ({self.confidence:.0%}): {self.summary}"


def diagnose(ctx: PlatformContext, incident: Incident, now: datetime) -> Diagnosis:
    """Classify the incident's cause; a failing read lowers the confidence, never stops the agent."""
    rule = _RULES.get(incident.kind, _unknown)
    try:
        return rule(ctx, incident, now)
    except DataOpsError as exc:
        log.warning("diagnosis of incident %d could not read what it needed: %s", incident.id, exc)
        return Diagnosis(cause="unknown", confidence=0.2, summary=f"could not read the evidence: {exc}", extent=incident.extent)


def _latest(incident: Incident) -> dict[str, Any]:
    last = incident.evidence[-1] if incident.evidence else {}
    return last if isinstance(last, dict) else {}


def _schema_drift(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    detail = str(_latest(incident).get("detail") or incident.title)
    return Diagnosis(
        cause="schema_drift",
        confidence=0.95,
        summary=f"the source payload no longer matches the declared contract: {detail}",
        evidence=[detail],
    )


def _run_failure(_ctx: PlatformContext, incident: Incident, _now: datetime) -> Diagnosis:
    error = str(_latest(incident).get("error") or incident.title)
    if incident.kind == "source_failure" and any(m in error for m in TRANSIENT_MARKERS):
        return Diagnosis(
            cause="transient_source_failure",
            confidence=0.8,
            summary="the source failed in a way that usually passes (server error, rate limit or timeout); retrying with backoff should finish the job",
            evidence=[error[:300]],
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


def _completeness(ctx: PlatformContext, incident: Incident, now: datetime) -> Diagnosis:
    drift = _held_by_drift(ctx, incident)
    if drift is not None:
        return drift
    missing = _missing_slots(ctx, incident)
    if missing is not None:
        # A gap and a collision of one length are one moved clock (agent/clock_shift.py); all slots held twice, changed duplicates.
        shift = find_shift(missing.slots, {r["ts"] for r in missing.twice}, missing.cadence)
        found = _clock_shift(shift, missing.twice, missing.extent) or _missing_as_duplicates(missing)
        if found is not None:
            return found
    extent = incident.extent
    if incident.kind == "completeness" and extent is not None and extent.days and not extent.missing_count():
        return _held_with_every_slot(ctx, incident, extent)
    if incident.kind == "freshness" or extent is None or not extent.days:
        evidence = [incident.title]
        return Diagnosis(cause="late_data", confidence=0.5, summary=f"newer data has not arrived: {incident.title}", evidence=evidence)
    last_end = datetime.fromisoformat(extent.days[-1].day).replace(tzinfo=UTC) + timedelta(days=1)
    hours_since = (now - last_end).total_seconds() / 3600
    evidence = [extent.describe(), f"the last affected day ended {hours_since:.1f} h before the platform clock"]
    if 0 <= hours_since < LATE_HOURS and all(d.present > 0 for d in extent.days):
        return Diagnosis(
            cause="late_data",
            confidence=0.6,
            summary=f"slots of a day that ended {hours_since:.1f} h ago have not arrived yet: {extent.describe_missing()}",
            evidence=evidence,
            extent=extent,
        )
    empty = [d.day for d in extent.days if d.present == 0]
    confidence = 0.8 if empty else 0.65
    return Diagnosis(
        cause="source_outage",
        confidence=confidence,
        summary=f"the source did not deliver {extent.describe_missing()}"
        + (f" (whole day{'s' if len(empty) > 1 else ''} {', '.join(empty)} empty)" if empty else ""),
        evidence=evidence,
        extent=extent,
    )


class _Missing(BaseModel):
    """What a completeness incident misses, slot by slot, and the quarantine rows of those slots held as changed duplicates."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    extent: Extent
    cadence: timedelta
    slots: frozenset[datetime]
    twice: list[dict[str, Any]]


def _missing_slots(ctx: PlatformContext, incident: Incident) -> _Missing | None:
    extent, pipeline = incident.extent, lineage.owning_pipeline(ctx.inventory, incident.table)
    if extent is None or not extent.days or pipeline is None:
        return None
    cadence = timedelta(minutes=extent.days[0].cadence_minutes)
    slots = frozenset(r.start + i * cadence for r in extent.missing_ranges() for i in range(r.slots(cadence)))
    if not slots:
        return None
    days = sorted({datetime.fromisoformat(d.day).replace(tzinfo=UTC) for d in extent.days})
    held = _held_twice(ctx, ctx.inventory.pipeline(pipeline).quarantine, incident.table, days)
    return _Missing(extent=extent, cadence=cadence, slots=slots, twice=[r for r in held if r["ts"] in slots])


def _shift_before_duplicates(ctx: PlatformContext, incident: Incident, pipeline: str, rows: list[dict[str, Any]]) -> Diagnosis | None:
    """A clock shift, when changed duplicates follow (or precede) a gap of their own length that a completeness
    incident of the same table records within SHIFT_SEARCH_DAYS, with nothing else missing between.

    The gap is read from those incidents' extents, not from the table: a day a run holds back for its gap is
    missing from the table whole, while the extent names the slots the source did not send."""
    spec = ctx.inventory.pipeline(pipeline)
    cadence = timedelta(minutes=ctx.inventory.source(spec.source).cadence_minutes)
    twice = {r["ts"] for r in rows if r["ts"] is not None and "conflicting_duplicate" in str(r["expectation"])}
    if not twice:
        return None
    reach = timedelta(days=SHIFT_SEARCH_DAYS)
    missing = set(twice)
    for other in ctx.incidents.list(limit=500):
        if other.table != incident.table or other.kind != "completeness" or other.extent is None or not other.extent.days:
            continue
        step = timedelta(minutes=other.extent.days[0].cadence_minutes)
        for r in other.extent.missing_ranges():
            missing.update(t for t in (r.start + i * step for i in range(r.slots(step))) if abs(t - min(twice)) <= reach)
    return _clock_shift(find_shift(missing, twice, cadence), rows, None)


def _clock_shift(shift: ClockShift | None, held: list[dict[str, Any]], extent: Extent | None) -> Diagnosis | None:
    if shift is None:
        return None
    reason = shift.likely_reason()
    return Diagnosis(
        cause="clock_shift",
        confidence=0.85 if reason else 0.7,
        summary=shift.describe() + (f" (likely {reason})" if reason else ""),
        evidence=[
            f"{len(shift.gap)} slot(s) missing at one end of the span and {len(shift.collision)} slot(s) at the other arriving twice "
            "with different values, every slot between present",
            *_quarantine_facts([r for r in held if r["ts"] in set(shift.collision)]),
        ],
        extent=extent,
    )


def _held_twice(ctx: PlatformContext, quarantine: str, table: str, days: list[datetime]) -> list[dict[str, Any]]:
    """Quarantine rows of `table` on `days` held because their slot arrived twice with different values."""
    held = wap.read_days(load_table(ctx.catalog, quarantine), days).to_pylist()
    return [r for r in held if r["target_table"] == table and "conflicting_duplicate" in str(r["expectation"])]


def _missing_as_duplicates(missing: _Missing) -> Diagnosis | None:
    """Changed duplicates, when every slot a completeness incident misses is held in quarantine as a conflicting
    duplicate: the source sent those slots, twice with different values, and neither copy was published."""
    if {r["ts"] for r in missing.twice} != missing.slots:
        return None
    extent = missing.extent
    return Diagnosis(
        cause="duplicates_changed",
        confidence=0.85,
        summary=f"the source sent the {len(missing.slots)} missing slot(s) twice with different values ({extent.describe_missing()}); "
        f"all {len(missing.twice)} copies are held in quarantine as conflicting_duplicate, so the day waits for one value per slot",
        evidence=[extent.describe(), *_quarantine_facts(missing.twice)],
        extent=extent,
    )


def _held_with_every_slot(ctx: PlatformContext, incident: Incident, extent: Extent) -> Diagnosis:
    """A day held back with none of its slots missing: the source sent more than the day's slots (records off the
    slot grid, a finer grain), so a day check refused the day as a whole. Nothing is late or lost; a backfill
    fetches the same records."""
    pipeline = lineage.owning_pipeline(ctx.inventory, incident.table)
    days = sorted({datetime.fromisoformat(d.day).replace(tzinfo=UTC) for d in extent.days})
    held = []
    if pipeline is not None:
        quarantine = load_table(ctx.catalog, ctx.inventory.pipeline(pipeline).quarantine)
        held = [r for r in wap.read_days(quarantine, days).to_pylist() if r["target_table"] == incident.table]
    checks: dict[str, int] = {}
    for r in held:
        for check in str(r["expectation"]).split(","):
            checks[check] = checks.get(check, 0) + 1
    named = ", ".join(f"{check} ({n} row(s))" for check, n in sorted(checks.items(), key=lambda kv: -kv[1])) or "the day's checks"
    listed = ", ".join(d.day for d in extent.days)
    return Diagnosis(
        cause="bad_values",
        confidence=0.7,
        summary=f"{'day' if len(extent.days) == 1 else 'days'} {listed} held back although every expected slot arrived: the source sent "
        f"more records than the day has slots, which fail {named}; nothing is late, and a backfill would fetch the same records",
        evidence=[f"{d.day}: {d.present} of {d.expected} slots present" for d in extent.days] + _quarantine_facts(held),
        extent=extent,
    )


def _held_by_drift(ctx: PlatformContext, incident: Incident) -> Diagnosis | None:
    """Schema drift, when the run that held the incident's day quarantined the source payload for breaking the contract."""
    run_id = _latest(incident).get("run_id") or incident.run_id
    pipeline = lineage.owning_pipeline(ctx.inventory, incident.table)
    run = ctx.ledger.run(str(run_id)) if run_id and pipeline else None
    started = as_utc(run.window_start) if run is not None else None
    if run is None or started is None or pipeline is None:
        return None
    # A payload that breaks the contract is quarantined whole, as one row at the start of the run's window; so is
    # each record whose time cannot be placed (slot_time: no UTC offset, not a time at all).
    start = started.replace(hour=0, minute=0, second=0, microsecond=0)
    held = [
        r
        for r in wap.read_days(load_table(ctx.catalog, ctx.inventory.pipeline(pipeline).quarantine), [start]).to_pylist()
        if r["run_id"] == run.run_id
    ]
    reasons = [str(r["reason"]) for r in held if "schema_contract" in str(r["expectation"])]
    unplaced = [r for r in held if r["expectation"] == "slot_time" and r["target_table"] == incident.table]
    if not reasons and unplaced:
        return _unplaced_times(incident, run.run_id, unplaced)
    if not reasons:
        return None
    days = sorted({str(e["day"]) for e in incident.evidence if isinstance(e, dict) and e.get("day") and e.get("run_id") == run.run_id})
    days = days or [incident.partition or f"{start:%Y-%m-%d}"]
    held_days = f"day {days[0]} was" if len(days) == 1 else f"days {', '.join(days)} were"
    paused = paused_note(ctx, pipeline)
    return Diagnosis(
        cause="schema_drift",
        confidence=0.9,
        summary=f"{held_days} held back because the source payload no longer matches the declared contract "
        f"(run {run.run_id} quarantined it whole), not because data is late",
        evidence=[reasons[0], *([paused] if paused else [])],
        extent=incident.extent,
    )


def _unplaced_times(incident: Incident, run_id: str, unplaced: list[dict[str, Any]]) -> Diagnosis:
    """Schema drift in the times: the source sent the missing slots, but with times the pipeline cannot place."""
    keys = [str(r["record_key"]) for r in unplaced]
    local = all("no UTC offset" in str(r["reason"]) for r in unplaced)
    why = "times without a UTC offset (local wall-clock times, which a clock change makes ambiguous)" if local else "times it cannot read"
    return Diagnosis(
        cause="schema_drift",
        confidence=0.85,
        summary=f"the source sent {len(unplaced)} record(s) with {why}, e.g. {', '.join(repr(k) for k in keys[:2])}; run {run_id} "
        "held them in quarantine as slot_time, so the slots are not lost at the source but cannot be placed until the times carry UTC",
        evidence=[str(unplaced[0]["reason"]), *([incident.extent.describe()] if incident.extent else [])],
        extent=incident.extent,
    )


def _validation(ctx: PlatformContext, incident: Incident, now: datetime) -> Diagnosis:
    evidence = _latest(incident)
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
        return _unplaced_times(incident, str(run_id or rows[0]["run_id"]), rows)
    duplicates = _changed_duplicates(ctx, spec.bronze, days, run_id)
    shifted = _shift_before_duplicates(ctx, incident, pipeline, rows) if duplicates else None
    if shifted is not None:
        return shifted
    if duplicates:
        keys = ", ".join(duplicates[:3])
        return Diagnosis(
            cause="duplicates_changed",
            confidence=0.75,
            summary=f"the source sent {len(duplicates)} record(s) twice with different values (e.g. {keys}); every copy was quarantined as conflicting_duplicate, none published",
            evidence=[f"{len(duplicates)} record key(s) in bronze with more than one payload in run {run_id}", *_quarantine_facts(rows)],
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
    return Diagnosis(
        cause="unit_change",
        confidence=0.9 if _near_power_of_ten(ratio) else 0.7,
        summary=f"{column} arrives at {factor} {level}; {held}",
        evidence=[f"median {column} of the held rows is {factor} {reference} ({median:,.1f})", *_quarantine_facts(rows)],
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
        evidence=_quarantine_facts(rows) or [incident.title],
    )


def _bad_values(incident: Incident, rows: list[dict[str, Any]]) -> Diagnosis:
    facts = _quarantine_facts(rows) or [incident.title]
    return Diagnosis(
        cause="bad_values",
        confidence=0.6,
        summary=f"the source sent values that fail {incident.cause_key}; the failing rows are held in quarantine",
        evidence=facts,
    )


def _quarantine_facts(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    stamps = sorted(r["ts"] for r in rows if r["ts"] is not None)
    span = f" from {stamps[0]:%Y-%m-%d %H:%M} to {stamps[-1]:%H:%M}" if stamps else ""
    return [f"{len(rows)} row(s) in quarantine{span}: {str(rows[0]['reason'])[:160]}"]


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
        # Closer to history than SCALE_RATIO, a unit change still shows as varying values at a power of ten of it
        # (x10 of a November temperature); an impossible value repeated (95 °C for three hours) is not one.
        tenfold = max(ratio, 1 / ratio) >= TENFOLD_RATIO and _near_power_of_ten(ratio, within=0.05) and len(set(values)) > 1
        if (max(ratio, 1 / ratio) >= SCALE_RATIO or tenfold) and (best is None or abs(math.log(ratio)) > abs(math.log(best[1]))):
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
    evidence = _latest(incident)
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
    evidence = _latest(incident)
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
    "completeness": _completeness,
    "freshness": _completeness,
    "validation": _validation,
    "bad_publish": _bad_publish,
    "value_anomaly": _value_anomaly,
    "forecast_glitch": _forecast_glitch,
    "forecast_degraded": _forecast_degraded,
}
