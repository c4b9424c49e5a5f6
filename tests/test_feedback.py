"""People's judgement: labels, suppressions scoped to a pattern, and what the monitors get back from them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from config.errors import DataOpsError
from config.settings import DataopsSettings
from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.incidents import Finding, IncidentError
from pipelines.monitors import feedback
from pipelines.monitors.feedback import FeedbackError, filter_findings, judge, labelled_points
from tests.conftest import utc

NOW = utc(2023, 1, 10, 13)
SILVER = "silver.carbon_intensity"


def anomaly(
    *,
    score: float | None = 6.0,
    direction: str = "high",
    monitor: str = "actual_intensity",
    table: str = SILVER,
    ts: str = "2023-01-10T12:00:00+00:00",
) -> Finding:
    evidence: dict[str, Any] = {"monitor": monitor, "direction": direction, "points": [{"ts": ts, "value": 420.0}]}
    if score is not None:
        evidence["score"] = score
        evidence["points"][0]["score"] = score
    return Finding(
        kind="value_anomaly", severity="warning", table=table, cause_key=monitor, title=f"{monitor}: 1 anomalous point", evidence=evidence
    )


def opened(ctx: PlatformContext, finding: Finding) -> int:
    incident, _ = ctx.incidents.report(finding, now=NOW)
    return incident.id


def suppressed_count(monitor: str) -> float:
    return metrics.REGISTRY.get_sample_value("dataops_findings_suppressed_total", {"monitor": monitor}) or 0.0


def test_expected_suppresses_only_the_same_pattern_until_it_expires(ctx: PlatformContext) -> None:
    incident_id = opened(ctx, anomaly(score=6.0))
    done = judge(ctx, incident_id, "expected", actor="oncall", channel="cli", reason="grid test day", now=NOW, days=30)
    assert done.incident.status == "resolved" and done.label.verdict == "expected"
    assert done.suppression is not None
    assert (done.suppression.direction, done.suppression.score, done.suppression.max_score) == ("high", 6.0, 7.5)
    assert done.suppression.expires_at == NOW + timedelta(days=30)
    assert done.suppression.pattern == "value_anomaly actual_intensity on silver.carbon_intensity, direction high, score ≤ 7.50"
    assert "marked expected: grid test day; suppression #1" in done.incident.notes[-1]["note"]
    assert (done.incident.notes[-1]["actor"], done.incident.notes[-1]["channel"]) == ("oncall", "cli")

    later = NOW + timedelta(days=1)
    before = suppressed_count("actual_intensity")
    same, weaker = anomaly(score=6.0, ts="2023-01-11T12:00:00+00:00"), anomaly(score=7.5)
    assert filter_findings(ctx, [same, weaker], later) == []
    assert suppressed_count("actual_intensity") == before + 2
    [listed] = feedback.suppressions(ctx, active_at=later)
    assert (listed.hits, listed.last_hit_at) == (2, later)

    stronger, other_way = anomaly(score=7.6), anomaly(direction="low")
    other_monitor, other_table = anomaly(monitor="forecast_error"), anomaly(table="silver.weather")
    unscored = anomaly(score=None)
    kept = [stronger, other_way, other_monitor, other_table, unscored]
    assert filter_findings(ctx, kept, later) == kept, "a stronger deviation, the other direction, another monitor or table all alert"
    expired = NOW + timedelta(days=30)
    assert filter_findings(ctx, [same], expired) == [same]
    assert feedback.suppressions(ctx, active_at=expired) == []


def test_a_pattern_without_scores_covers_kind_cause_and_table(ctx: PlatformContext) -> None:
    stale = Finding(
        kind="freshness",
        severity="critical",
        table=SILVER,
        cause_key="carbon_intensity_freshness",
        title="stale",
        evidence={"lag_s": 20000},
    )
    incident_id = opened(ctx, stale)
    done = judge(ctx, incident_id, "expected", actor="oncall", channel="cli", reason="NESO maintenance window", now=NOW, days=2)
    assert done.suppression is not None and (done.suppression.direction, done.suppression.max_score) == (None, None)
    assert filter_findings(ctx, [stale.model_copy(update={"evidence": {"lag_s": 90000}})], NOW + timedelta(days=1)) == []
    behind = stale.model_copy(update={"cause_key": "carbon_intensity_freshness:behind"})
    assert filter_findings(ctx, [behind], NOW) == [behind]


def test_mixed_directions_keep_the_ceiling_but_no_direction(ctx: PlatformContext) -> None:
    incident_id = opened(ctx, anomaly(score=5.0, direction="high"))
    ctx.incidents.report(anomaly(score=4.0, direction="low"), now=NOW + timedelta(hours=1))
    done = judge(ctx, incident_id, "expected", actor="oncall", channel="cli", reason="both ways", now=NOW, days=1)
    assert done.suppression is not None and (done.suppression.direction, done.suppression.max_score) == (None, 6.25)


def test_ack_and_resolve_move_the_incident_label_it_real_and_note_who(ctx: PlatformContext) -> None:
    incident_id = opened(ctx, anomaly())
    acked = judge(ctx, incident_id, "ack", actor="U_ALICE", channel="slack", reason="", now=NOW)
    assert acked.incident.status == "acknowledged" and acked.suppression is None
    assert acked.incident.notes[-1] | {"at": None} == {
        "at": None,
        "actor": "U_ALICE",
        "status": "acknowledged",
        "note": "acknowledged as real",
        "channel": "slack",
    }
    resolved = judge(ctx, incident_id, "resolve", actor="oncall", channel="cli", reason="meter fixed", now=NOW)
    assert resolved.incident.status == "resolved" and resolved.incident.notes[-1]["note"] == "resolved as real: meter fixed"
    assert [(x.verdict, x.actor, x.channel) for x in feedback.labels(ctx, incident_id=incident_id)] == [
        ("real", "U_ALICE", "slack"),
        ("real", "oncall", "cli"),
    ]
    assert feedback.suppressions(ctx) == []


def test_labelled_points_follow_each_incidents_latest_label(ctx: PlatformContext) -> None:
    real = opened(ctx, anomaly(ts="2023-01-05T00:00:00+00:00"))
    judge(ctx, real, "ack", actor="oncall", channel="cli", now=NOW)
    glitch = Finding(**{**anomaly(ts="2023-01-06T00:00:00+00:00").model_dump(), "cause_key": "actual_intensity:glitch"})
    expected = opened(ctx, glitch)
    judge(ctx, expected, "ack", actor="oncall", channel="cli", now=NOW)
    judge(ctx, expected, "expected", actor="oncall", channel="cli", reason="known glitch", now=NOW)
    opened(ctx, anomaly(monitor="actual_intensity_x", ts="2023-01-07T00:00:00+00:00"))  # unlabelled, and another monitor
    assert labelled_points(ctx, "actual_intensity") == {"expected": ["2023-01-06T00:00:00+00:00"], "real": ["2023-01-05T00:00:00+00:00"]}
    assert labelled_points(ctx, "forecast_error") == {"expected": [], "real": []}


def test_refusals_name_what_to_do(ctx: PlatformContext) -> None:
    with pytest.raises(IncidentError, match=r"no incident 42; `dataops incidents` lists them"):
        judge(ctx, 42, "ack", actor="oncall", channel="cli", now=NOW)
    incident_id = opened(ctx, anomaly())
    judge(ctx, incident_id, "resolve", actor="oncall", channel="cli", now=NOW)
    with pytest.raises(IncidentError, match=r"incident 1 is resolved; it can move to open, not resolved"):
        judge(ctx, incident_id, "resolve", actor="oncall", channel="cli", now=NOW)
    with pytest.raises(FeedbackError, match=r"unknown action 'close'; valid: ack, resolve, expected"):
        judge(ctx, incident_id, "close", actor="oncall", channel="cli", now=NOW)
    # A resolved incident can still be judged a false alarm, once while its suppression lasts.
    done = judge(ctx, incident_id, "expected", actor="oncall", channel="cli", reason="late judgement", now=NOW)
    assert done.incident.status == "resolved" and done.suppression is not None
    with pytest.raises(
        FeedbackError, match=r"incident 1 is already marked expected: suppression #1 until .*`dataops monitors unsuppress 1`"
    ):
        judge(ctx, incident_id, "expected", actor="oncall", channel="cli", reason="again", now=NOW)
    with pytest.raises(FeedbackError, match=r"no suppression 9; `dataops monitors` lists the active ones"):
        feedback.unsuppress(ctx, 9, actor="oncall", channel="cli", now=NOW)
    lifted = feedback.unsuppress(ctx, 1, actor="oncall", channel="cli", now=NOW)
    assert lifted.lifted_by == "oncall" and filter_findings(ctx, [anomaly()], NOW) == [anomaly()]
    assert "suppression #1 lifted" in ctx.incidents.get(incident_id).notes[-1]["note"]
    with pytest.raises(DataOpsError, match=r"suppression 1 was already lifted by oncall"):
        feedback.unsuppress(ctx, 1, actor="oncall", channel="cli", now=NOW)


def test_the_platform_clock_outside_the_service(settings: DataopsSettings) -> None:
    from pipelines.monitors.state import CLOCK_STATE, MonitorStateRow

    ctx = PlatformContext.open(settings)
    start = ctx.settings.replay_start
    assert feedback.platform_now(ctx) == start, "before the service ran, the replay clock stands at its start"
    with ctx.ledger.session() as s, s.begin():
        s.add(MonitorStateRow(name=CLOCK_STATE, state={"start": start.isoformat(), "now": "2023-02-03T04:00:00+00:00"}))
    assert feedback.platform_now(ctx) == utc(2023, 2, 3, 4)
    live = PlatformContext.open(settings.model_copy(update={"source_mode": "http"}))
    assert feedback.platform_now(live) > utc(2025, 1, 1)
