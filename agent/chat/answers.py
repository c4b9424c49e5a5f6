"""Tool results as sentences a person reads: numbers, days and reasons, never raw JSON.

Each function takes the `Intent` and the results the planner gathered and returns prose. A call that did
not run (refused, expired, failed) is told as such, with the reason the policy or the tool gave.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from agent.chat.day_hours import describe_hours
from agent.chat.intents import Intent
from agent.chat.queries import MetricColumn
from agent.planner import Turn
from pipelines.forecast.greenest import GreenestWindow, describe
from policies.engine import ESCALATE_HINT

_VERDICTS = {"denied": "was refused", "expired": "expired without a decision", "invalid": "could not be used", "error": "failed"}


def figure(value: Any, digits: int = 1) -> str:
    if value is None:
        return "none"
    number = round(float(value), digits)
    return str(int(number)) if number == int(number) else f"{number:.{digits}f}"


def _when(value: Any) -> str:
    """An ISO instant as 'YYYY-MM-DD HH:MM UTC'."""
    if value is None:
        return "never"
    moment = datetime.fromisoformat(str(value).replace(" ", "T").replace("+00", "+00:00").replace("+00:00:00", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def period_phrase(start: date, end: date, hours: tuple[int, int] | None = None) -> str:
    """The days, and the hours of each day when a part of the day narrowed them, so the reader sees what was computed."""
    last = end - timedelta(days=1)
    days = f"on {start.isoformat()}" if last == start else f"from {start.isoformat()} to {last.isoformat()}"
    if hours is None:
        return days
    return f"{days}, {describe_hours(hours)}" + ("" if last == start else " each day")


def not_done(turn: Turn) -> str:
    # The policy's reasons end with advice for the model ("... or call escalate_incident ..."); a person needs the reason only.
    reason = turn.message.split(f"; {ESCALATE_HINT}")[0].split(f", or {ESCALATE_HINT}")[0].split(f" or {ESCALATE_HINT}")[0]
    return f"{turn.call.name} {_VERDICTS.get(turn.status, turn.status)}: {reason}"


def rows_of(turn: Turn) -> list[dict[str, Any]]:
    result = turn.result or {}
    columns = result.get("columns") or []
    return [dict(zip(columns, row, strict=False)) for row in result.get("rows") or []]


def status(result: dict[str, Any]) -> str:
    counts = result.get("open_incidents") or {}
    scores = result.get("quality_scores") or {}
    open_text = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("critical", "warning", "info"))
    score_text = "; ".join(f"{t} {figure(100 * v, 0)}%" for t, v in sorted(scores.items())) or "no run has scored a table yet"
    text = f"Open incidents: {open_text}. Latest data-quality score per table (share of rows that passed validation): {score_text}."
    pipelines = result.get("pipelines") or {}
    if pipelines:
        text += "\nPipelines:" + "".join(f"\n- {name}: {_pipeline_state(state)}" for name, state in pipelines.items())
    return text


def _pipeline_state(state: dict[str, Any]) -> str:
    if state.get("last_status") is None:
        said = "never run"
    else:
        held = f", held back {', '.join(state['held_days'])}" if state.get("held_days") else ""
        said = f"last run {state['last_status']} ({state.get('last_window')} UTC{held})"
    return said + (f"; PAUSED: {state['paused']}" if state.get("paused") else "")


def row_count(table: str, row: dict[str, Any]) -> str:
    n = int(row.get("n") or 0)
    if not n:
        return f"{table} holds no rows yet."
    span = f", from {_when(row['first_ts'])} to {_when(row['last_ts'])}" if row.get("first_ts") else ""
    return f"{table} holds {n:,} rows on main{span}."


def value_at(intent: Intent, rows: list[dict[str, Any]], at: datetime, table: str) -> str:
    if not rows:
        return f"No row of {table} at {at:%Y-%m-%d %H:%M} UTC: not published yet, held in quarantine, or outside the data."
    evidence = "; ".join(", ".join(f"{k}={v}" for k, v in row.items()) for row in rows)
    first = rows[0]
    if "actual" in first:
        measured = f"{figure(first['actual'])} gCO2/kWh measured" if first["actual"] is not None else "not measured yet"
        headline = f"At {at:%Y-%m-%d %H:%M} UTC the carbon intensity was {measured} (forecast {figure(first['forecast'])}, index {first.get('index')})."
    elif "temperature_c" in first:
        headline = f"At {at:%Y-%m-%d %H:%M} UTC the UK temperature was {figure(first['temperature_c'])} °C."
    else:
        headline = (
            f"At {at:%Y-%m-%d %H:%M} UTC the generation mix was " + ", ".join(f"{r['fuel']} {figure(r['perc'])}%" for r in rows) + "."
        )
    return f"{headline} Row: {evidence}"


def latest(intent: Intent, rows: list[dict[str, Any]], table: str, now: datetime) -> str:
    """The newest reading, how old it is on the platform clock, and for one fuel its share."""
    if not rows:
        return f"{table} holds no reading at or before {now:%Y-%m-%d %H:%M} UTC yet."
    at = rows[0]["ts"] if isinstance(rows[0]["ts"], datetime) else datetime.fromisoformat(str(rows[0]["ts"]))
    minutes = max(0, int((now - at).total_seconds() // 60))
    age = f"{minutes} minutes" if minutes < 120 else f"{minutes / 60:.1f} hours"
    said = value_at(intent, rows, at, table).split(" Row: ")[0]
    if intent.metric == "share" and intent.fuel and "fuel" in rows[0]:
        share = next((r["perc"] for r in rows if r["fuel"] == intent.fuel), None)
        if share is not None:
            said = f"At {at:%Y-%m-%d %H:%M} UTC {intent.fuel} was {figure(share)}% of generation."
    return f"The newest reading, {age} before the platform clock ({now:%Y-%m-%d %H:%M} UTC): {said}"


def per_period(intent: Intent, column: MetricColumn, rows: list[dict[str, Any]], start: date, end: date) -> str:
    """Each day's or week's mean in order, the lowest and the highest named; a week cut by the period says so."""
    per = intent.per or "day"
    period = period_phrase(start, end, intent.day_hours)
    if not rows:
        return f"No {column.label} in {column.table} {period}."
    unit = column.unit if column.unit != "%" else "%"
    lines = [f"The {'daily' if per == 'day' else 'weekly'} mean {column.label} {period}:"]
    for r in rows:
        first, last = _day_of(r["first_ts"]), _day_of(r["last_ts"])
        label = f"{first:%a %Y-%m-%d}" if per == "day" else f"week of {_day_of(r['period']):%Y-%m-%d} ({first:%a %d %b} to {last:%a %d %b})"
        lines.append(f"- {label}: {figure(r['mean'])} {unit} (lowest {figure(r['low'])}, highest {figure(r['high'])}; {r['n']} readings)")
    if len(rows) > 1:
        low, high = min(rows, key=lambda r: float(r["mean"])), max(rows, key=lambda r: float(r["mean"]))
        name = (
            (lambda r: f"{_day_of(r['first_ts']):%Y-%m-%d}")
            if per == "day"
            else (
                lambda r: (
                    f"the week of {_day_of(r['period']):%Y-%m-%d} ({_day_of(r['first_ts']):%a %d %b} to {_day_of(r['last_ts']):%a %d %b})"
                )
            )
        )
        lines.append(f"Lowest: {name(low)} at {figure(low['mean'])}; highest: {name(high)} at {figure(high['mean'])}.")
    return "\n".join(lines)


def _day_of(value: Any) -> date:
    return (value if isinstance(value, datetime) else datetime.fromisoformat(str(value))).date()


def count_beyond(intent: Intent, column: MetricColumn, row: dict[str, Any], start: date, end: date, *, slot_minutes: int) -> str:
    """How many readings or days lay beyond the threshold, of how many, in the period."""
    assert intent.threshold is not None
    hits, n = int(row.get("hits") or 0), int(row.get("n") or 0)
    period = period_phrase(start, end, intent.day_hours)
    way = "above" if intent.above else "below"
    value = f"{figure(intent.threshold)} {column.unit}".replace(" %", "%")
    if not n:
        return f"No {column.label} in {column.table} {period}."
    if intent.count_days:
        which = f": {row['which']}" if hits and row.get("which") else ""
        return f"{hits} of {n} day(s) {period} had a daily mean {column.label} {way} {value}{which}."
    hours = hits * slot_minutes / 60
    length = f" ({figure(hours)} hours)" if slot_minutes != 60 else ""
    reading = (
        "half-hour reading(s)" if slot_minutes == 30 else f"{slot_minutes}-minute reading(s)" if slot_minutes != 60 else "hourly reading(s)"
    )
    span = f", the first at {_when(row.get('first_at'))}, the last at {_when(row.get('last_at'))}" if hits else ""
    return f"{hits} of {n} {reading} of {column.label} {period} were {way} {value}{length}{span}."


def aggregate(intent: Intent, column: MetricColumn, row: dict[str, Any], start: date, end: date) -> str:
    word = {"avg": "average", "min": "lowest", "max": "highest"}[intent.aggregate or "avg"]
    if not row.get("n"):
        if not row.get("first_ts"):
            return f"{column.table} holds no data yet."
        text = f"No {column.label} in {column.table} {period_phrase(start, end, intent.day_hours)}; it holds {_when(row.get('first_ts'))} to {_when(row.get('last_ts'))}."
        if _inside(start, end, row["first_ts"], row["last_ts"]):
            # Inside what the table holds, an empty period is a day held back, not a day never fetched.
            text += (
                f" That period lies inside it, so its day(s) were held back (incomplete, or rows refused by the checks): ask "
                f"'why is {column.label} missing data on {start.isoformat()}?' for what happened and what is in quarantine."
            )
        return text
    value = {"avg": row["mean"], "min": row["low"], "max": row["high"]}[intent.aggregate or "avg"]
    extremes = f"lowest {figure(row['low'])} at {_when(row['low_at'])}, highest {figure(row['high'])} at {_when(row['high_at'])}"
    text = (
        f"The {word} {column.label} {period_phrase(start, end, intent.day_hours)} was {figure(value)} {column.unit}, over {row['n']} readings "
        f"({extremes}; mean {figure(row['mean'])})."
    )
    if intent.metric == "forecast_bias" and row.get("mean") is not None:
        mean = float(row["mean"])
        verdict = "overestimated" if mean > 0 else "underestimated" if mean < 0 else "neither over- nor underestimated"
        text += f" On average the forecast {verdict} the measured intensity" + (f" by {figure(abs(mean))} {column.unit}." if mean else ".")
    return text


def _inside(start: date, end: date, first: Any, last: Any) -> bool:
    """Whether [start, end) lies within the days from `first` to `last` (timestamps, or their ISO text)."""
    first_day = (first if isinstance(first, datetime) else datetime.fromisoformat(str(first))).date()
    last_day = (last if isinstance(last, datetime) else datetime.fromisoformat(str(last))).date()
    return first_day <= start and end <= last_day + timedelta(days=1)


def gaps_in_range(table: str, expected: int | None, rows: list[dict[str, Any]], start: date, end: date) -> str:
    """Which days of [start, end) lack slots, and how many: the completeness of a range at a glance. Consecutive
    empty days are one line ("2023-01-01 to 2023-01-19: empty, 19 days"), as a table loaded from a later day has them."""
    by_day = {str(r["day"])[:10]: r for r in rows}
    days = [start + timedelta(days=n) for n in range((end - start).days)]
    span = period_phrase(start, end)
    if expected is None:
        return (
            f"{table} {span}: {sum(int(r['n_rows'] or 0) for r in rows)} rows; its slots a day are not declared, so gaps cannot be counted."
        )
    short: list[str] = []
    empty: list[date] = []

    def close_empty() -> None:
        if empty:
            first, last = empty[0].isoformat(), empty[-1].isoformat()
            short.append(f"{first} (empty)" if len(empty) == 1 else f"{first} to {last} (empty, {len(empty)} days)")
            empty.clear()

    incomplete = 0
    for day in days:
        row = by_day.get(day.isoformat(), {})
        slots, held = int(row.get("slots") or 0), int(row.get("held") or 0)
        if slots >= expected:
            close_empty()
            continue
        incomplete += 1
        if slots == 0 and not held:
            empty.append(day)
            continue
        close_empty()
        note = f", {held} held in quarantine" if held else ""
        short.append(f"{day.isoformat()} ({slots} of {expected} slots, {expected - slots} missing{note})")
    close_empty()
    missing = sum(expected - min(expected, int(by_day.get(d.isoformat(), {}).get("slots") or 0)) for d in days)
    head = f"{table} {span}: {len(days) - incomplete} of {len(days)} days complete"
    if not short:
        return f"{head}; no slot is missing ({len(days) * expected} slots)."
    return (
        f"{head}; {missing} slot(s) missing in all. Incomplete: "
        + "; ".join(short)
        + ". Ask 'why is it missing on DAY?' for one day's story."
    )


def outlook(row: dict[str, Any], since: datetime, until: datetime) -> str:
    """What the forecast expects over [since, until), or why it cannot say."""
    span = f"from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC"
    if row.get("issued_at") is None:
        return (
            "No forecast has been published yet: run `dataops run forecast` (or let `dataops serve` issue one after the next "
            "carbon-intensity run), then ask again."
        )
    issued = _when(row["issued_at"])
    if not row.get("n"):
        return f"The latest forecast (issued {issued}) reaches {_when(row.get('reaches'))}; it does not cover {span}."
    return (
        f"The forecast issued {issued} expects {figure(row['mean'])} gCO2/kWh on average {span} (80 % band {figure(row['lo80'])}–"
        f"{figure(row['hi80'])}), lowest {figure(row['low'])} at {_when(row['low_at'])}, highest {figure(row['high'])} at "
        f"{_when(row['high_at'])}, over {row['n']} half-hours."
    )


def mix(intent: Intent, rows: list[dict[str, Any]], start: date, end: date) -> str:
    """The generation mix over a period: each fuel's mean share, largest first."""
    if not rows:
        return f"No generation mix in silver.generation_mix {period_phrase(start, end, intent.day_hours)}."
    shares = ", ".join(f"{r['fuel']} {figure(r['mean'])} %" for r in rows)
    return (
        f"The generation mix {period_phrase(start, end, intent.day_hours)} (mean share of each fuel, {rows[0]['n']} readings each): "
        f"{shares}. The largest was {rows[0]['fuel']}."
    )


def extreme_day(intent: Intent, column: MetricColumn, row: dict[str, Any], start: date, end: date) -> str:
    """The day with the lowest (or highest) daily mean, and how it stands against the days compared."""
    word = "highest" if intent.aggregate == "max" else "lowest"
    if row.get("day") is None:
        return f"No {column.label} in {column.table} {period_phrase(start, end, intent.day_hours)}."
    day = _when(row["day"])[:10]
    return (
        f"The day with the {word} average {column.label} {period_phrase(start, end, intent.day_hours)} was {day}: "
        f"{figure(row['mean'])} {column.unit} over {row['n']} readings (the {row['days']} day(s) averaged {figure(row['mean_of_days'])})."
    )


def greenest(intent: Intent, row: dict[str, Any], start: date, end: date) -> str:
    hours = intent.hours or 1
    if row.get("ts") is None:
        extent = (
            f"; silver.carbon_intensity holds {_when(row.get('first_ts'))} to {_when(row.get('last_ts'))}" if row.get("first_ts") else ""
        )
        return f"No complete {hours}-hour window of carbon intensity {period_phrase(start, end, intent.day_hours)}{extent}."
    began = datetime.fromisoformat(str(row["ts"]))
    ended = began + timedelta(hours=hours)
    return (
        f"The {'dirtiest' if intent.dirtiest else 'greenest'} {hours}-hour window {period_phrase(start, end, intent.day_hours)} ran from {_when(row['ts'])} to {ended:%H:%M} UTC at "
        f"{figure(row['mean_v'])} gCO2/kWh on average, against {figure(row['period_mean'])} over the whole "
        f"{'of those hours' if intent.day_hours else 'period'} ({row['n']} half-hours)."
    )


def greenest_ahead(result: dict[str, Any]) -> str:
    """The greenest window ahead, in the words `dataops greenest` prints."""
    return describe(GreenestWindow.model_validate(result))


def why_missing(table: str, day: date, expected: int | None, contents: list[dict[str, Any]], turns: dict[str, Turn]) -> str:
    published = next((r for r in contents if r["part"] == "published"), {"slots": 0, "n_rows": 0})
    held = [r for r in contents if r["part"] == "quarantined"]
    first = next((r["reason"] for r in contents if r["part"] == "first"), None)
    last = next((r["reason"] for r in contents if r["part"] == "last"), None)
    of = f" of {expected}" if expected else ""
    parts = [f"{table} on {day.isoformat()}: {published['slots']}{of} slots published ({published['n_rows']} rows)."]
    if held:
        parts.append(
            "In quarantine: "
            + "; ".join(f"{r['n_rows']} rows ({r['slots']} slots) by {r['expectation']}: {str(r['reason']).rstrip('.')}" for r in held)
            + "."
        )
    elif not published["slots"] and first:
        parts.append(f"Nothing of that day is in quarantine; the table holds {_when(first)} to {_when(last)}.")
    runs = turns.get("runs")
    if runs is not None and runs.status == "ok":
        covering = [
            r
            for r in (runs.result or {}).get("runs") or []
            if datetime.fromisoformat(r["window_start"]).date() <= day < datetime.fromisoformat(r["window_end"]).date() + timedelta(days=0)
            or day.isoformat() in (r.get("held_days") or [])
        ]
        if covering:
            parts.append("Runs over that day: " + "; ".join(_run_line(r, day) for r in covering[:3]) + ".")
        else:
            parts.append("No run covered that day.")
    found = turns.get("incidents")
    if found is not None and found.status == "ok":
        related = [i for i in (found.result or {}).get("incidents") or [] if i.get("partition") in (None, day.isoformat())]
        if related:
            parts.append("Incidents: " + "; ".join(f"#{i['id']} {i['kind']} ({i['status']}): {i['title']}" for i in related[:3]) + ".")
    source = turns.get("source")
    if source is not None:
        parts.append(
            f"Source: {(source.result or {}).get('verdict')}."
            if source.status == "ok"
            else f"The source could not be asked: {source.message}"
        )
    return " ".join(parts)


def _run_line(run: dict[str, Any], day: date) -> str:
    held = f", held back {', '.join(run['held_days'])}" if run.get("held_days") else ""
    error = f", error: {run['error']}" if run.get("error") else ""
    return f"{run['run_id']} {run['status']} ({run['rows_out']} rows published, {run['rows_quarantined']} quarantined{held}{error})"


def run_report(result: dict[str, Any], *, asked_failure: bool, ok_runs: int) -> str:
    run = result.get("run") or {}
    failing = [v for v in result.get("validation") or [] if not v.get("success")]
    window = f"{run.get('window_start', '')[:10]} to {run.get('window_end', '')[:10]}"
    lead = f"Run {run.get('run_id')} of {run.get('pipeline')} ({window}) ended {run.get('status')}"
    facts = [f"it read {run.get('rows_in')} rows, published {run.get('rows_out')} and quarantined {run.get('rows_quarantined')}"]
    if run.get("held_days"):
        facts.append(f"it held back {', '.join(run['held_days'])}")
    if run.get("error"):
        facts.append(f"error: {run['error']}")
    text = f"{lead}: " + "; ".join(facts) + "."
    if failing:
        text += (
            " Failing expectations: "
            + "; ".join(f"{v['expectation']} on {v['table']} ({v['unexpected']} of {v['checked']} unexpected)" for v in failing[:5])
            + "."
        )
    elif run.get("status") != "succeeded":
        text += " Every expectation it evaluated passed."
    if asked_failure and run.get("status") != "failed" and (run.get("rows_quarantined") or run.get("held_days")):
        text = f"Its status is not 'failed', but it did not publish everything. {text}"
    if asked_failure and ok_runs and run.get("status") == "succeeded" and not run.get("rows_quarantined"):
        text = f"None of the latest {ok_runs} runs failed, quarantined rows or held a day back; the latest: {text}"
    return text


def history(result: dict[str, Any]) -> str:
    snapshots = result.get("snapshots") or []
    if not snapshots:
        return f"{result.get('table')} has no snapshot on main yet."
    lines = [
        f"{s['snapshot_id']} at {_when(s['committed_at'])}: {s['operation']} by {s.get('run_id') or 'an unknown run'}, "
        f"+{s['added_records']} -{s['deleted_records']} rows, {s['total_records']} in total"
        for s in snapshots
    ]
    more = f" ({result['older_snapshots']} older not shown)" if result.get("older_snapshots") else ""
    branches = result.get("branches") or []
    kept = f" Other refs: {', '.join(b['name'] for b in branches)}." if branches else ""
    return (
        f"{result.get('table')} is at snapshot {result.get('current_snapshot_id')}. Its latest commits, newest first{more}:\n"
        + "\n".join(lines)
        + kept
    )


def lineage(result: dict[str, Any], parents: dict[str, tuple[str, ...]]) -> str:
    """The table's ancestry and what is derived from it, drawn with box characters.

    A single line of ancestors reads top-down from the source to the table; a table built from several inputs (a
    mart joining two silver tables) lists them as a tree under it, each with its own ancestors. A derived table
    that also has other inputs says so, so no drawing passes a join off as a chain."""
    table = result.get("table") or ""
    upstream = result.get("upstream") or []
    downstream = result.get("downstream") or []
    known = set(upstream)

    def inputs(node: str) -> list[str]:
        return [p for p in parents.get(node, ()) if p in known]

    chain = _chain(table, inputs)
    if chain is not None and set(chain) == known:
        lines, indent = _drawn_chain([*reversed(chain), table], table)
    else:
        if {a for node in (table, *upstream) for a in inputs(node)} >= known:
            count = len(inputs(table))
            lines = [f"{table}   ← this table, built from {count} input{'' if count == 1 else 's'}:"]
            _draw_tree(table, inputs, "", lines)
        else:
            # `parents` cannot place every ancestor (another inventory?): list them rather than draw a chain that may be false.
            lines = [f"{table}   ← this table, derived from (nearest first): {', '.join(upstream)}"]
        lines += ["It feeds:"] if downstream else []
        indent = ""
    _draw_downstream(table, downstream, parents, indent, lines)
    writers = ", ".join(result.get("pipelines") or []) or "none"
    return f"Lineage of {table} (written by {writers}):\n" + "\n".join(lines)


def _chain(table: str, inputs: Callable[[str], list[str]]) -> list[str] | None:
    """The ancestors nearest first when each has one input, else None."""
    chain: list[str] = []
    node = table
    while True:
        above = inputs(node)
        if len(above) > 1:
            return None
        if not above or above[0] in chain:
            return chain
        node = above[0]
        chain.append(node)


def _drawn_chain(nodes: list[str], table: str) -> tuple[list[str], str]:
    """Nodes from the source down to the table, each under the one before; and the indent below the table."""
    lines = [
        ("   " * (depth - 1) + "└─ " if depth else "") + node + ("   ← this table" if node == table else "")
        for depth, node in enumerate(nodes)
    ]
    return lines, "   " * (len(nodes) - 1)


def _draw_tree(node: str, kids_of: Callable[[str], list[str]], indent: str, lines: list[str], seen: frozenset[str] = frozenset()) -> None:
    kids = [k for k in kids_of(node) if k not in seen]
    for n, kid in enumerate(kids):
        last = n == len(kids) - 1
        lines.append(f"{indent}{'└─ ' if last else '├─ '}{kid}")
        _draw_tree(kid, kids_of, indent + ("   " if last else "│  "), lines, seen | {node})


def _draw_downstream(table: str, downstream: list[str], parents: dict[str, tuple[str, ...]], indent: str, lines: list[str]) -> None:
    """What is derived from the table, each under the nearest of its inputs drawn, naming any other inputs it has."""
    drawn = (*downstream, table)
    children: dict[str, list[str]] = {}
    for node in downstream:
        parent = next((p for p in parents.get(node, ()) if p in drawn), table)
        children.setdefault(parent, []).append(node)

    def label(node: str, parent: str) -> str:
        others = [p for p in parents.get(node, ()) if p != parent]
        return node + (f"   (also built from {', '.join(others)})" if others else "")

    def draw(node: str, prefix: str) -> None:
        kids = children.get(node, [])
        for n, kid in enumerate(kids):
            last = n == len(kids) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{label(kid, node)}")
            draw(kid, prefix + ("   " if last else "│  "))

    draw(table, indent)


def action(turn: Turn) -> str:
    """What a write did, in a sentence."""
    result = turn.result or {}
    name = turn.call.name
    args = turn.call.arguments or {}
    if "runs" in result and "pipeline" in result:
        runs = result["runs"]
        rows = sum(r.get("rows_out") or 0 for r in runs)
        quarantined = sum(r.get("rows_quarantined") or 0 for r in runs)
        held = sorted({d for r in runs for d in r.get("held_days") or []})
        held_text = f"; held back {', '.join(held)}" if held else ""
        return (
            f"{name} of {result['pipeline']} from {args.get('start')} to {args.get('end')} (exclusive) finished {result['status']}: "
            f"{len(runs)} run(s), {rows} rows published, {quarantined} quarantined{held_text}."
        )
    if "paused" in result:
        state = "paused" if result["paused"] else "running"
        return f"{result['pipeline']} is {state}{'' if result.get('changed') else ' (it already was)'}."
    facts = ", ".join(
        f"{k.replace('_', ' ')} {v}" for k, v in result.items() if isinstance(v, int | float | str) and not isinstance(v, bool)
    )
    return f"{name} on {args.get('table')}{' ' + str(args['day']) if args.get('day') else ''} done: {facts}."


def runs_listed(runs: list[dict[str, Any]], pipeline: str | None) -> str:
    """The latest runs, newest first, one line each: window, status, what was published and held."""
    if not runs:
        return f"No run of {pipeline or 'any pipeline'} is recorded yet."
    lines = [f"The latest {len(runs)} run{'s' if len(runs) != 1 else ''}{f' of {pipeline}' if pipeline else ''}, newest first:"]
    for r in runs:
        start, end = r["window_start"][:16].replace("T", " "), r["window_end"][:16].replace("T", " ")
        held = f", held back {', '.join(r['held_days'])}" if r.get("held_days") else ""
        error = f", error: {str(r['error'])[:160]}" if r.get("error") else ""
        lines.append(
            f"- {r['pipeline']} {start} to {end} UTC: {r['status']}, {r['rows_out']} row(s) published, "
            f"{r['rows_quarantined']} quarantined{held}{error} (run {r['run_id']})"
        )
    return "\n".join(lines)
