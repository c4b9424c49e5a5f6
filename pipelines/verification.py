"""Verification after a fix: does a table's published partition pass its suite, and is what was held still held?

The agent resolves an incident only when a check here passed. It reads `main` as readers see it and runs
the same Great Expectations suite the promotion runs, so "verified" means what "published" means.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow.compute as pc
from pydantic import BaseModel, Field

from config.errors import PipelineError
from config.inventory import SuiteSpec
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.validation.suite import validate


class PartitionCheck(BaseModel):
    table: str
    day: str
    rows: int
    passed: bool = Field(description="The day has rows and every expectation of the table's suite holds on main")
    failing: list[str] = Field(default_factory=list, description="Expectations that failed, with their unexpected counts")
    quarantined_rows: int = Field(description="Rows of this table and day held in quarantine")
    leaked_keys: int = Field(description="Quarantined record keys that are nevertheless on main")
    contained: bool = Field(
        description="What quarantine holds is absent from main and every row on main passes the row checks "
        "(day-level checks such as a slot count may still fail because of the rows held back)"
    )
    detail: str


def suite_of(ctx: PlatformContext, table: str) -> SuiteSpec | None:
    return next((s for s in ctx.inventory.suites.values() if s.table == table), None)


def check_partition(ctx: PlatformContext, table: str, day: datetime, *, as_of: datetime) -> PartitionCheck:
    """Re-validate `table`'s main rows of the UTC `day` and compare them with the quarantine."""
    spec = ctx.inventory.table(table)
    if spec.layer not in ("silver", "gold"):
        raise PipelineError(f"{table} is a {spec.layer} table; verification reads silver and gold tables")
    day = day.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = wap.read_days(load_table(ctx.catalog, table), [day])
    suite = suite_of(ctx, table)
    failing: list[str] = []
    row_failures = 0
    if suite is not None and rows.num_rows:
        outcome = validate(suite, rows, as_of=as_of)
        failing = [f"{o.name} ({o.scope}, {o.unexpected_count} unexpected)" for o in outcome.outcomes if not o.success]
        row_failures = sum(1 for o in outcome.outcomes if not o.success and o.scope == "row")
    held = _quarantined(ctx, table, day)
    keys = set(rows.column("record_key").to_pylist()) if "record_key" in rows.column_names else set()
    leaked = len(held & keys)
    passed = rows.num_rows > 0 and not failing
    if not rows.num_rows:
        detail = f"{table} has no rows on {day.date()}" + (f"; all {len(held)} of its rows are held in quarantine" if held else "")
    elif failing:
        detail = f"{table} {day.date()} fails {', '.join(failing)}"
    else:
        detail = f"{table} {day.date()}: {rows.num_rows} rows pass {suite.name if suite else 'no suite'}; {len(held)} held in quarantine"
    return PartitionCheck(
        table=table, day=day.date().isoformat(), rows=rows.num_rows, passed=passed, failing=failing, quarantined_rows=len(held),
        leaked_keys=leaked, contained=(rows.num_rows > 0 or bool(held)) and row_failures == 0 and leaked == 0, detail=detail,
    )  # fmt: skip


def _quarantined(ctx: PlatformContext, table: str, day: datetime) -> set[str]:
    keys: set[str] = set()
    for pipeline in ctx.inventory.pipelines_feeding(table):
        q = load_table(ctx.catalog, pipeline.quarantine)
        held = wap.read_days(q, [day], columns=("ts", "record_key", "target_table"))
        if held.num_rows:
            mine = held.filter(pc.equal(held.column("target_table"), table))
            keys |= {k for k in mine.column("record_key").to_pylist() if k}
    return keys
