"""Durable approvals: first decision wins, approvers only, expiry, and nothing lost across process restarts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from agent.runtime import Agent
from config.errors import ApprovalError
from config.settings import load_settings
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.publish_audit import audit_published
from pipelines.promotion import run_pipeline
from policies.approvals import ApprovalStore
from policies.audit import AuditLog
from policies.people import Actor, PeopleStore
from tests.conftest import REPO, utc, window

GOLD = "gold.carbon_intensity_hourly"
ONCALL = Actor(id="oncall", channel="api", role="approver", aliases=frozenset({"oncall"}))  # the bundled people.yaml approver
NOW = utc(2023, 1, 28)
BAD_DAY = utc(2023, 1, 25)


def _negate(rows: pa.Table) -> pa.Table:
    return rows.set_column(rows.schema.get_field_index("actual"), "actual", pc.negate(rows.column("actual")))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with real gold data, a bad publish of 25 January and its incident (id 1); copied per test."""
    home = tmp_path_factory.mktemp("approvals") / "home"
    ctx = PlatformContext.open(load_settings(home=home))
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW)
    faults.bad_publish(ctx, GOLD, BAD_DAY, _negate, run_id="manual-bad")
    findings = audit_published(ctx, GOLD, NOW)
    assert [f.kind for f in findings] == ["bad_publish"]
    incident, _ = ctx.incidents.report(findings[0], now=NOW)
    assert incident.id == 1
    ctx.ledger.engine.dispose()
    return home


@pytest.fixture
def home(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "home"
    shutil.copytree(prepared, target)
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    return target


def _ctx(home: Path, **overrides: object) -> PlatformContext:
    return PlatformContext.open(load_settings(home=home, **overrides))


@pytest.fixture
def agent(home: Path) -> Iterator[Agent]:
    lines: list[str] = []
    a = Agent(_ctx(home), clock=lambda: NOW, reporter=_Recorder(lines))
    yield a
    a.close()


class _Recorder:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def step(self, thread_id: str, text: str) -> None:
        self.lines.append(text)

    def approval_requested(self, approval: object) -> None:
        self.lines.append(f"requested {approval}")

    def approval_decided(self, approval: object) -> None:
        self.lines.append(f"decided {approval}")

    def final(self, thread_id: str, text: str, *, outcome: str, incident_id: int | None) -> None:
        self.lines.append(f"final {outcome}: {text}")


def _actual_sum(ctx: PlatformContext) -> float:
    table = load_table(ctx.catalog, GOLD)
    table.refresh()
    rows = table.scan(row_filter=f"ts >= '{BAD_DAY.isoformat()}' and ts < '2023-01-26T00:00:00+00:00'").to_arrow()
    return float(pc.sum(rows.column("actual")).as_py())


def test_rollback_waits_for_an_approver_and_the_first_decision_wins(agent: Agent) -> None:
    ctx = agent.ctx
    assert _actual_sum(ctx) < 0  # the bad publish is live
    waiting = agent.handle_incident(1)
    assert waiting.status == "waiting" and waiting.approval_id
    approval = agent.approvals.get(waiting.approval_id)
    assert (approval.tool, approval.rule, approval.approvers, approval.status) == (
        "rollback_table",
        "rollback_approval",
        ["oncall"],
        "pending",
    )
    assert _actual_sum(ctx) < 0, "nothing runs before the approval"
    assert ctx.incidents.get(1).status == "acknowledged"

    with pytest.raises(ApprovalError, match=r"mallory may not decide .*approvers: oncall"):
        agent.decide(approval.id, approve=True, user="mallory")
    assert agent.approvals.get(approval.id).status == "pending" and _actual_sum(ctx) < 0

    decided = agent.decide(approval.id, approve=True, user="oncall", reason="the snapshot before is audited")
    assert decided.status == "approved" and decided.decided_by == "oncall" and decided.resumed_at is not None
    assert _actual_sum(ctx) > 0, "the rollback ran after approval"
    assert ctx.incidents.get(1).status == "resolved"

    with pytest.raises(ApprovalError, match="already approved by oncall"):
        agent.decide(approval.id, approve=False, user="oncall", reason="changed my mind")
    entry = next(e for e in AuditLog(ctx.ledger).entries(incident_id=1) if e.tool == "rollback_table")
    assert (entry.decision, entry.rule, entry.approver, entry.status, entry.approval_id) == (
        "needs_approval",
        "rollback_approval",
        "oncall",
        "ok",
        approval.id,
    )


def test_denial_runs_nothing_and_escalates(agent: Agent) -> None:
    waiting = agent.handle_incident(1)
    assert waiting.approval_id is not None
    agent.decide(waiting.approval_id, approve=False, user="oncall", reason="not during the board meeting")
    assert _actual_sum(agent.ctx) < 0
    incident = agent.ctx.incidents.get(1)
    assert incident.status == "escalated"
    assert "not during the board meeting" in incident.notes[-1]["note"]
    entry = next(e for e in agent.audit.entries(incident_id=1) if e.tool == "rollback_table")
    assert entry.status == "denied" and entry.result is None


def test_a_decision_recorded_before_a_crash_is_resumed_at_start_up(home: Path) -> None:
    first = Agent(_ctx(home), clock=lambda: NOW)
    approval_id = first.handle_incident(1).approval_id
    assert approval_id is not None
    # The decision reaches the ops database, then the process dies before resuming the graph.
    ApprovalStore(first.ctx.ledger).decide(approval_id, approve=True, by=ONCALL)
    first.close()

    second = Agent(_ctx(home), clock=lambda: NOW)
    try:
        assert _actual_sum(second.ctx) < 0
        outcomes = second.resume_decided()
        assert [o.outcome for o in outcomes] == ["resolved"]
        assert _actual_sum(second.ctx) > 0
        assert second.resume_decided() == [], "a resumed request is not resumed twice"
        rollbacks = [e for e in second.audit.entries(incident_id=1) if e.tool == "rollback_table"]
        assert len(rollbacks) == 1 and rollbacks[0].status == "ok"
    finally:
        second.close()


def test_a_claim_by_a_dead_process_is_taken_over(home: Path) -> None:
    agent = Agent(_ctx(home), clock=lambda: NOW)
    try:
        approval_id = agent.handle_incident(1).approval_id
        assert approval_id is not None
        store = agent.approvals
        store.decide(approval_id, approve=True, by=ONCALL)
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
        import socket

        from policies.approvals import ApprovalRow

        with agent.ctx.ledger.session() as s, s.begin():
            row = s.get(ApprovalRow, approval_id)
            assert row is not None
            row.claimed_by, row.claimed_at = f"{socket.gethostname()}:{dead.stdout.strip()}", datetime.now().astimezone()
        assert store.claim(approval_id), "the dead process's claim is taken over"
        assert [o.outcome for o in agent.resume_decided()] == ["resolved"]
    finally:
        agent.close()


def test_unanswered_requests_expire_and_the_agent_escalates(home: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    text = (REPO / "config" / "policy.yaml").read_text().replace("approval_ttl_minutes: 1440", "approval_ttl_minutes: 0.0001")
    policy.write_text(text)
    agent = Agent(_ctx(home, policy_file=policy), clock=lambda: NOW)
    try:
        approval_id = agent.handle_incident(1).approval_id
        assert approval_id is not None
        import time

        time.sleep(0.05)
        outcomes = agent.resume_decided()
        assert [o.outcome for o in outcomes] == ["escalated"]
        assert agent.approvals.get(approval_id).status == "expired"
        with pytest.raises(ApprovalError, match="expired"):
            agent.decide(approval_id, approve=True, user="oncall")
        assert _actual_sum(agent.ctx) < 0
        assert agent.ctx.incidents.get(1).status == "escalated"
    finally:
        agent.close()


def _store_with_request(tmp_path: Path, *, requested_by: str, approvers: list[str]) -> tuple[ApprovalStore, str]:
    from datetime import timedelta

    from pipelines.ledger import Ledger

    store = ApprovalStore(Ledger(f"sqlite:///{tmp_path / 'ops.db'}"))
    approval, _ = store.request(
        call_id="call-1", thread_id="chat-1", tool="delete_partition", arguments={}, target={}, reason="r", rule="delete_approval",
        approvers=approvers, requested_by=requested_by, ttl=timedelta(hours=1),
    )  # fmt: skip
    return store, approval.id


def _approver(name: str, role: str | None = "approver") -> Actor:
    return Actor(id=name, channel="cli", role=role, aliases=frozenset({name, f"person:{name}", f"login:{name}"}))  # type: ignore[arg-type]


def test_refusals_name_only_the_approvers_who_may_decide(tmp_path: Path) -> None:
    """The requester is in the frozen list but may not decide: no refusal offers them as the one to ask."""
    store, approval_id = _store_with_request(tmp_path, requested_by="ada", approvers=["ada", "oncall", "bob"])
    with pytest.raises(ApprovalError) as own:
        store.decide(approval_id, approve=True, by=_approver("ada"))
    assert str(own.value) == f"ada asked for {approval_id} (as ada) and may not decide it too; another approver must (oncall, bob)"
    with pytest.raises(ApprovalError) as stranger:
        store.decide(approval_id, approve=True, by=_approver("mallory", "viewer"))
    assert f"mallory may not decide {approval_id}; approvers: oncall, bob (frozen when the agent asked" in str(stranger.value)
    with pytest.raises(ApprovalError) as demoted:
        store.decide(approval_id, approve=True, by=_approver("bob", "operator"))
    assert str(demoted.value).endswith("or `dataops users list`); approvers: oncall"), "neither the requester nor bob himself"
    assert store.get(approval_id).status == "pending"


def test_a_request_only_its_requester_could_decide_says_nobody_may(tmp_path: Path) -> None:
    store, approval_id = _store_with_request(tmp_path, requested_by="person:ada", approvers=["ada"])
    with pytest.raises(ApprovalError) as own:
        store.decide(approval_id, approve=False, by=_approver("ada"))
    assert str(own.value).endswith("may not decide it too; no other approver is named on it, so it will expire")
    with pytest.raises(ApprovalError, match=r"approvers: none who may decide it \(frozen when the agent asked"):
        store.decide(approval_id, approve=False, by=_approver("mallory", "viewer"))


def _cli(home: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    env |= {"DATAOPS_HOME": str(home), "NO_PROXY": "127.0.0.1,localhost"} | ({"DATAOPS_TOKEN": token} if token else {})
    return subprocess.run([str(Path(sys.executable).parent / "dataops"), *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_approval_across_processes_from_the_cli(home: Path) -> None:
    """One process asks and exits while waiting; others decide; the rollback runs once, in the deciding process."""
    asked = _cli(home, "remediate", "1", "--json")
    assert asked.returncode == 0, asked.stderr
    outcome = json.loads(asked.stdout)
    assert outcome["status"] == "waiting"
    approval_id = outcome["approval_id"]

    listed = json.loads(_cli(home, "approvals", "--status", "pending", "--json").stdout)
    assert [a["id"] for a in listed] == [approval_id]

    token = PeopleStore(_ctx(home).ledger).issue_token("oncall")  # what `dataops users token oncall` hands the on-call person
    unknown = _cli(home, "approve", approval_id)
    assert unknown.returncode == 2 and "is not a person of this platform and DATAOPS_TOKEN is unset" in unknown.stderr
    refused = _cli(home, "approve", approval_id, "--as", "mallory", token=token)
    assert refused.returncode == 2 and "--as mallory refused: DATAOPS_TOKEN is oncall" in refused.stderr

    approved = _cli(home, "approve", approval_id, "--as", "oncall", "--reason", "checked the history", token=token)
    assert approved.returncode == 0, approved.stderr
    assert "approved by oncall" in approved.stdout

    again = _cli(home, "deny", approval_id, "--reason", "too late", token=token)
    assert again.returncode == 2 and "already approved by oncall" in again.stderr, "a refused decision is the asker's to fix"

    ctx = _ctx(home)
    assert _actual_sum(ctx) > 0
    assert ctx.incidents.get(1).status == "resolved"
    audit = json.loads(_cli(home, "audit", "--json").stdout)
    rollback = [e for e in audit if e["tool"] == "rollback_table"]
    assert len(rollback) == 1 and (rollback[0]["approver"], rollback[0]["approver_via"], rollback[0]["status"]) == ("oncall", "cli", "ok")
    assert {"actor", "tool", "arguments", "decision", "rule", "approver", "result", "duration_ms", "tokens"} <= set(rollback[0])


@pytest.mark.slow
def test_sigkill_while_an_approval_is_pending_loses_nothing(home: Path) -> None:
    """A process asks for approval and is SIGKILLed while waiting; the approval still works afterwards."""
    script = f"""
import os, signal
from agent.runtime import Agent
from config.settings import load_settings
from pipelines.context import PlatformContext
from tests.conftest import utc
agent = Agent(PlatformContext.open(load_settings(home={str(home)!r})), clock=lambda: utc(2023, 1, 28))
outcome = agent.handle_incident(1)
print(outcome.approval_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")} | {"PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert killed.returncode == -9, killed.stderr[-2000:]
    approval_id = killed.stdout.strip().splitlines()[-1]
    after = Agent(_ctx(home), clock=lambda: NOW)
    try:
        assert after.approvals.get(approval_id).status == "pending"
        assert after.pending_approval("incident-1") is not None, "the paused thread survived the kill"
        assert after.decide(approval_id, approve=True, user="oncall").status == "approved"
        assert _actual_sum(after.ctx) > 0
        assert after.ctx.incidents.get(1).status == "resolved"
    finally:
        after.close()
