"""The HTTP connectors against a real local HTTP server replaying recorded API responses and scripted failures.

No part of our code or of httpx is mocked: the fake (tests/fakes/source_api.py) is the far side of the socket.
Waits between attempts go through HttpFetcher's `sleep` callable, so backoff is asserted without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from config.errors import PayloadError, PermanentSourceError, SchemaDriftError, TransientSourceError
from config.inventory import load_inventory
from config.settings import DataopsSettings
from pipelines.context import PlatformContext
from pipelines.promotion import run_pipeline
from pipelines.sources.base import Source, Window
from pipelines.sources.http import HttpFetcher
from pipelines.sources.registry import build_source
from tests.fakes.source_api import RecordedRequest, Reply, SourceApi, load_fixture, renamed_field, source_api_fixture  # noqa: F401

AS_OF = datetime(2021, 4, 30, 23, tzinfo=UTC)  # when the fixtures were recorded; live fetches ignore it
INTENSITY = "/intensity/{from}/{to}"
GENERATION = "/generation/{from}/{to}"
ARCHIVE = "/v1/archive"
Connect = Callable[..., tuple[Source, HttpFetcher, list[float]]]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def days(start: tuple[int, int, int], end: tuple[int, int, int]) -> Window:
    return Window(start=utc(*start), end=utc(*end))


@pytest.fixture
def http_settings(settings: DataopsSettings, source_api: SourceApi) -> DataopsSettings:
    """Live mode with both APIs at the fake, and retry settings small enough to reason about."""
    return settings.model_copy(
        update={
            "source_mode": "http",
            "carbon_intensity_base_url": source_api.url,
            "open_meteo_base_url": source_api.url,
            "http_timeout_s": 2.0,
            "http_max_attempts": 3,
            "http_backoff_s": 0.5,
            "http_max_backoff_s": 60.0,
        }
    )


@pytest.fixture
def connect(http_settings: DataopsSettings) -> Iterator[Connect]:
    """Builds a source as the registry does, with a fetcher whose waits are recorded instead of slept."""
    inventory = load_inventory(http_settings.config_dir)
    fetchers: list[HttpFetcher] = []

    def _connect(name: str, **overrides: object) -> tuple[Source, HttpFetcher, list[float]]:
        settings = http_settings.model_copy(update=overrides)
        waits: list[float] = []
        fetcher = HttpFetcher(settings, sleep=waits.append)
        fetchers.append(fetcher)
        return build_source(inventory.source(name), settings, fetcher=fetcher), fetcher, waits

    yield _connect
    for fetcher in fetchers:
        fetcher.close()


def neso_slots(request: RecordedRequest) -> Reply:
    """What the NESO API sends for /intensity/{from}/{to}: every slot whose end lies in [from, to]."""
    start = datetime.strptime(request.params["from"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    end = datetime.strptime(request.params["to"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    half_hour = timedelta(minutes=30)
    data, slot = [], start - half_hour
    while slot + half_hour <= end:
        data.append(
            {
                "from": f"{slot:%Y-%m-%dT%H:%MZ}",
                "to": f"{slot + half_hour:%Y-%m-%dT%H:%MZ}",
                "intensity": {"forecast": 150, "actual": 152, "index": "moderate"},
            }
        )
        slot += half_hour
    return Reply.json({"data": data})


# -- happy paths over the recorded responses ---------------------------------------------------------------


def test_carbon_intensity_parses_recorded_body_and_keeps_slots_starting_in_window(source_api: SourceApi, connect: Connect) -> None:
    body = load_fixture("gb_with_dates.json")
    assert len(body["data"]) == 96
    source_api.route(INTENSITY, Reply.json(body))
    source, fetcher, waits = connect("carbon_intensity")

    result = source.fetch(days((2020, 1, 1), (2020, 1, 3)), as_of=AS_OF)

    # The body's first slot starts 2019-12-31T23:30Z (it ends at `from`), so the window keeps 95 of 96.
    assert len(result.records) == 95
    assert result.problems == []
    assert (result.requests, result.retries, fetcher.requests, waits) == (1, 0, 1, [])
    assert source_api.paths == ["/intensity/2020-01-01T00:00Z/2020-01-03T00:00Z"]
    assert source_api.requests[0].headers["Accept"] == "application/json"
    first = result.records[0]
    assert first.ts == utc(2020, 1, 1, 0, 0)
    assert first.record_key == "2020-01-01T00:00:00+00:00"
    assert first.payload == {
        "from": "2020-01-01T00:00Z",
        "to": "2020-01-01T00:30Z",
        "intensity": {"forecast": 178, "actual": 182, "index": "moderate"},
    }
    assert first.source_uri == f"{source_api.url}/intensity/2020-01-01T00:00Z/2020-01-03T00:00Z"
    assert result.records[-1].ts == utc(2020, 1, 2, 23, 0)
    assert [r.ts for r in result.records] == sorted({r.ts for r in result.records})


def test_carbon_intensity_drops_slots_after_the_window_end(source_api: SourceApi, connect: Connect) -> None:
    source_api.route(INTENSITY, Reply.json(load_fixture("gb_with_dates.json")))
    source, _, _ = connect("carbon_intensity")

    result = source.fetch(days((2020, 1, 1), (2020, 1, 2)), as_of=AS_OF)

    assert len(result.records) == 48
    assert (result.records[0].ts, result.records[-1].ts) == (utc(2020, 1, 1, 0, 0), utc(2020, 1, 1, 23, 30))
    assert result.records[-1].payload["intensity"] == {"forecast": 141, "actual": 131, "index": "low"}


def test_generation_mix_parses_recorded_body_with_nine_fuels(source_api: SourceApi, connect: Connect) -> None:
    body = load_fixture("raw_with_dates.json")
    assert len(body["data"]) == 336
    source_api.route(GENERATION, Reply.json(body))
    source, _, _ = connect("generation_mix")

    result = source.fetch(days((2019, 4, 1), (2019, 4, 8)), as_of=AS_OF)

    assert source_api.paths == ["/generation/2019-04-01T00:00Z/2019-04-08T00:00Z"]
    assert len(result.records) == 335  # 7 days less the slot that starts 2019-03-31T23:30Z
    assert result.problems == []
    fuels = {"biomass", "coal", "imports", "gas", "nuclear", "other", "hydro", "solar", "wind"}
    assert all({m["fuel"] for m in r.payload["generationmix"]} == fuels for r in result.records)
    first = result.records[0]
    assert first.ts == utc(2019, 4, 1, 0, 0)
    assert {m["fuel"]: m["perc"] for m in first.payload["generationmix"]}["gas"] == 29.6


def test_window_is_fetched_in_chunks_of_chunk_days(source_api: SourceApi, connect: Connect) -> None:
    source_api.route(INTENSITY, neso_slots)
    source, fetcher, _ = connect("carbon_intensity")
    assert source.spec.chunk_days == 14

    result = source.fetch(days((2023, 1, 1), (2023, 1, 31)), as_of=AS_OF)

    assert source_api.paths == [
        "/intensity/2023-01-01T00:00Z/2023-01-15T00:00Z",
        "/intensity/2023-01-15T00:00Z/2023-01-29T00:00Z",
        "/intensity/2023-01-29T00:00Z/2023-01-31T00:00Z",
    ]
    assert (result.requests, fetcher.requests) == (3, 3)
    # Each chunk's answer overlaps the previous one by a slot; filtering by slot start leaves each slot once.
    assert len(result.records) == 30 * 48
    assert len({r.record_key for r in result.records}) == 30 * 48
    assert (result.records[0].ts, result.records[-1].ts) == (utc(2023, 1, 1), utc(2023, 1, 30, 23, 30))


def test_weather_gmt_body_parses_into_utc_hours(source_api: SourceApi, connect: Connect) -> None:
    hours = [utc(2023, 1, 1) + timedelta(hours=h) for h in range(48)]
    body = {
        "latitude": 54.0,
        "longitude": -2.0,
        "utc_offset_seconds": 0,
        "timezone": "GMT",
        "timezone_abbreviation": "GMT",
        "hourly_units": {"time": "iso8601", "temperature_2m": "°C"},
        "hourly": {"time": [f"{h:%Y-%m-%dT%H:%M}" for h in hours], "temperature_2m": [round(3.0 + h / 10, 1) for h in range(48)]},
    }
    source_api.route(ARCHIVE, Reply.json(body))
    source, _, _ = connect("weather")

    result = source.fetch(days((2023, 1, 1), (2023, 1, 3)), as_of=AS_OF)

    assert len(result.records) == 48
    assert [r.ts for r in result.records] == hours
    assert all(r.ts.utcoffset() == timedelta(0) for r in result.records)
    assert result.records[1].payload == {"time": "2023-01-01T01:00", "temperature_2m": 3.1, "unit": "°C"}
    (request,) = source_api.requests
    assert request.path == ARCHIVE
    assert request.query == {
        "latitude": "54.0",
        "longitude": "-2.0",
        "start_date": "2023-01-01",
        "end_date": "2023-01-02",
        "hourly": "temperature_2m",
        "timezone": "GMT",
    }


# -- transient failures: retried with backoff ------------------------------------------------------------


def test_5xx_is_retried_with_exponential_backoff(source_api: SourceApi, connect: Connect) -> None:
    source_api.route(INTENSITY, Reply.error(500), Reply.error(500), Reply.json(load_fixture("gb_with_dates.json")))
    source, fetcher, waits = connect("carbon_intensity", http_backoff_s=0.5, http_max_attempts=5)

    result = source.fetch(days((2020, 1, 1), (2020, 1, 3)), as_of=AS_OF)

    assert len(result.records) == 95
    assert waits == [0.5, 1.0]
    assert (result.retries, fetcher.retries, fetcher.requests) == (2, 2, 3)
    assert source_api.paths == ["/intensity/2020-01-01T00:00Z/2020-01-03T00:00Z"] * 3


@pytest.mark.parametrize(("max_backoff", "expected_wait"), [(60.0, 7.0), (5.0, 5.0)])
def test_429_waits_retry_after_seconds_capped_by_max_backoff(
    source_api: SourceApi, connect: Connect, max_backoff: float, expected_wait: float
) -> None:
    source_api.route(INTENSITY, Reply.retry_after(7), Reply.json(load_fixture("gb_with_dates.json")))
    source, _, waits = connect("carbon_intensity", http_max_backoff_s=max_backoff)

    result = source.fetch(days((2020, 1, 1), (2020, 1, 2)), as_of=AS_OF)

    assert waits == [expected_wait]  # Retry-After wins over the 0.5 s backoff
    assert len(result.records) == 48
    assert len(source_api.requests) == 2


def test_429_waits_until_retry_after_http_date(source_api: SourceApi, connect: Connect) -> None:
    source_api.route(
        INTENSITY, Reply.retry_after(datetime.now(UTC) + timedelta(seconds=30)), Reply.json(load_fixture("gb_with_dates.json"))
    )
    source, _, waits = connect("carbon_intensity")

    source.fetch(days((2020, 1, 1), (2020, 1, 2)), as_of=AS_OF)

    (wait,) = waits
    assert 28.0 < wait <= 30.0  # an HTTP date has whole seconds; the request took a few milliseconds


def test_timeouts_give_up_after_max_attempts_naming_the_url(source_api: SourceApi, connect: Connect) -> None:
    source_api.route(INTENSITY, Reply.slow(load_fixture("gb_with_dates.json"), delay_s=3.0))
    source, fetcher, waits = connect("carbon_intensity", http_timeout_s=0.2, http_max_attempts=2, http_backoff_s=0.25)

    with pytest.raises(TransientSourceError) as caught:
        source.fetch(days((2020, 1, 1), (2020, 1, 2)), as_of=AS_OF)

    url = f"{source_api.url}/intensity/2020-01-01T00:00Z/2020-01-02T00:00Z"
    assert str(caught.value) == f"GET {url} timed out after 0.2s (ReadTimeout); gave up after 2 attempts"
    assert waits == [0.25]
    assert fetcher.requests == 2
    assert len(source_api.requests) == 2


# -- payloads that are not what the contract says ----------------------------------------------------------


def test_truncated_json_is_a_payload_error_after_all_attempts(source_api: SourceApi, connect: Connect) -> None:
    source_api.route(INTENSITY, Reply.truncated(load_fixture("gb_with_dates.json")))
    source, _, waits = connect("carbon_intensity")

    with pytest.raises(PayloadError) as caught:
        source.fetch(days((2020, 1, 1), (2020, 1, 2)), as_of=AS_OF)

    assert not isinstance(caught.value, SchemaDriftError)
    message = str(caught.value)
    assert message.startswith(f"GET {source_api.url}/intensity/2020-01-01T00:00Z/2020-01-02T00:00Z returned invalid JSON (")
    assert message.endswith("after 3 attempts")
    assert waits == [0.5, 1.0]  # a cut body may be a cut connection: retried like one
    assert len(source_api.requests) == 3


def test_renamed_field_is_schema_drift_naming_missing_and_unexpected(source_api: SourceApi, connect: Connect) -> None:
    drifted = renamed_field(load_fixture("gb_with_dates.json"), "intensity", "carbon_intensity")
    source_api.route(INTENSITY, Reply.json(drifted))
    source, _, waits = connect("carbon_intensity")

    with pytest.raises(SchemaDriftError) as caught:
        source.fetch(days((2020, 1, 1), (2020, 1, 3)), as_of=AS_OF)

    assert caught.value.missing == ["intensity.forecast", "intensity.actual", "intensity.index"]
    assert "carbon_intensity" in caught.value.unexpected
    assert set(caught.value.unexpected) <= {
        "carbon_intensity",
        "carbon_intensity.forecast",
        "carbon_intensity.actual",
        "carbon_intensity.index",
    }
    assert "lacks contract field(s) intensity.forecast, intensity.actual, intensity.index" in str(caught.value)
    assert "unexpected field(s) carbon_intensity" in str(caught.value)
    assert (waits, len(source_api.requests)) == ([], 1)  # a well-formed body is not retried


def test_404_is_permanent_and_not_retried(source_api: SourceApi, connect: Connect) -> None:
    source_api.route(INTENSITY, Reply.error(404, "invalid date range"))
    source, fetcher, waits = connect("carbon_intensity")

    with pytest.raises(PermanentSourceError) as caught:
        source.fetch(days((2020, 1, 1), (2020, 1, 2)), as_of=AS_OF)

    assert type(caught.value) is PermanentSourceError
    assert f"GET {source_api.url}/intensity/2020-01-01T00:00Z/2020-01-02T00:00Z answered 404" in str(caught.value)
    assert "invalid date range" in str(caught.value)
    assert "check the window and the base URL setting" in str(caught.value)
    assert (len(source_api.requests), fetcher.requests, waits) == (1, 1, [])


def test_open_meteo_response_in_local_time_is_refused(source_api: SourceApi, connect: Connect) -> None:
    body = load_fixture("open_meteo_archive_response.json")
    assert (body["timezone"], body["utc_offset_seconds"]) == ("Europe/Amsterdam", 7200)
    source_api.route(ARCHIVE, Reply.json(body))
    source, _, waits = connect("weather")

    with pytest.raises(PayloadError) as caught:
        source.fetch(days((1953, 1, 31), (1953, 2, 1)), as_of=AS_OF)

    message = str(caught.value)
    assert "answered in time zone 'Europe/Amsterdam' (utc_offset_seconds=7200)" in message
    assert "Request timezone=GMT" in message
    assert (waits, len(source_api.requests)) == ([], 1)
    assert source_api.requests[0].query["timezone"] == "GMT"  # we asked for GMT; the answer is still checked


# -- end to end: run_pipeline over the fake ----------------------------------------------------------------


def test_run_pipeline_over_http_lands_rows_in_silver(ctx: PlatformContext, source_api: SourceApi, http_settings: DataopsSettings) -> None:
    source_api.route(INTENSITY, Reply.json(load_fixture("gb_with_dates.json")))
    ctx.settings = http_settings

    result = run_pipeline(ctx, "carbon_intensity", days((2020, 1, 1), (2020, 1, 3)))

    assert result.error is None
    assert source_api.paths == ["/intensity/2020-01-01T00:00Z/2020-01-03T00:00Z"]
    assert (result.records_fetched, result.bronze_new) == (95, 95)
    bronze = ctx.catalog.load_table("bronze.carbon_intensity").scan().to_arrow()
    assert bronze.num_rows == 95
    assert set(bronze.column("source_uri").to_pylist()) == {f"{source_api.url}/intensity/2020-01-01T00:00Z/2020-01-03T00:00Z"}
    # The recording stops at the 23:00Z slot of 2020-01-02, so that day has 47 of 48 slots and is held back.
    assert result.status == "quarantined"
    assert result.held_days == ["2020-01-02"]
    assert (result.rows_out, result.rows_quarantined) == (48, 47)  # every slot ends in silver or in quarantine
    silver = ctx.catalog.load_table("silver.carbon_intensity").scan().to_arrow()
    assert silver.num_rows == result.rows_out > 0
    rows = {row["ts"]: row for row in silver.to_pylist()}
    assert all(utc(2020, 1, 1) <= ts < utc(2020, 1, 2) for ts in rows)
    first = rows[utc(2020, 1, 1)]
    assert (first["forecast"], first["actual"], first["index"]) == (178, 182, "moderate")


def test_run_pipeline_against_failing_server_fails_naming_the_500(
    ctx: PlatformContext, source_api: SourceApi, http_settings: DataopsSettings
) -> None:
    source_api.route(INTENSITY, Reply.error(500, "upstream database unavailable"))
    ctx.settings = http_settings.model_copy(update={"http_max_attempts": 2, "http_backoff_s": 0.05})

    result = run_pipeline(ctx, "carbon_intensity", days((2020, 1, 1), (2020, 1, 3)))

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith(f"TransientSourceError: GET {source_api.url}/intensity/2020-01-01T00:00Z/2020-01-03T00:00Z answered 500")
    assert "upstream database unavailable" in result.error
    assert result.error.endswith("gave up after 2 attempts")
    first, second = source_api.requests
    assert second.at - first.at >= 0.05  # the default sleep really waited the backoff
    assert ctx.catalog.load_table("silver.carbon_intensity").scan().to_arrow().num_rows == 0
