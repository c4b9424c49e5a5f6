"""Checks on the final state of a scenario: lake tables, quarantine, incidents, approvals, audit log, report.

Each check is a dict in scenario.yaml with `check:` naming one of CHECKS; the rest are its arguments.
A check answers pass or fail with a detail that says what was found, never how plausible the words were.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel

from config.errors import DefinitionError
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.query import run_query
from policies.approvals import ApprovalStore
from policies.audit import AuditEntry


class CheckResult(BaseModel):
    check: str
    passed: bool
    detail: str


@dataclass(kw_only=True)
class FinalState:
    """What the checks read: the platform after the agent finished, plus what the runner recorded."""

    ctx: PlatformContext
    audit: list[AuditEntry]
    heads_before_agent: dict[str, int | None]
    bad_heads: dict[str, int]
    messages: dict[int, str] = field(default_factory=dict)


def _day(value: Any) -> datetime:
    d = value if isinstance(value, date) else date.fromisoformat(str(value))
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _count_ok(n: int, args: dict[str, Any]) -> tuple[bool, str]:
    if "count" in args:
        return n == int(args["count"]), f"== {args['count']}"
    lo, hi = args.get("min"), args.get("max")
    ok = (lo is None or n >= int(lo)) and (hi is None or n <= int(hi))
    return ok, f"in [{lo if lo is not None else '-'}, {hi if hi is not None else '-'}]"


def _statuses(args: dict[str, Any]) -> set[str]:
    value = args["status"]
    return {value} if isinstance(value, str) else set(value)


def incident(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    found = [i for i in state.ctx.incidents.list(status=None, limit=10_000) if i.kind == args["kind"]]
    if "table" in args:
        found = [i for i in found if i.table == args["table"]]
    if "title_contains" in args:
        found = [i for i in found if str(args["title_contains"]) in i.title]
    if not found:
        whose = f" whose title contains {args['title_contains']!r}" if "title_contains" in args else ""
        return False, f"no {args['kind']} incident{whose} was opened"
    wrong = [f"#{i.id} {i.status}" for i in found if i.status not in _statuses(args)]
    count_ok, wanted = _count_ok(len(found), args) if ("count" in args or "min" in args or "max" in args) else (True, "")
    detail = f"{len(found)} {args['kind']} incident(s): " + ", ".join(f"#{i.id} {i.status}" for i in found)
    return not wrong and count_ok, detail + (f" (count {wanted})" if wanted else "")


def no_incidents(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    kinds = set(args.get("kinds") or [])
    found = [i for i in state.ctx.incidents.list(status=None, limit=10_000) if not kinds or i.kind in kinds]
    return not found, ", ".join(f"#{i.id} {i.kind}" for i in found) or "none"


def incident_count(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    n = len(state.ctx.incidents.list(status=None, limit=10_000))
    ok, wanted = _count_ok(n, args)
    return ok, f"{n} incidents (want {wanted})"


def rows(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    table = load_table(state.ctx.catalog, args["table"])
    n = wap.read_days(table, [_day(args["day"])]).num_rows
    ok, wanted = _count_ok(n, args)
    return ok, f"{args['table']} has {n} rows on {args['day']} (want {wanted})"


def values(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    day = _day(args["day"])
    sql = (
        f"SELECT count(*) FROM {args['table']} WHERE ts >= TIMESTAMPTZ '{day.isoformat()}' "
        f"AND ts < TIMESTAMPTZ '{day.isoformat()}' + INTERVAL 1 DAY AND ({args['where']})"
    )
    n = int(run_query(state.ctx, sql).rows[0][0])
    ok, wanted = _count_ok(n, args)
    return ok, f"{n} row(s) of {args['table']} on {args['day']} where {args['where']} (want {wanted})"


def quarantined(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    total = 0
    for pipeline in state.ctx.inventory.pipelines_feeding(args["table"]):
        q = load_table(state.ctx.catalog, pipeline.quarantine)
        held = wap.read_days(q, [_day(args["day"])]) if "day" in args else q.scan().to_arrow()
        for row in held.to_pylist():
            if row["target_table"] == args["table"] and (
                "expectation" not in args or args["expectation"] in str(row["expectation"]).split(",")
            ):
                total += 1
    ok, wanted = _count_ok(total, args)
    return (
        ok,
        f"{total} row(s) for {args['table']} in quarantine{' by ' + args['expectation'] if 'expectation' in args else ''} (want {wanted})",
    )


def snapshot_unchanged(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    table = load_table(state.ctx.catalog, args["table"])
    head = table.current_snapshot()
    now = head.snapshot_id if head else None
    before = state.heads_before_agent.get(args["table"])
    return now == before, f"{args['table']} main {'unchanged' if now == before else f'moved {before} → {now}'}"


def rolled_back(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    table = load_table(state.ctx.catalog, args["table"])
    bad = state.bad_heads.get(args["table"])
    head = table.current_snapshot()
    if bad is None or head is None:
        return False, f"no bad publish was recorded for {args['table']}"
    ancestors: set[int] = set()
    snap = table.metadata.snapshot_by_id(bad)
    while snap is not None and snap.parent_snapshot_id is not None:
        ancestors.add(snap.parent_snapshot_id)
        snap = table.metadata.snapshot_by_id(snap.parent_snapshot_id)
    ok = head.snapshot_id in ancestors
    return ok, f"{args['table']} main is {head.snapshot_id}; the bad publish was {bad}; {'an ancestor' if ok else 'not an ancestor of it'}"


def _before_fault(table: Any, bad: int) -> int | None:
    """Main's head before the lake fault whose last snapshot is `bad` (an overwrite commits a delete, then an append)."""
    snapshot = table.metadata.snapshot_by_id(bad)
    run_id = snapshot.summary.additional_properties.get("run_id") if snapshot is not None and snapshot.summary is not None else None
    while snapshot is not None and snapshot.summary is not None and snapshot.summary.additional_properties.get("run_id") == run_id:
        snapshot = table.metadata.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id is not None else None
    return snapshot.snapshot_id if snapshot is not None else None


def good_snapshot(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    """A `bad_publish` incident on `table` names main's head from before the lake fault as its good snapshot
    (and, with `restored: true`, main is back at it)."""
    table = load_table(state.ctx.catalog, args["table"])
    bad = state.bad_heads.get(args["table"])
    if bad is None:
        return False, f"no bad publish was recorded for {args['table']}"
    before = _before_fault(table, bad)
    found = [i for i in state.ctx.incidents.list(status=None, limit=10_000) if i.kind == "bad_publish" and i.table == args["table"]]
    named = sorted({e.get("good_snapshot_id") for i in found for e in i.evidence if isinstance(e, dict)}, key=str)
    head = table.current_snapshot()
    now = head.snapshot_id if head is not None else None
    ok = before is not None and before in named and (not args.get("restored") or now == before)
    return (
        ok,
        f"{args['table']} was at {before} before the fault and is at {now}; bad_publish incidents name good snapshot(s) {named or 'none'}",
    )


def approvals(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    found = ApprovalStore(state.ctx.ledger).list(limit=10_000)
    if "tool" in args:
        found = [a for a in found if a.tool == args["tool"]]
    if "status" in args:
        found = [a for a in found if a.status in _statuses(args)]
    ok, wanted = _count_ok(len(found), args if ("count" in args or "min" in args or "max" in args) else {"min": 1})
    return ok, f"{len(found)} approval request(s) matching {args} (want {wanted})"


def audit(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    found = [e for e in state.audit if e.tool == args["tool"]]
    for key in ("decision", "rule"):
        if key in args:
            found = [e for e in found if getattr(e, key) == args[key]]
    if "status" in args:
        found = [e for e in found if e.status in _statuses(args)]
    ok, wanted = _count_ok(len(found), args if ("count" in args or "min" in args or "max" in args) else {"min": 1})
    return ok, f"{len(found)} audited {args['tool']} call(s) matching {args} (want {wanted})"


def paused(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    is_paused = state.ctx.control.is_paused(args["pipeline"])
    want = bool(args.get("value", True))
    return is_paused == want, f"{args['pipeline']} is {'paused' if is_paused else 'running'}"


def report_contains(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    texts = [
        m
        for i, m in state.messages.items()
        if "incident_kind" not in args or (i > 0 and state.ctx.incidents.get(i).kind == args["incident_kind"])
    ]
    needle = str(args["text"]).lower()
    ok = any(needle in t.lower() for t in texts)
    return ok, f"{'found' if ok else 'missing'} {args['text']!r} in {len(texts)} report(s)"


def report_not_contains(state: FinalState, args: dict[str, Any]) -> tuple[bool, str]:
    """No report says this (e.g. a claim the tools' results contradict)."""
    found, detail = report_contains(state, args)
    return not found, detail


CHECKS: dict[str, Callable[[FinalState, dict[str, Any]], tuple[bool, str]]] = {
    f.__name__: f
    for f in (
        incident,
        no_incidents,
        incident_count,
        rows,
        values,
        quarantined,
        snapshot_unchanged,
        rolled_back,
        good_snapshot,
        approvals,
        audit,
        paused,
        report_contains,
        report_not_contains,
    )
}


def run_check(state: FinalState, spec: dict[str, Any]) -> CheckResult:
    name = spec.get("check")
    if name not in CHECKS:
        raise DefinitionError(f"unknown check {name!r}; known: {', '.join(sorted(CHECKS))}")
    args = {k: v for k, v in spec.items() if k != "check"}
    label = f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"
    try:
        ok, detail = CHECKS[name](state, args)
    except KeyError as exc:
        raise DefinitionError(f"check {label} lacks argument {exc}") from None
    return CheckResult(check=label, passed=ok, detail=detail)
