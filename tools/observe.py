"""Observation tools: current metrics, lineage of a table, and the incident memory."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from pipelines import lineage, metrics
from tools import names
from tools.base import ToolContext, ToolInput, ToolSpec
from tools.schedule import paused_notes


class CurrentMetricsInput(ToolInput):
    name_prefix: str = Field(default="dataops_", description="Only metrics whose name starts with this, e.g. dataops_freshness.")


class MetricSample(BaseModel):
    name: str
    labels: dict[str, str]
    value: float


class PipelineState(BaseModel):
    """A pipeline's latest run and whether its schedule is paused."""

    last_status: str | None = Field(description="Status of its latest run; None when it never ran")
    last_window: str | None = Field(default=None, description="The latest run's window, start..end (UTC)")
    held_days: list[str] = Field(default_factory=list, description="Days the latest run held back")
    paused: str | None = Field(default=None, description="Who paused it and why; None when it runs on schedule")


class CurrentMetricsResult(BaseModel):
    samples: list[MetricSample] = Field(description="The live Prometheus samples of this process (empty in a fresh CLI process)")
    quality_scores: dict[str, float] = Field(description="Latest data-quality score per table, from the run ledger")
    open_incidents: dict[str, int] = Field(description="Unresolved incidents by severity")
    pipelines: dict[str, PipelineState] = Field(default_factory=dict, description="Every pipeline's latest run and pause")


def current_metrics(ctx: ToolContext, args: CurrentMetricsInput) -> CurrentMetricsResult:
    samples = []
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name.startswith(args.name_prefix) and not sample.name.endswith(("_created", "_bucket")):
                samples.append(MetricSample(name=sample.name, labels=dict(sample.labels), value=float(sample.value)))
    return CurrentMetricsResult(
        samples=samples[:200],
        quality_scores=ctx.platform.ledger.latest_quality(),
        open_incidents=ctx.platform.incidents.open_counts(),
        pipelines=_pipelines(ctx),
    )


def _pipelines(ctx: ToolContext) -> dict[str, PipelineState]:
    paused = paused_notes(ctx.platform)
    out: dict[str, PipelineState] = {}
    for name in ctx.platform.inventory.pipelines:
        runs = ctx.platform.ledger.runs(pipeline=name, limit=1)
        last = runs[0] if runs else None
        out[name] = PipelineState(
            last_status=last.status if last else None,
            last_window=f"{last.window_start:%Y-%m-%d %H:%M}..{last.window_end:%Y-%m-%d %H:%M}" if last else None,
            held_days=list(last.held_days or []) if last else [],
            paused=paused.get(name),
        )
    return out


class TableLineageInput(ToolInput):
    table: str = Field(description="A table as layer.name, e.g. silver.carbon_intensity.")


class TableLineageResult(BaseModel):
    table: str
    upstream: list[str] = Field(description="What it is derived from, nearest first; sources are source:<name>")
    downstream: list[str] = Field(description="What is derived from it, nearest first: what a bad partition here spoils")
    pipelines: list[str] = Field(description="Pipelines that write it")


def table_lineage(ctx: ToolContext, args: TableLineageInput) -> TableLineageResult:
    inv = ctx.platform.inventory
    return TableLineageResult(
        table=args.table,
        upstream=lineage.upstream(inv, args.table),
        downstream=lineage.downstream(inv, args.table),
        pipelines=[p.name for p in inv.pipelines_feeding(args.table)],
    )


class SearchMemoryInput(ToolInput):
    text: str = Field(min_length=1, max_length=2000, description="Symptoms to look up: incident kind, table, what was seen.")
    kind: str | None = Field(default=None, description="'incident' for past incidents, 'runbook' for runbooks; both when unset.")
    k: int = Field(default=3, ge=1, le=10, description="How many matches.")


class MemoryMatch(BaseModel):
    id: str
    kind: str
    title: str
    score: float
    root_cause: str
    actions: list[str]
    outcome: str


class SearchMemoryResult(BaseModel):
    matches: list[MemoryMatch]


def search_memory(ctx: ToolContext, args: SearchMemoryInput) -> SearchMemoryResult:
    hits = ctx.memory().search(args.text, k=args.k, kind=args.kind)
    return SearchMemoryResult(
        matches=[
            MemoryMatch(
                id=h.record.id,
                kind=h.record.kind,
                title=h.record.title,
                score=round(h.score, 3),
                root_cause=h.record.root_cause,
                actions=h.record.actions,
                outcome=h.record.outcome,
            )
            for h in hits
        ]
    )


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.CURRENT_METRICS,
        description="Current platform metrics: Prometheus samples, data-quality scores and open incidents.",
        input=CurrentMetricsInput,
        result=CurrentMetricsResult,
        effect="read",
        run=current_metrics,
    ),
    ToolSpec(
        name=names.TABLE_LINEAGE,
        description="Where a table's data comes from and which tables are derived from it.",
        input=TableLineageInput,
        result=TableLineageResult,
        effect="read",
        run=table_lineage,
    ),
    ToolSpec(
        name=names.SEARCH_MEMORY,
        description="Search past incidents and runbooks for similar symptoms: their root cause, actions and outcome.",
        input=SearchMemoryInput,
        result=SearchMemoryResult,
        effect="read",
        run=search_memory,
    ),
]
