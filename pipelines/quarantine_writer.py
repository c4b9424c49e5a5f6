"""Writing the quarantine rows a run gathers (record problems, conflicting duplicates, unreadable records, the
failing and held rows of each audit) to `quarantine.<source>`, and summing them up for the run's result.

A run may write several times (a staged promotion writes as it goes) and a re-run sees the same failures
again: a row already held for the same record, check and original values is never written twice, so re-running
a window quarantines nothing twice; the run still counts it, as already held, since it is still not published. The run's result groups the rows by table, check and scope, with samples.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import pyarrow as pa

from config.inventory import PipelineSpec
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import arrow_schema, load_table
from pipelines.plan import Plan
from pipelines.run_result import QuarantineGroup, RunResult
from pipelines.sources.base import Window


class QuarantineRun(Protocol):
    """What the quarantine writer needs of the run it writes for (`pipelines.promotion`)."""

    ctx: PlatformContext
    p: PipelineSpec
    window: Window
    result: RunResult
    snapshots: dict[str, int | None]
    quarantine_rows: list[dict[str, Any]]

    def props(self, layer: str, plan: Plan | None = None) -> dict[str, str]: ...


class QuarantineWriter:
    """Writes `run.quarantine_rows` when flushed; keeps the counts of what this run newly quarantined."""

    def __init__(self, run: QuarantineRun) -> None:
        self.run = run
        self.so_far = 0  # rows written to quarantine by this run (`flush`)
        self.by_day: dict[str, int] = {}  # rows newly quarantined, by day
        self.already_held = 0  # rows this run held back that an earlier run had already quarantined (`write`)
        self.already_held_by_day: dict[str, int] = {}  # the same, by day
        self.written: set[tuple[str, str, str, str]] = set()  # what this run appended (a re-planned attempt sees it again)

    def flush(self) -> int:
        """Write the quarantine rows gathered so far; returns how many rows this run has newly quarantined in all."""
        result = self.run.result
        before = list(result.quarantine)
        fresh = self.write()
        self.run.quarantine_rows.clear()
        self.so_far += fresh
        groups = {(g.target_table, g.expectation, g.scope): g for g in before}
        for g in result.quarantine if fresh else []:
            seen = groups.get((g.target_table, g.expectation, g.scope))
            if seen is None:
                groups[(g.target_table, g.expectation, g.scope)] = g
                continue
            stamps = [t for t in (seen.first_ts, seen.last_ts, g.first_ts, g.last_ts) if t is not None]
            groups[(g.target_table, g.expectation, g.scope)] = seen.model_copy(
                update={
                    "rows": seen.rows + g.rows,
                    "first_ts": min(stamps, default=None),
                    "last_ts": max(stamps, default=None),
                    "sample": (seen.sample + g.sample)[:5],
                }
            )
        result.quarantine = list(groups.values())
        return self.so_far

    def write(self) -> int:
        """Append quarantine rows not already held for the same record, check and original values."""
        run = self.run
        if not run.quarantine_rows:
            return 0
        table = load_table(run.ctx.catalog, run.p.quarantine)
        days = {(q["ts"] or run.window.start).replace(hour=0, minute=0, second=0, microsecond=0) for q in run.quarantine_rows}
        existing = wap.read_days(table, days, columns=("target_table", "record_key", "expectation", "original"))

        def marker(q: dict[str, Any]) -> tuple[str, str, str, str]:
            return (q["target_table"], q["record_key"], q["expectation"], hashlib.sha256(q["original"].encode()).hexdigest())

        seen = {marker(q) for q in existing.to_pylist()}
        fresh, batch_seen = [], set()
        for q in run.quarantine_rows:
            m = marker(q)
            if m in batch_seen:
                continue
            batch_seen.add(m)
            if m not in seen:
                fresh.append(q)
            elif m not in self.written:
                self.already_held += 1
                day = (q["ts"] or run.window.start).date().isoformat()
                self.already_held_by_day[day] = self.already_held_by_day.get(day, 0) + 1
        self.written |= {marker(q) for q in fresh}
        for q in fresh:
            day = (q["ts"] or run.window.start).date().isoformat()  # the day `days` above files it under
            self.by_day[day] = self.by_day.get(day, 0) + 1
        groups: dict[tuple[str, str, str], QuarantineGroup] = {}
        for q in fresh:
            g = groups.setdefault(
                (q["target_table"], q["expectation"], q["scope"]),
                QuarantineGroup(
                    target_table=q["target_table"],
                    expectation=q["expectation"],
                    scope=q["scope"],
                    rows=0,
                    first_ts=q["ts"],
                    last_ts=q["ts"],
                ),
            )
            g.rows += 1
            if q["ts"] is not None:
                g.first_ts = min(filter(None, (g.first_ts, q["ts"])))
                g.last_ts = max(filter(None, (g.last_ts, q["ts"])))
            if len(g.sample) < 5:
                # a table-scope reason is one message for the whole run (e.g. the contract diff): keep all of it
                g.sample.append(f"{q['record_key']}: {q['reason'][: 600 if q['scope'] == 'table' else 160]}")
        run.result.quarantine = list(groups.values())
        data = pa.Table.from_pylist(fresh, schema=arrow_schema(run.ctx.inventory.table(run.p.quarantine)))
        run.snapshots[run.p.quarantine] = wap.append(table, data, properties=run.props("quarantine"))
        return len(fresh)
