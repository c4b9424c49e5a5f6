"""NESO Carbon Intensity API connectors: national intensity and generation mix.

Live: GET {base}/intensity/{from}/{to} and {base}/generation/{from}/{to}, at most `chunk_days` per request.
Replay: the bundled real responses, rendered in the same shape and parsed by the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from config.errors import PayloadError
from config.inventory import SourceSpec
from pipelines.sources import replay
from pipelines.sources.base import (
    FetchResult,
    RecordProblem,
    SourceRecord,
    Window,
    canonical_json,
    check_contract,
    parse_instant,
)
from pipelines.sources.http import HttpFetcher
from pipelines.sources.replay_filter import ReplayFilter, as_recorded

_ENDPOINTS = {"carbon_intensity": "intensity", "generation_mix": "generation"}
_REPLAY: dict[str, Callable[[datetime, datetime, datetime], dict[str, Any]]] = {
    "carbon_intensity": replay.intensity_body,
    "generation_mix": replay.generation_body,
}


def _api_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%MZ")


def parse_neso_body(spec: SourceSpec, body: Any, chunk: Window, uri: str) -> FetchResult:
    """Records of one response whose slot starts inside `chunk`; malformed records become problems."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        shape = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise PayloadError(f"{spec.name}: {uri} returned {shape!r}; expected an object with a 'data' list")
    raw = body["data"]
    dicts = [r for r in raw if isinstance(r, dict)]
    result = FetchResult(requests=1)
    for r in raw:
        if not isinstance(r, dict):
            result.problems.append(
                RecordProblem(
                    record_key="?", check="payload_contract", reason="record is not an object", original=canonical_json(r), source_uri=uri
                )
            )
    good, problems = check_contract(spec, dicts, uri)
    result.problems.extend(problems)
    for record in good:
        try:
            ts = parse_instant(record["from"], field="from")
        except ValueError as exc:
            result.problems.append(
                RecordProblem(
                    record_key=str(record["from"]), check="slot_time", reason=str(exc), original=canonical_json(record), source_uri=uri
                )
            )
            continue
        if chunk.contains(ts):
            result.records.append(SourceRecord(ts=ts, record_key=ts.isoformat(), payload=record, source_uri=uri))
    return result


class NesoSource:
    """Carbon intensity or generation mix, live or replayed; replayed bodies pass through `replay_filter`."""

    def __init__(self, spec: SourceSpec, *, base_url: str, fetcher: HttpFetcher | None, replay_filter: ReplayFilter = as_recorded) -> None:
        if spec.kind not in _ENDPOINTS:
            raise ValueError(f"NesoSource serves {', '.join(_ENDPOINTS)}, not {spec.kind!r}")
        self.spec = spec
        self._base_url = base_url.rstrip("/")
        self._fetcher = fetcher
        self._replay_filter = replay_filter

    def fetch(self, window: Window, *, as_of: datetime) -> FetchResult:
        result = FetchResult()
        endpoint = _ENDPOINTS[self.spec.kind]
        for chunk in window.chunks(self.spec.chunk_days):
            path = f"/{endpoint}/{_api_time(chunk.start)}/{_api_time(chunk.end)}"
            if self._fetcher is None:
                body = self._replay_filter(chunk.start, chunk.end, _REPLAY[self.spec.kind](chunk.start, chunk.end, as_of))
                uri = f"replay://neso{path}?as_of={_api_time(as_of)}"
            else:
                before = self._fetcher.retries
                body = self._fetcher.get_json(self._base_url + path)
                uri = self._base_url + path
                result.retries += self._fetcher.retries - before
            result.extend(parse_neso_body(self.spec, body, chunk, uri))
        return result
