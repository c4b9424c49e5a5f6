"""Open-Meteo archive connector: hourly 2 m temperature, requested and parsed in GMT.

Live: GET {base}/v1/archive?latitude=..&longitude=..&start_date=..&end_date=..&hourly=temperature_2m&timezone=GMT.
Replay: the bundled ERA5 UK series rendered as the same response.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from config.errors import PayloadError
from config.inventory import SourceSpec
from pipelines.sources import replay
from pipelines.sources.base import FetchResult, RecordProblem, SourceRecord, Window, canonical_json, check_contract
from pipelines.sources.http import HttpFetcher
from pipelines.sources.replay_filter import ReplayFilter, as_recorded

_UTC_ZONES = {"GMT", "UTC", "Etc/UTC", "Etc/GMT"}


def parse_open_meteo_body(spec: SourceSpec, body: Any, chunk: Window, uri: str) -> FetchResult:
    """One record per hour whose start lies inside `chunk`."""
    if not isinstance(body, dict) or not isinstance(body.get("hourly"), dict):
        shape = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise PayloadError(f"{spec.name}: {uri} returned {shape!r}; expected an object with an 'hourly' block")
    zone = body.get("timezone")
    offset = body.get("utc_offset_seconds")
    if zone not in _UTC_ZONES or offset != 0:
        raise PayloadError(
            f"{spec.name}: {uri} answered in time zone {zone!r} (utc_offset_seconds={offset}); one offset for a whole "
            "response shifts hours across DST changes. Request timezone=GMT."
        )
    hourly = body["hourly"]
    check_contract(spec, [hourly], uri)  # a renamed column is schema drift of the whole response
    times, values = hourly["time"], hourly["temperature_2m"]
    if not isinstance(times, list) or not isinstance(values, list) or len(times) != len(values):
        raise PayloadError(
            f"{spec.name}: {uri} hourly.time and hourly.temperature_2m differ in length "
            f"({len(times) if isinstance(times, list) else '?'} vs {len(values) if isinstance(values, list) else '?'})"
        )
    unit = (body.get("hourly_units") or {}).get("temperature_2m", "\u00b0C")
    result = FetchResult(requests=1)
    for t, v in zip(times, values, strict=True):
        record = {"time": t, "temperature_2m": v, "unit": unit}
        try:
            ts = datetime.fromisoformat(str(t)).replace(tzinfo=UTC)
        except ValueError:
            result.problems.append(
                RecordProblem(
                    record_key=str(t),
                    check="slot_time",
                    reason=f"time {t!r} is not ISO 8601",
                    original=canonical_json(record),
                    source_uri=uri,
                )
            )
            continue
        if chunk.contains(ts):
            result.records.append(SourceRecord(ts=ts, record_key=ts.isoformat(), payload=record, source_uri=uri))
    return result


class WeatherSource:
    """Hourly temperature, live or replayed; replayed bodies pass through `replay_filter`."""

    def __init__(self, spec: SourceSpec, *, base_url: str, fetcher: HttpFetcher | None, replay_filter: ReplayFilter = as_recorded) -> None:
        self.spec = spec
        self._base_url = base_url.rstrip("/")
        self._fetcher = fetcher
        self._replay_filter = replay_filter
        self._latitude = float(spec.options.get("latitude", 54.0))
        self._longitude = float(spec.options.get("longitude", -2.0))

    def fetch(self, window: Window, *, as_of: datetime) -> FetchResult:
        result = FetchResult()
        for chunk in window.chunks(self.spec.chunk_days):
            if self._fetcher is None:
                body = replay.open_meteo_body(chunk.start, chunk.end, as_of, latitude=self._latitude, longitude=self._longitude)
                body = self._replay_filter(chunk.start, chunk.end, body)
                uri = f"replay://open-meteo/v1/archive?start={chunk.start.isoformat()}&end={chunk.end.isoformat()}"
            else:
                last_day = (chunk.end - timedelta(seconds=1)).date()
                params = {
                    "latitude": self._latitude,
                    "longitude": self._longitude,
                    "start_date": chunk.start.date().isoformat(),
                    "end_date": last_day.isoformat(),
                    "hourly": "temperature_2m",
                    "timezone": "GMT",
                }
                uri = f"{self._base_url}/v1/archive"
                before = self._fetcher.retries
                body = self._fetcher.get_json(uri, params=params)
                result.retries += self._fetcher.retries - before
            result.extend(parse_open_meteo_body(self.spec, body, chunk, uri))
        return result
