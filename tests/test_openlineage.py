"""OpenLineage run events from real runs, validated against the OpenLineage JSON schemas (tests/fixtures/openlineage)."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from config.errors import SettingsError
from config.settings import DataopsSettings, load_settings
from pipelines import faults, lineage_sink, openlineage
from pipelines.context import PlatformContext
from pipelines.outbox import DrainResult, Outbox
from pipelines.promotion import RunResult, run_pipeline
from tests.conftest import REPO, utc, window
from tests.fakes import free_port

SCHEMAS = {p.stem: json.loads(p.read_text()) for p in (REPO / "tests" / "fixtures" / "openlineage").glob("*.json")}
REGISTRY = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in [*SCHEMAS.values(), openlineage.RUN_FACET_SCHEMA])
# The facet key each vendored facet schema defines, and the schema of our own run facet.
FACET_SCHEMAS = {next(iter(s["properties"])): s for name, s in SCHEMAS.items() if name != "OpenLineage"}
FACET_SCHEMAS["dataops_run"] = openlineage.RUN_FACET_SCHEMA
CHECKER = FormatChecker()
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@CHECKER.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_RFC3339.match(value) and datetime.fromisoformat(value))


@CHECKER.checks("uri", raises=ValueError)
def _uri(value: object) -> bool:
    return not isinstance(value, str) or bool(urlparse(value).scheme and " " not in value)


SHORT = window((2023, 1, 24), (2023, 1, 26))  # 24 Jan 11:00 has a real forecast miss: one failing assertion


def validate_event(event: dict[str, Any]) -> None:
    """The event against OpenLineage.json 2-0-2, and every facet in it against its own schema."""
    Draft202012Validator(SCHEMAS["OpenLineage"], registry=REGISTRY, format_checker=CHECKER).validate(event)
    facet_maps = [event["run"].get("facets", {}), event["job"].get("facets", {})]
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        facet_maps += [dataset.get(k, {}) for k in ("facets", "inputFacets", "outputFacets")]
    for facets in facet_maps:
        for key, facet in facets.items():
            assert key in FACET_SCHEMAS, f"facet {key!r} has no vendored schema to check it against"
            schema = FACET_SCHEMAS[key]
            assert facet["_schemaURL"].startswith(schema["$id"] + "#/$defs/"), (key, facet["_schemaURL"])
            assert facet["_producer"] == openlineage.PRODUCER
            Draft202012Validator(schema, registry=REGISTRY, format_checker=CHECKER).validate({key: facet})


@pytest.fixture(autouse=True)
def _no_delivery_outlives_its_test() -> Iterator[None]:
    yield
    lineage_sink.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lineage_ctx(settings: DataopsSettings, target: str) -> Iterator[PlatformContext]:
    context = PlatformContext.open(load_settings(home=settings.home, lineage_target=target))
    yield context
    context.ledger.engine.dispose()


@pytest.fixture
def events_file(settings: DataopsSettings) -> Path:
    return settings.home.parent / "lineage" / "events.jsonl"


@pytest.fixture
def file_ctx(settings: DataopsSettings, events_file: Path) -> Iterator[PlatformContext]:
    yield from lineage_ctx(settings, events_file.as_uri())


def by_name(datasets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in datasets}


def test_a_run_emits_start_then_complete_with_the_graphs_datasets(file_ctx: PlatformContext, events_file: Path) -> None:
    ctx = file_ctx
    assert run_pipeline(ctx, "weather", SHORT, as_of=utc(2023, 3, 1)).status == "succeeded"
    result = run_pipeline(ctx, "carbon_intensity", SHORT, as_of=utc(2023, 3, 1))
    assert result.status == "succeeded"
    events = [e for e in read_events(events_file) if e["job"]["name"] == "carbon_intensity"]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate_event(event)
        assert event["run"]["runId"] == openlineage.run_uuid(result.run_id)
        job_type = event["job"]["facets"]["jobType"]
        assert (event["job"]["namespace"], event["job"]["name"]) == ("dataops", "carbon_intensity")
        assert (job_type["processingType"], job_type["integration"], job_type["jobType"]) == ("BATCH", "DATAOPS", "JOB")
        ours = event["run"]["facets"]["dataops_run"]
        assert (ours["runId"], ours["windowStart"], ours["windowEnd"]) == (
            result.run_id,
            "2023-01-24T00:00:00.000Z",
            "2023-01-26T00:00:00.000Z",
        )
        nominal = event["run"]["facets"]["nominalTime"]
        assert (nominal["nominalStartTime"], nominal["nominalEndTime"]) == (ours["windowStart"], ours["windowEnd"])
        # The datasets are the lineage graph's: the source and the other pipeline's silver table the mart reads.
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [
            ("replay", "carbon_intensity"),
            (ctx.settings.warehouse_location, "silver.weather"),
        ]
        assert [d["name"] for d in event["outputs"]] == [
            "bronze.carbon_intensity",
            "silver.carbon_intensity",
            "gold.carbon_intensity_hourly",
            "gold.intensity_vs_temperature_daily",
            "quarantine.carbon_intensity",
        ]
        for dataset in [*event["outputs"], event["inputs"][1]]:
            assert dataset["namespace"] == ctx.settings.warehouse_location
            spec = ctx.inventory.table(dataset["name"])
            fields = dataset["facets"]["schema"]["fields"]
            assert [(f["name"], f["type"], f.get("description", "")) for f in fields] == [(c.name, c.type, c.doc) for c in spec.columns]
    start, complete = events
    assert "errorMessage" not in complete["run"]["facets"] and complete["run"]["facets"]["dataops_run"]["status"] == "succeeded"
    assert all("outputFacets" not in d and set(d["facets"]) == {"schema"} for d in start["outputs"])
    assert complete["inputs"][0]["inputFacets"]["dataQualityMetrics"]["rowCount"] == result.records_fetched == 96

    outputs = by_name(complete["outputs"])
    stats = {name: d["outputFacets"]["outputStatistics"]["rowCount"] for name, d in outputs.items()}
    assert stats == {
        "bronze.carbon_intensity": result.bronze_new,
        "silver.carbon_intensity": result.rows_out,
        "gold.carbon_intensity_hourly": 48,
        "gold.intensity_vs_temperature_daily": 2,
        "quarantine.carbon_intensity": result.rows_quarantined,
    }
    assert stats["silver.carbon_intensity"] == 95 and stats["quarantine.carbon_intensity"] == 1
    assert stats == {t.table: t.rows_written for t in result.tables} | {"quarantine.carbon_intensity": 1}

    # Assertions are the ledger's validation results, table by table.
    ledger: dict[str, set[tuple[str, bool]]] = {}
    for v in ctx.ledger.validations(result.run_id):
        ledger.setdefault(v.table_name, set()).add((v.expectation, v.success))
    assert set(ledger) == {"silver.carbon_intensity", "gold.carbon_intensity_hourly", "gold.intensity_vs_temperature_daily"}
    for name, expected in ledger.items():
        assertions = outputs[name]["facets"]["dataQualityAssertions"]["assertions"]
        assert {(a["assertion"], a["success"]) for a in assertions} == expected
    assert ("forecast_tracks_actual", False) in ledger["silver.carbon_intensity"]
    silver = {a["assertion"]: a for a in outputs["silver.carbon_intensity"]["facets"]["dataQualityAssertions"]["assertions"]}
    assert silver["actual_positive_and_physical"]["column"] == "actual"
    assert "column" not in silver["forecast_tracks_actual"], "a derived column is not in the table's schema"
    assert "column" not in silver["window_days_present"]
    metrics = outputs["silver.carbon_intensity"]["facets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == 96, "the audited rows, before one went to quarantine"
    assert metrics["columnMetrics"]["ts"] == {"nullCount": 0, "count": 96}
    for name in ("bronze.carbon_intensity", "quarantine.carbon_intensity"):
        assert set(outputs[name]["facets"]) == {"schema"}, "bronze and quarantine are not validated"


def test_a_failing_run_emits_fail_with_its_error(file_ctx: PlatformContext, events_file: Path) -> None:
    file_ctx.faults.inject(faults.SourceFault(kind="transient_error", source="carbon_intensity", times=1))
    result = run_pipeline(file_ctx, "carbon_intensity", SHORT, as_of=utc(2023, 3, 1))
    assert result.status == "failed" and result.error
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    for event in events:
        validate_event(event)
    fail = events[1]
    error = fail["run"]["facets"]["errorMessage"]
    assert error["message"] == result.error and "TransientSourceError" in error["message"]
    assert error["programmingLanguage"] == "PYTHON"
    assert fail["run"]["facets"]["dataops_run"]["status"] == "failed"
    assert fail["run"]["runId"] == events[0]["run"]["runId"] == openlineage.run_uuid(result.run_id)
    assert all("dataQualityAssertions" not in d["facets"] for d in fail["outputs"]), "nothing was validated"


def test_an_unexpected_error_emits_fail_with_its_stack_trace(
    file_ctx: PlatformContext, events_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines import promotion

    def broken(self: Any) -> RunResult:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(promotion._Run, "execute", broken)
    with pytest.raises(ZeroDivisionError):
        run_pipeline(file_ctx, "weather", SHORT)
    fail = read_events(events_file)[-1]
    validate_event(fail)
    error = fail["run"]["facets"]["errorMessage"]
    assert fail["eventType"] == "FAIL" and error["message"] == "ZeroDivisionError: a bug"
    assert "Traceback" in error["stackTrace"] and "broken" in error["stackTrace"]


class _Collector(BaseHTTPRequestHandler):
    """A lineage endpoint like Marquez's: 201 for each event, after `fail_first` 503s; 400 to all while `refuse`."""

    received: list[tuple[str, dict[str, Any]]]
    fail_first: int

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        assert isinstance(server, _Server)
        server.hits += 1
        server.auth.append(self.headers.get("Authorization", ""))
        status = 400 if server.refuse else 503 if server.hits <= server.fail_first else 201
        if status == 201:
            server.received.append((self.path, body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Collector)
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.auth: list[str] = []
        self.hits = 0
        self.fail_first = fail_first
        self.refuse = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def lineage_server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_http_target_receives_the_events(settings: DataopsSettings, lineage_server: _Server) -> None:
    for ctx in lineage_ctx(settings, lineage_server.url):
        result = run_pipeline(ctx, "weather", SHORT, as_of=utc(2023, 3, 1))
    assert result.status == "succeeded"
    assert [path for path, _ in lineage_server.received] == ["/api/v1/lineage"] * 2
    events = [body for _, body in lineage_server.received]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate_event(event)
    assert [d["name"] for d in events[1]["inputs"]] == ["weather", "silver.carbon_intensity"]
    assert by_name(events[1]["outputs"])["silver.weather"]["outputFacets"]["outputStatistics"]["rowCount"] == 48


def test_a_5xx_is_retried_and_a_refused_event_is_not(
    settings: DataopsSettings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lineage_sink, "HTTP_BACKOFF_S", 0.0)
    server = _Server(fail_first=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = load_settings(home=settings.home, lineage_target=server.url + "/api/v1/lineage/")
        assert openlineage.emit(target, {"eventType": "OTHER", "n": 1}) is True
        assert server.hits == 3 and [p for p, _ in server.received] == ["/api/v1/lineage"]

        server.hits, server.fail_first, server.refuse = 0, 0, True
        with caplog.at_level(logging.WARNING, logger="pipelines.openlineage"):
            assert openlineage.emit(target, {"eventType": "OTHER", "n": 2}) is False
        assert server.hits == 1, "a refused event is not sent again"
        assert "OpenLineage OTHER event refused by" in caplog.text and "HTTP 400" in caplog.text

        server.hits, server.fail_first, server.refuse = 0, 3, False
        with caplog.at_level(logging.WARNING, logger="pipelines.openlineage"):
            assert openlineage.emit(target, {"eventType": "OTHER", "n": 3}) is False
        assert server.hits == 3 and "after 3 attempt(s): HTTP 503" in caplog.text
        lineage_sink.close()  # no background retry: the next drain is ours
        drained = lineage_sink.flush(target)
        assert drained is not None and drained.sent == 1 and drained.pending == 0
        assert [body["n"] for _, body in server.received] == [1, 3], "the refused event stays refused"
    finally:
        server.shutdown()
        server.server_close()


class _Refusing:
    """Accepts connections and never answers: a hung endpoint."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def test_an_endpoint_that_is_down_gets_every_event_once_when_it_is_back(
    settings: DataopsSettings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lineage_sink, "HTTP_BACKOFF_S", 0.0)
    port = free_port()
    target = f"http://lineage:s3cret-pass@127.0.0.1:{port}"
    with caplog.at_level(logging.INFO):
        for ctx in lineage_ctx(settings, target):
            first = run_pipeline(ctx, "weather", SHORT, as_of=utc(2023, 3, 1))
            second = run_pipeline(ctx, "weather", window((2023, 1, 26), (2023, 1, 27)), as_of=utc(2023, 3, 1))
            lineage_sink.close()  # the background worker ends its attempt: as if the process that queued them exited
            queued = Outbox(ctx.ledger).messages(lineage_sink.CHANNEL)
    assert first.status == second.status == "succeeded", "a lineage endpoint that is down fails no run"
    assert [(m.status, m.payload["eventType"]) for m in queued] == [("pending", e) for e in ("START", "COMPLETE") * 2]
    assert "s3cret-pass" not in caplog.text and f"http://127.0.0.1:{port}/api/v1/lineage" in caplog.text

    server = _Server(port=port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        later = load_settings(home=settings.home, lineage_target=target)
        with caplog.at_level(logging.DEBUG):
            drained = lineage_sink.flush(later)
        assert "s3cret-pass" not in caplog.text
        assert drained is not None and drained.sent == 4 and drained.pending == 0
        assert lineage_sink.flush(later) == DrainResult(), "nothing is sent twice"
        events = [body for _, body in server.received]
        assert [(e["eventType"], e["run"]["runId"]) for e in events] == [
            ("START", openlineage.run_uuid(first.run_id)),
            ("COMPLETE", openlineage.run_uuid(first.run_id)),
            ("START", openlineage.run_uuid(second.run_id)),
            ("COMPLETE", openlineage.run_uuid(second.run_id)),
        ]
        for event in events:
            validate_event(event)
        assert set(server.auth) == {"Basic " + base64.b64encode(b"lineage:s3cret-pass").decode()}, "the URL's user is the login"
    finally:
        server.shutdown()
        server.server_close()


def test_queued_events_are_delivered_in_the_background_without_blocking_runs(
    settings: DataopsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lineage_sink, "HTTP_BACKOFF_S", 0.0)
    monkeypatch.setattr(lineage_sink, "HTTP_TIMEOUT_S", 1.0)
    hung = _Refusing()
    try:
        for ctx in lineage_ctx(settings, hung.url):
            context = load_settings(home=settings.home, lineage_target=hung.url, outbox_backoff_s=0.2)
            started = time.monotonic()
            for n in range(5):
                lineage_sink.emit(context, {"eventType": "OTHER", "n": n}, ledger=ctx.ledger)
            took = time.monotonic() - started
    finally:
        hung.close()
    # The first event waited for one timeout (1 s); the others queued behind it at once, not a timeout each.
    assert took < 4.5, f"emitting 5 events to a hung endpoint took {took:.1f} s"

    server = _Server(port=int(hung.url.rsplit(":", 1)[1]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        deadline = time.monotonic() + 30
        while len(server.received) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # anything sent twice would arrive by now
        assert sorted(body["n"] for _, body in server.received) == list(range(5)), "each once, by the background worker"
    finally:
        lineage_sink.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("broken", ["unreachable_port", "unwritable_file"])
def test_a_broken_target_does_not_fail_the_run(
    settings: DataopsSettings, broken: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lineage_sink, "HTTP_BACKOFF_S", 0.0)
    if broken == "unreachable_port":
        target = f"http://127.0.0.1:{free_port()}"
    else:
        blocker = settings.home.parent / "a_file"
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("not a folder")
        target = str(blocker / "events.jsonl")
    with caplog.at_level(logging.WARNING, logger="pipelines.openlineage"):
        for ctx in lineage_ctx(settings, target):
            result = run_pipeline(ctx, "weather", SHORT, as_of=utc(2023, 3, 1))
    assert result.status == "succeeded"
    warnings = [r.getMessage() for r in caplog.records if r.name == "pipelines.openlineage"]
    assert len(warnings) == 2 and all(w.startswith(("OpenLineage START", "OpenLineage COMPLETE")) for w in warnings)


def test_run_ids_are_stable_uuids(file_ctx: PlatformContext) -> None:
    run_id = "20230124T000000000000Z-weather-abc123"
    first = openlineage.run_uuid(run_id)
    assert first == openlineage.run_uuid(run_id) != openlineage.run_uuid(run_id + "x")
    assert uuid.UUID(first).version == 5
    spec = file_ctx.inventory.pipeline("weather")
    events = [openlineage.run_event(file_ctx, spec, "START", run_id=run_id, window=SHORT, as_of=utc(2023, 3, 1)) for _ in range(2)]
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"] == first
    validate_event(events[0])


def test_file_appends_from_concurrent_writers_stay_whole_lines(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", lineage_target=(tmp_path / "l" / "events.jsonl").as_uri())
    big = "x" * 200_000  # far beyond PIPE_BUF: a plain append could interleave

    def write(n: int) -> None:
        for i in range(10):
            assert openlineage.emit(settings, {"eventType": "OTHER", "writer": n, "i": i, "pad": big})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = read_events(tmp_path / "l" / "events.jsonl")
    assert sorted((e["writer"], e["i"]) for e in lines) == [(n, i) for n in range(6) for i in range(10)]


@pytest.mark.usefixtures("settings")
def test_lineage_settings() -> None:
    assert load_settings().lineage_target is None and load_settings().lineage_namespace == "dataops"
    assert load_settings(lineage_target=" ").lineage_target is None
    assert openlineage.file_path("file:///var/lib/dataops/lineage.jsonl") == Path("/var/lib/dataops/lineage.jsonl")
    assert openlineage.file_path("lineage/events.jsonl") == Path("lineage/events.jsonl")
    assert openlineage.endpoint("http://marquez:5000/") == "http://marquez:5000/api/v1/lineage"
    assert openlineage.endpoint("https://datahub/openapi/openlineage") == "https://datahub/openapi/openlineage/api/v1/lineage"
    # load_settings reports a bad setting as a SettingsError naming it (config/settings.py).
    with pytest.raises(SettingsError, match=r"lineage_target 'kafka://broker/topic' has scheme 'kafka'; valid: file:///path"):
        load_settings(lineage_target="kafka://broker/topic")


def test_the_schemas_catch_malformed_events(file_ctx: PlatformContext) -> None:
    from jsonschema import ValidationError as SchemaError

    spec = file_ctx.inventory.pipeline("weather")
    good = openlineage.run_event(file_ctx, spec, "START", run_id="r1", window=SHORT, as_of=utc(2023, 3, 1))
    validate_event(good)
    breakages = [
        lambda e: e.update(eventType="DONE"),
        lambda e: e["run"].update(runId="r1"),
        lambda e: e.update(eventTime="24 Jan 2023"),
        lambda e: e["job"].pop("namespace"),
        lambda e: e["outputs"][0]["facets"]["schema"].pop("_producer"),
        lambda e: e["outputs"][0]["facets"]["schema"]["fields"][0].pop("name"),
        lambda e: e["run"]["facets"]["nominalTime"].pop("nominalStartTime"),
        lambda e: e["job"]["facets"]["jobType"].pop("integration"),
    ]
    for i, breakage in enumerate(breakages):
        event = json.loads(json.dumps(good))
        breakage(event)
        with pytest.raises(SchemaError):
            validate_event(event)
            pytest.fail(f"breakage {i} passed validation")
