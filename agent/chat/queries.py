"""The read-only SQL the chat sends through `query_lake` to answer questions: one function per question.

Every statement is one SELECT over tables named by the inventory, with days and times the planner
computed itself (never text from the message), so nothing a person types reaches the SQL. A part of the
day ("yesterday morning") is a pair of whole UTC hours, written into the SQL as integers.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from agent.chat.intents import FUEL_GROUPS, Metric


class MetricColumn(BaseModel):
    """Where a metric lives and how it reads."""

    model_config = ConfigDict(frozen=True)

    table: str
    expression: str
    label: str
    unit: str
    filter: str = "TRUE"
    source: str | None = None  # a subquery read instead of the table itself (a group of fuels summed slot by slot)

    @property
    def relation(self) -> str:
        """What a query reads FROM: the table, or the subquery over it."""
        return self.source or self.table


def metric_column(metric: Metric | None, fuel: str | None = None) -> MetricColumn:
    if metric == "temperature":
        return MetricColumn(table="silver.weather", expression="temperature_c", label="temperature", unit="°C")
    if metric == "share" and fuel in FUEL_GROUPS:
        fuels = FUEL_GROUPS[fuel]
        listed = ", ".join(f"'{f}'" for f in fuels)
        return MetricColumn(
            table="silver.generation_mix",
            expression="perc",
            label=f"{fuel.replace('_', '-')} share of generation ({' + '.join(fuels)})",
            unit="%",
            source=f"(SELECT ts, sum(perc) AS perc FROM silver.generation_mix WHERE fuel IN ({listed}) GROUP BY ts)",
        )
    if metric == "share":
        fuel = fuel or "wind"
        return MetricColumn(
            table="silver.generation_mix", expression="perc", label=f"{fuel} share of generation", unit="%", filter=f"fuel = '{fuel}'"
        )
    if metric == "forecast_error":
        return MetricColumn(
            table="silver.carbon_intensity",
            expression="abs(actual - forecast)",
            label="forecast error |actual − forecast|",
            unit="gCO2/kWh",
        )
    if metric == "forecast_bias":
        return MetricColumn(
            table="silver.carbon_intensity", expression="forecast - actual", label="forecast bias (forecast − actual)", unit="gCO2/kWh"
        )
    if metric == "forecast":
        return MetricColumn(table="silver.carbon_intensity", expression="forecast", label="forecast carbon intensity", unit="gCO2/kWh")
    return MetricColumn(table="silver.carbon_intensity", expression="coalesce(actual, forecast)", label="carbon intensity", unit="gCO2/kWh")


def _instant(day: date) -> str:
    return f"TIMESTAMPTZ '{datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()}'"


def _between(start: date, end: date) -> str:
    return f"ts >= {_instant(start)} AND ts < {_instant(end)}"


def _hours(hours: tuple[int, int] | None) -> str:
    """Slots whose UTC hour is in [from, to); TRUE for the whole day. The hours are integers the planner computed."""
    if hours is None:
        return "TRUE"
    first, last = int(hours[0]), int(hours[1])
    if not 0 <= first < last <= 24:
        raise ValueError(f"hours of the day must satisfy 0 <= from < to <= 24, got {hours}")
    # timezone('UTC', ts): the hour on the UTC clock whatever the session's TimeZone says.
    return f"hour(timezone('UTC', ts)) >= {first} AND hour(timezone('UTC', ts)) < {last}"


def value_at(table: str, at: datetime, minutes: int) -> str:
    columns = {"silver.weather": "ts, temperature_c", "silver.generation_mix": "ts, fuel, perc"}.get(table, 'ts, forecast, actual, "index"')
    until = at + timedelta(minutes=minutes)
    return (
        f"SELECT {columns} FROM {table} WHERE ts >= TIMESTAMPTZ '{at.isoformat()}' AND ts < TIMESTAMPTZ '{until.isoformat()}' ORDER BY ts"
    )


def latest_value(table: str, now: datetime) -> str:
    """The rows of the newest slot of `table` at or before `now` (every fuel's row, for the generation mix)."""
    columns = {"silver.weather": "ts, temperature_c", "silver.generation_mix": "ts, fuel, perc"}.get(table, 'ts, forecast, actual, "index"')
    newest = f"(SELECT max(ts) FROM {table} WHERE ts <= TIMESTAMPTZ '{now.isoformat()}')"
    return f"SELECT {columns} FROM {table} WHERE ts = {newest} ORDER BY {columns.split(', ')[-2] if 'fuel' in columns else 'ts'}"


def day_contents(table: str, quarantine: str, day: date) -> str:
    """Slots published on the day, and rows of the day held in quarantine, per check."""
    within = _between(day, day + timedelta(days=1))
    return (
        f"SELECT 'published' AS part, NULL AS expectation, NULL AS reason, count(DISTINCT ts) AS slots, count(*) AS n_rows "
        f"FROM {table} WHERE {within} "
        f"UNION ALL SELECT 'quarantined', expectation, any_value(reason), count(DISTINCT ts), count(*) FROM {quarantine} "
        f"WHERE target_table = '{table}' AND {within} GROUP BY expectation "
        f"UNION ALL SELECT 'first', NULL, CAST(min(ts) AS VARCHAR), NULL, NULL FROM {table} "
        f"UNION ALL SELECT 'last', NULL, CAST(max(ts) AS VARCHAR), NULL, NULL FROM {table}"
    )


def freshness(tables: list[str]) -> str:
    return " UNION ALL ".join(f"SELECT '{t}' AS table_name, max(ts) AS newest, count(*) AS n_rows FROM {t}" for t in tables)


def quarantined(
    quarantines: list[str], *, table: str | None, start: date | None, end: date | None, hours: tuple[int, int] | None = None
) -> str:
    conditions = ["TRUE"]
    if table is not None:
        conditions.append(f"target_table = '{table}'")
    if start is not None and end is not None:
        conditions.append(_between(start, end))
    if hours is not None:
        conditions.append(_hours(hours))
    where = " AND ".join(conditions)
    union = " UNION ALL ".join(f"SELECT target_table, expectation, scope, reason, ts FROM {q}" for q in quarantines)
    return (
        f"SELECT target_table, expectation, any_value(scope) AS scope, any_value(reason) AS reason, count(*) AS n_rows, "
        f"count(DISTINCT CAST(ts AS DATE)) AS days, min(ts) AS first_ts, max(ts) AS last_ts "
        f"FROM ({union}) WHERE {where} GROUP BY target_table, expectation ORDER BY n_rows DESC"
    )


def aggregate(column: MetricColumn, start: date, end: date, hours: tuple[int, int] | None = None) -> str:
    return (
        f"WITH v AS (SELECT ts, {column.expression} AS v FROM {column.relation} WHERE {_between(start, end)} AND {_hours(hours)} "
        f"AND {column.filter} "
        f"AND {column.expression} IS NOT NULL) "
        f"SELECT count(*) AS n, avg(v) AS mean, min(v) AS low, arg_min(ts, v) AS low_at, max(v) AS high, arg_max(ts, v) AS high_at, "
        f"(SELECT min(ts) FROM {column.table}) AS first_ts, (SELECT max(ts) FROM {column.table}) AS last_ts FROM v"
    )


def greenest(start: date, end: date, *, slots: int, slot_minutes: int, hours: tuple[int, int] | None = None, dirtiest: bool = False) -> str:
    """The window of `slots` consecutive slots with the lowest mean intensity (the highest: `dirtiest`), and the period's mean.

    With `hours`, only slots inside them are kept; a window must cover `slots` slots exactly `slot_minutes` apart,
    so it can neither run past the end of the hours nor join one day's hours to the next."""
    frame = f"ORDER BY ts ROWS BETWEEN CURRENT ROW AND {slots - 1} FOLLOWING"
    span = (slots - 1) * slot_minutes
    return (
        f"WITH s AS (SELECT ts, coalesce(actual, forecast) AS v FROM silver.carbon_intensity WHERE {_between(start, end)} AND {_hours(hours)} "
        f"AND coalesce(actual, forecast) IS NOT NULL), "
        f"w AS (SELECT ts, avg(v) OVER ({frame}) AS mean_v, count(v) OVER ({frame}) AS k, last_value(ts) OVER ({frame}) AS last_ts FROM s), "
        f"best AS (SELECT ts, mean_v FROM w WHERE k = {slots} AND last_ts = ts + INTERVAL {span} MINUTE ORDER BY mean_v{' DESC' if dirtiest else ''}, ts LIMIT 1) "
        f"SELECT best.ts, best.mean_v, (SELECT avg(v) FROM s) AS period_mean, (SELECT count(*) FROM s) AS n, "
        f"(SELECT min(ts) FROM silver.carbon_intensity) AS first_ts, (SELECT max(ts) FROM silver.carbon_intensity) AS last_ts "
        f"FROM (SELECT 1) AS one LEFT JOIN best ON TRUE"
    )


def day_counts(table: str, quarantine: str | None, start: date, end: date) -> str:
    """Per day in [start, end): slots and rows published, and rows held in quarantine (when the table has one)."""
    within = _between(start, end)
    held = (
        f"SELECT CAST(ts AS DATE) AS day, 0 AS slots, 0 AS n_rows, count(*) AS held FROM {quarantine} "
        f"WHERE target_table = '{table}' AND {within} GROUP BY 1"
        if quarantine
        else "SELECT NULL::DATE AS day, 0 AS slots, 0 AS n_rows, 0 AS held WHERE FALSE"
    )
    return (
        f"SELECT CAST(day AS VARCHAR) AS day, sum(slots) AS slots, sum(n_rows) AS n_rows, sum(held) AS held FROM ("
        f"SELECT CAST(ts AS DATE) AS day, count(DISTINCT ts) AS slots, count(*) AS n_rows, 0 AS held FROM {table} "
        f"WHERE {within} GROUP BY 1 UNION ALL {held}) GROUP BY day ORDER BY day"
    )


def row_count(table: str, time_column: str | None) -> str:
    """The rows `table` holds on main, and the first and last time it covers when it has a time column."""
    if time_column is None:
        return f"SELECT count(*) AS n FROM {table}"
    return f"SELECT count(*) AS n, min({time_column}) AS first_ts, max({time_column}) AS last_ts FROM {table}"


def per_period(column: MetricColumn, start: date, end: date, hours: tuple[int, int] | None, per: str) -> str:
    """Each day's (or each week's, from Monday) mean, lowest and highest over [start, end), in order."""
    return (
        f"WITH v AS (SELECT ts, {column.expression} AS v FROM {column.relation} WHERE {_between(start, end)} AND {_hours(hours)} "
        f"AND {column.filter} AND {column.expression} IS NOT NULL) "
        f"SELECT date_trunc('{per}', ts) AS period, min(ts) AS first_ts, max(ts) AS last_ts, avg(v) AS mean, min(v) AS low, "
        f"max(v) AS high, count(*) AS n FROM v GROUP BY 1 ORDER BY 1"
    )


def count_beyond(
    column: MetricColumn, start: date, end: date, hours: tuple[int, int] | None, *, threshold: float, above: bool, days: bool
) -> str:
    """How many readings (or days, by their mean) of [start, end) lie above (or below) `threshold`, of how many."""
    beyond = f"{'>' if above else '<'} {threshold!r}"
    base = (
        f"WITH v AS (SELECT ts, {column.expression} AS v FROM {column.relation} WHERE {_between(start, end)} AND {_hours(hours)} "
        f"AND {column.filter} AND {column.expression} IS NOT NULL)"
    )
    if days:
        return (
            f"{base}, d AS (SELECT date_trunc('day', ts) AS day, avg(v) AS mean FROM v GROUP BY 1) "
            f"SELECT count(*) FILTER (WHERE mean {beyond}) AS hits, count(*) AS n, "
            f"string_agg(strftime(day, '%Y-%m-%d'), ', ' ORDER BY day) FILTER (WHERE mean {beyond}) AS which FROM d"
        )
    return (
        f"{base} SELECT count(*) FILTER (WHERE v {beyond}) AS hits, count(*) AS n, "
        f"min(ts) FILTER (WHERE v {beyond}) AS first_at, max(ts) FILTER (WHERE v {beyond}) AS last_at FROM v"
    )


def extreme_day(column: MetricColumn, start: date, end: date, hours: tuple[int, int] | None = None, *, highest: bool) -> str:
    """The day of [start, end) whose mean is lowest (or highest), with how many days were compared and their mean."""
    order = "DESC" if highest else "ASC"
    return (
        f"WITH v AS (SELECT ts, {column.expression} AS v FROM {column.relation} WHERE {_between(start, end)} AND {_hours(hours)} "
        f"AND {column.filter} AND {column.expression} IS NOT NULL), "
        "d AS (SELECT date_trunc('day', ts) AS day, avg(v) AS mean, count(*) AS n FROM v GROUP BY 1) "
        f"SELECT day, mean, n, (SELECT count(*) FROM d) AS days, (SELECT avg(mean) FROM d) AS mean_of_days FROM d ORDER BY mean {order}, day LIMIT 1"
    )


def mix(start: date, end: date, hours: tuple[int, int] | None = None) -> str:
    """Each fuel's mean share of generation over [start, end), largest first."""
    return (
        f"SELECT fuel, avg(perc) AS mean, count(*) AS n FROM silver.generation_mix WHERE {_between(start, end)} AND {_hours(hours)} "
        "AND perc IS NOT NULL GROUP BY fuel ORDER BY mean DESC, fuel"
    )


def outlook(table: str, since: datetime, until: datetime, issued_by: datetime) -> str:
    """What the latest forecast issued by `issued_by` expects over [since, until): mean, extremes, 80 % band, reach."""
    latest = f"(SELECT max(issued_at) FROM {table} WHERE issued_at <= TIMESTAMPTZ '{issued_by.isoformat()}')"
    return (
        f"WITH f AS (SELECT ts, point, lo80, hi80 FROM {table} WHERE issued_at = {latest} "
        f"AND ts >= TIMESTAMPTZ '{since.isoformat()}' AND ts < TIMESTAMPTZ '{until.isoformat()}') "
        f"SELECT {latest} AS issued_at, count(*) AS n, avg(point) AS mean, min(point) AS low, arg_min(ts, point) AS low_at, "
        "max(point) AS high, arg_max(ts, point) AS high_at, avg(lo80) AS lo80, avg(hi80) AS hi80, "
        f"(SELECT max(ts) FROM {table} WHERE issued_at = {latest}) AS reaches FROM f"
    )
