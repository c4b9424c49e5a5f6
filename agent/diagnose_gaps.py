"""Diagnosis of missing and held data: why a completeness incident's slots are not in the table.

    late data · source outage · a clock shift (agent/clock_shift.py) · changed duplicates · schema drift (a
    payload or times the pipeline cannot read) · refused records (a day held with every slot present)

Each rule reads the incident's extent and the quarantine rows its runs held; the first that explains the
missing slots wins, and an outage is what is left when none does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent.clock_shift import ClockShift, find_shift
from agent.diagnosis import Diagnosis, latest, quarantine_facts
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.extent import Extent
from pipelines.incidents import Incident
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.ledger import as_utc
from tools.schedule import paused_note

SHIFT_SEARCH_DAYS = 31  # how far from changed duplicates the gap of a clock shift is looked for
LATE_HOURS = 6.0  # a day that ended less than this long ago and lacks slots is more likely late than out


def completeness(ctx: PlatformContext, incident: Incident, now: datetime) -> Diagnosis:
    drift = _held_by_drift(ctx, incident)
    if drift is not None:
        return drift
    missing = _missing_slots(ctx, incident)
    if missing is not None:
        # A gap and a collision of one length are one moved clock (agent/clock_shift.py); all slots held twice, changed duplicates.
        shift = find_shift(missing.slots, {r["ts"] for r in missing.twice}, missing.cadence)
        found = _clock_shift(shift, missing.twice, missing.extent) or _missing_as_duplicates(missing) or _missing_as_refused(missing)
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
    refused: list[dict[str, Any]]  # records of the missing slots the pipeline could not read (quarantined by conform)


def _missing_slots(ctx: PlatformContext, incident: Incident) -> _Missing | None:
    extent, pipeline = incident.extent, lineage.owning_pipeline(ctx.inventory, incident.table)
    if extent is None or not extent.days or pipeline is None:
        return None
    cadence = timedelta(minutes=extent.days[0].cadence_minutes)
    slots = frozenset(r.start + i * cadence for r in extent.missing_ranges() for i in range(r.slots(cadence)))
    if not slots:
        return None
    days = sorted({datetime.fromisoformat(d.day).replace(tzinfo=UTC) for d in extent.days})
    held = [
        r
        for r in wap.read_days(load_table(ctx.catalog, ctx.inventory.pipeline(pipeline).quarantine), days).to_pylist()
        if r["target_table"] == incident.table and r["ts"] in slots
    ]
    twice = [r for r in held if "conflicting_duplicate" in str(r["expectation"])]
    refused = [r for r in held if r["expectation"] == "conform"]
    return _Missing(extent=extent, cadence=cadence, slots=slots, twice=twice, refused=refused)


def shift_before_duplicates(ctx: PlatformContext, incident: Incident, pipeline: str, rows: list[dict[str, Any]]) -> Diagnosis | None:
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
            *quarantine_facts([r for r in held if r["ts"] in set(shift.collision)]),
        ],
        extent=extent,
    )


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
        evidence=[extent.describe(), *quarantine_facts(missing.twice)],
        extent=extent,
    )


def _missing_as_refused(missing: _Missing) -> Diagnosis | None:
    """Bad records, when every slot a completeness incident misses was sent but could not be read (a null or a
    text where the record's values belong): the source delivered them, so nothing is late or out, and a backfill
    would fetch the same records."""
    if not missing.refused or {r["ts"] for r in missing.refused} != missing.slots:
        return None
    extent = missing.extent
    return Diagnosis(
        cause="bad_values",
        confidence=0.8,
        summary=f"the source sent the {len(missing.slots)} missing slot(s) ({extent.describe_missing()}), but as records the pipeline "
        f"cannot read; {len(missing.refused)} record(s) are held in quarantine by conform, and a backfill would fetch the same records",
        evidence=[extent.describe(), *quarantine_facts(missing.refused)],
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
        evidence=[f"{d.day}: {d.present} of {d.expected} slots present" for d in extent.days] + quarantine_facts(held),
        extent=extent,
    )


def _held_by_drift(ctx: PlatformContext, incident: Incident) -> Diagnosis | None:
    """Schema drift, when the run that held the incident's day quarantined the source payload for breaking the contract."""
    run_id = latest(incident).get("run_id") or incident.run_id
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
        return unplaced_times(incident, run.run_id, unplaced)
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


def unplaced_times(incident: Incident, run_id: str, unplaced: list[dict[str, Any]]) -> Diagnosis:
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
