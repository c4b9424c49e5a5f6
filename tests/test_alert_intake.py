"""Alertmanager's webhook (version 4) as platform incidents: one per alert fingerprint, repeats change nothing,
a new firing adds an occurrence, a resolution is noted (and closes an incident nobody took on)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipelines.alert_intake import ALERT_KIND, AlertPayloadError, record_alerts
from pipelines.context import PlatformContext

STARTS = "2026-12-06T10:00:00.000Z"


def alert(status: str = "firing", *, fingerprint: str = "8f3c2e1d0a9b7c6d", starts: str = STARTS, **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "DataopsDataStale", "severity": "critical", "table": "silver.carbon_intensity", "job": "dataops"} | labels,
        "annotations": {"summary": "silver.carbon_intensity is stale", "description": "Its newest slot ended 5h ago."},
        "startsAt": starts,
        "endsAt": "2026-12-06T11:00:00.000Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": fingerprint,
    }


def webhook(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    """A notification as Alertmanager 0.25+ posts it."""
    return {
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="DataopsDataStale"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "console-and-oncall",
        "groupLabels": {"alertname": "DataopsDataStale"},
        "commonLabels": {"alertname": "DataopsDataStale"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def test_a_firing_alert_opens_one_incident_and_repeats_change_nothing(ctx: PlatformContext) -> None:
    body = webhook(alert())
    [first] = record_alerts(ctx, body)
    assert record_alerts(ctx, copy.deepcopy(body)) == [first], "Alertmanager repeating itself (repeat_interval) is the same alert"
    incident = ctx.incidents.get(int(first))
    assert (incident.kind, incident.severity, incident.table, incident.status) == (
        ALERT_KIND,
        "critical",
        "silver.carbon_intensity",
        "open",
    )
    assert incident.title == "DataopsDataStale: silver.carbon_intensity is stale"
    assert incident.cause_key == "alertmanager:8f3c2e1d0a9b7c6d" and incident.occurrences == 1
    assert incident.evidence[0]["labels"]["job"] == "dataops" and incident.evidence[0]["starts_at"] == "2026-12-06T10:00:00+00:00"
    assert [i.id for i in ctx.incidents.list()] == [incident.id]


def test_a_new_firing_of_the_same_alert_adds_an_occurrence(ctx: PlatformContext) -> None:
    [first] = record_alerts(ctx, webhook(alert()))
    [again] = record_alerts(ctx, webhook(alert(starts="2026-12-06T12:00:00Z")))
    assert again == first and ctx.incidents.get(int(first)).occurrences == 2


def test_alerts_with_other_fingerprints_are_other_incidents(ctx: PlatformContext) -> None:
    ids = record_alerts(
        ctx,
        webhook(
            alert(),
            alert(fingerprint="1111", table="silver.weather", severity="warning"),
            alert(fingerprint="2222", severity="page-me"),  # not a severity of ours: warning
        ),
    )
    assert len(ids) == 3 and len(set(ids)) == 3
    assert [ctx.incidents.get(int(i)).severity for i in ids] == ["critical", "warning", "warning"]


def test_a_resolved_alert_resolves_its_open_incident_with_a_note(ctx: PlatformContext) -> None:
    [opened] = record_alerts(ctx, webhook(alert()))
    assert record_alerts(ctx, webhook(alert("resolved"), status="resolved")) == [opened]
    incident = ctx.incidents.get(int(opened))
    assert incident.status == "resolved"
    assert incident.notes[-1]["note"] == "Alertmanager: DataopsDataStale resolved at 2026-12-06T11:00:00+00:00"
    assert incident.notes[-1]["actor"] == "alertmanager"
    assert record_alerts(ctx, webhook(alert("resolved"), status="resolved")) == [], "already resolved: nothing to note"


def test_a_resolved_alert_leaves_an_acknowledged_incident_with_its_person(ctx: PlatformContext) -> None:
    [opened] = record_alerts(ctx, webhook(alert()))
    ctx.incidents.transition(int(opened), "acknowledged", note="looking", actor="alice", channel="console")
    record_alerts(ctx, webhook(alert("resolved"), status="resolved"))
    incident = ctx.incidents.get(int(opened))
    assert incident.status == "acknowledged" and incident.notes[-1]["note"].startswith("Alertmanager: DataopsDataStale resolved")


def test_a_resolved_alert_never_seen_firing_is_ignored(ctx: PlatformContext) -> None:
    assert record_alerts(ctx, webhook(alert("resolved"), status="resolved")) == []
    assert ctx.incidents.list() == []


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"version": "3"}, "not an Alertmanager webhook (version 4): version: Input should be '4'"),
        ({"alerts": None}, "alerts: Input should be a valid list"),
        ({"alerts": [{"status": "firing", "labels": {}, "startsAt": STARTS}]}, "alerts.0.fingerprint: Field required"),
        ({"alerts": [alert() | {"status": "pending"}]}, "alerts.0.status: Input should be 'firing' or 'resolved'"),
    ],
)
def test_a_body_that_is_not_alertmanagers_is_refused_naming_the_field(ctx: PlatformContext, change: dict[str, Any], says: str) -> None:
    with pytest.raises(AlertPayloadError, match=says.replace("(", r"\(").replace(")", r"\)")):
        record_alerts(ctx, webhook(alert()) | change)
    assert ctx.incidents.list() == []
