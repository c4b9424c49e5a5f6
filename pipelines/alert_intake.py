"""Alertmanager's notifications as platform incidents: the intake behind the console's `POST /api/alerts`.

Alertmanager (config/alertmanager/alertmanager.yml) posts its webhook JSON, version 4, to the console; the
route hands the parsed body to `record_alerts`. One alert is one incident, keyed by the alert's
fingerprint (its label set), so Alertmanager repeating a notification, or sending the same alert in
another group, changes nothing:

- a firing alert opens an incident (kind "alert", cause `alertmanager:<fingerprint>`), or adds an
  occurrence to the unresolved one when it fired again since (a new `startsAt`);
- a resolved alert notes the resolution on its unresolved incident, and resolves it if nobody has taken it
  on yet (still `open`); an acknowledged or escalated incident stays with its person.

The incident's severity is the alert's `severity` label (warning when it names none we know), its table
the `table` label (empty when the alert is not about one table). Incidents are dated on the platform
clock, as the monitors' are. The email notifier does not email these incidents: Alertmanager does.

Errors::

    DataOpsError
    └── AlertPayloadError   the body is not Alertmanager's webhook JSON (version 4); the message names the field
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from config.errors import DataOpsError
from config.settings import SEVERITIES
from pipelines import metrics
from pipelines.context import PlatformContext
from pipelines.incidents import UNRESOLVED, Finding, IncidentRow
from pipelines.monitors.feedback import platform_now

log = logging.getLogger(__name__)
ALERT_KIND = "alert"
ACTOR = "alertmanager"


class AlertPayloadError(DataOpsError):
    """The body of POST /api/alerts is not Alertmanager's webhook JSON."""


class AlertmanagerAlert(BaseModel):
    """One alert of a notification."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1)


class AlertmanagerWebhook(BaseModel):
    """Alertmanager's webhook body, version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    version: Literal["4"]
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts")
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[AlertmanagerAlert]


def parse_webhook(payload: dict[str, object]) -> AlertmanagerWebhook:
    """The notification, or `AlertPayloadError` naming the first bad field."""
    try:
        return AlertmanagerWebhook.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise AlertPayloadError(
            f"not an Alertmanager webhook (version 4): {where}: {first['msg']} ({exc.error_count()} problem(s) in all)"
        ) from None


def record_alerts(ctx: PlatformContext, payload: dict[str, object]) -> list[str]:
    """Record one Alertmanager notification; returns the ids of the incidents its alerts opened, updated or resolved."""
    webhook = parse_webhook(payload)
    if webhook.truncated_alerts:
        log.warning("Alertmanager left %d alert(s) out of group %s (max_alerts)", webhook.truncated_alerts, webhook.group_key)
    now = platform_now(ctx)
    ids: list[str] = []
    for alert in webhook.alerts:
        incident_id = _firing(ctx, alert, now) if alert.status == "firing" else _resolved(ctx, alert)
        if incident_id is not None and str(incident_id) not in ids:
            ids.append(str(incident_id))
    return ids


def _cause(alert: AlertmanagerAlert) -> str:
    return f"alertmanager:{alert.fingerprint}"


def _current(ctx: PlatformContext, alert: AlertmanagerAlert) -> IncidentRow | None:
    with ctx.ledger.session() as s:
        return s.scalars(
            select(IncidentRow)
            .where(IncidentRow.kind == ALERT_KIND, IncidentRow.cause_key == _cause(alert), IncidentRow.status.in_(UNRESOLVED))
            .order_by(IncidentRow.id.desc())
        ).first()


def _firing(ctx: PlatformContext, alert: AlertmanagerAlert, now: datetime) -> int:
    starts = alert.starts_at.isoformat()
    current = _current(ctx, alert)
    if current is not None and any(e.get("starts_at") == starts for e in current.evidence):
        return current.id  # a repeated notification of the same firing
    name = alert.labels.get("alertname", "alert")
    severity = alert.labels.get("severity", "warning")
    summary = alert.annotations.get("summary") or name
    finding = Finding(
        kind=ALERT_KIND,
        severity=severity if severity in SEVERITIES else "warning",  # type: ignore[arg-type]
        table=alert.labels.get("table", ""),
        cause_key=_cause(alert),
        title=f"{name}: {summary}",
        occurred_at=alert.starts_at,
        evidence={
            "alertname": name,
            "starts_at": starts,
            "labels": alert.labels,
            "annotations": alert.annotations,
            "generator_url": alert.generator_url,
            "fingerprint": alert.fingerprint,
        },
    )
    incident, opened = ctx.incidents.report(finding, now=now)
    if opened:
        metrics.INCIDENTS_OPENED.labels(incident.severity).inc()
        log.info("incident %d opened from Alertmanager alert %s (%s)", incident.id, name, alert.fingerprint)
    return incident.id


def _resolved(ctx: PlatformContext, alert: AlertmanagerAlert) -> int | None:
    current = _current(ctx, alert)
    if current is None:
        return None  # never recorded firing, or already resolved
    ended = alert.ends_at.isoformat() if alert.ends_at else "now"
    note = f"Alertmanager: {alert.labels.get('alertname', 'the alert')} resolved at {ended}"
    if current.status == "open":
        ctx.incidents.transition(current.id, "resolved", note=note, actor=ACTOR, channel=ACTOR)
    else:
        ctx.incidents.annotate(current.id, note, actor=ACTOR, channel=ACTOR)
    return current.id
