"""Faults in the lake: a bad publish that bypasses write-audit-publish, to be found later by the monitors.

`bad_publish` overwrites one day of a table on `main` with mutated rows and no audit, the way a buggy manual
job would. Three monitors report it as a `bad_publish` finding naming the last good snapshot: `published`
(pipelines/monitors/publish_audit.py) re-validates main with the suite, which catches impossible values;
`reconcile` (pipelines/monitors/reconcile.py) recomputes the day from the silver it was built from, which
also catches a plausible but wrong day (x10 on a windy day stays within physical bounds); `distribution`
(pipelines/monitors/distribution.py) compares the day with the table's own history where no recompute can
run. A `LakeFault` declares one (scenario files list it as a dict, read by `pipelines.faults.load_fault`);
`apply_lake_fault` does it. `negate`, `scale` and `set_value` build the common mutations.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.errors import DefinitionError, LakehouseError
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table

if TYPE_CHECKING:
    from pipelines.context import PlatformContext  # only a parameter's type: the context never needs the lake faults

Mutation = Callable[[pa.Table], pa.Table]
MutationName = Literal["negate", "scale", "set_value"]


def _index(rows: pa.Table, column: str) -> int:
    index = rows.schema.get_field_index(column)
    if index < 0:
        raise DefinitionError(f"column {column!r} is not in the table; its columns: {', '.join(rows.column_names)}")
    return index


def negate(column: str) -> Mutation:
    """Rows with `column` negated (a sign error)."""

    def mutate(rows: pa.Table) -> pa.Table:
        index = _index(rows, column)
        return rows.set_column(index, column, pc.negate(rows.column(index)))

    return mutate


def scale(column: str, factor: float) -> Mutation:
    """Rows with `column` multiplied by `factor` (a unit error: 1000 for kg written as g)."""

    def mutate(rows: pa.Table) -> pa.Table:
        index = _index(rows, column)
        original = rows.column(index)
        scaled = pc.multiply(original.cast(pa.float64()), pa.scalar(float(factor)))
        return rows.set_column(index, column, scaled.cast(original.type, safe=False))

    return mutate


def set_value(column: str, value: Any) -> Mutation:
    """Rows with `column` set to `value` in every row (None: null)."""

    def mutate(rows: pa.Table) -> pa.Table:
        index = _index(rows, column)
        kind = rows.schema.field(index).type
        try:
            filled = pa.array([value] * rows.num_rows, type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise DefinitionError(f"cannot set column {column!r} ({kind}) to {value!r}: {exc}") from None
        return rows.set_column(index, column, filled)

    return mutate


class LakeFault(BaseModel):
    """A bad publish to declare: which table and day, and how its rows are spoiled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["bad_publish"] = "bad_publish"
    table: str = Field(description="The table whose main is overwritten, e.g. gold.carbon_intensity_hourly")
    day: date = Field(description="The UTC day overwritten")
    mutate: MutationName
    column: str
    factor: float | None = Field(default=None, description="scale: the multiplier")
    value: Any = Field(default=None, description="set_value: the value every row gets (omitted: null)")

    @model_validator(mode="after")
    def _parameters(self) -> LakeFault:
        if self.mutate == "scale" and self.factor is None:
            raise ValueError("mutate: scale needs `factor`, the multiplier (e.g. 1000)")
        if self.mutate != "scale" and self.factor is not None:
            raise ValueError(f"factor: only mutate: scale takes a factor, not {self.mutate}")
        if self.mutate != "set_value" and self.value is not None:
            raise ValueError(f"value: only mutate: set_value takes a value, not {self.mutate}")
        return self

    def mutation(self) -> Mutation:
        if self.mutate == "negate":
            return negate(self.column)
        if self.mutate == "scale":
            assert self.factor is not None
            return scale(self.column, self.factor)
        return set_value(self.column, self.value)

    def day_start(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)


def bad_publish(ctx: PlatformContext, table_name: str, day: datetime, mutate: Mutation, *, run_id: str) -> int:
    """Overwrite `day` of `table_name` on main with mutated rows, without an audit: a bad publish to find later.

    Returns the id of the bad snapshot.
    """
    table = load_table(ctx.catalog, table_name)
    with ctx.control.table_lock(table_name):
        rows = wap.read_days(table, [day])
        bad = mutate(rows).cast(rows.schema)
        table.overwrite(bad, overwrite_filter=wap.days_filter([day]), snapshot_properties={"run_id": run_id})
        table.refresh()
        snapshot = table.current_snapshot()
        if snapshot is None:
            raise LakehouseError(f"{table_name} has no snapshot after overwriting {day.date()}")
        return snapshot.snapshot_id


def apply_lake_fault(ctx: PlatformContext, fault: LakeFault, *, run_id: str = "manual-bad") -> int:
    """Do the bad publish `fault` declares; returns the bad snapshot's id."""
    return bad_publish(ctx, fault.table, fault.day_start(), fault.mutation(), run_id=run_id)
