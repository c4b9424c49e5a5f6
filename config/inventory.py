"""The one validated inventory of sources, tables, pipelines, marts and expectation suites.

Declarations live in `config/*.yaml`; `load_inventory()` reads them into `*Spec` models and rejects unknown
tables, duplicate names and bad types with messages that name the bad value and the valid ones. The
scheduler, the CLI, the tools and the docs all read this one inventory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from config.errors import DefinitionError

ColumnType = Literal["timestamptz", "date", "double", "long", "int", "string", "boolean"]
Layer = Literal["bronze", "silver", "gold", "quarantine"]
Scope = Literal["row", "partition", "table"]

LAYERS: tuple[Layer, ...] = ("bronze", "silver", "gold", "quarantine")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Spec):
    """One column of a table: its Iceberg type and whether it may be null."""

    name: str
    type: ColumnType
    required: bool = False
    doc: str = ""


class TableSpec(_Spec):
    """Everything about an Iceberg table except how to write it."""

    name: str = Field(description="namespace.table, e.g. silver.carbon_intensity")
    columns: tuple[ColumnSpec, ...]
    partition_by: tuple[str, ...] = ("day(ts)",)
    key: tuple[str, ...] = Field(description="Columns that identify one record; duplicates are resolved on them")
    doc: str = ""

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        known = ", ".join(c.name for c in self.columns)
        raise DefinitionError(f"table {self.name} has no column {name!r}; its columns: {known}")

    @model_validator(mode="after")
    def _check(self) -> TableSpec:
        layer, _, short = self.name.partition(".")
        if layer not in LAYERS or not _NAME.match(short):
            raise ValueError(f"table name {self.name!r} must be <layer>.<name> with layer one of {', '.join(LAYERS)}")
        names = [c.name for c in self.columns]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"table {self.name} declares column(s) {', '.join(duplicates)} twice")
        for field in (*self.key, *(_partition_source(p) for p in self.partition_by)):
            if field not in names:
                raise ValueError(f"table {self.name}: {field!r} is not a column; its columns: {', '.join(names)}")
        return self


def _partition_source(expression: str) -> str:
    match = re.fullmatch(r"(day|month|year|hour|identity)\((\w+)\)", expression)
    if not match:
        raise ValueError(f"partition {expression!r} must look like day(col), month(col), hour(col) or identity(col)")
    return match.group(2)


class SourceSpec(_Spec):
    """A source: where records come from and how a window is cut into requests."""

    name: str
    kind: Literal["carbon_intensity", "generation_mix", "weather", "file_drop"]
    cadence_minutes: int = Field(gt=0, description="How often the source publishes a new slot")
    chunk_days: int = Field(default=14, gt=0, description="Longest window one request may ask for")
    contract: tuple[str, ...] = Field(description="Fields every record of the payload must carry")
    doc: str = ""
    attribution: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    replay_coverage: tuple[tuple[str, str], ...] = Field(
        default=(), description="UTC [start, end) ranges the bundled replay data covers; empty = always"
    )


class ExpectationSpec(_Spec):
    """One Great Expectations expectation with the domain reason behind it and what failing it holds back."""

    name: str
    expectation: str = Field(description="Great Expectations expectation type, e.g. expect_column_values_to_be_between")
    kwargs: dict[str, Any]
    scope: Scope = Field(description="row: quarantine failing rows; partition: hold the day back; table: hold the run")
    why: str
    completeness: bool = Field(
        default=False,
        description="A partition check that only counts slots: under `partial_days: publish_flagged` a day failing only these is published",
    )

    @field_validator("expectation")
    @classmethod
    def _known(cls, value: str) -> str:
        if not value.startswith("expect_"):
            raise ValueError(f"expectation {value!r} is not a Great Expectations expectation type (expect_...)")
        return value


class SuiteSpec(_Spec):
    """An expectation suite over one table, with derived columns computed by DuckDB before validating."""

    name: str
    table: str
    derived: dict[str, str] = Field(
        default_factory=dict,
        description="name -> DuckDB SQL expression over the batch; may use window functions and {as_of}",
    )
    expectations: tuple[ExpectationSpec, ...]

    @field_validator("expectations")
    @classmethod
    def _distinct_names(cls, value: tuple[ExpectationSpec, ...]) -> tuple[ExpectationSpec, ...]:
        names = [e.name for e in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"expectation name(s) {', '.join(twice)} used twice: results and quarantine rows are named by them")
        return value


class MartSpec(_Spec):
    """A gold mart: DuckDB SQL over silver tables, recomputed per affected day."""

    name: str
    table: str
    inputs: tuple[str, ...]
    sql: str
    suite: str | None = None


class FalseAlarmBudget(_Spec):
    """How often a monitor may page on clean data: at most `incidents` per `per_days` days of data."""

    incidents: int = Field(default=1, gt=0)
    per_days: int = Field(default=30, gt=0)

    @property
    def per_day(self) -> float:
        return self.incidents / self.per_days


ValueModel = Literal["seasonal", "forecast_error", "physical", "detector"]


class MonitorSpec(_Spec):
    """A monitor: what it watches and when it speaks. Evaluated after each run and on a timer."""

    name: str
    kind: Literal["freshness", "volume", "schema", "value", "published", "reconcile", "distribution", "forecast", "keyed_change"]
    table: str
    severity: Literal["info", "warning", "critical"] = "warning"
    max_lag_minutes: int | None = Field(default=None, description="freshness: lag of the newest slot that opens an incident")
    expression: str | None = Field(default=None, description="value: DuckDB expression over the table giving the series")
    where: str | None = Field(default=None, description="value: DuckDB filter selecting one series, e.g. fuel = 'wind'")
    model: ValueModel = Field(
        default="seasonal",
        description="value: the model of normal behaviour (seasonal, forecast_error, physical, detector; pipelines/monitors/models.py)",
    )
    reference: str | None = Field(
        default=None, description="value, forecast_error: DuckDB expression of the forecast itself, to tell a glitch of one slot"
    )
    forecast: str | None = Field(
        default=None,
        description=(
            "value: a forecast of pipelines.yaml whose point, from the latest issue made at or before each slot, "
            "`expression` and `reference` may use as the column our_forecast"
        ),
    )
    budget: FalseAlarmBudget = Field(
        default_factory=FalseAlarmBudget, description="value/distribution: false alarms allowed on clean data; sets the threshold"
    )
    min_history_days: int = Field(default=14, gt=0, description="value/distribution: days of data before the monitor speaks (warming up)")
    columns: tuple[str, ...] = Field(default=(), description="distribution: numeric columns compared with the table's own history")
    ratios: tuple[tuple[str, str], ...] = Field(
        default=(),
        description="distribution: pairs of `columns` that measure one quantity (actual, forecast); each day's median ratio is "
        "compared with the table's history too, so one column rescaled alone is caught at factors its own range hides",
    )
    history_days: int = Field(default=28, gt=0, description="volume/value/published/reconcile: days of history looked at")
    series_key: tuple[str, ...] = Field(default=(), description="keyed_change: the columns naming one series (country_or_region)")
    max_ratio: float = Field(default=3.0, gt=1, description="keyed_change: a value this many times its series' earlier value (or 1/x)")
    min_difference: float = Field(default=50.0, ge=0, description="keyed_change: ... and at least this far from it")
    tolerance: float = Field(default=0.05, ge=0, description="volume: relative deviation tolerated beyond the robust spread")
    doc: str = ""

    @model_validator(mode="after")
    def _kind_fields(self) -> MonitorSpec:
        if self.kind == "freshness" and self.max_lag_minutes is None:
            raise ValueError(f"freshness monitor {self.name!r} needs max_lag_minutes")
        if self.kind == "value" and not self.expression:
            raise ValueError(f"value monitor {self.name!r} needs an expression")
        if self.kind == "value" and self.model == "forecast_error" and not self.reference:
            raise ValueError(f"value monitor {self.name!r} (model forecast_error) needs a reference: the forecast's own expression")
        if self.kind == "distribution" and not self.columns:
            raise ValueError(f"distribution monitor {self.name!r} needs columns")
        if self.kind == "keyed_change" and (len(self.columns) != 1 or not self.series_key):
            raise ValueError(f"keyed_change monitor {self.name!r} needs one column (the value) and a series_key (what names a series)")
        if self.ratios and self.kind != "distribution":
            raise ValueError(f"monitor {self.name!r}: ratios are for distribution monitors")
        for pair in self.ratios:
            if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(self.columns):
                raise ValueError(f"monitor {self.name!r}: ratio {list(pair)} must name two different columns of {list(self.columns)}")
        return self


class ScheduleSpec(_Spec):
    cron: str | None = None
    interval_minutes: int | None = None
    manual: bool = False


class PipelineSpec(_Spec):
    """A pipeline: one source through bronze and silver into the gold marts that read it."""

    name: str
    source: str
    bronze: str
    silver: str
    quarantine: str
    suite: str
    marts: tuple[str, ...] = ()
    schedule: ScheduleSpec = ScheduleSpec(manual=True)
    default_window: tuple[str, str] | None = Field(
        default=None, description="UTC dates [start, end) `dataops run` uses without --start/--end; the bundled data covers it"
    )
    partial_days: Literal["hold", "publish_flagged"] = Field(
        default="hold",
        description="A day of real data with slots missing: hold it back whole, or publish what it has with a completeness flag",
    )
    doc: str = ""


class ForecastSpec(_Spec):
    """A forecast pipeline: issues the next hours of one silver series after each run of another pipeline."""

    name: str
    input: str = Field(description="The silver table whose history the model learns from")
    column: str = Field(description="The column of `input` forecast, e.g. actual")
    table: str = Field(description="The gold table issues are published to")
    quarantine: str = Field(description="Where a malformed issue goes, whole")
    suite: str
    after: str = Field(description="The pipeline after each of whose runs a forecast is issued")
    model: str = Field(default="default", description="A model of pipelines/forecast/models.py, or default (the backtest's choice)")
    issue_every_minutes: int = Field(default=30, gt=0, description="At most one issue per this many minutes of data time")
    refit_hours: int = Field(default=24, gt=0, description="Refit the model when its training data is this old")
    history_days: int = Field(default=120, gt=0, description="Days of history the model is trained on")
    doc: str = ""


class Inventory(_Spec):
    """All declarations, cross-checked."""

    sources: dict[str, SourceSpec]
    tables: dict[str, TableSpec]
    suites: dict[str, SuiteSpec]
    marts: dict[str, MartSpec]
    pipelines: dict[str, PipelineSpec]
    monitors: dict[str, MonitorSpec] = Field(default_factory=dict)
    forecasts: dict[str, ForecastSpec] = Field(default_factory=dict)

    def table(self, name: str) -> TableSpec:
        try:
            return self.tables[name]
        except KeyError:
            raise DefinitionError(f"unknown table {name!r}; known: {', '.join(sorted(self.tables))}") from None

    def pipeline(self, name: str) -> PipelineSpec:
        try:
            return self.pipelines[name]
        except KeyError:
            raise DefinitionError(f"unknown pipeline {name!r}; known: {', '.join(sorted(self.pipelines))}") from None

    def source(self, name: str) -> SourceSpec:
        return self.sources[name]

    def suite(self, name: str) -> SuiteSpec:
        return self.suites[name]

    def mart(self, name: str) -> MartSpec:
        return self.marts[name]

    def forecast(self, name: str) -> ForecastSpec:
        try:
            return self.forecasts[name]
        except KeyError:
            raise DefinitionError(f"unknown forecast {name!r}; known: {', '.join(sorted(self.forecasts))}") from None

    def pipelines_feeding(self, table: str) -> list[PipelineSpec]:
        """Pipelines whose silver table or marts write `table`."""
        result = []
        for p in self.pipelines.values():
            outputs = {p.bronze, p.silver, p.quarantine, *(self.marts[m].table for m in p.marts)}
            if table in outputs:
                result.append(p)
        return result

    @model_validator(mode="after")
    def _cross_check(self) -> Inventory:
        known_tables = ", ".join(sorted(self.tables))

        def need_table(owner: str, table: str, layer: str | None = None) -> None:
            if table not in self.tables:
                raise ValueError(f"{owner} names unknown table {table!r}; known: {known_tables}")
            if layer and not table.startswith(layer + "."):
                raise ValueError(f"{owner} names {table!r} where a {layer} table is expected")

        for suite in self.suites.values():
            need_table(f"suite {suite.name!r}", suite.table)
            columns = {c.name for c in self.tables[suite.table].columns} | set(suite.derived)
            for exp in suite.expectations:
                for key in ("column", "column_A", "column_B"):
                    col = exp.kwargs.get(key)
                    if col is not None and col not in columns:
                        raise ValueError(
                            f"suite {suite.name!r} expectation {exp.name!r} uses unknown column {col!r}; "
                            f"known: {', '.join(sorted(columns))}"
                        )
        for mart in self.marts.values():
            need_table(f"mart {mart.name!r}", mart.table, "gold")
            for table in mart.inputs:
                need_table(f"mart {mart.name!r}", table, "silver")
            if mart.suite is not None and mart.suite not in self.suites:
                raise ValueError(f"mart {mart.name!r} names unknown suite {mart.suite!r}; known: {', '.join(sorted(self.suites))}")
        for monitor in self.monitors.values():
            need_table(f"monitor {monitor.name!r}", monitor.table)
            if monitor.kind == "reconcile":
                need_table(f"monitor {monitor.name!r}", monitor.table, "gold")
            if monitor.kind == "distribution" and not monitor.table.startswith(("silver.", "gold.")):
                raise ValueError(f"monitor {monitor.name!r} names {monitor.table!r} where a silver or gold table is expected")
            if monitor.forecast is not None and monitor.forecast not in self.forecasts:
                raise ValueError(
                    f"monitor {monitor.name!r} names unknown forecast {monitor.forecast!r}; known: {', '.join(sorted(self.forecasts))}"
                )
            if monitor.kind == "forecast" and not any(f.table == monitor.table for f in self.forecasts.values()):
                raise ValueError(f"forecast monitor {monitor.name!r}: no forecast writes {monitor.table!r}")
            if monitor.kind == "reconcile" and not any(m.table == monitor.table for m in self.marts.values()):
                raise ValueError(f"reconcile monitor {monitor.name!r}: no mart writes {monitor.table!r}")
            columns = {c.name for c in self.tables[monitor.table].columns}
            for column in monitor.columns:
                if column not in columns:
                    raise ValueError(
                        f"monitor {monitor.name!r} names unknown column {column!r} of {monitor.table}; known: {', '.join(sorted(columns))}"
                    )
        for f in self.forecasts.values():
            need_table(f"forecast {f.name!r}", f.input, "silver")
            need_table(f"forecast {f.name!r}", f.table, "gold")
            need_table(f"forecast {f.name!r}", f.quarantine, "quarantine")
            if f.column not in {c.name for c in self.tables[f.input].columns}:
                raise ValueError(f"forecast {f.name!r} names unknown column {f.column!r} of {f.input}")
            if f.suite not in self.suites:
                raise ValueError(f"forecast {f.name!r} names unknown suite {f.suite!r}; known: {', '.join(sorted(self.suites))}")
            if f.after not in self.pipelines:
                raise ValueError(f"forecast {f.name!r} runs after unknown pipeline {f.after!r}; known: {', '.join(sorted(self.pipelines))}")
            if f.name in self.pipelines:
                raise ValueError(f"forecast {f.name!r} has the name of a pipeline; `dataops run {f.name}` must mean one thing")
        for p in self.pipelines.values():
            if p.source not in self.sources:
                raise ValueError(f"pipeline {p.name!r} names unknown source {p.source!r}; known: {', '.join(sorted(self.sources))}")
            need_table(f"pipeline {p.name!r}", p.bronze, "bronze")
            need_table(f"pipeline {p.name!r}", p.silver, "silver")
            need_table(f"pipeline {p.name!r}", p.quarantine, "quarantine")
            if p.suite not in self.suites:
                raise ValueError(f"pipeline {p.name!r} names unknown suite {p.suite!r}; known: {', '.join(sorted(self.suites))}")
            for m in p.marts:
                if m not in self.marts:
                    raise ValueError(f"pipeline {p.name!r} names unknown mart {m!r}; known: {', '.join(sorted(self.marts))}")
            s = p.schedule
            if not s.manual and (s.cron is None) == (s.interval_minutes is None):
                raise ValueError(f"pipeline {p.name!r}: a schedule has exactly one of cron or interval_minutes, or manual: true")
        return self


BRONZE_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(name="ts", type="timestamptz", doc="Slot start, UTC"),
    ColumnSpec(name="record_key", type="string", required=True, doc="Identity of the record within its slot"),
    ColumnSpec(name="payload", type="string", required=True, doc="The record as received, JSON"),
    ColumnSpec(name="payload_hash", type="string", required=True, doc="sha256 of the canonical payload"),
    ColumnSpec(name="source_uri", type="string", doc="Where the record came from"),
    ColumnSpec(name="run_id", type="string", required=True),
    ColumnSpec(name="fetched_at", type="timestamptz", required=True),
)

QUARANTINE_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(name="ts", type="timestamptz", doc="Slot start of the held record, UTC"),
    ColumnSpec(name="record_key", type="string", required=True),
    ColumnSpec(name="target_table", type="string", required=True, doc="Table the record was meant for"),
    ColumnSpec(name="expectation", type="string", required=True, doc="Name of the failed expectation or check"),
    ColumnSpec(name="scope", type="string", required=True, doc="row, partition or table"),
    ColumnSpec(name="reason", type="string", required=True, doc="Why the record was held, in words"),
    ColumnSpec(name="original", type="string", required=True, doc="The original values, JSON"),
    ColumnSpec(name="run_id", type="string", required=True),
    ColumnSpec(name="quarantined_at", type="timestamptz", required=True),
)


def _parse(kind: str, model: type[BaseModel], name: str, body: Any) -> Any:
    if not isinstance(body, dict):
        raise DefinitionError(f"{kind} {name!r} must be a mapping, got {type(body).__name__}")
    try:
        return model.model_validate({"name": name, **body})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']} (got {err.get('input')!r})" for err in exc.errors()
        )
        raise DefinitionError(f"{kind} {name!r} is invalid: {problems}") from None


# libyaml's parser where PyYAML was built with it (the wheels are): every command reads the inventory.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A YAML loader that refuses a mapping naming the same key twice (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise DefinitionError(f"duplicate name {key!r} at {key_node.start_mark}; names must be unique")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DefinitionError(
            f"missing declaration file {path}; config_dir must hold sources.yaml, tables.yaml, pipelines.yaml, suites.yaml, monitors.yaml"
        )
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise DefinitionError(f"{path} must hold a mapping at the top level")
    return data


def _section(data: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    section = data.get(key, {})
    if not isinstance(section, dict):
        raise DefinitionError(f"{path}: '{key}' must be a mapping of name -> declaration")
    for name in section:
        if not isinstance(name, str) or not _NAME.match(name.split(".")[-1]):
            raise DefinitionError(f"{path}: name {name!r} must be lower_snake_case")
    return section


def load_inventory(config_dir: Path) -> Inventory:
    """Read and cross-check every declaration under `config_dir`."""
    files = {key: config_dir / f"{key}.yaml" for key in ("sources", "tables", "pipelines", "suites", "monitors")}
    raw = {key: _read_yaml(path) for key, path in files.items()}

    sources = {n: _parse("source", SourceSpec, n, b) for n, b in _section(raw["sources"], "sources", files["sources"]).items()}
    tables: dict[str, TableSpec] = {}
    for n, b in _section(raw["tables"], "tables", files["tables"]).items():
        tables[n] = _parse("table", TableSpec, n, b)
    suites = {n: _parse("suite", SuiteSpec, n, b) for n, b in _section(raw["suites"], "suites", files["suites"]).items()}
    marts = {n: _parse("mart", MartSpec, n, b) for n, b in _section(raw["pipelines"], "marts", files["pipelines"]).items()}
    pipelines = {n: _parse("pipeline", PipelineSpec, n, b) for n, b in _section(raw["pipelines"], "pipelines", files["pipelines"]).items()}
    monitors = {n: _parse("monitor", MonitorSpec, n, b) for n, b in _section(raw["monitors"], "monitors", files["monitors"]).items()}
    forecasts = {n: _parse("forecast", ForecastSpec, n, b) for n, b in _section(raw["pipelines"], "forecasts", files["pipelines"]).items()}

    # Bronze and quarantine tables share one layout per pipeline; declare them here, once.
    for p in pipelines.values():
        for name, columns, key in (
            (p.bronze, BRONZE_COLUMNS, ("record_key", "payload_hash")),
            (p.quarantine, QUARANTINE_COLUMNS, ("record_key", "run_id", "expectation")),
        ):
            if name in tables:
                raise DefinitionError(f"table {name!r} is derived from pipeline {p.name!r}; remove it from tables.yaml")
            tables[name] = TableSpec(name=name, columns=columns, key=key, doc=f"{name.split('.')[0]} of {p.name}")
    for f in forecasts.values():
        if f.quarantine in tables:
            raise DefinitionError(f"table {f.quarantine!r} is derived from forecast {f.name!r}; remove it from tables.yaml")
        key = ("record_key", "run_id", "expectation")
        tables[f.quarantine] = TableSpec(name=f.quarantine, columns=QUARANTINE_COLUMNS, key=key, doc=f"quarantine of {f.name}")

    try:
        return Inventory(
            sources=sources, tables=tables, suites=suites, marts=marts, pipelines=pipelines, monitors=monitors, forecasts=forecasts
        )
    except ValidationError as exc:
        raise DefinitionError("; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())) from None
