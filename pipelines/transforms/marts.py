"""Silver to gold: a mart's declared DuckDB SQL over its silver inputs, restricted to the affected days."""

from __future__ import annotations

import re
from datetime import datetime

import pyarrow as pa

from config.inventory import MartSpec, TableSpec
from pipelines import duck
from pipelines.lakehouse.catalog import arrow_schema


def compute_mart(mart: MartSpec, target: TableSpec, inputs: dict[str, pa.Table], *, days: list[datetime]) -> pa.Table:
    """Rows of the mart for `days`; `inputs` maps each silver table name to its rows of those days."""
    with duck.cursor() as con:
        sql = mart.sql
        for name, data in inputs.items():
            alias = name.replace(".", "__")
            con.register(alias, data)
            sql = re.sub(rf"\b{re.escape(name)}\b", alias, sql)
        lineage = " , ".join(f"(SELECT max(run_id) FROM {name.replace('.', '__')})" for name in inputs)
        result = con.sql(f"SELECT m.*, greatest({lineage}) AS run_id FROM ({sql}) AS m").to_arrow_table()
    schema = arrow_schema(target)
    day_set = {d.date() for d in days}
    columns = {field.name: result.column(field.name) if field.name in result.column_names else None for field in schema}
    missing = [n for n, c in columns.items() if c is None]
    if missing:
        raise ValueError(f"mart {mart.name}: its SQL does not produce column(s) {', '.join(missing)} of {target.name}")
    table = pa.table({n: c for n, c in columns.items()}).cast(schema)
    keep = [i for i, ts in enumerate(table.column("ts").to_pylist()) if ts is not None and ts.date() in day_set]
    return table.take(pa.array(keep, type=pa.int64()))
