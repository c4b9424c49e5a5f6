"""Runs a declared expectation suite with Great Expectations over an Arrow batch.

Derived columns are computed first with DuckDB (they may use window functions and `{as_of}`); then Great
Expectations validates the frame with COMPLETE results, and failures are mapped back to row numbers:
row-scope failures name rows to quarantine, partition-scope failures name UTC days to hold back,
table-scope failures hold back the whole batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, Field

from config.inventory import ExpectationSpec, SuiteSpec
from pipelines import duck

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
log = logging.getLogger(__name__)
ROW = "_row"
_SAMPLE = 5
NAME_META = "dataops_expectation"  # the key of an expectation's `meta` that names it in the suite
_lock = threading.Lock()


class ExpectationOutcome(BaseModel):
    """The result of one expectation: what was observed and a sample of failing rows."""

    name: str
    expectation: str
    scope: str
    why: str
    success: bool
    element_count: int
    unexpected_count: int
    observed: dict[str, Any] = Field(default_factory=dict)
    sample: list[dict[str, Any]] = Field(default_factory=list)


class SuiteOutcome(BaseModel):
    suite: str
    row_count: int
    outcomes: list[ExpectationOutcome]
    failing_rows: dict[int, list[str]] = Field(default_factory=dict, description="row number -> failed expectation names")
    held_days: dict[datetime, list[str]] = Field(default_factory=dict, description="day -> partition expectations failed")
    table_failures: list[str] = Field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)


@cache
def gx_context() -> Any:
    """The ephemeral Great Expectations context and its whole-dataframe batch definition, built once per process."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    _quiet_gx_loggers()  # before the context: building it logs at INFO
    context = gx.get_context(mode="ephemeral")
    _quiet_gx_loggers()  # and the modules it imported
    try:
        context.variables.progress_bars = {"globally": False, "metric_calculations": False}  # type: ignore[assignment]
    except Exception:
        pass
    asset = context.data_sources.add_pandas("dataops").add_dataframe_asset("batch")
    return context, asset.add_batch_definition_whole_dataframe("whole")


def _quiet_gx_loggers() -> None:
    """Some GX modules set their own logger to INFO at import (`data_context.types.base` announces every temporary
    docs folder): hand them back to the `great_expectations` logger's level, so the service log stays calm."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("great_expectations.") and isinstance(logger, logging.Logger) and logger.level < logging.ERROR:
            logger.setLevel(logging.NOTSET)


def _expectation(spec: ExpectationSpec) -> Any:
    import great_expectations.expectations as gxe

    class_name = "".join(part.capitalize() for part in spec.expectation.split("_"))
    cls = getattr(gxe, class_name, None)
    if cls is None:
        raise ValueError(f"Great Expectations has no expectation {spec.expectation!r} ({class_name})")
    # The name travels in `meta`: results come back grouped by column, not in the suite's order.
    return cls(**spec.kwargs, meta={NAME_META: spec.name})


def with_derived(suite: SuiteSpec, data: pa.Table, *, as_of: datetime) -> pd.DataFrame:
    """The batch as pandas with `_row` and every derived column of the suite."""
    data = data.append_column(ROW, pa.array(range(data.num_rows), type=pa.int64()))
    with duck.cursor() as con:
        con.register("batch", data)
        query = "SELECT * FROM batch"
        for name, expression in suite.derived.items():
            rendered = expression.replace("{as_of}", as_of.astimezone(UTC).isoformat())
            query = f"SELECT *, ({rendered}) AS {name} FROM ({query})"
        return con.execute(f"{query} ORDER BY {ROW}").df()


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _clean_or_complete(batch: Any, gx_suite: Any) -> Any:
    """The suite's results with every unexpected row named.

    A first pass asks for counts only (GX's BASIC result format costs about half of COMPLETE); when every
    expectation passed with no unexpected row, that is the whole answer (COMPLETE would add only empty lists).
    Otherwise the suite runs again with COMPLETE, which names the unexpected rows by `_row`."""
    basic = batch.validate(gx_suite, result_format={"result_format": "BASIC"})
    if all(
        res.success and not (res.result or {}).get("unexpected_count") and not (res.exception_info or {}).get("raised_exception")
        for res in basic.results
    ):
        return basic
    return batch.validate(gx_suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]})


def _name_of(res: Any) -> str:
    """The suite expectation a Great Expectations result belongs to (its `meta` carries the name)."""
    return str((res.expectation_config.meta or {}).get(NAME_META))


def validate(suite: SuiteSpec, data: pa.Table, *, as_of: datetime, day_column: str = "ts") -> SuiteOutcome:
    """Validate `data` with the suite; never raises for failing data, only for a broken suite."""
    outcome = SuiteOutcome(suite=suite.name, row_count=data.num_rows, outcomes=[])
    if data.num_rows == 0:
        return outcome
    frame = with_derived(suite, data, as_of=as_of)
    import great_expectations as gx

    with _lock:  # the ephemeral context is shared; GX is not thread-safe
        _, definition = gx_context()
        batch = definition.get_batch(batch_parameters={"dataframe": frame})
        gx_suite = gx.ExpectationSuite(name=f"{suite.name}", expectations=[_expectation(e) for e in suite.expectations])
        result = _clean_or_complete(batch, gx_suite)
    by_name = {e.name: e for e in suite.expectations}
    order = {name: i for i, name in enumerate(by_name)}
    if sorted(map(_name_of, result.results)) != sorted(by_name):
        raise ValueError(
            f"suite {suite.name}: Great Expectations returned results for {sorted(map(_name_of, result.results))}, not {sorted(by_name)}"
        )
    failing: dict[int, list[str]] = defaultdict(list)
    held: dict[datetime, list[str]] = defaultdict(list)
    days = frame[day_column].dt.floor("D") if day_column in frame else None
    for res in sorted(result.results, key=lambda r: order[_name_of(r)]):
        spec = by_name[_name_of(res)]
        info = res.result or {}
        rows = [int(item[ROW]) for item in info.get("unexpected_index_list") or [] if isinstance(item, dict) and ROW in item]
        column = spec.kwargs.get("column")
        sample = []
        for r in rows[:_SAMPLE]:
            record = {k: _jsonable(v) for k, v in frame.iloc[r].items() if k in {day_column, column, "record_key", "fuel"} or k == ROW}
            sample.append(record)
        observed = {k: _jsonable(info[k]) for k in ("unexpected_percent", "missing_count", "observed_value") if k in info}
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise ValueError(f"suite {suite.name} expectation {spec.name} could not run: {res.exception_info.get('exception_message')}")
        outcome.outcomes.append(
            ExpectationOutcome(
                name=spec.name,
                expectation=spec.expectation,
                scope=spec.scope,
                why=spec.why,
                success=bool(res.success),
                element_count=int(info.get("element_count", frame.shape[0])),
                unexpected_count=int(info.get("unexpected_count", len(rows))),
                observed=observed,
                sample=sample,
            )
        )
        if res.success:
            continue
        if spec.scope == "row":
            for r in rows:
                failing[r].append(spec.name)
        elif spec.scope == "partition" and days is not None:
            for day in sorted({days.iloc[r].to_pydatetime() for r in rows}):
                held[day].append(spec.name)
        else:
            outcome.table_failures.append(spec.name)
    outcome.failing_rows = dict(failing)
    outcome.held_days = dict(held)
    return outcome
