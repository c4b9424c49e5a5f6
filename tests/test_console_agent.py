"""End to end through the real agent: a bad publish, the agent's incident thread paused on a rollback that needs
approval, decided in the console; the rollback runs and the audit names the approver and the channel "console".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient

from agent.console.app import create_app
from agent.runtime import Agent
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.publish_audit import audit_published
from pipelines.promotion import run_pipeline
from policies.approvals import ApprovalStore
from policies.audit import AuditLog
from tests.conftest import utc, window

if TYPE_CHECKING:
    from tests.console_fixtures import Browser, Platform

pytest_plugins = ["tests.console_fixtures"]
GOLD = "gold.carbon_intensity_hourly"
NOW = utc(2023, 1, 28)


def _negate(rows: pa.Table) -> pa.Table:
    return rows.set_column(rows.schema.get_field_index("actual"), "actual", pc.negate(rows.column("actual")))


def _gold_sum(ctx: PlatformContext) -> float:
    rows = load_table(ctx.catalog, GOLD).scan(row_filter="ts >= '2023-01-25T00:00:00+00:00' and ts < '2023-01-26T00:00:00+00:00'")
    return float(pc.sum(rows.to_arrow().column("actual")).as_py())


@pytest.fixture
def paused(platform: Platform) -> Iterator[tuple[PlatformContext, dict[str, str], str]]:
    """Real data for 24-27 January, a negated publish of gold on the 25th, and the agent waiting to roll it back;
    the people of tests/console_fixtures.py (alice and amir approvers, otto an operator)."""
    ctx, tokens = platform.ctx, platform.tokens
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW)
    faults.bad_publish(ctx, GOLD, utc(2023, 1, 25), _negate, run_id="manual-bad")
    incident, _ = ctx.incidents.report(audit_published(ctx, GOLD, NOW)[0], now=NOW)
    agent = Agent(ctx)
    try:
        outcome = agent.handle_incident(incident.id)
    finally:
        agent.close()
    assert outcome.status == "waiting" and outcome.approval_id, outcome
    yield ctx, tokens, outcome.approval_id


@pytest.mark.slow
def test_an_approval_in_the_console_resumes_the_agent_and_the_audit_names_person_and_channel(
    paused: tuple[PlatformContext, dict[str, str], str],
) -> None:
    ctx, tokens, approval_id = paused
    request = ApprovalStore(ctx.ledger).get(approval_id)
    assert request.tool == "rollback_table" and {"alice", "amir"} <= set(request.approvers)
    assert _gold_sum(ctx) < 0
    app = create_app(ctx, clock=lambda: NOW)  # its own agent on the first decision, as `dataops console` runs
    try:
        with TestClient(app) as client:
            bearer = {"Authorization": f"Bearer {tokens['otto']}"}
            assert client.post(f"/api/approvals/{approval_id}/approve", json={"reason": "ok"}, headers=bearer).status_code == 403
            listed = client.get("/api/approvals?status=pending", headers=bearer).json()
            assert [a["id"] for a in listed] == [approval_id]
            done = client.post(
                f"/api/approvals/{approval_id}/approve",
                json={"reason": "the negated day is wrong"},
                headers={"Authorization": f"Bearer {tokens['amir']}"},
            )
            assert done.status_code == 200, done.text
            assert (done.json()["decided_by"], done.json()["decided_via"]) == ("amir", "console")
    finally:
        app.state.console.decider.close()
    assert _gold_sum(ctx) > 0, "the rollback ran"
    [rollback] = [e for e in AuditLog(ctx.ledger).entries(incident_id=request.incident_id) if e.tool == "rollback_table"]
    assert (rollback.approver, rollback.approver_via, rollback.status) == ("amir", "console", "ok")


@pytest.mark.slow
def test_the_incident_page_shows_the_agents_steps_and_request(
    paused: tuple[PlatformContext, dict[str, str], str], browser: Browser
) -> None:
    ctx, _, approval_id = paused
    request = ApprovalStore(ctx.ledger).get(approval_id)
    browser.sign_in("alice")  # the fixture's people and passwords, in the same ops database
    page = browser.client.get(f"/incidents/{request.incident_id}")
    assert page.status_code == 200
    assert "rollback_table(" in page.text and "pending_approval" in page.text
    assert f'href="/approvals#{approval_id}"' in page.text
