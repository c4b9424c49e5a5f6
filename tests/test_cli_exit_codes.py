"""Exit 2, not 1, when the person at the CLI can fix it: an unknown id, a decision they may not take, a request already
decided, a call no longer waiting, a forecast not issued yet. One line on stderr says why and what to do."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from typer.testing import CliRunner, Result

from config.settings import DataopsSettings
from pipelines.context import PlatformContext
from policies.approvals import ApprovalStore
from policies.people import PeopleStore, Person
from tests.conftest import utc

runner = CliRunner()


@pytest.fixture
def ctx(settings: DataopsSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[PlatformContext]:
    """A platform whose home the CLI uses, with the bundled people (oncall, an approver)."""
    monkeypatch.setenv("DATAOPS_HOME", str(settings.home))
    context = PlatformContext.open(settings)
    yield context
    context.ledger.engine.dispose()


def _as(ctx: PlatformContext, name: str, role: str | None = None) -> dict[str, str]:
    """The environment of `name` on the CLI: their token (added to the ops database first when a role is given)."""
    store = PeopleStore(ctx.ledger)
    if role is not None:
        store.add(Person.model_validate({"name": name, "role": role, "source": "database"}))
    return {"DATAOPS_TOKEN": store.issue_token(name), "COLUMNS": "300"}


def _dataops(argv: list[str], env: dict[str, str]) -> Result:
    from evals.cli import app

    return runner.invoke(app, argv, env=env)


def _one_line(done: Result, starts: str) -> None:
    assert done.stderr.startswith(starts) and done.stderr.count("\n") == 1, done.stderr


def test_refused_decisions_exit_2_and_name_who_may_decide(ctx: PlatformContext) -> None:
    ada, oncall, mallory = _as(ctx, "ada", "approver"), _as(ctx, "oncall"), _as(ctx, "mallory", "viewer")
    request, _ = ApprovalStore(ctx.ledger).request(
        call_id="call-1", thread_id="chat-1", tool="delete_partition", arguments={"table": "silver.carbon_intensity"},
        target={}, reason="a delete", rule="delete_approval", approvers=["ada", "oncall"], requested_by="ada", ttl=timedelta(hours=1),
    )  # fmt: skip

    unknown = _dataops(["approve", "A-000000"], oncall)
    assert unknown.exit_code == 2
    _one_line(unknown, "refused: no approval request 'A-000000'; `dataops approvals` lists them")
    own = _dataops(["approve", request.id], ada)
    assert own.exit_code == 2
    _one_line(own, f"refused: ada asked for {request.id} (as ada) and may not decide it too; another approver must (oncall)")
    stranger = _dataops(["deny", request.id, "--reason", "no"], mallory)
    assert stranger.exit_code == 2
    _one_line(stranger, f"refused: mallory may not decide {request.id}; approvers: oncall (frozen when the agent asked")

    approved = _dataops(["approve", request.id, "--reason", "checked"], oncall)
    assert approved.exit_code == 0, approved.output
    again = _dataops(["deny", request.id, "--reason", "too late"], oncall)
    assert again.exit_code == 2
    _one_line(again, f"refused: {request.id} was already approved by oncall at ")


def test_releasing_an_unknown_deferred_call_exits_2(ctx: PlatformContext) -> None:
    done = _dataops(["deferred", "release", "nope"], _as(ctx, "oncall"))
    assert done.exit_code == 2
    _one_line(done, "refused: no deferred call 'nope'; `dataops deferred list` shows them")


def test_showing_a_forecast_before_one_was_issued_exits_2_saying_how_to_issue_one(ctx: PlatformContext) -> None:
    done = _dataops(["forecast", "show", "--as-of", "2023-02-01T00:00Z"], {"COLUMNS": "300"})
    assert done.exit_code == 2 and done.stdout == ""
    _one_line(done, "error: no forecast in gold.carbon_intensity_forecast issued by 2023-02-01T00:00Z; `dataops forecast run` issues one")


def test_a_person_the_policy_does_not_let_act_on_incidents_exits_2(ctx: PlatformContext) -> None:
    from pipelines.incidents import Finding

    finding = Finding(kind="freshness", severity="warning", table="silver.carbon_intensity", cause_key="stale", title="stale")
    ctx.incidents.report(finding, now=utc(2023, 1, 1, 13))
    viewer = _as(ctx, "mallory", "viewer")
    for argv in (["incident", "expected", "1", "--reason", "a test day"], ["incident", "ack", "1"], ["monitors", "unsuppress", "1"]):
        done = _dataops(argv, viewer)
        assert done.exit_code == 2, (argv, done.output)
        _one_line(done, "refused: mallory may not act on incidents: role viewer, operator or approver needed")
