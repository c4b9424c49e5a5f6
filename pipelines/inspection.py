"""Read-only views of the lake and the ledger for `dataops status`, `history` and run summaries."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipelines.lakehouse import current

if TYPE_CHECKING:
    from pipelines.context import PlatformContext
    from pipelines.run_result import RunResult


def lake_status(ctx: PlatformContext) -> dict[str, Any]:
    quality = ctx.ledger.latest_quality()
    # The catalog's current metadata, read as pyiceberg reads it but without loading pyiceberg (pipelines/lakehouse/current.py);
    # None where only pyiceberg's catalog gives the same answer (it also creates tables and layers still missing).
    metadata = current.read_metadata(ctx.settings, ctx.inventory)
    tables = []
    for name in sorted(ctx.inventory.tables):
        if metadata is not None:
            entry = _table_status(metadata[name])
        else:
            from pipelines.lakehouse.catalog import load_table

            table = load_table(ctx.catalog, name)
            snapshot = table.current_snapshot()
            summary = snapshot.summary if snapshot is not None else None
            entry = {
                "rows": int(summary.get("total-records") or 0) if summary is not None else 0,
                "snapshots": len(table.metadata.snapshots),
                "current_snapshot_id": snapshot.snapshot_id if snapshot else None,
                "last_run_id": (summary.additional_properties.get("run_id") if summary is not None else None),
                "audit_branches": current.audit_branches(table.metadata.refs),
            }
        tables.append({"table": name, **entry, "quality_score": quality.get(name)})
    pipelines = []
    states = ctx.control.states()
    for name in ctx.inventory.pipelines:
        runs = ctx.ledger.runs(pipeline=name, limit=1)
        r = runs[0] if runs else None
        state = states.get(name)
        paused = bool(state and state.paused)
        pipelines.append(
            {
                "pipeline": name,
                "paused": paused,
                "paused_reason": state.reason if state and paused else None,
                "paused_by": state.changed_by if state and paused else None,
                "run_id": r.run_id if r else None,
                "status": r.status if r else None,
                "window": f"{r.window_start.date()}..{r.window_end.date()}" if r else None,
                "started_at": r.started_at if r else None,
                "rows_in": r.rows_in if r else 0,
                "rows_out": r.rows_out if r else 0,
                "rows_quarantined": r.rows_quarantined if r else 0,
                "held_days": r.held_days if r else [],
                "error": r.error if r else None,
            }
        )
    return {"home": str(ctx.settings.home), "tables": tables, "pipelines": pipelines}


def _table_status(metadata: current.TableMetadata) -> dict[str, Any]:
    """`lake_status`'s figures of one table from its metadata JSON: the values pyiceberg's model of it gives."""
    snapshot = current.current_snapshot(metadata)
    summary = snapshot.get("summary") if snapshot is not None else None
    return {
        "rows": int(summary.get("total-records") or 0) if summary is not None else 0,
        "snapshots": len(metadata.get("snapshots") or []),
        "current_snapshot_id": snapshot["snapshot-id"] if snapshot is not None else None,
        "last_run_id": summary.get("run_id") if summary is not None else None,
        "audit_branches": current.audit_branches(metadata.get("refs") or {}),
    }


def history_of(ctx: PlatformContext, name: str) -> list[dict[str, Any]]:
    from pipelines.lakehouse.catalog import load_table

    ctx.inventory.table(name)  # a clear error for an unknown table
    table = load_table(ctx.catalog, name)
    refs = defaultdict(list)
    for ref_name, ref in table.metadata.refs.items():
        refs[ref.snapshot_id].append(ref_name)
    entries = []
    for snap in sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True):
        summary = snap.summary
        props = summary.additional_properties if summary is not None else {}
        entries.append(
            {
                "snapshot_id": snap.snapshot_id,
                "parent_snapshot_id": snap.parent_snapshot_id,
                "committed_at": datetime.fromtimestamp(snap.timestamp_ms / 1000, UTC).isoformat(),
                "operation": str(summary.operation.value) if summary is not None else "?",
                "run_id": props.get("run_id"),
                "added_records": int(props.get("added-records", 0)),
                "deleted_records": int(props.get("deleted-records", 0)),
                "total_records": int(props.get("total-records", 0)),
                "refs": sorted(refs.get(snap.snapshot_id, [])),
            }
        )
    return entries


def quarantine_summary(ctx: PlatformContext, results: list[RunResult]) -> list[dict[str, Any]]:
    """Quarantined rows written by these runs, grouped by target table, check and scope."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines.lakehouse.catalog import load_table

    run_ids = {r.run_id for r in results}
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for quarantine in sorted({ctx.inventory.pipeline(r.pipeline).quarantine for r in results}):
        table = load_table(ctx.catalog, quarantine)
        if table.current_snapshot() is None:
            continue
        data = table.scan(selected_fields=("target_table", "expectation", "scope", "reason", "run_id", "ts")).to_arrow()
        data = data.filter(pc.is_in(data.column("run_id"), value_set=pa.array(sorted(run_ids))))
        for row in data.to_pylist():
            key = (row["target_table"], row["expectation"], row["scope"])
            g = groups.setdefault(
                key, {"target_table": key[0], "expectation": key[1], "scope": key[2], "rows": 0, "example": f"{row['ts']}: {row['reason']}"}
            )
            g["rows"] += 1
    return sorted(groups.values(), key=lambda g: (g["target_table"], -g["rows"]))
