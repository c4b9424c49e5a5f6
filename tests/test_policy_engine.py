"""The guardrail engine against the shipped policy: every rule, its boundaries, the rule order and the policy loader."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from config.errors import PolicyError
from policies import engine
from policies.engine import RULES, decide
from policies.model import Allow, CallHistory, Decision, Deny, FreezeWindow, NeedsApproval, PolicyRequest, PolicySpec, load_policy
from tests.conftest import REPO, utc
from tools.registry import REGISTRY

POLICY_FILE = REPO / "config" / "policy.yaml"
RULE_NAMES = {r.__name__ for r in RULES} | {"unlisted_write"}
ESCALATE = "call escalate_incident with what you found instead"
RERUN_TOOLS = ("rerun_window", "backfill_range")  # the hard limits below are pinned on the tools by name
NOW = utc(2026, 3, 10, 12)
FREEZE_START, FREEZE_END = utc(2026, 12, 24), utc(2026, 12, 27)
IN_FREEZE = utc(2026, 12, 25, 9)
TICK = timedelta(microseconds=1)
PARIS = timezone(timedelta(hours=1))  # the bounds are instants: 01:00 in Paris is the UTC midnight the freeze starts at
TABLES = {
    "bronze": "bronze.carbon_intensity",
    "silver": "silver.carbon_intensity",
    "gold": "gold.carbon_intensity_hourly",
    "quarantine": "quarantine.carbon_intensity",
    "ops": "ops.incidents",
}
# Every limit of the escalation rules hit at once: only reads and safe writes may pass.
OVER_EVERYTHING = CallHistory(reruns_last_hour=9, related_open_incidents=9, recurrences_last_week=9, tokens_used=10**6)


@pytest.fixture(scope="module")
def policies() -> dict[str, PolicySpec]:
    default = load_policy(POLICY_FILE, approvers=["oncall"])  # as the bundled config/people.yaml declares them
    freeze = FreezeWindow(start=FREEZE_START, end=FREEZE_END, reason="holiday freeze")
    return {
        "default": default,
        "no_approvers": load_policy(POLICY_FILE, approvers=[]),
        "frozen": default.model_copy(update={"freeze_windows": (freeze,)}),
    }


@dataclass(frozen=True, kw_only=True)
class Case:
    tool: str
    kind: str
    rule: str
    effect: str | None = None  # None: the effect the tool declares in the registry
    layer: str | None = "silver"
    span: float | None = None
    history: CallHistory = field(default_factory=CallHistory)
    now: datetime = NOW
    policy: str = "default"
    role: str | None = "agent"  # who asked: the agent itself, a person's role, None for a caller who is no person


def request(case: Case) -> PolicyRequest:
    spec = REGISTRY[case.tool]
    return PolicyRequest(
        tool=case.tool,
        effect=spec.effect if case.effect is None else case.effect,
        runs_pipeline=spec.runs_pipeline,
        needs_verification=spec.needs_verification,
        restores_snapshot=spec.restores_snapshot,
        actor="agent" if case.role == "agent" else "someone",
        requester_role=case.role,  # type: ignore[arg-type]
        layer=case.layer,
        table=TABLES.get(case.layer or ""),
        pipeline="carbon_intensity",
        span_days=case.span,
        history=case.history,
        now=case.now,
    )


def _case(case_id: str, tool: str, kind: str, rule: str, **kwargs: Any) -> tuple[str, Case]:
    return case_id, Case(tool=tool, kind=kind, rule=rule, **kwargs)


A, N, D = "allow", "needs_approval", "deny"
TABLE = [
    # known_effect
    _case("unknown-effect", "query_lake", D, "known_effect", effect="admin"),
    _case("empty-effect", "rerun_window", D, "known_effect", effect=""),
    # read_is_free: before every refusal, so a read passes a freeze and every escalation limit
    _case("read", "query_lake", A, "read_is_free"),
    _case("read-gold", "profile_partition", A, "read_is_free", layer="gold"),
    _case("read-in-freeze", "get_incident", A, "read_is_free", policy="frozen", now=IN_FREEZE, layer="ops"),
    _case("read-over-limits", "table_history", A, "read_is_free", history=OVER_EVERYTHING),
    _case("read-no-approvers", "diff_snapshots", A, "read_is_free", policy="no_approvers", layer="gold"),
    _case("read-by-unknown-caller", "query_lake", A, "read_is_free", role=None),
    # requester_role: a write a person asked for needs role operator; before the safe writes, so a stranger cannot pause
    _case("quarantine-by-viewer", "quarantine_partition", D, "requester_role", role="viewer"),
    _case("pause-by-unknown-caller", "pause_pipeline", D, "requester_role", layer="ops", role=None),
    _case("annotate-by-viewer", "annotate_incident", D, "requester_role", layer="ops", role="viewer"),
    _case("delete-by-viewer", "delete_partition", D, "requester_role", role="viewer"),
    _case("quarantine-by-operator", "quarantine_partition", A, "listed_writes", role="operator"),
    _case("pause-by-operator", "pause_pipeline", A, "safe_writes", layer="ops", role="operator"),
    _case("delete-by-approver", "delete_partition", N, "destructive", role="approver"),
    # resolve_needs_verification: before the permissions, even before the freeze
    _case("resolve-unverified", "resolve_incident", D, "resolve_needs_verification", layer="ops"),
    _case("resolve-unverified-in-freeze", "resolve_incident", D, "resolve_needs_verification", layer="ops", policy="frozen", now=IN_FREEZE),
    _case("resolve-verified", "resolve_incident", A, "listed_writes", layer="ops", history=CallHistory(verified=True)),
    _case(
        "resolve-verified-in-freeze",
        "resolve_incident",
        D,
        "freeze_window",
        layer="ops",
        history=CallHistory(verified=True),
        policy="frozen",
        now=IN_FREEZE,
    ),
    # safe_writes: escalating, annotating and pausing are allowed when everything else is refused
    _case("escalate-over-limits", "escalate_incident", A, "safe_writes", layer="ops", history=OVER_EVERYTHING),
    _case("escalate-in-freeze", "escalate_incident", A, "safe_writes", layer="ops", policy="frozen", now=IN_FREEZE),
    _case("annotate-over-limits", "annotate_incident", A, "safe_writes", layer="ops", history=OVER_EVERYTHING),
    _case(
        "pause-over-limits-in-freeze",
        "pause_pipeline",
        A,
        "safe_writes",
        layer="ops",
        history=OVER_EVERYTHING,
        policy="frozen",
        now=IN_FREEZE,
    ),
    _case("pause-no-approvers", "pause_pipeline", A, "safe_writes", layer="ops", policy="no_approvers"),
    # freeze_window: start inclusive, end exclusive
    _case("freeze-just-before-start", "rerun_window", A, "listed_writes", span=1, policy="frozen", now=FREEZE_START - TICK),
    _case("freeze-at-start", "rerun_window", D, "freeze_window", span=1, policy="frozen", now=FREEZE_START),
    _case("freeze-just-before-end", "rerun_window", D, "freeze_window", span=1, policy="frozen", now=FREEZE_END - TICK),
    _case("freeze-at-end", "rerun_window", A, "listed_writes", span=1, policy="frozen", now=FREEZE_END),
    _case(
        "freeze-start-in-paris", "quarantine_partition", D, "freeze_window", policy="frozen", now=datetime(2026, 12, 24, 1, tzinfo=PARIS)
    ),
    _case(
        "freeze-midnight-in-paris", "quarantine_partition", A, "listed_writes", policy="frozen", now=datetime(2026, 12, 24, tzinfo=PARIS)
    ),
    _case("freeze-destructive", "delete_partition", D, "freeze_window", policy="frozen", now=IN_FREEZE),
    _case("freeze-rollback", "rollback_table", D, "freeze_window", policy="frozen", now=IN_FREEZE),
    _case("freeze-resume", "resume_pipeline", D, "freeze_window", layer="ops", policy="frozen", now=IN_FREEZE),
    _case("freeze-over-limits", "backfill_range", D, "freeze_window", span=40, history=OVER_EVERYTHING, policy="frozen", now=IN_FREEZE),
    # token_budget: at the budget is still inside it
    _case("tokens-at-budget", "rerun_window", A, "listed_writes", span=1, history=CallHistory(tokens_used=60_000)),
    _case("tokens-over-budget", "rerun_window", D, "token_budget", span=1, history=CallHistory(tokens_used=60_001)),
    _case("tokens-over-budget-destructive", "delete_partition", D, "token_budget", history=CallHistory(tokens_used=60_001)),
    # related_incidents: more than 3 open
    _case("related-3", "quarantine_partition", A, "listed_writes", history=CallHistory(related_open_incidents=3)),
    _case("related-4", "quarantine_partition", D, "related_incidents", history=CallHistory(related_open_incidents=4)),
    _case("related-4-rollback", "rollback_table", D, "related_incidents", history=CallHistory(related_open_incidents=4)),
    # recurrence: 3 or more in a week
    _case("recurrence-2", "rerun_window", A, "listed_writes", span=1, history=CallHistory(recurrences_last_week=2)),
    _case("recurrence-3", "rerun_window", D, "recurrence", span=1, history=CallHistory(recurrences_last_week=3)),
    _case("recurrence-3-gold", "quarantine_partition", D, "recurrence", layer="gold", history=CallHistory(recurrences_last_week=3)),
    # destructive: approval, refused without an approver; before the layer rule
    _case("delete-silver", "delete_partition", N, "destructive"),
    _case("delete-gold", "delete_partition", N, "destructive", layer="gold"),
    _case("expire-bronze", "expire_snapshots", N, "destructive", layer="bronze"),
    _case("delete-no-approvers", "delete_partition", D, "destructive", policy="no_approvers"),
    _case("expire-no-approvers", "expire_snapshots", D, "destructive", layer="bronze", policy="no_approvers"),
    # backfill_limit: over 31 days is refused whoever could approve
    _case("backfill-31", "backfill_range", N, "backfill_approval", span=31),
    _case("backfill-31.5", "backfill_range", D, "backfill_limit", span=31.5),
    _case("backfill-32", "backfill_range", D, "backfill_limit", span=32),
    _case("backfill-32-gold", "backfill_range", D, "backfill_limit", span=32, layer="gold"),
    _case("backfill-32-over-rate", "backfill_range", D, "backfill_limit", span=32, history=CallHistory(reruns_last_hour=5)),
    # rerun_rate: at most 3 per pipeline per hour
    _case("reruns-2", "rerun_window", A, "listed_writes", span=1, history=CallHistory(reruns_last_hour=2)),
    _case("reruns-3", "rerun_window", D, "rerun_rate", span=1, history=CallHistory(reruns_last_hour=3)),
    _case("reruns-3-backfill", "backfill_range", D, "rerun_rate", span=10, history=CallHistory(reruns_last_hour=3)),
    _case("reruns-do-not-limit-quarantine", "quarantine_partition", A, "listed_writes", history=CallHistory(reruns_last_hour=9)),
    # retry_budget: an incident's re-runs retry transient failures up to 5 attempts over 30 platform minutes
    _case("retries-4", "rerun_window", A, "listed_writes", span=1, history=CallHistory(retry_attempts=4, retry_waited_s=900)),
    _case("retries-5", "rerun_window", D, "retry_budget", span=1, history=CallHistory(retry_attempts=5)),
    _case("retries-30-minutes", "backfill_range", D, "retry_budget", span=2, history=CallHistory(retry_attempts=2, retry_waited_s=1800)),
    # incident_scope: while working an incident, data writes outside its table and lineage need a human
    _case("out-of-scope-quarantine", "quarantine_partition", N, "incident_scope", history=CallHistory(in_scope=False)),
    _case("out-of-scope-rerun", "rerun_window", N, "incident_scope", span=1, history=CallHistory(in_scope=False)),
    _case("in-scope-quarantine", "quarantine_partition", A, "listed_writes", history=CallHistory(in_scope=True)),
    _case("out-of-scope-ops-write", "annotate_incident", A, "safe_writes", layer="ops", history=CallHistory(in_scope=False)),
    _case(
        "out-of-scope-no-approvers", "quarantine_partition", D, "incident_scope", history=CallHistory(in_scope=False), policy="no_approvers"
    ),
    # rerun_of_published: a window whose runs all succeeded is published data; re-running it needs a human
    _case("rerun-published", "rerun_window", N, "rerun_of_published", span=1, history=CallHistory(window_failed=False)),
    _case("rerun-failed-window", "rerun_window", A, "listed_writes", span=1, history=CallHistory(window_failed=True)),
    _case("backfill-published", "backfill_range", N, "rerun_of_published", span=3, history=CallHistory(window_failed=False)),
    # backfill_approval: over 7 days
    _case("backfill-7", "backfill_range", A, "listed_writes", span=7),
    _case("backfill-7.5", "backfill_range", N, "backfill_approval", span=7.5),
    _case("backfill-8", "backfill_range", N, "backfill_approval", span=8),
    _case("backfill-8-no-approvers", "backfill_range", D, "backfill_approval", span=8, policy="no_approvers"),
    _case("rerun-7", "rerun_window", A, "listed_writes", span=7),
    # rollback_approval: every rollback, before the layer rule
    _case("rollback-silver", "rollback_table", N, "rollback_approval"),
    _case("rollback-gold", "rollback_table", N, "rollback_approval", layer="gold"),
    _case("rollback-no-approvers", "rollback_table", D, "rollback_approval", policy="no_approvers"),
    # layer_approval: any write on gold, even one listed as allowed
    _case("quarantine-gold", "quarantine_partition", N, "layer_approval", layer="gold"),
    _case("release-gold", "release_partition", N, "layer_approval", layer="gold"),
    _case("rerun-gold", "rerun_window", N, "layer_approval", layer="gold", span=1),
    _case("quarantine-gold-no-approvers", "quarantine_partition", D, "layer_approval", layer="gold", policy="no_approvers"),
    # listed_writes
    _case("quarantine-silver", "quarantine_partition", A, "listed_writes"),
    _case("rerun-silver", "rerun_window", A, "listed_writes", span=1),
    _case("resume", "resume_pipeline", N, "unlisted_write", layer="ops"),
    _case("listed-no-approvers", "quarantine_partition", A, "listed_writes", policy="no_approvers"),
    # unlisted_write: every other write needs a human
    _case("release-silver", "release_partition", N, "unlisted_write"),
    _case("unknown-write-tool", "compact_table", N, "unlisted_write", effect="write"),
    _case("release-no-approvers", "release_partition", D, "unlisted_write", policy="no_approvers"),
]
CASES = [pytest.param(case, id=case_id) for case_id, case in TABLE]
CASE_OBJECTS = [case for _, case in TABLE]
# The agent's own denials say to escalate; a person refused a write (requester_role) is told whom to ask instead.
DENIALS = [
    pytest.param(case, id=case_id) for case_id, case in TABLE if case.kind == D and case.rule not in ("known_effect", "requester_role")
]


def _decide(policies: dict[str, PolicySpec], case: Case) -> Decision:
    return decide(policies[case.policy], request(case))


@pytest.mark.parametrize("case", CASES)
def test_rule_decides(policies: dict[str, PolicySpec], case: Case) -> None:
    decision = _decide(policies, case)
    assert (decision.kind, decision.rule) == (case.kind, case.rule)
    if isinstance(decision, NeedsApproval):
        assert decision.approvers == ("oncall",)


def test_every_rule_is_exercised(policies: dict[str, PolicySpec]) -> None:
    decided = {_decide(policies, case).rule for case in CASE_OBJECTS}
    assert decided == RULE_NAMES


def test_every_rule_names_itself_in_its_decisions(policies: dict[str, PolicySpec]) -> None:
    """A rule called on its own either passes or answers under its own name, which goes into the audit log."""
    for case in CASE_OBJECTS:
        for rule in RULES:
            decision = rule(policies[case.policy], request(case))
            assert decision is None or decision.rule == rule.__name__


def test_docstring_lists_the_rules_in_order() -> None:
    chain = " ".join((engine.__doc__ or "").split("\n\n")[2].split())
    assert [name.strip() for name in chain.split("→")] == [r.__name__ for r in RULES] + ["unlisted_write"]


@pytest.mark.parametrize("case", DENIALS)
def test_denials_tell_the_model_to_escalate(policies: dict[str, PolicySpec], case: Case) -> None:
    decision = _decide(policies, case)
    assert isinstance(decision, Deny)
    assert "escalat" in decision.message


def test_denial_messages_name_the_limit(policies: dict[str, PolicySpec]) -> None:
    def message(**kwargs: Any) -> str:
        decision = _decide(policies, Case(kind=D, rule="", **kwargs))
        assert isinstance(decision, Deny)
        return decision.message

    assert message(tool="backfill_range", span=32) == (
        f"backfill_range over 32 days exceeds the 31-day limit; split it into approved pieces or {ESCALATE}"
    )
    assert message(tool="rerun_window", span=1, history=CallHistory(reruns_last_hour=3)) == (
        f"carbon_intensity was re-run 3 times in the last hour (limit 3); re-running again will not help; {ESCALATE}"
    )
    assert message(tool="rerun_window", policy="frozen", now=IN_FREEZE) == (
        f"holiday freeze: no changes until 2026-12-27T00:00:00+00:00; {ESCALATE}"
    )
    assert message(tool="rerun_window", history=CallHistory(tokens_used=60_001)) == (
        f"this incident has used 60001 tokens of its 60000; {ESCALATE}"
    )
    assert message(tool="quarantine_partition", history=CallHistory(related_open_incidents=4)).startswith(
        "4 related incidents are open (more than 3): a wider problem needs a human"
    )
    assert message(tool="quarantine_partition", history=CallHistory(recurrences_last_week=3)).startswith(
        "this cause was seen 3 times in seven days (limit 3)"
    )
    assert message(tool="resolve_incident", layer="ops").startswith("an incident is resolved only after a verification")
    assert message(tool="query_lake", effect="admin") == "tool 'query_lake' declares effect 'admin'; only read, write, destructive exist"
    assert message(tool="quarantine_partition", role="viewer") == (
        "writes asked for by people need role operator or above (policy writes_asked_by_people_need); someone has role "
        "viewer. Nothing was changed: ask an operator to make the request, or ask the service owner for the role "
        "(dataops users add NAME --role operator)"
    )
    assert "someone is not a person of the platform" in message(tool="pause_pipeline", layer="ops", role=None)
    assert message(tool="delete_partition", policy="no_approvers") == (
        "delete_partition deletes data or history on silver.carbon_intensity, and nobody has the approver role "
        f"(config/people.yaml); {ESCALATE}"
    )


def test_the_role_people_need_to_ask_for_writes_is_a_policy_setting(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY_FILE.read_text() + "\nwrites_asked_by_people_need: viewer\n")
    lenient = load_policy(path, approvers=["oncall"])
    assert decide(lenient, request(Case(tool="quarantine_partition", kind=A, rule="", role="viewer"))).rule == "listed_writes"
    # Still nobody who is no person of the platform.
    assert decide(lenient, request(Case(tool="quarantine_partition", kind=D, rule="", role=None))).rule == "requester_role"
    path.write_text("writes_asked_by_people_need: admin\n")
    with pytest.raises(PolicyError, match="writes_asked_by_people_need"):
        load_policy(path)


def test_approval_reasons_say_what_a_human_approves(policies: dict[str, PolicySpec]) -> None:
    def reason(**kwargs: Any) -> str:
        decision = _decide(policies, Case(kind=N, rule="", **kwargs))
        assert isinstance(decision, NeedsApproval)
        return decision.reason

    assert reason(tool="backfill_range", span=7.5) == "backfill_range rewrites 7.5 days (over 7)"
    assert reason(tool="rollback_table", layer="gold") == "rolling gold.carbon_intensity_hourly back discards what was published since"
    assert reason(tool="quarantine_partition", layer="gold") == (
        "quarantine_partition changes gold.carbon_intensity_hourly, which readers use directly"
    )
    assert reason(tool="expire_snapshots", layer="bronze") == "expire_snapshots deletes data or history on bronze.carbon_intensity"
    assert reason(tool="release_partition") == "release_partition is not among the writes allowed without approval"


def test_approvals_go_to_the_configured_approvers(policies: dict[str, PolicySpec]) -> None:
    policy = policies["default"].model_copy(update={"approvers": ("U01", "S02")})
    decision = decide(policy, request(Case(tool="rollback_table", kind=N, rule="rollback_approval")))
    assert isinstance(decision, NeedsApproval)
    assert decision.approvers == ("U01", "S02")


def test_decide_is_pure(policies: dict[str, PolicySpec]) -> None:
    for case in CASE_OBJECTS:
        req = request(case)
        assert decide(policies[case.policy], req) == decide(policies[case.policy], req)
        assert req == request(case)


# --- the shipped policy file ---------------------------------------------------------------------------------


def test_default_policy_is_the_strictest_published_practice() -> None:
    policy = load_policy(POLICY_FILE)
    assert policy.approvers == (), "approvers are people (config/people.yaml), never the policy file"
    assert (policy.backfill.approval_over_days, policy.backfill.deny_over_days) == (7, 31)
    assert policy.max_reruns_per_pipeline_per_hour == 3
    assert (policy.escalation.max_related_open_incidents, policy.escalation.recurrences_per_week) == (3, 3)
    assert policy.token_budget_per_incident == 60_000
    assert policy.approval_layers == ("gold",)
    assert policy.freeze_windows == ()
    assert {"rerun_window", "backfill_range", "quarantine_partition"} <= set(policy.allow_without_approval)
    assert "rollback_table" not in policy.allow_without_approval
    assert set(policy.safe_writes) == {"annotate_incident", "escalate_incident", "pause_pipeline"}


def test_policy_names_only_registered_writes() -> None:
    policy = load_policy(POLICY_FILE)
    for name in (*policy.allow_without_approval, *policy.safe_writes):
        assert name in REGISTRY, f"{name} in config/policy.yaml is not a tool"
        assert REGISTRY[name].effect == "write", f"{name} in config/policy.yaml is {REGISTRY[name].effect}, not a write"


# --- load_policy errors ---------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_missing_policy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"policy file .*nowhere\.yaml does not exist; set DATAOPS_POLICY_FILE"):
        load_policy(tmp_path / "nowhere.yaml")


def test_invalid_yaml_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"policy file .*policy\.yaml is not valid YAML"):
        load_policy(_write(tmp_path, "approvers: [oncall\nbackfill: {"))


def test_unknown_key_is_named(tmp_path: Path) -> None:
    text = POLICY_FILE.read_text() + "\nmax_rerun_per_hour: 5\n"
    with pytest.raises(PolicyError, match=r"is invalid: max_rerun_per_hour: Extra inputs are not permitted"):
        load_policy(_write(tmp_path, text))


def test_unknown_nested_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"is invalid: backfill\.deny_over_day: Extra inputs are not permitted"):
        load_policy(_write(tmp_path, "backfill: {approval_over_days: 7, deny_over_day: 31}\n"))


def test_deny_below_approval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"backfill\.deny_over_days \(5\.0\) must be >= approval_over_days \(7\.0\)"):
        load_policy(_write(tmp_path, "backfill: {approval_over_days: 7, deny_over_days: 5}\n"))


def test_naive_freeze_window_is_refused(tmp_path: Path) -> None:
    text = 'freeze_windows:\n  - {start: "2026-12-24T00:00:00", end: "2026-12-27T00:00:00"}\n'
    with pytest.raises(PolicyError, match=r"freeze_windows\.0: .*freeze window bounds need a timezone, e\.g\. 2026-12-24T00:00:00Z"):
        load_policy(_write(tmp_path, text))


def test_backwards_freeze_window_is_refused(tmp_path: Path) -> None:
    text = 'freeze_windows:\n  - {start: "2026-12-27T00:00:00Z", end: "2026-12-24T00:00:00Z"}\n'
    with pytest.raises(PolicyError, match=r"freeze window ends \(2026-12-24 00:00:00\+00:00\) before it starts"):
        load_policy(_write(tmp_path, text))


def test_negative_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"max_reruns_per_pipeline_per_hour: Input should be greater than or equal to 0"):
        load_policy(_write(tmp_path, "max_reruns_per_pipeline_per_hour: -1\n"))


def test_non_mapping_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="is invalid"):
        load_policy(_write(tmp_path, "- approvers\n- oncall\n"))


def test_non_mapping_policy_with_approver_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="is invalid"):
        load_policy(_write(tmp_path, "- approvers\n- oncall\n"), approvers=["U01"])


def test_freeze_windows_load_and_apply(tmp_path: Path) -> None:
    text = POLICY_FILE.read_text().replace(
        "freeze_windows: []", 'freeze_windows:\n  - {start: "2026-12-24T00:00:00Z", end: "2026-12-27T00:00:00Z", reason: "holiday freeze"}'
    )
    policy = load_policy(_write(tmp_path, text))
    assert policy.freeze_windows == (FreezeWindow(start=FREEZE_START, end=FREEZE_END, reason="holiday freeze"),)
    assert decide(policy, request(Case(tool="rerun_window", kind=D, rule="", now=IN_FREEZE))).rule == "freeze_window"


def test_empty_policy_file_gets_the_defaults(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, "# nothing set\n"))
    assert policy == PolicySpec()
    decision = decide(policy, request(Case(tool="quarantine_partition", kind=D, rule="")))
    assert isinstance(decision, Deny)  # no approvers and nothing listed: a bare policy lets no write through
    assert decision.rule == "unlisted_write"


def test_approvers_come_from_the_people_registry_never_the_policy_file(tmp_path: Path) -> None:
    assert load_policy(POLICY_FILE, approvers=["U01", "S02"]).approvers == ("U01", "S02")
    assert load_policy(POLICY_FILE, approvers=[], operators=["olive"]).operators == ("olive",)
    assert load_policy(POLICY_FILE, approvers=None).approvers == ()
    with pytest.raises(
        PolicyError, match=r"approvers and operators moved to config/people.yaml: declare each person with `role: approver`"
    ):
        load_policy(_write(tmp_path, "approvers: [mallory2]\noperators: []\n"))


def test_naive_now_is_refused(policies: dict[str, PolicySpec]) -> None:
    with pytest.raises((PolicyError, ValueError)):
        decide(policies["frozen"], request(Case(tool="rerun_window", kind=D, rule="", now=datetime(2026, 12, 25))))


# --- properties over random requests --------------------------------------------------------------------------

LAYERS = (None, "bronze", "silver", "gold", "quarantine", "ops", "source", "memory")
SPANS = (None, 0.0, 1.0, 6.99, 7.0, 7.01, 7.5, 8.0, 30.0, 31.0, 31.01, 31.5, 32.0, 90.0)
TOKENS = (0, 59_999, 60_000, 60_001, 10**6)


def _random_history(rng: random.Random) -> CallHistory:
    if rng.random() < 0.5:  # a calm incident, so the approval rules get their turn
        return CallHistory(reruns_last_hour=rng.randint(0, 2), tokens_used=rng.choice(TOKENS[:3]), verified=rng.random() < 0.5)
    return CallHistory(
        reruns_last_hour=rng.randint(0, 5),
        related_open_incidents=rng.randint(0, 6),
        recurrences_last_week=rng.randint(0, 5),
        tokens_used=rng.choice(TOKENS),
        verified=rng.random() < 0.5,
    )


def _random_case(rng: random.Random) -> Case:
    in_freeze = rng.random() < 0.2
    now = rng.choice((FREEZE_START, IN_FREEZE, FREEZE_END - TICK)) if in_freeze else rng.choice((NOW, FREEZE_END, FREEZE_START - TICK))
    return Case(
        tool=rng.choice(sorted(REGISTRY)),
        kind="",
        rule="",
        layer=rng.choice(LAYERS),
        span=rng.choice(SPANS) if rng.random() < 0.8 else round(rng.uniform(0, 100), 2),
        history=_random_history(rng),
        now=now,
        policy=rng.choice(("default", "no_approvers", "frozen")),
    )


def test_random_requests_never_break_the_hard_limits(policies: dict[str, PolicySpec]) -> None:
    rng = random.Random(0)
    kinds: dict[str, int] = {}
    for _ in range(4000):
        case = _random_case(rng)
        policy, req = policies[case.policy], request(case)
        decision = decide(policy, req)
        kinds[decision.kind] = kinds.get(decision.kind, 0) + 1
        span = req.span_days or 0.0
        assert decision.rule in RULE_NAMES, case
        if req.effect == "read":
            assert isinstance(decision, Allow), case
            continue
        if req.effect == "destructive":
            assert not isinstance(decision, Allow), case
        # Safe writes (annotate, escalate, pause) record findings or stop harm; their targets are ops, never gold.
        if req.layer == "gold" and req.tool not in policy.safe_writes:
            assert not isinstance(decision, Allow), case
        if req.tool in RERUN_TOOLS and span > 7:
            assert req.runs_pipeline and not isinstance(decision, Allow), case
        if req.tool in RERUN_TOOLS and span > 31:
            assert isinstance(decision, Deny), case
        if req.tool == "resolve_incident" and not req.history.verified:
            assert isinstance(decision, Deny), case
        if case.policy == "frozen" and FREEZE_START <= req.now < FREEZE_END and req.tool not in policy.safe_writes:
            assert isinstance(decision, Deny), case
        if not policy.approvers:
            assert not isinstance(decision, NeedsApproval), case
        if isinstance(decision, NeedsApproval):
            assert decision.approvers == policy.approvers, case
    assert min(kinds.get(k, 0) for k in (A, N, D)) > 200, kinds


def test_only_a_thread_working_an_incident_asks_as_the_platform() -> None:
    """The agent's review fails closed: a thread that does not say it works an incident asks with the role it carries,
    and with none when it carries none."""
    from agent.review import _requester_role

    assert _requester_role({"mode": "incident"}) == "agent"
    assert _requester_role({"mode": "chat", "actor_role": "operator"}) == "operator"
    assert _requester_role({"mode": "chat", "actor_role": "admin"}) is None
    assert _requester_role({"mode": "chat"}) is None and _requester_role({}) is None
