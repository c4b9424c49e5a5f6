"""Identity and roles: the attacks of issue 14 item 1, replayed through the real `dataops` CLI, now fail.

1. `DATAOPS_USER=oncall dataops approve ID` (or `--as oncall`) from any login approved a rollback.
2. `DATAOPS_APPROVERS=mallory2 dataops chat ...` set the approvers of the request it made, then
   `dataops approve --as mallory2` ran a `delete_partition`.

Plus the model behind the fixes: tokens shown once and stored hashed, approvers frozen into a request,
nobody approving what they caused under another name, and the people file's errors.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from config.errors import ApprovalError, DefinitionError, IdentityError, SettingsError
from config.settings import load_settings
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.monitors.publish_audit import audit_published
from pipelines.promotion import run_pipeline
from policies.approvals import ApprovalStore
from policies.audit import AuditLog
from policies.people import People, PeopleStore, Person, is_service_owner, load_people_file, os_login
from tests.conftest import utc, window

GOLD, SILVER = "gold.carbon_intensity_hourly", "silver.carbon_intensity"
NOW = utc(2023, 1, 28)
ME = os_login()
DATAOPS = str(Path(sys.executable).parent / "dataops")


def _negate(rows: pa.Table) -> pa.Table:
    return rows.set_column(rows.schema.get_field_index("actual"), "actual", pc.negate(rows.column("actual")))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real silver and gold data for 24-27 January, a bad publish of gold on the 25th and its incident (id 1)."""
    home = tmp_path_factory.mktemp("identity") / "home"
    ctx = PlatformContext.open(load_settings(home=home))
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 24), (2023, 1, 27)), as_of=NOW)
    faults.bad_publish(ctx, GOLD, utc(2023, 1, 25), _negate, run_id="manual-bad")
    incident, _ = ctx.incidents.report(audit_published(ctx, GOLD, NOW)[0], now=NOW)
    assert incident.id == 1
    ctx.ledger.engine.dispose()
    return home


@pytest.fixture
def home(prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    target = tmp_path / "home"
    shutil.copytree(prepared, target)
    return target


def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`dataops` as a separate process, with only the DATAOPS_ variables given here (and the caller's OS login)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    clean |= {"DATAOPS_HOME": str(home), "NO_PROXY": "127.0.0.1,localhost", "COLUMNS": "400"} | env
    return subprocess.run([DATAOPS, *args], capture_output=True, text=True, env=clean, timeout=300)


def _ctx(home: Path, **overrides: object) -> PlatformContext:
    return PlatformContext.open(load_settings(home=home, **overrides))


def _gold_sum(home: Path) -> float:
    table = load_table(_ctx(home).catalog, GOLD)
    rows = table.scan(row_filter="ts >= '2023-01-25T00:00:00+00:00' and ts < '2023-01-26T00:00:00+00:00'").to_arrow()
    return float(pc.sum(rows.column("actual")).as_py())


def _silver_rows(home: Path, day: str) -> int:
    table = load_table(_ctx(home).catalog, SILVER)
    return table.scan(row_filter=f"ts >= '{day}T00:00:00+00:00' and ts < '{day}T23:59:59+00:00'").to_arrow().num_rows


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- attack 1: DATAOPS_USER / --as chose who approved --------------------------------------------------------------


@pytest.mark.slow
def test_attack_1_env_or_as_cannot_choose_the_approver(home: Path, tmp_path: Path) -> None:
    people = tmp_path / "people.yaml"
    people.write_text(f"people:\n  - {{name: oncall, role: approver}}\n  - {{name: alice, role: approver, login: {ME}}}\n")
    env = {"DATAOPS_PEOPLE_FILE": str(people)}
    asked = _cli(home, "remediate", "1", "--json", **env)
    assert asked.returncode == 0, asked.stderr
    approval_id = json.loads(asked.stdout)["approval_id"]
    assert ApprovalStore(_ctx(home).ledger).get(approval_id).approvers == ["alice", "oncall"]
    bad = _gold_sum(home)
    assert bad < 0

    as_env = _cli(home, "approve", approval_id, DATAOPS_USER="oncall", **env)
    assert as_env.returncode == 2
    assert "DATAOPS_USER no longer chooses who you are; unset it" in _one_line(as_env)
    spoofed = _cli(home, "approve", approval_id, "--as", "oncall", **env)
    assert spoofed.returncode == 2
    assert f"--as oncall refused: OS login {ME!r} is alice; --as only confirms who you are" in _one_line(spoofed)
    nobody = tmp_path / "nobody.yaml"
    nobody.write_text("people:\n  - {name: oncall, role: approver}\n")
    stranger = _cli(home, "approve", approval_id, "--as", "oncall", DATAOPS_PEOPLE_FILE=str(nobody))
    assert stranger.returncode == 2
    assert f"OS login {ME!r} is not a person of this platform and DATAOPS_TOKEN is unset" in _one_line(stranger)
    forged = _cli(home, "approve", approval_id, DATAOPS_TOKEN="dop_00000000_" + "x" * 43, **env)
    assert forged.returncode == 2 and "DATAOPS_TOKEN matches no person" in _one_line(forged)
    assert ApprovalStore(_ctx(home).ledger).get(approval_id).status == "pending"
    assert _gold_sum(home) == bad, "nothing was rolled back"

    # The login itself authenticates: alice approves as herself, and the audit names her and the channel.
    approved = _cli(home, "approve", approval_id, "--reason", "checked", **env)
    assert approved.returncode == 0, approved.stderr
    assert f"{approval_id} approved by alice" in approved.stdout
    assert _gold_sum(home) > 0
    [rollback] = [e for e in json.loads(_cli(home, "audit", "--json", **env).stdout) if e["tool"] == "rollback_table"]
    assert (rollback["approver"], rollback["approver_via"], rollback["status"]) == ("alice", "cli", "ok")


# --- attack 2: the asking process's DATAOPS_APPROVERS chose the approvers ------------------------------------------


@pytest.mark.slow
def test_attack_2_the_asking_process_cannot_choose_the_approvers(home: Path) -> None:
    ask = ["chat", "-m", "delete silver.carbon_intensity 2023-01-25"]
    planted = _cli(home, *ask, DATAOPS_APPROVERS="mallory2")
    assert planted.returncode == 2
    assert "DATAOPS_APPROVERS is no longer read: approvers are people with role approver in config/people.yaml" in _one_line(planted)
    assert ApprovalStore(_ctx(home).ledger).list() == [], "no request was made"

    asked = _cli(home, *ask)
    assert asked.returncode == 0, asked.stderr
    [request] = ApprovalStore(_ctx(home).ledger).list(status="pending")
    assert (request.tool, request.approvers, request.requested_by) == ("delete_partition", ["oncall"], f"login:{ME}")

    added = _cli(home, "users", "add", "mallory2", "--role", "viewer")
    assert added.returncode == 0, added.stderr
    token = _cli(home, "users", "token", "mallory2").stdout.strip().splitlines()[-1]
    refused = _cli(home, "approve", request.id, "--as", "mallory2", DATAOPS_TOKEN=token)
    assert refused.returncode == 2
    assert f"mallory2 may not decide {request.id}; approvers: oncall (frozen when the agent asked" in refused.stderr
    again = _cli(home, "approve", request.id, "--as", "mallory2", DATAOPS_TOKEN=token, DATAOPS_APPROVERS="mallory2")
    assert again.returncode == 2 and "DATAOPS_APPROVERS is no longer read" in again.stderr
    assert ApprovalStore(_ctx(home).ledger).get(request.id).status == "pending"
    assert _silver_rows(home, "2023-01-25") == 48, "nothing was deleted"


# --- tokens -------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_token_is_shown_once_stored_hashed_and_replaced_by_the_next(home: Path) -> None:
    added = _cli(home, "users", "add", "bob", "--role", "approver", "--slack", "U0BOB", "--email", "bob@example.org")
    assert added.returncode == 0 and "added bob (approver)" in added.stdout
    issued = _cli(home, "users", "token", "bob")
    assert issued.returncode == 0 and "shown once" in issued.stdout
    token = issued.stdout.strip().splitlines()[-1]
    assert token.startswith("dop_") and len(token) > 40

    secret = token.split("_", 2)[2]
    stored = (home / "ops.db").read_bytes()
    assert secret.encode() not in stored and token.encode() not in stored, "only a salted digest is kept"
    listed = _cli(home, "users", "list", "--json")
    assert secret not in listed.stdout
    bob = next(p for p in json.loads(listed.stdout)["people"] if p["name"] == "bob")
    assert bob == {
        "name": "bob",
        "role": "approver",
        "login": None,
        "slack": "U0BOB",
        "email": "bob@example.org",
        "source": "database",
        "authenticates_by": ["slack", "token"],
    }

    people = People.load(_ctx(home).settings, _ctx(home).ledger)
    assert people.authenticate_cli(token=token, login="whoever", as_name="bob").id == "bob", "--as with the right token works"
    replaced = _cli(home, "users", "token", "bob").stdout.strip().splitlines()[-1]
    assert replaced != token
    with pytest.raises(IdentityError, match="DATAOPS_TOKEN matches no person"):
        people.authenticate_cli(token=token, login="whoever")
    assert people.authenticate_cli(token=replaced, login="whoever").by_token

    removed = _cli(home, "users", "remove", "bob")
    assert removed.returncode == 0 and "removed bob and their token" in removed.stdout
    assert People.load(_ctx(home).settings, _ctx(home).ledger).by_token(replaced) is None
    declared = _cli(home, "users", "remove", "oncall")
    assert declared.returncode == 2 and "oncall is declared in" in declared.stderr and "delete them there" in declared.stderr


@pytest.mark.slow
def test_writes_asked_for_in_chat_need_an_operator(home: Path) -> None:
    """A viewer is answered but not acted for; an operator's identical request is acted on (each by their token)."""
    store = PeopleStore(_ctx(home).ledger)
    store.add(Person(name="vic", role="viewer", source="database"))
    store.add(Person(name="olga", role="operator", source="database"))
    viewer, operator = store.issue_token("vic"), store.issue_token("olga")
    ask = ["chat", "-m", "quarantine silver.carbon_intensity 2023-01-25"]
    as_viewer = _cli(home, *ask, DATAOPS_TOKEN=viewer)
    assert as_viewer.returncode == 0, as_viewer.stderr
    assert "vic has role viewer" in as_viewer.stdout and "need role operator" in as_viewer.stdout
    assert _silver_rows(home, "2023-01-25") == 48, "nothing was quarantined"
    as_operator = _cli(home, *ask, DATAOPS_TOKEN=operator)
    assert as_operator.returncode == 0, as_operator.stderr
    assert _silver_rows(home, "2023-01-25") == 0
    decisions = [(e.actor, e.tool, e.decision, e.rule) for e in AuditLog(_ctx(home).ledger).entries() if e.tool == "quarantine_partition"]
    assert decisions == [
        ("vic", "quarantine_partition", "deny", "requester_role"),
        ("olga", "quarantine_partition", "allow", "listed_writes"),
    ]


def test_an_os_login_that_is_no_person_asks_with_no_role_unless_it_owns_the_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI asker: a stranger login gets no role (its asked-for writes are refused by requester_role); the service
    owner who is no person counts as an operator; a declared person keeps their own role, owner or not."""
    import policies.people
    from agent.people_cli import cli_asker

    ctx = _ctx(home)
    monkeypatch.setattr(policies.people, "is_service_owner", lambda _home, uid=None: False)
    stranger = cli_asker(ctx, None)
    assert (stranger.id, stranger.role) == (f"login:{ME}", None)
    monkeypatch.setattr(policies.people, "is_service_owner", lambda _home, uid=None: True)
    assert cli_asker(ctx, None).role == "operator"
    PeopleStore(ctx.ledger).add(Person(name="vera", role="viewer", login=ME, source="database"))
    declared = cli_asker(ctx, None)
    assert (declared.id, declared.role) == ("vera", "viewer"), "a person keeps their role even when they own the home"


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to hand the home to another owner")
def test_only_the_service_owner_manages_people_and_others_only_their_own_token(home: Path) -> None:
    store = PeopleStore(_ctx(home).ledger)
    store.add(Person(name="bob", role="approver", source="database"))
    bob = store.issue_token("bob")
    os.chown(home, 65534, -1)  # the service now belongs to another OS user: this login is a stranger to it
    assert not is_service_owner(home)
    refused = _cli(home, "users", "add", "eve", "--role", "approver")
    assert refused.returncode == 2 and "only the service owner (the OS user owning" in refused.stderr
    other = _cli(home, "users", "token", "oncall", DATAOPS_TOKEN=bob)
    assert other.returncode == 2 and "bob may not manage the token of oncall" in other.stderr
    own = _cli(home, "users", "token", "bob", DATAOPS_TOKEN=bob)
    assert own.returncode == 0 and own.stdout.strip().splitlines()[-1].startswith("dop_")


def test_the_service_owner_is_the_owner_of_the_home(tmp_path: Path) -> None:
    assert is_service_owner(tmp_path)
    assert not is_service_owner(tmp_path, uid=tmp_path.stat().st_uid + 1)
    assert not is_service_owner(tmp_path / "missing")


# --- frozen approvers, roles, self-approval ------------------------------------------------------------------------------


def _request(store: ApprovalStore, *, approvers: list[str], requested_by: str = "agent") -> str:
    approval, _ = store.request(
        call_id=f"call-{requested_by}-{len(store.list())}", thread_id="t", tool="delete_partition", arguments={}, target={},
        reason="test", rule="destructive", approvers=approvers, requested_by=requested_by, ttl=timedelta(hours=1),
    )  # fmt: skip
    return approval.id


def test_approvers_are_frozen_into_the_request_and_must_still_be_approvers(home: Path, tmp_path: Path) -> None:
    people_file = tmp_path / "people.yaml"
    people_file.write_text("people:\n  - {name: oncall, role: approver}\n  - {name: alice, role: approver}\n")
    ctx = _ctx(home, people_file=people_file)
    people = People.load(ctx.settings, ctx.ledger)
    assert people.policy(ctx.settings.policy_path).approvers == ("alice", "oncall")
    store = ApprovalStore(ctx.ledger)
    first, second = (_request(store, approvers=list(people.policy(ctx.settings.policy_path).approvers)) for _ in range(2))

    PeopleStore(ctx.ledger).add(Person(name="zed", role="approver", source="database"))  # an approver added afterwards
    people_file.write_text("people:\n  - {name: oncall, role: approver}\n  - {name: alice, role: viewer}\n")  # alice demoted
    now = People.load(ctx.settings, ctx.ledger)
    assert now.policy(ctx.settings.policy_path).approvers == ("oncall", "zed"), "new requests name the approvers of now"
    with pytest.raises(ApprovalError, match=rf"zed may not decide {first}; approvers: alice, oncall \(frozen when the agent asked"):
        store.decide(first, approve=True, by=now.actor("zed", channel="cli"))
    with pytest.raises(ApprovalError, match=rf"alice may not decide {first}: no longer an approver \(role viewer"):
        store.decide(first, approve=True, by=now.actor("alice", channel="cli"))
    assert store.decide(first, approve=True, by=now.actor("oncall", channel="api")).decided_by == "oncall"
    decided = store.decide(second, approve=False, by=now.actor("oncall", channel="slack"), reason="no")
    assert (decided.status, decided.decided_by, decided.decided_via) == ("denied", "oncall", "slack")


def test_no_one_approves_what_they_caused_under_any_of_their_names(home: Path, tmp_path: Path) -> None:
    people_file = tmp_path / "people.yaml"
    people_file.write_text(
        "people:\n  - {name: oncall, role: approver}\n"
        "  - {name: alice, role: approver, login: alice, slack: U0ALICE, email: alice@example.org}\n"
        "slack_groups: {S0ONCALL: approver}\n"
    )
    ctx = _ctx(home, people_file=people_file)
    people, store = People.load(ctx.settings, ctx.ledger), ApprovalStore(ctx.ledger)
    for requester in ("alice", "login:alice", "U0ALICE", "slack:U0ALICE", "alice@example.org"):
        approval_id = _request(store, approvers=["alice", "oncall", "S0ONCALL"], requested_by=requester)
        for actor in (people.actor("alice", channel="cli"), people.slack_actor("U0ALICE")):
            assert actor is not None
            with pytest.raises(ApprovalError, match=rf"alice asked for {approval_id} \(as {requester}\) and may not decide it too"):
                store.decide(approval_id, approve=True, by=actor)
    # A member of an approver group who is not a person acts as slack:<id>, and cannot approve their own request either.
    carol = people.slack_actor("U0CAROL", groups=["S0ONCALL"])
    assert carol is not None and (carol.id, carol.role) == ("slack:U0CAROL", "approver")
    own = _request(store, approvers=["oncall", "S0ONCALL"], requested_by="U0CAROL")
    with pytest.raises(ApprovalError, match="may not decide it too"):
        store.decide(own, approve=True, by=carol)
    assert store.decide(_request(store, approvers=["oncall", "S0ONCALL"]), approve=True, by=carol).decided_by == "slack:U0CAROL"
    assert people.slack_actor("U0MALLORY") is None, "an unknown Slack user is nobody (the click is refused)"
    assert people.slack_actor("U0MALLORY", groups=["S0OTHER"]) is None, "a group without a role grants nothing"


def test_roles_include_each_other() -> None:
    people = People(
        [Person(name="vic", role="viewer"), Person(name="olive", role="operator"), Person(name="ann", role="approver")],
        slack_groups={"S0OPS": "operator"},
    )
    assert [people.actor(n, channel="cli").may("operator") for n in ("vic", "olive", "ann", "stranger")] == [False, True, True, False]
    assert [people.actor(n, channel="cli").may("approver") for n in ("vic", "olive", "ann")] == [False, False, True]
    assert people.actor("vic", channel="slack", groups=["S0OPS"]).role == "operator", "the higher of person and group"
    assert people.holding("operator") == ("olive", "S0OPS")


# --- the people file ---------------------------------------------------------------------------------------------------------


def test_the_bundled_people_file_declares_the_sample_approver_without_a_way_in() -> None:
    from tests.conftest import REPO

    declared = load_people_file(REPO / "config" / "people.yaml")
    [oncall] = declared.people
    assert (oncall.name, oncall.role, oncall.login, oncall.slack) == ("oncall", "approver", None, None)
    assert (REPO / "config" / "people.yaml").read_text().startswith("# The people of the platform")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("people:\n  - {name: ann, role: admin}\n", "people.0.role: Input should be 'viewer', 'operator' or 'approver'"),
        ("people:\n  - {name: ann, role: viewer, slack: ann}\n", "people.0.slack: Value error, slack 'ann' is not a Slack user id"),
        ("people:\n  - {name: agent, role: viewer}\n", "people.0.name: Value error, name 'agent' is reserved for the platform"),
        ("people:\n  - {name: 'a b', role: viewer}\n", "people.0.name: Value error, name 'a b' is not valid"),
        ("people:\n  - {name: ann, role: viewer, logn: ann}\n", "people.0.logn: Extra inputs are not permitted"),
        ("slack_groups: {oncall: approver}\n", "slack_groups: Value error, 'oncall' is not a Slack user-group id"),
        ("- ann\n", "it must be a mapping with `people:`, got list"),
        ("people: [\n", "is not valid YAML"),
    ],
)
def test_people_file_errors_name_the_bad_key_and_value(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "people.yaml"
    path.write_text(text)
    with pytest.raises(DefinitionError, match="people file") as error:
        load_people_file(path)
    assert words in str(error.value)


def test_clashing_identities_are_refused_when_the_registry_loads() -> None:
    with pytest.raises(DefinitionError, match="login 'ann' belongs to both 'ann' and 'bob'; give each person their own"):
        People([Person(name="ann", role="viewer", login="ann"), Person(name="bob", role="viewer", login="ann")])
    with pytest.raises(DefinitionError, match="person 'ann' is declared twice \\(file and database\\)"):
        People([Person(name="ann", role="viewer"), Person(name="ann", role="approver", source="database")])


def test_dataops_approvers_is_refused_wherever_the_registry_loads(home: Path) -> None:
    ctx = _ctx(home, approvers=["mallory2"])
    with pytest.raises(SettingsError, match="DATAOPS_APPROVERS is no longer read"):
        People.load(ctx.settings, ctx.ledger)


def test_the_os_login_ignores_user_and_logname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "oncall")
    monkeypatch.setenv("LOGNAME", "oncall")
    assert os_login() == ME and (ME != "oncall")
