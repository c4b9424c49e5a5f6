"""OpenLineage run events: START before each run, COMPLETE or FAIL after it, to a file or an HTTP endpoint.

    RunEvent (spec 2-0-2, built with openlineage-python's typed models and facets)
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

`lineage_target` picks the sink (pipelines/lineage_sink.py): unset (off), a file (`file:///path` or a plain
path; one JSON event a line, appended under an exclusive lock and fsynced) or an `http(s)://` URL (POST
`{url}/api/v1/lineage`, as Marquez takes them; DataHub's is under `/openapi/openlineage`), delivered through
the outbox so an endpoint that is down delays events and never loses, duplicates or blocks them. Emission
never raises: a lineage sink that is down costs a warning in the log, never a run.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import attr
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    InputDatasetFacet,
    OutputDatasetFacet,
    RunFacet,
    data_quality_assertions_dataset,
    data_quality_metrics_input_dataset,
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    schema_dataset,
)
from openlineage.client.serde import Serde
from sqlalchemy import select

from config.inventory import LAYERS, Inventory, PipelineSpec, TableSpec
from config.settings import DataopsSettings
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.ledger import QualityRow, ValidationRow
from pipelines.lineage_sink import emit, endpoint, file_path
from pipelines.sources.base import Window

if TYPE_CHECKING:
    from openlineage.client.generated.base import DatasetFacet

    from pipelines.run_result import RunResult

__all__ = ["PRODUCER", "RUN_FACET_SCHEMA", "build_run_event", "emit", "emit_run_event", "endpoint", "file_path", "run_event", "run_uuid"]

log = logging.getLogger(__name__)

EventType = Literal["START", "COMPLETE", "FAIL"]
PRODUCER = "https://github.com/dataops/dataops"
RUN_FACET_SCHEMA_URL = f"{PRODUCER}/spec/facets/1-0-0/DataopsRunFacet.json#/$defs/DataopsRunFacet"
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
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, f"{PRODUCER}/runs")


@attr.define
class DataopsRunFacet(RunFacet):
    """`dataops_run`: the platform's own run id, window, as-of instant and outcome (schema: RUN_FACET_SCHEMA)."""

    runId: str
    windowStart: str
    windowEnd: str
    asOf: str
    status: str | None = attr.field(default=None)
    heldDays: list[str] | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return RUN_FACET_SCHEMA_URL


def run_uuid(run_id: str) -> str:
    """The OpenLineage runId of our run `run_id`: the same on every event and every re-emission."""
    return str(uuid.uuid5(_RUN_NAMESPACE, run_id))


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


def _schema(table: TableSpec) -> schema_dataset.SchemaDatasetFacet:
    fields = [
        schema_dataset.SchemaDatasetFacetFields(name=c.name, type=c.type, description=c.doc or None, fields=None) for c in table.columns
    ]
    return schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)


def _assertion_columns(inventory: Inventory, table: TableSpec, suite: str) -> dict[str, str]:
    """Expectation name -> the table column it tests (derived columns are not in the table's schema)."""
    if suite not in inventory.suites:
        return {}
    names = {c.name for c in table.columns}
    columns = {e.name: e.kwargs.get("column") for e in inventory.suite(suite).expectations}
    return {name: col for name, col in columns.items() if isinstance(col, str) and col in names}


def _row_count(rows: int, metrics: dict[str, data_quality_metrics_input_dataset.ColumnMetrics] | None = None) -> InputDatasetFacet:
    return data_quality_metrics_input_dataset.DataQualityMetricsInputDatasetFacet(
        columnMetrics=metrics or {}, rowCount=rows, producer=PRODUCER
    )


def _quality_facets(inventory: Inventory, table: TableSpec, checks: list[ValidationRow], rows_checked: int | None) -> dict[str, Any]:
    latest = {v.expectation: v for v in checks}  # a re-planned publish records its suite again; the last one counts
    columns = _assertion_columns(inventory, table, checks[-1].suite) if checks else {}
    assertions = []
    metrics: dict[str, data_quality_metrics_input_dataset.ColumnMetrics] = {}
    for v in latest.values():
        column = columns.get(v.expectation)
        assertions.append(
            data_quality_assertions_dataset.Assertion(assertion=v.expectation, success=bool(v.success), column=column, params=None)
        )
        # Nulls are what GE counts as unexpected for not-null checks and as missing for the others.
        nulls = (
            v.unexpected_count if v.expectation_type == "expect_column_values_to_not_be_null" else (v.observed or {}).get("missing_count")
        )
        if column and isinstance(nulls, int):
            metrics[column] = data_quality_metrics_input_dataset.ColumnMetrics(
                nullCount=nulls, count=v.element_count - nulls, quantiles=None
            )
    facets: dict[str, Any] = {}
    if assertions:
        facets["dataQualityAssertions"] = data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
            assertions=assertions, producer=PRODUCER
        )
    if rows_checked is not None:
        facets["dataQualityMetrics"] = _row_count(rows_checked, metrics)
    return facets


def _rows_written(spec: PipelineSpec, result: RunResult) -> dict[str, int]:
    written = {t.table: t.rows_written for t in result.tables}
    if result.status != "failed" or result.rows_quarantined:
        written[spec.quarantine] = result.rows_quarantined
    return written


def build_run_event(
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
) -> RunEvent:
    """The OpenLineage RunEvent of `event_type` for run `run_id`; COMPLETE and FAIL read `result` and the ledger."""
    settings, inventory = ctx.settings, ctx.inventory
    ours = DataopsRunFacet(
        runId=run_id,
        windowStart=_instant(window.start),
        windowEnd=_instant(window.end),
        asOf=_instant(as_of),
        status=result.status if result is not None else None,
        heldDays=result.held_days if result is not None else None,
        producer=PRODUCER,
    )
    run_facets: dict[str, RunFacet] = {
        "nominalTime": nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=_instant(window.start), nominalEndTime=_instant(window.end), producer=PRODUCER
        ),
        "dataops_run": ours,
    }
    if event_type == "FAIL":
        message = (result.error if result is not None else None) or (f"{type(error).__name__}: {error}" if error else "run failed")
        trace = "".join(traceback.format_exception(error)) if error is not None else None
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=message, programmingLanguage="PYTHON", stackTrace=trace, producer=PRODUCER
        )

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
            counted = result is not None and event_type == "COMPLETE"
            input_facets = {"dataQualityMetrics": _row_count(result.records_fetched)} if counted and result is not None else None
            inputs.append(
                InputDataset(namespace=source_namespace(settings, inventory, name), name=name, facets=None, inputFacets=input_facets)
            )
        else:
            schema: dict[str, DatasetFacet] = {"schema": _schema(inventory.table(node))}
            inputs.append(InputDataset(namespace=settings.warehouse_location, name=node, facets=schema, inputFacets=None))

    outputs = []
    for node in output_nodes:
        table = inventory.table(node)
        facets: dict[str, DatasetFacet] = {"schema": _schema(table)}
        facets.update(_quality_facets(inventory, table, validations.get(node, []), checked.get(node)))
        statistics: dict[str, OutputDatasetFacet] | None = None
        if node in written:
            row_count = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=written[node], producer=PRODUCER)
            statistics = {"outputStatistics": row_count}
        outputs.append(OutputDataset(namespace=settings.warehouse_location, name=node, facets=facets, outputFacets=statistics))

    job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="DATAOPS", jobType="JOB", producer=PRODUCER)
    return RunEvent(
        eventType=RunState(event_type),
        eventTime=_instant(now or datetime.now(UTC)),
        run=Run(runId=run_uuid(run_id), facets=run_facets),
        job=Job(namespace=settings.lineage_namespace, name=spec.name, facets={"jobType": job_type}),
        inputs=inputs,
        outputs=outputs,
        producer=PRODUCER,
    )


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
    """`build_run_event` as the JSON document that is sent (openlineage-python's serialisation: nulls left out)."""
    event = build_run_event(ctx, spec, event_type, run_id=run_id, window=window, as_of=as_of, result=result, error=error, now=now)
    return Serde.to_dict(event)


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
    """Build and send one run event when `lineage_target` is set. Never raises: lineage must not fail a run.

    The outbox key is the run and the event type: a run's START (or COMPLETE) is queued and delivered once.
    """
    if ctx.settings.lineage_target is None:
        return
    try:
        event = run_event(ctx, spec, event_type, run_id=run_id, window=window, as_of=as_of, result=result, error=error)
        emit(ctx.settings, event, key=f"openlineage:{run_uuid(run_id)}:{event_type}", ledger=ctx.ledger)
    except Exception:
        log.warning("OpenLineage %s event of run %s not emitted", event_type, run_id, exc_info=True)
