"""Compare a day of silver with what its source serves now: the re-fetch a diagnosis asks for.

`refetch_and_diff` calls the source and conforms the records in memory the way a promotion does, but lands
nothing in bronze and touches no table. Rows are matched with `pipelines.diagnosis.diff_rows`.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from config.errors import LakehouseError
from pipelines.context import PlatformContext
from pipelines.diagnosis import SAMPLE, RowChange, day_start, diff_rows, render_key
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.sources.base import Window, dedupe_records
from pipelines.sources.registry import build_source
from pipelines.transforms.conform import conform

LINEAGE_COLUMNS = ("run_id", "fetched_at", "payload_hash")


class SourceComparison(BaseModel):
    pipeline: str
    silver: str
    day: str
    as_of: str = Field(description="The instant the source was asked about")
    expected_slots: int | None = Field(description="Slots of the day that had ended by as_of (none for file sources)")
    lacking_slots: int = Field(description="Of those, how many the source does not serve")
    source_slots: int = Field(description="Slots the source serves for the day, forecasts for later slots included")
    silver_slots: int
    missing_in_silver: list[str] = Field(description="Keys the source has and silver lacks (first 50)")
    missing_in_silver_count: int
    missing_at_source: list[str] = Field(description="Keys silver has and the source no longer serves (first 50)")
    missing_at_source_count: int
    quarantined: int = Field(description="Of the keys missing in silver, how many sit in quarantine (a re-run may hold them again)")
    source_problems: int = Field(description="Records the source served that a promotion would quarantine (contract, conform)")
    differing: int = Field(description="Keys on both sides whose values differ (later revisions at the source)")
    differing_as_held: int = Field(
        default=0,
        description="Of those, how many the source serves with the very values held in quarantine: a refused revision the "
        "source still sends, which a re-run would hold again",
    )
    missing_as_held: int = Field(
        default=0, description="Of the keys missing in silver, how many the source serves with the values held in quarantine"
    )
    sample_differences: list[RowChange]
    verdict: str


def _ended_slots(cadence_minutes: int, start: datetime, as_of: datetime) -> list[datetime]:
    """Starts of the day's slots that had ended by `as_of`."""
    step = timedelta(minutes=cadence_minutes)
    return [start + i * step for i in range(int(timedelta(days=1) / step)) if start + (i + 1) * step <= as_of]


def refetch_and_diff(ctx: PlatformContext, pipeline: str, day: date, *, as_of: datetime) -> SourceComparison:
    """Fetch `day` from the pipeline's source as known at `as_of`, conform it in memory, compare with silver.

    Source errors (SourceError and its kinds) propagate; nothing is written anywhere.
    """
    spec = ctx.inventory.pipeline(pipeline)
    source_spec = ctx.inventory.source(spec.source)
    silver_spec = ctx.inventory.table(spec.silver)
    start = day_start(day)
    if start >= as_of:
        raise LakehouseError(f"{day} has not started by {as_of.isoformat()}; the source cannot have it yet")
    source = build_source(source_spec, ctx.settings, faults=ctx.faults)
    fetched = source.fetch(Window(start=start, end=start + timedelta(days=1)), as_of=as_of)
    records = dedupe_records(fetched.records)
    bronze = pa.table(
        {
            "ts": [r.ts for r in records], "record_key": [r.record_key for r in records], "payload": [r.payload_json for r in records],
            "payload_hash": [r.payload_hash for r in records], "source_uri": [r.source_uri for r in records],
            "run_id": ["refetch"] * len(records), "fetched_at": [as_of] * len(records),
        },
        schema=arrow_schema(ctx.inventory.table(spec.bronze)),
    )  # fmt: skip
    conformed, problems = conform(source_spec.kind, bronze, silver_spec)
    in_day = pc.and_(pc.greater_equal(conformed.column("ts"), start), pc.less(conformed.column("ts"), start + timedelta(days=1)))
    at_source = conformed.filter(in_day) if conformed.num_rows else conformed
    silver = wap.read_days(load_table(ctx.catalog, spec.silver), [start])
    key = list(silver_spec.key)
    compare = [c.name for c in silver_spec.columns if c.name not in key and c.name not in LINEAGE_COLUMNS]
    rows = diff_rows(silver.to_pylist(), at_source.to_pylist(), key=key, compare=compare, limit=SAMPLE)
    silver_keys = {tuple(r[k] for k in key) for r in silver.select(key).to_pylist()}
    source_keys = {tuple(r[k] for k in key) for r in at_source.select(key).to_pylist()}
    missing_in_silver = sorted(render_key(k) for k in source_keys - silver_keys)
    missing_at_source = sorted(render_key(k) for k in silver_keys - source_keys)
    originals = _held_originals(ctx, spec.quarantine, spec.silver, start)
    held = set(originals)
    as_held, missing_held = _as_held(originals, silver.to_pylist(), at_source.to_pylist(), key, compare)
    ended = [] if source_spec.kind == "file_drop" else _ended_slots(source_spec.cadence_minutes, start, as_of)
    served = set(at_source.column("ts").to_pylist())
    comparison = SourceComparison(
        pipeline=pipeline, silver=spec.silver, day=day.isoformat(), as_of=as_of.isoformat(),
        expected_slots=len(ended) if source_spec.kind != "file_drop" else None, lacking_slots=len([t for t in ended if t not in served]),
        source_slots=len(served), silver_slots=len(set(silver.column("ts").to_pylist())), missing_in_silver=missing_in_silver[:50],
        missing_in_silver_count=len(missing_in_silver), missing_at_source=missing_at_source[:50], missing_at_source_count=len(missing_at_source),
        quarantined=len(set(missing_in_silver) & held), source_problems=len(fetched.problems) + len(problems), differing=rows.changed,
        differing_as_held=as_held, missing_as_held=missing_held, sample_differences=rows.sample_changed, verdict="",
    )  # fmt: skip
    comparison.verdict = _verdict(comparison, _replay_note(ctx, source_spec.replay_coverage, day))
    return comparison


def _held_originals(ctx: PlatformContext, quarantine: str, target: str, start: datetime) -> dict[str, list[dict[str, Any]]]:
    """The rows the day holds in quarantine for `target`, by record key (the values each held row had)."""
    held: dict[str, list[dict[str, Any]]] = {}
    for r in wap.read_days(load_table(ctx.catalog, quarantine), [start], columns=("record_key", "target_table", "original")).to_pylist():
        if r["target_table"] == target:
            held.setdefault(str(r["record_key"]), []).extend([json.loads(r["original"])] if r["original"] else [])
    return held


def _as_held(
    held: dict[str, list[dict[str, Any]]], silver: list[dict[str, Any]], source: list[dict[str, Any]], key: list[str], compare: list[str]
) -> tuple[int, int]:
    """(keys whose source values differ from silver's, keys silver lacks) that the source serves with the values of a
    row held in quarantine for that key: what a re-run would hold again."""
    if not held:
        return 0, 0
    published = {render_key(tuple(r[k] for k in key)): r for r in silver}
    differing = missing = 0
    for row in source:
        name = render_key(tuple(row[k] for k in key))
        before = published.get(name)
        if before is not None and all(_same(before.get(c), row.get(c)) for c in compare):
            continue
        again = any(all(_same(original.get(c), row.get(c)) for c in compare) for original in held.get(name, []))
        if before is None:
            missing += again
        else:
            differing += again
    return differing, missing


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool) and not isinstance(b, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return a == b


def _replay_note(ctx: PlatformContext, coverage: tuple[tuple[str, str], ...], day: date) -> str:
    if ctx.settings.source_mode != "replay" or not coverage:
        return ""
    if any(date.fromisoformat(a) <= day < date.fromisoformat(b) for a, b in coverage):
        return ""
    ranges = ", ".join(f"{a}..{b}" for a, b in coverage)
    return f" (replay mode: the bundled data covers only {ranges}, so an empty answer says nothing about the live source)"


def _verdict(c: SourceComparison, note: str) -> str:
    lacking = c.lacking_slots
    work = [f"add {c.missing_in_silver_count} missing row(s)"] if c.missing_in_silver_count else []
    work += [f"update {c.differing} revised row(s)"] if c.differing else []
    if c.source_slots == 0 and c.expected_slots != 0:
        verdict = f"the source still lacks {c.day}: it serves no records for the day as of {c.as_of}; a re-run would not fill it, escalate if it stays missing"
    elif lacking:
        verdict = f"the source still lacks {lacking} of {c.expected_slots} slots of {c.day} (it serves {c.source_slots}; silver has {c.silver_slots})"
        # Suites hold incomplete days back, so a re-run cannot be promised to publish what the source does have.
        verdict += (
            f": a re-run could {' and '.join(work)} but may hold the day back again as incomplete"
            if work
            else ": a re-run would not fill it"
        )
        verdict += "; escalate if the slots stay missing"
    elif work and c.missing_as_held == c.missing_in_silver_count and c.differing_as_held == c.differing:
        verdict = (
            f"the source serves every slot of {c.day}, but the {c.missing_in_silver_count + c.differing} row(s) silver lacks or "
            "holds differently come with the values held in quarantine: a re-run would hold them again; the source (or the "
            "check) has to change first"
        )
    elif work:
        verdict = f"the source now has {c.source_slots} slots; silver has {c.silver_slots}: a re-run would " + (
            "fill it" if not c.differing else " and ".join(work)
        )
    else:
        verdict = f"silver matches the source for {c.day} ({c.source_slots} slots): nothing to re-run"
    if c.quarantined:
        verdict += f"; {c.quarantined} of the rows missing in silver are in quarantine and may be held again (see get_run)"
    if c.missing_at_source_count:
        verdict += f"; silver holds {c.missing_at_source_count} row(s) the source no longer serves"
    return verdict + note
