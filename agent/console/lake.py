"""What the Runs, Tables and Lineage pages show: runs and their validation reports from the ops database, tables
from the lake (schema, snapshots with the run that made each, branches and tags, quarantined rows, a day as of a
snapshot), and the lineage graph of the inventory laid out in columns by layer.

The lake is read with pyiceberg only when one table's page is asked for; runs and lineage never touch it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from config.errors import DataOpsError
from pipelines.context import PlatformContext
from pipelines.ledger import RunRow, ValidationRow, as_utc
from pipelines.lineage import edges

ROW_LIMIT = 200
LAYERS = ("source", "bronze", "silver", "quarantine", "gold")


class RunView(BaseModel):
    run_id: str
    pipeline: str
    status: str
    window_start: datetime
    window_end: datetime
    started_at: datetime
    finished_at: datetime | None
    attempts: int
    rows_in: int
    rows_out: int
    rows_quarantined: int
    held_days: list[str]
    snapshots: dict[str, Any]
    timings: dict[str, Any]
    error: str | None

    @classmethod
    def of(cls, row: RunRow) -> RunView:
        fields = {name: getattr(row, name) for name in cls.model_fields}
        for name in ("window_start", "window_end", "started_at", "finished_at"):
            fields[name] = as_utc(fields[name])
        return cls.model_validate(fields)


class CheckView(BaseModel):
    """One expectation of a run's validation: what Data Docs would show for it."""

    table: str
    suite: str
    expectation: str
    expectation_type: str
    scope: str
    success: bool
    element_count: int
    unexpected_count: int
    observed: dict[str, Any]
    sample: list[Any]

    @classmethod
    def of(cls, row: ValidationRow) -> CheckView:
        return cls(
            table=row.table_name, suite=row.suite, expectation=row.expectation, expectation_type=row.expectation_type,
            scope=row.scope, success=row.success, element_count=row.element_count, unexpected_count=row.unexpected_count,
            observed=row.observed or {}, sample=row.sample or [],
        )  # fmt: skip


class TimelineBar(BaseModel):
    run_id: str
    status: str
    x: float
    width: float
    label: str


def runs(ctx: PlatformContext, pipeline: str | None = None, limit: int = 100) -> list[RunView]:
    return [RunView.of(r) for r in ctx.ledger.runs(pipeline=pipeline, limit=limit)]


def timeline(found: list[RunView], width: float = 1000.0) -> list[TimelineBar]:
    """Each run as a bar over the span of the windows shown: where and how wide its window is (data time)."""
    if not found:
        return []
    start = min(r.window_start for r in found)
    end = max(r.window_end for r in found)
    span = max((end - start).total_seconds(), 1.0)
    bars = []
    for r in sorted(found, key=lambda r: r.window_start):
        x = (r.window_start - start).total_seconds() / span * width
        w = max((r.window_end - r.window_start).total_seconds() / span * width, 2.0)
        label = f"{r.run_id} {r.status} {r.window_start:%Y-%m-%d}..{r.window_end:%Y-%m-%d}"
        bars.append(TimelineBar(run_id=r.run_id, status=r.status, x=round(x, 1), width=round(w, 1), label=label))
    return bars


def run_report(ctx: PlatformContext, run_id: str) -> tuple[RunView, dict[str, list[CheckView]]] | None:
    """A run and its validation report per table (failures first), or None for an unknown run."""
    row = ctx.ledger.run(run_id)
    if row is None:
        return None
    by_table: dict[str, list[CheckView]] = defaultdict(list)
    for check in ctx.ledger.validations(run_id):
        by_table[check.table_name].append(CheckView.of(check))
    return RunView.of(row), {t: sorted(c, key=lambda c: c.success) for t, c in sorted(by_table.items())}


# -- tables ---------------------------------------------------------------------------------------------------------
class TableView(BaseModel):
    name: str
    doc: str
    columns: list[dict[str, Any]]
    partition_by: list[str]
    key: list[str]
    exists: bool
    problem: str = ""
    snapshots: list[dict[str, Any]] = []
    refs: dict[str, list[str]] = {}
    quarantined: list[dict[str, Any]] = []
    quarantine_table: str | None = None


def table_view(ctx: PlatformContext, name: str) -> TableView:
    """The table's declaration and, when it exists in the lake, its snapshots, refs and quarantined rows."""
    from pipelines.inspection import history_of
    from pipelines.lakehouse.catalog import load_table

    spec = ctx.inventory.table(name)  # DefinitionError naming the known tables
    view = TableView(
        name=name,
        doc=spec.doc,
        columns=[c.model_dump(mode="json") for c in spec.columns],
        partition_by=list(spec.partition_by),
        key=list(spec.key),
        exists=True,
    )
    try:
        table = load_table(ctx.catalog, name)
        view.snapshots = history_of(ctx, name)
    except DataOpsError as exc:
        return view.model_copy(update={"exists": False, "problem": str(exc)})
    refs: dict[str, list[str]] = {"branch": [], "tag": []}
    for ref_name, ref in sorted(table.metadata.refs.items()):
        refs[str(ref.snapshot_ref_type.value)].append(f"{ref_name} → {ref.snapshot_id}")
    view.refs = refs
    quarantine = next((p.quarantine for p in ctx.inventory.pipelines.values() if name in (p.bronze, p.silver)), None)
    if quarantine is not None:
        view.quarantine_table = quarantine
        view.quarantined = _quarantined(ctx, quarantine, name)
    return view


def _quarantined(ctx: PlatformContext, quarantine: str, target: str) -> list[dict[str, Any]]:
    from pyiceberg.expressions import EqualTo

    from pipelines.lakehouse.catalog import load_table

    try:
        table = load_table(ctx.catalog, quarantine)
    except DataOpsError:
        return []
    # pyiceberg predicates take positional (term, literal); their pydantic signatures hide that from mypy.
    rows = table.scan(row_filter=EqualTo("target_table", target), limit=ROW_LIMIT).to_arrow().to_pylist()  # type: ignore[call-arg,arg-type]
    return sorted(rows, key=lambda r: str(r.get("quarantined_at")), reverse=True)


def day_as_of(ctx: PlatformContext, name: str, day: str, snapshot_id: int | None) -> list[dict[str, Any]]:
    """The rows of one UTC day of a table as they stood at `snapshot_id` (time travel), or now when None."""
    from pipelines.lakehouse.catalog import load_table
    from pipelines.lakehouse.wap import days_filter

    ctx.inventory.table(name)
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    table = load_table(ctx.catalog, name)
    if snapshot_id is not None and table.snapshot_by_id(snapshot_id) is None:
        raise DataOpsError(f"table {name} has no snapshot {snapshot_id}; its page lists them")
    scan = table.scan(row_filter=days_filter([start]), snapshot_id=snapshot_id, limit=ROW_LIMIT)
    return sorted(scan.to_arrow().to_pylist(), key=lambda r: str(r.get("ts")))


# -- lineage --------------------------------------------------------------------------------------------------------
class Node(BaseModel):
    name: str
    layer: str
    x: float
    y: float
    href: str | None


class Edge(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


NODE_W, NODE_H, GAP_X, GAP_Y = 220.0, 34.0, 80.0, 18.0


def lineage(ctx: PlatformContext) -> tuple[list[Node], list[Edge], float, float]:
    """The inventory's graph laid out left to right by layer: nodes, edges, and the drawing's width and height."""
    pairs = edges(ctx.inventory)
    names = sorted({n for pair in pairs for n in pair})
    columns: dict[str, list[str]] = {layer: [] for layer in LAYERS}
    for name in names:
        layer = "source" if name.startswith("source:") else name.split(".", 1)[0]
        columns.setdefault(layer, []).append(name)
    placed: dict[str, Node] = {}
    for index, (layer, members) in enumerate((k, v) for k, v in columns.items() if v):
        for row, name in enumerate(members):
            placed[name] = Node(
                name=name,
                layer=layer,
                x=index * (NODE_W + GAP_X) + 10,
                y=row * (NODE_H + GAP_Y) + 10,
                href=None if layer == "source" else f"/tables/{name}",
            )
    lines = [Edge(x1=placed[a].x + NODE_W, y1=placed[a].y + NODE_H / 2, x2=placed[b].x, y2=placed[b].y + NODE_H / 2) for a, b in pairs]
    width = max((n.x + NODE_W for n in placed.values()), default=0) + 10
    height = max((n.y + NODE_H for n in placed.values()), default=0) + 10
    return list(placed.values()), lines, width, height
