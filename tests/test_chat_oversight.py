"""Approvals and the audit log read through the agent's reader (agent/oversight.py) and told in chat (agent/chat/oversight.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.chat import oversight as told
from agent.oversight import StoreOversight
from pipelines.ledger import Ledger
from policies.approvals import ApprovalStore
from policies.audit import AuditLog
from tests.chat_planning import plan
from tests.conftest import utc
from tools import names as tool
from tools.oversight import ListActionsInput, ListApprovalsInput, list_actions, list_approvals

NOW = utc(2023, 3, 4, 1)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ops.db'}")
    yield ledger
    ledger.engine.dispose()


def _request(store: ApprovalStore, call_id: str, ttl: timedelta) -> str:
    approval, _ = store.request(
        call_id=call_id, thread_id="incident-1", tool="rollback_table", arguments={"table": "gold.x", "snapshot_id": 7},
        target={"table": "gold.x"}, reason="rolling gold.x back discards what was published since", rule="gold_rollback",
        approvers=["oncall"], requested_by="agent", ttl=ttl, incident_id=1,
    )  # fmt: skip
    return approval.id


def _judge(audit: AuditLog, call_id: str, tool_name: str, effect: str) -> None:
    audit.judged(
        call_id=call_id, thread_id="chat-1", incident_id=None, actor="dana", planner="runbook planner", tokens=0, tool=tool_name,
        arguments={"table": "silver.weather"}, decision="allow", reason="", effect=effect,
    )  # fmt: skip


def test_the_reader_lists_pending_requests_and_expires_the_overdue_first(ledger: Ledger) -> None:
    store = ApprovalStore(ledger)
    waiting = _request(store, "c1", timedelta(hours=4))
    overdue = _request(store, "c2", timedelta(seconds=-1))
    reader = StoreOversight(store, AuditLog(ledger))
    assert [a.id for a in reader.approvals("pending", 10)] == [waiting]
    assert {a.id: a.status for a in reader.approvals(None, 10)} == {waiting: "pending", overdue: "expired"}


def test_the_reader_lists_writes_newest_first_without_the_reads_between(ledger: Ledger) -> None:
    audit = AuditLog(ledger)
    _judge(audit, "w1", "quarantine_partition", "write")
    _judge(audit, "r1", "query_lake", "read")
    _judge(audit, "w2", "expire_snapshots", "destructive")
    reader = StoreOversight(ApprovalStore(ledger), audit)
    assert [a.tool for a in reader.actions(10, writes_only=True)] == ["expire_snapshots", "quarantine_partition"]
    assert [a.tool for a in reader.actions(10, writes_only=False)] == ["expire_snapshots", "query_lake", "quarantine_partition"]


def test_the_tools_refuse_without_the_agents_reader(ledger: Ledger) -> None:
    from config.errors import ToolError
    from tools.base import ToolContext

    ctx = ToolContext(platform=None)  # type: ignore[arg-type]  # the reader is checked before the platform is touched
    with pytest.raises(ToolError, match="dataops approvals"):
        list_approvals(ctx, ListApprovalsInput())
    with pytest.raises(ToolError, match="dataops audit"):
        list_actions(ctx, ListActionsInput())


@pytest.mark.parametrize(
    ("text", "name", "arguments"),
    [
        ("any approvals pending?", tool.LIST_APPROVALS, {"status": "pending", "limit": 50}),
        ("which approvals were denied", tool.LIST_APPROVALS, {"status": "denied", "limit": 50}),
        ("list all approval requests", tool.LIST_APPROVALS, {"status": None, "limit": 50}),
        ("what have you changed today?", tool.LIST_ACTIONS, {"writes_only": True, "limit": 20}),
        ("show the audit log", tool.LIST_ACTIONS, {"writes_only": True, "limit": 20}),
    ],
)
def test_chat_reads_approvals_and_the_audit_log(text: str, name: str, arguments: dict[str, object]) -> None:
    [call] = plan(text, NOW).calls
    assert (call.name, call.arguments) == (name, arguments)


def test_a_pending_request_is_told_with_its_reason_its_approvers_and_how_to_decide() -> None:
    pending = {
        "id": "A-1", "tool": "rollback_table", "arguments": {"table": "gold.x"}, "reason": "it discards what was published since",
        "rule": "gold_rollback", "status": "pending", "requested_by": "agent", "requested_at": "2023-03-04T01:00:00+00:00",
        "expires_at": "2023-03-05T01:00:00+00:00", "approvers": ["oncall"], "decided_by": None, "incident_id": 3,
    }  # fmt: skip
    text = told.approvals({"approvals": [pending]}, "pending")
    assert text.startswith("1 approval is waiting:\n- A-1: rollback_table(table=gold.x) for incident #3")
    assert "it discards what was published since. oncall may decide, until 2023-03-05 01:00 UTC." in text
    assert "`dataops approve ID`" in text
    assert told.approvals({"approvals": []}, "pending") == "No approval is waiting."
    assert told.approvals({"approvals": []}, "denied") == "No approval request is denied."
    assert told.actions({"actions": []}) == "Nothing has been changed: the audit log holds no write yet."
