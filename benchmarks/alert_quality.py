"""Alert quality: replay a year of the bundled data through the real pipelines, monitors and agent, window by window.

    .venv/bin/python benchmarks/alert_quality.py [--start 2023-01-01] [--end 2024-01-01] [--step-hours 24]
                                                 [--no-agent] [--home DIR] [--json]

The same code `dataops serve` runs (`pipelines.service.Service.tick` per scheduled pipeline, then the
monitor timer, then the agent on every incident), driven by a stepped clock instead of the wall clock, so
the year goes as fast as the code allows. Nothing is told where the defects are.

Prints ``{"incidents": [{"kind", "monitor", "table", "start", "end", "severity", "status", "label"}, ...],
"escalations_per_week", "seconds", ...}`` with ``start``/``end`` the data time (UTC) each incident covers.
It also scores the incidents against the real defects of the series, listed with their evidence in
``benchmarks/defects_2023.yaml``: which defects were caught, and which value anomalies no defect explains.
People's labels (`dataops incident expected|resolve`) are read from the home's ops database and shown per
incident, so a replay into a home with labels measures the monitors as people judged them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFECTS = REPO / "benchmarks" / "defects_2023.yaml"
VALUE_KINDS = ("value_anomaly",)


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return _instant(value if "T" in value else value + "T00:00:00+00:00")
    except ValueError:
        return None


def extent(incident: Any) -> tuple[datetime | None, datetime | None]:
    """The data time an incident covers, from its occurrence and every evidence entry (days count whole)."""
    times: list[datetime] = [incident.occurred_at] if incident.occurred_at else []
    ends: list[datetime] = []
    for entry in incident.evidence:
        for key in ("start", "first", "newest_slot", "processed_until"):
            if (t := _parse(entry.get(key))) is not None:
                times.append(t)
        for key in ("end", "last"):
            if (t := _parse(entry.get(key))) is not None:
                ends.append(t + timedelta(minutes=30))
        for key in ("day", "partition"):
            if (t := _parse(entry.get(key))) is not None and len(str(entry.get(key))) == 10:
                times.append(t)
                ends.append(t + timedelta(days=1))
        for day in entry.get("days") or []:
            if (t := _parse(day)) is not None:
                times.append(t)
                ends.append(t + timedelta(days=1))
        for point in entry.get("points") or []:
            if (t := _parse(point.get("ts"))) is not None:
                times.append(t)
                ends.append(t + timedelta(minutes=30))
    if not times:
        return None, None
    start = min(times)
    return start, max([*ends, start + timedelta(minutes=30)])


def replay(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    from config.settings import load_settings
    from pipelines.clock import SteppedClock
    from pipelines.context import PlatformContext
    from pipelines.service import Service

    start, end = _instant(args.start), _instant(args.end)
    for key in [k for k in os.environ if k.startswith("DATAOPS_")]:
        del os.environ[key]
    settings = load_settings(home=home, source_mode="replay", replay_start=start)
    ctx = PlatformContext.open(settings)
    clock = SteppedClock(current=start)
    service = Service(ctx, clock=clock, sleep=lambda _s: None)
    agent: Any = None
    if not args.no_agent:
        from agent.report import ConsoleReporter
        from agent.service_hook import AgentExtension

        agent = AgentExtension(service, reporter=ConsoleReporter(lambda _text: None, verbose=False), slack=False)
        service.extensions = [agent]
    scheduled = [name for name, spec in ctx.inventory.pipelines.items() if not spec.schedule.manual]
    step = timedelta(hours=args.step_hours)
    began = time.monotonic()
    now, last_report = start, start
    try:
        while now < end:
            now = min(now + step, end)
            clock.advance_to(now)
            for pipeline in scheduled:
                service.tick(pipeline)
            service.monitor_tick()
            while agent is not None and not agent.idle():
                time.sleep(0.05)
            if now - last_report >= timedelta(days=30) or now == end:
                opened = len(ctx.incidents.list(limit=100_000))
                print(f"  {now.date()}  {opened} incidents  {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
                last_report = now
    finally:
        if agent is not None:
            agent.stop()
    seconds = time.monotonic() - began
    return summarise(ctx, start, end, seconds)


def summarise(ctx: Any, start: datetime, end: datetime, seconds: float) -> dict[str, Any]:
    from pipelines.monitors.feedback import labels as stored_labels

    labels = {label.incident_id: label.verdict for label in sorted(stored_labels(ctx), key=lambda label: label.at)}
    incidents = []
    escalated = 0
    for incident in sorted(ctx.incidents.list(limit=100_000), key=lambda i: i.id):
        first, last = extent(incident)
        was_escalated = (
            incident.status == "escalated"
            or any(n.get("status") == "escalated" for n in incident.notes)
            or any("escalat" in str(n.get("note", "")).lower() and n.get("actor") == "agent" for n in incident.notes)
        )
        escalated += was_escalated
        incidents.append(
            {
                "id": incident.id,
                "kind": incident.kind,
                "monitor": incident.cause_key.split(":", 1)[0],
                "cause_key": incident.cause_key,
                "table": incident.table,
                "start": first.isoformat() if first else None,
                "end": last.isoformat() if last else None,
                "severity": incident.severity,
                "status": incident.status,
                "escalated": was_escalated,
                "label": labels.get(incident.id),
                "title": incident.title,
            }
        )
    weeks = (end - start).total_seconds() / (7 * 86400)
    report: dict[str, Any] = {
        "incidents": incidents,
        "escalations": escalated,
        "escalations_per_week": round(escalated / weeks, 3) if weeks else 0.0,
        "weeks": round(weeks, 2),
        "seconds": round(seconds, 1),
    }
    if DEFECTS.exists():
        report |= score_against_defects(incidents, yaml.safe_load(DEFECTS.read_text()), start, end)
    return report


def _overlaps(a_start: str | None, a_end: str | None, b_start: datetime, b_end: datetime, slack: timedelta) -> bool:
    if a_start is None or a_end is None:
        return False
    return _instant(a_start) < b_end + slack and b_start - slack < _instant(a_end)


def score_against_defects(incidents: list[dict[str, Any]], defects: Any, start: datetime, end: datetime) -> dict[str, Any]:
    """Which real defects an incident covers, and which value anomalies no defect explains."""
    items = defects.get("defects", defects) if isinstance(defects, dict) else defects
    in_range = [d for d in items if start <= _instant(str(d["start"])) < end]
    caught, missed = [], []
    slack = timedelta(hours=1)
    for defect in in_range:
        d_start, d_end = _instant(str(defect["start"])), _instant(str(defect["end"]))
        source = str(defect.get("source", ""))
        hits = [i["id"] for i in incidents if source in i["table"] and _overlaps(i["start"], i["end"], d_start, d_end, slack)]
        (caught if hits else missed).append({"id": defect["id"], "start": str(defect["start"]), "incidents": hits})
    unexplained = [
        i
        for i in incidents
        if i["kind"] in VALUE_KINDS
        and not any(
            str(d.get("source", "")) in i["table"]
            and _overlaps(i["start"], i["end"], _instant(str(d["start"])), _instant(str(d["end"])), timedelta(hours=6))
            for d in in_range
        )
    ]
    return {
        "defects": len(in_range),
        "defects_caught": caught,
        "defects_missed": missed,
        "unexplained_value_anomalies": len(unexplained),
        "unexplained": [{"id": i["id"], "monitor": i["monitor"], "start": i["start"], "title": i["title"]} for i in unexplained],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2023-01-01T00:00:00+00:00", help="replay start (ISO date or instant, UTC)")
    parser.add_argument("--end", default="2024-01-01T00:00:00+00:00", help="replay end, exclusive")
    parser.add_argument("--step-hours", type=float, default=24.0, help="data hours per step of the clock (default 24)")
    parser.add_argument("--no-agent", action="store_true", help="monitors only: no agent works the incidents")
    parser.add_argument("--home", type=Path, default=None, help="DATAOPS_HOME (default: a new temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    args = parser.parse_args()
    if args.step_hours <= 0:
        parser.error("--step-hours must be > 0")
    home = args.home or Path(tempfile.mkdtemp(prefix="dataops-alerts-"))
    print(f"replaying {args.start} .. {args.end} into {home} ...", file=sys.stderr)
    report = replay(args, home)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{len(report['incidents'])} incidents, {report['escalations']} escalated ({report['escalations_per_week']}/week) in {report['seconds']} s"
    )
    for i in report["incidents"]:
        flag = "E" if i["escalated"] else " "
        print(
            f"{i['id']:>4} {flag} {i['kind']:<16} {i['severity']:<8} {i['status']:<11} {(i['start'] or '')[:16]:<16} {i['table']:<34} {i['title'][:80]}"
        )
    if "defects" in report:
        print(f"real defects caught: {len(report['defects_caught'])} of {report['defects']}")
        for miss in report["defects_missed"]:
            print(f"  missed {miss['id']} ({miss['start']})")
        print(f"value anomalies no defect explains: {report['unexplained_value_anomalies']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
