"""The bundled real data, served as the live APIs would have served it at a given instant.

Each recorded value becomes visible at its capture time: a 2023 half-hour slot once the slot has ended,
a forecast-revision snapshot at the minute it was taken. For every slot the latest version visible at
`as_of` is served, so replaying with a later clock delivers later revisions.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent / "replay_data"


@dataclass(frozen=True, kw_only=True)
class Version:
    slot: datetime
    captured_at: datetime
    record: dict[str, Any]


def _api_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _snapshot_time(path: Path) -> datetime:
    stamp = path.stem.split("_")[-1]  # 2024-01-12T0601Z
    return datetime.strptime(stamp, "%Y-%m-%dT%H%MZ").replace(tzinfo=UTC)


def _number(text: str) -> int | float | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() else value


def _from_api(record: dict[str, Any]) -> datetime:
    return datetime.strptime(record["from"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


@cache
def intensity_versions() -> tuple[Version, ...]:
    versions: list[Version] = []
    with gzip.open(DATA_DIR / "neso_2023_national_intensity.csv.gz", "rt") as handle:
        for row in csv.DictReader(handle):
            start = datetime.fromisoformat(row["from"]).astimezone(UTC)
            end = datetime.fromisoformat(row["to"]).astimezone(UTC)
            record = {
                "from": _api_time(start),
                "to": _api_time(end),
                "intensity": {"forecast": _number(row["forecast"]), "actual": _number(row["actual"]), "index": row["index"]},
            }
            versions.append(Version(slot=start, captured_at=end, record=record))
    for path in sorted((DATA_DIR / "intensity_revisions_2024-01-12").glob("*.json")):
        captured = _snapshot_time(path)
        for record in json.loads(path.read_text())["data"]:
            versions.append(Version(slot=_from_api(record), captured_at=captured, record=record))
    return tuple(versions)


@cache
def generation_versions() -> tuple[Version, ...]:
    versions: list[Version] = []
    recorded = DATA_DIR / "generation" / "generation_2019-04-01_2019-04-07.json"
    for record in json.loads(recorded.read_text())["data"]:
        slot = _from_api(record)
        versions.append(Version(slot=slot, captured_at=slot + timedelta(minutes=30), record=record))
    snapshot = DATA_DIR / "generation" / "generation_pt24h_2024-01-12T0601Z.json"
    for record in json.loads(snapshot.read_text())["data"]:
        versions.append(Version(slot=_from_api(record), captured_at=_snapshot_time(snapshot), record=record))
    return tuple(versions)


@cache
def temperature_series() -> tuple[tuple[datetime, float], ...]:
    out = []
    with gzip.open(DATA_DIR / "era5_uk_t2m_hourly.csv.gz", "rt") as handle:
        for row in csv.DictReader(handle):
            out.append((datetime.fromisoformat(row["time"]).astimezone(UTC), float(row["temp_2m"])))
    return tuple(out)


def latest_visible(versions: tuple[Version, ...], start: datetime, end: datetime, as_of: datetime) -> list[dict[str, Any]]:
    """The latest version of every slot in [start, end) captured at or before `as_of`, in slot order."""
    best: dict[datetime, Version] = {}
    for v in versions:
        if start <= v.slot < end and v.captured_at <= as_of:
            current = best.get(v.slot)
            if current is None or v.captured_at >= current.captured_at:
                best[v.slot] = v
    return [best[slot].record for slot in sorted(best)]


def intensity_body(start: datetime, end: datetime, as_of: datetime) -> dict[str, Any]:
    """An /intensity/{from}/{to} response body."""
    return {"data": latest_visible(intensity_versions(), start, end, as_of)}


def generation_body(start: datetime, end: datetime, as_of: datetime) -> dict[str, Any]:
    """A /generation/{from}/{to} response body."""
    return {"data": latest_visible(generation_versions(), start, end, as_of)}


def open_meteo_body(start: datetime, end: datetime, as_of: datetime, *, latitude: float, longitude: float) -> dict[str, Any]:
    """An Open-Meteo archive response (timezone GMT) for hours in [start, end) that have ended by `as_of`."""
    rows = [(t, v) for t, v in temperature_series() if start <= t < end and t + timedelta(hours=1) <= as_of]
    return {
        "latitude": latitude,
        "longitude": longitude,
        "generationtime_ms": 0.0,
        "utc_offset_seconds": 0,
        "timezone": "GMT",
        "timezone_abbreviation": "GMT",
        "elevation": 0.0,
        "hourly_units": {"time": "iso8601", "temperature_2m": "\u00b0C"},
        "hourly": {
            "time": [t.strftime("%Y-%m-%dT%H:%M") for t, _ in rows],
            "temperature_2m": [round(v, 4) for _, v in rows],
        },
    }


def ember_file() -> Path:
    return DATA_DIR / "ember_average_intensities.json"


def as_bytes(body: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(json.dumps(body).encode())
