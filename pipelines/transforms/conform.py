"""Bronze to silver: the latest revision of each record wins, then types, UTC and units are conformed.

A record that cannot be conformed (a number that is not one, an unknown unit) is not guessed at: it becomes
a `ConformProblem` carrying its original payload, bound for quarantine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from config.inventory import TableSpec
from pipelines.lakehouse.catalog import arrow_schema


class ConformProblem(BaseModel):
    ts: Any
    record_key: str
    reason: str
    original: str


def _number(value: Any, field: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{field} {value!r} is a boolean, not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{field} {value!r} is not a number") from None
    else:
        raise ValueError(f"{field} {value!r} is a {type(value).__name__}, not a number")
    if not math.isfinite(number):
        raise ValueError(f"{field} {value!r} is not finite")
    return number


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} {value!r} is a {type(value).__name__}, not text")
    return value


def _carbon_intensity(payload: dict[str, Any]) -> list[dict[str, Any]]:
    intensity = payload.get("intensity")
    if not isinstance(intensity, dict):
        raise ValueError(f"intensity {intensity!r} is not an object")
    return [
        {
            "forecast": _number(intensity.get("forecast"), "intensity.forecast"),
            "actual": _number(intensity.get("actual"), "intensity.actual"),
            "index": _text(intensity.get("index"), "intensity.index"),
        }
    ]


def _generation_mix(payload: dict[str, Any]) -> list[dict[str, Any]]:
    mix = payload.get("generationmix")
    if not isinstance(mix, list):
        raise ValueError(f"generationmix {mix!r} is not a list")
    rows = []
    for item in mix:
        if not isinstance(item, dict) or "fuel" not in item or "perc" not in item:
            raise ValueError(f"generationmix entry {item!r} lacks fuel or perc")
        fuel = _text(item["fuel"], "fuel")
        rows.append({"fuel": fuel, "perc": _number(item["perc"], f"perc of {fuel}")})
    return rows


_TEMPERATURE_UNITS: dict[str, Callable[[float], float]] = {
    "\u00b0C": lambda v: v,
    "C": lambda v: v,
    "celsius": lambda v: v,
    "\u00b0F": lambda v: (v - 32.0) * 5.0 / 9.0,
    "fahrenheit": lambda v: (v - 32.0) * 5.0 / 9.0,
    "K": lambda v: v - 273.15,
}


def _weather(payload: dict[str, Any]) -> list[dict[str, Any]]:
    unit = payload.get("unit", "\u00b0C")
    if unit not in _TEMPERATURE_UNITS:
        raise ValueError(f"temperature unit {unit!r} is unknown; known: {', '.join(_TEMPERATURE_UNITS)}")
    value = _number(payload.get("temperature_2m"), "temperature_2m")
    return [{"temperature_c": None if value is None else _TEMPERATURE_UNITS[unit](value)}]


def _country_intensity(payload: dict[str, Any]) -> list[dict[str, Any]]:
    year = _number(payload.get("year"), "year")
    if year is None or not year.is_integer():
        raise ValueError(f"year {payload.get('year')!r} is not a whole number")
    code = payload.get("country_code")
    return [
        {
            "country_code": None if code is None else str(code),
            "country_or_region": str(payload["country_or_region"]),
            "year": int(year),
            "intensity_gco2_per_kwh": _number(payload.get("emissions_intensity_gco2_per_kwh"), "emissions_intensity_gco2_per_kwh"),
        }
    ]


CONFORMERS: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "carbon_intensity": _carbon_intensity,
    "generation_mix": _generation_mix,
    "weather": _weather,
    "file_drop": _country_intensity,
}


def latest_revisions(bronze: pa.Table) -> pa.Table:
    """One row per (ts, record_key): the latest fetched_at wins.

    A key whose latest run holds more than one payload (a conflicting duplicate: the source sent the key
    twice with different values, and the run quarantined every copy) has no winner: no row for it.
    """
    if bronze.num_rows == 0:
        return bronze
    order = pc.sort_indices(
        bronze,
        sort_keys=[("ts", "ascending"), ("record_key", "ascending"), ("fetched_at", "descending"), ("payload_hash", "descending")],
    )
    ordered = bronze.take(order)
    n = ordered.num_rows
    keys, ts, runs = ordered.column("record_key"), ordered.column("ts"), ordered.column("run_id")
    changed = pc.or_(pc.not_equal(keys.slice(1), keys.slice(0, n - 1)), pc.not_equal(ts.slice(1), ts.slice(0, n - 1)))
    changed = pc.fill_null(changed, True).combine_chunks().cast(pa.bool_())
    first_of_group = pa.concat_arrays([pa.array([True]), changed])
    # Row i conflicts with row i + 1 when both are the same key from the same run (bronze never holds exact repeats).
    same_run = pc.fill_null(pc.equal(runs.slice(1), runs.slice(0, n - 1)), False).combine_chunks().cast(pa.bool_())
    conflicted = pa.concat_arrays([pc.and_(pc.invert(changed), same_run), pa.array([False])])
    return ordered.filter(pc.and_(first_of_group, pc.invert(conflicted)))


def conform(kind: str, bronze: pa.Table, target: TableSpec) -> tuple[pa.Table, list[ConformProblem]]:
    """Silver rows for the latest revision of every bronze record, and the records that would not conform."""
    latest = latest_revisions(bronze)
    conformer = CONFORMERS[kind]
    rows: list[dict[str, Any]] = []
    problems: list[ConformProblem] = []
    columns = latest.select(["ts", "record_key", "payload", "payload_hash", "run_id", "fetched_at"]).to_pydict()
    for i in range(latest.num_rows):
        payload_text = columns["payload"][i]
        try:
            payload = json.loads(payload_text)
            produced = conformer(payload)
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(
                ConformProblem(ts=columns["ts"][i], record_key=columns["record_key"][i], reason=str(exc), original=payload_text)
            )
            continue
        for row in produced:
            rows.append(
                {
                    "ts": columns["ts"][i],
                    **row,
                    "run_id": columns["run_id"][i],
                    "fetched_at": columns["fetched_at"][i],
                    "payload_hash": columns["payload_hash"][i],
                }
            )
    schema = arrow_schema(target)
    if not rows:
        return schema.empty_table(), problems
    return pa.Table.from_pylist(rows, schema=schema), problems
