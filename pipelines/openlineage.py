"""OpenLineage run events: START before each run, COMPLETE or FAIL after it, to a file or an HTTP endpoint.

    RunEvent (spec 2-0-2)
      run      runId: uuid5 of our run_id · nominalTime: the window · dataops_run: run_id, window, as_of, status
               · errorMessage on FAIL
      job      namespace `lineage_namespace`, name the pipeline · jobType: BATCH, DATAOPS, JOB
      inputs   the source, and the tables of other pipelines that this pipeline's marts read
      outputs  bronze, silver, quarantine and gold tables, each with its `schema` from the inventory; after the
               run also outputStatistics (rows this run wrote) and, on validated tables, dataQualityMetrics
               and dataQualityAssertions from the ledger's validation results

Inputs and outputs come from `pipelines.lineage.edges`, the graph the agent's lineage tool and impact analysis
read, so Marquez or DataHub show the same graph. The spec defines the two data-quality facets as input facets
(their usual producers test what they read); we test what we write before publishing it, so they sit in each
output's dataset `facets`, and the source's record count is its input `dataQualityMetrics`.

`lineage_target` picks the sink: unset (off), a file (`file:///path` or a plain path; one JSON event a line,
appended under an exclusive lock and fsynced, so concurrent runs do not interleave) or an `http(s)://` URL
(POST `{url}/api/v1/lineage`, as Marquez takes them; DataHub's is under `/openapi/openlineage`). Emission never
raises: a lineage sink that is down costs a warning in the log, never a run.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

import httpx
from sqlalchemy import select

from config.inventory import LAYERS, Inventory, PipelineSpec, TableSpec
from config.settings import DataopsSettings
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.ledger import QualityRow, ValidationRow
from pipelines.sources.base import Window

if TYPE_CHECKING:
    from pipelines.promotion import RunResult

log = logging.getLogger(__name__)

EventType = Literal["START", "COMPLETE", "FAIL"]
PRODUCER = "https://github.com/dataops/dataops"
EVENT_SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_SPEC = "https://openlineage.io/spec/facets"
FACET_SCHEMA_URLS: dict[str, str] = {
    "schema": f"{_SPEC}/1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "dataQualityMetrics": f"{_SPEC}/1-0-2/DataQualityMetricsInputDatasetFacet.json#/$defs/DataQualityMetricsInputDatasetFacet",
    "dataQualityAssertions": f"{_SPEC}/1-0-2/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet",
    "outputStatistics": f"{_SPEC}/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
    "nominalTime": f"{_SPEC}/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet",
    "errorMessage": f"{_SPEC}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "jobType": f"{_SPEC}/2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "dataops_run": f"{PRODUCER}/spec/facets/1-0-0/DataopsRunFacet.json#/$defs/DataopsRunFacet",
}
# Our own run facet (custom facets carry a prefix and a schema of their own, like the spec's).
RUN_FACET_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"{PRODUCER}/spec/facets/1-0-0/DataopsRunFacet.json",
    "$defs": {
        "DataopsRunFacet": {
            "allOf": [
                {"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet"},
                {
                    "type": "object",
                    "properties": {
                        "runId": {"description": "The platform's run id, as the run ledger and the CLI show it", "type": "string"},
                        "windowStart": {"description": "Window start (included), UTC", "type": "string", "format": "date-time"},
                        "windowEnd": {"description": "Window end (excluded), UTC", "type": "string", "format": "date-time"},
                        "asOf": {
                            "description": "What the run knew: sources as published at this instant",
                            "type": "string",
                            "format": "date-time",
                        },
                        "status": {"description": "succeeded, quarantined or failed; absent on START", "type": "string"},
                        "heldDays": {"description": "UTC days held back from publishing", "type": "array", "items": {"type": "string"}},
                    },
                    "required": ["runId", "windowStart", "windowEnd", "asOf"],
                },
            ],
            "type": "object",
        }
    },
    "type": "object",
    "properties": {"dataops_run": {"$ref": "#/$defs/DataopsRunFacet"}},
}
HTTP_TIMEOUT_S = 5.0
HTTP_ATTEMPTS = 3  # one try and two retries
HTTP_BACKOFF_S = 0.5
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{PRODUCER}/runs")


def run_uuid(run_id: str) -> str:
    """The OpenLineage runId of our run `run_id`: the same on every event and every re-emission."""
    return str(uuid.uuid5(_RUN_NAMESPACE, run_id))


def _facet(key: str, **body: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": FACET_SCHEMA_URLS[key], **body}


def _instant(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def datasets(inventory: Inventory, spec: PipelineSpec) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of a run of `spec`, as lineage nodes: `source:<name>` or table names.

    Outputs are the tables the run writes; inputs are the nodes outside them that feed them in the graph.
    """
    written = {spec.bronze, spec.silver, spec.quarantine, *(inventory.mart(m).table for m in spec.marts)}
    edges = lineage.edges(inventory)

    def order(node: str) -> tuple[int, str]:
        return (-1 if node.startswith("source:") else LAYERS.index(inventory.table(node).layer)), node

    outputs = sorted({b for _, b in edges if b in written}, key=order)
    inputs = sorted({a for a, b in edges if b in written and a not in written}, key=order)
    return inputs, outputs


def source_namespace(settings: DataopsSettings, inventory: Inventory, source: str) -> str:
    """Where a source's records come from: the API's base URL, the drop folder, or `replay` (bundled data)."""
    kind = inventory.source(source).kind
    if kind == "file_drop":
        return (settings.drop_folder / source).resolve().as_uri()
    if settings.source_mode != "http":
        return "replay"
    return settings.open_meteo_base_url if kind == "weather" else settings.carbon_intensity_base_url


def _schema(table: TableSpec) -> dict[str, Any]:
    fields = [{"name": c.name, "type": c.type, **({"description": c.doc} if c.doc else {})} for c in table.columns]
    return _facet("schema", fields=fields)


def _assertion_columns(inventory: Inventory, table: TableSpec, suite: str) -> dict[str, str]:
    """Expectation name -> the table column it tests (derived columns are not in the table's schema)."""
    if suite not in inventory.suites:
        return {}
    names = {c.name for c in table.columns}
    columns = {e.name: e.kwargs.get("column") for e in inventory.suite(suite).expectations}
    return {name: col for name, col in columns.items() if isinstance(col, str) and col in names}


def _quality_facets(inventory: Inventory, table: TableSpec, checks: list[ValidationRow], rows_checked: int | None) -> dict[str, Any]:
    latest = {v.expectation: v for v in checks}  # a re-planned publish records its suite again; the last one counts
    columns = _assertion_columns(inventory, table, checks[-1].suite) if checks else {}
    assertions = []
    metrics: dict[str, dict[str, int]] = {}
    for v in latest.values():
        column = columns.get(v.expectation)
        assertions.append({"assertion": v.expectation, "success": bool(v.success), **({"column": column} if column else {})})
        # Nulls are what GE counts as unexpected for not-null checks and as missing for the others.
        nulls = (
            v.unexpected_count if v.expectation_type == "expect_column_values_to_not_be_null" else (v.observed or {}).get("missing_count")
        )
        if column and isinstance(nulls, int):
            metrics[column] = {"nullCount": nulls, "count": v.element_count - nulls}
    facets: dict[str, Any] = {}
    if assertions:
        facets["dataQualityAssertions"] = _facet("dataQualityAssertions", assertions=assertions)
    if rows_checked is not None:
        facets["dataQualityMetrics"] = _facet("dataQualityMetrics", rowCount=rows_checked, columnMetrics=metrics)
    return facets


def _rows_written(spec: PipelineSpec, result: RunResult) -> dict[str, int]:
    written = {t.table: t.rows_written for t in result.tables}
    if result.status != "failed" or result.rows_quarantined:
        written[spec.quarantine] = result.rows_quarantined
    return written


def run_event(
    ctx: PlatformContext,
    spec: PipelineSpec,
    event_type: EventType,
    *,
    run_id: str,
    window: Window,
    as_of: datetime,
    result: RunResult | None = None,
    error: BaseException | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The OpenLineage RunEvent of `event_type` for run `run_id`; COMPLETE and FAIL read `result` and the ledger."""
    settings, inventory = ctx.settings, ctx.inventory
    ours: dict[str, Any] = {
        "runId": run_id,
        "windowStart": _instant(window.start),
        "windowEnd": _instant(window.end),
        "asOf": _instant(as_of),
    }
    if result is not None:
        ours.update(status=result.status, heldDays=result.held_days)
    run_facets: dict[str, Any] = {
        "nominalTime": _facet("nominalTime", nominalStartTime=_instant(window.start), nominalEndTime=_instant(window.end)),
        "dataops_run": _facet("dataops_run", **ours),
    }
    if event_type == "FAIL":
        message = (result.error if result is not None else None) or (f"{type(error).__name__}: {error}" if error else "run failed")
        trace = {"stackTrace": "".join(traceback.format_exception(error))} if error is not None else {}
        run_facets["errorMessage"] = _facet("errorMessage", message=message, programmingLanguage="PYTHON", **trace)

    input_nodes, output_nodes = datasets(inventory, spec)
    validations: dict[str, list[ValidationRow]] = {}
    checked: dict[str, int] = {}
    written: dict[str, int] = {}
    if result is not None:
        for v in ctx.ledger.validations(run_id):
            validations.setdefault(v.table_name, []).append(v)
        with ctx.ledger.session() as s:
            checked = {q.table_name: q.rows_checked for q in s.scalars(select(QualityRow).where(QualityRow.run_id == run_id))}
        written = _rows_written(spec, result)

    inputs = []
    for node in input_nodes:
        if node.startswith("source:"):
            name = node.removeprefix("source:")
            dataset: dict[str, Any] = {"namespace": source_namespace(settings, inventory, name), "name": name}
            if result is not None and event_type == "COMPLETE":
                metrics = _facet("dataQualityMetrics", rowCount=result.records_fetched, columnMetrics={})
                dataset["inputFacets"] = {"dataQualityMetrics": metrics}
        else:
            dataset = {"namespace": settings.warehouse_location, "name": node, "facets": {"schema": _schema(inventory.table(node))}}
        inputs.append(dataset)

    outputs = []
    for node in output_nodes:
        table = inventory.table(node)
        output: dict[str, Any] = {"namespace": settings.warehouse_location, "name": node, "facets": {"schema": _schema(table)}}
        output["facets"].update(_quality_facets(inventory, table, validations.get(node, []), checked.get(node)))
        if node in written:
            output["outputFacets"] = {"outputStatistics": _facet("outputStatistics", rowCount=written[node])}
        outputs.append(output)

    return {
        "eventType": event_type,
        "eventTime": _instant(now or datetime.now(UTC)),
        "producer": PRODUCER,
        "schemaURL": EVENT_SCHEMA_URL,
        "run": {"runId": run_uuid(run_id), "facets": run_facets},
        "job": {
            "namespace": settings.lineage_namespace,
            "name": spec.name,
            "facets": {"jobType": _facet("jobType", processingType="BATCH", integration="DATAOPS", jobType="JOB")},
        },
        "inputs": inputs,
        "outputs": outputs,
    }


def file_path(target: str) -> Path:
    """The file a `file://` URL or a plain path names."""
    if not target.startswith("file://"):
        return Path(target)
    parsed = urlparse(target)
    host = "" if parsed.netloc in ("", "localhost") else parsed.netloc  # file://relative/x: a relative path
    return Path(unquote(host + parsed.path))


def _append(path: Path, event: dict[str, Any]) -> bool:
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # O_APPEND alone may split a long line between writers
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
    except OSError as exc:
        log.warning("OpenLineage %s event not written to %s: %s", event.get("eventType"), path, exc)
        return False
    return True


def endpoint(url: str) -> str:
    """The lineage endpoint of a base URL: `{url}/api/v1/lineage`, unless the URL already ends there."""
    url = url.rstrip("/")
    return url if url.endswith("/api/v1/lineage") else f"{url}/api/v1/lineage"


def _post(url: str, event: dict[str, Any]) -> bool:
    target = endpoint(url)
    problem = ""
    for attempt in range(1, HTTP_ATTEMPTS + 1):
        try:
            response = httpx.post(target, json=event, timeout=HTTP_TIMEOUT_S)
        except httpx.HTTPError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.is_success:
                return True
            problem = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the event was refused; sending it again will not help
        if attempt < HTTP_ATTEMPTS:
            time.sleep(HTTP_BACKOFF_S * attempt)
    log.warning("OpenLineage %s event not delivered to %s after %d attempt(s): %s", event.get("eventType"), target, attempt, problem)
    return False


def emit(settings: DataopsSettings, event: dict[str, Any]) -> bool:
    """Send `event` to `lineage_target`; False (and a warning in the log) when it could not. Never raises."""
    target = settings.lineage_target
    if target is None:
        return False
    if target.startswith(("http://", "https://")):
        return _post(target, event)
    return _append(file_path(target), event)


def emit_run_event(
    ctx: PlatformContext,
    spec: PipelineSpec,
    event_type: EventType,
    *,
    run_id: str,
    window: Window,
    as_of: datetime,
    result: RunResult | None = None,
    error: BaseException | None = None,
) -> None:
    """Build and send one run event when `lineage_target` is set. Never raises: lineage must not fail a run."""
    if ctx.settings.lineage_target is None:
        return
    try:
        event = run_event(ctx, spec, event_type, run_id=run_id, window=window, as_of=as_of, result=result, error=error)
        emit(ctx.settings, event)
    except Exception:
        log.warning("OpenLineage %s event of run %s not emitted", event_type, run_id, exc_info=True)
