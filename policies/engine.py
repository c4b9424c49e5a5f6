"""The guardrail engine: pure functions from a policy and a request to Allow, NeedsApproval or Deny.

Rules run in order and the first that speaks decides; each is named, and the name goes into the audit
log. The order puts refusals before permissions, so no later rule can allow what an earlier one denied:

    known_effect → read_is_free → requester_role → resolve_needs_verification → safe_writes → freeze_window
    → token_budget → related_incidents → recurrence → destructive → backfill_limit → rerun_rate
    → retry_budget → incident_scope → rerun_of_published → backfill_approval → rollback_approval → layer_approval
    → listed_writes → unlisted_write

Rules read the tool's declared effect and traits (`runs_pipeline`, `needs_verification`,
`restores_snapshot`), never its name; the policy file's lists of tools are the only names they compare.
"""

from __future__ import annotations

from collections.abc import Callable

from policies.model import Allow, Decision, Deny, NeedsApproval, PolicyRequest, PolicySpec

Rule = Callable[[PolicySpec, PolicyRequest], Decision | None]
ESCALATE_HINT = "call escalate_incident with what you found instead"


def _approval(policy: PolicySpec, rule: str, reason: str) -> Decision:
    if not policy.approvers:
        return Deny(rule=rule, message=f"{reason}, and nobody has the approver role (config/people.yaml); {ESCALATE_HINT}")
    return NeedsApproval(rule=rule, reason=reason, approvers=policy.approvers)


def known_effect(_policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.effect not in ("read", "write", "destructive"):
        return Deny(rule="known_effect", message=f"tool {req.tool!r} declares effect {req.effect!r}; only read, write, destructive exist")
    return None


def read_is_free(_policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    return Allow(rule="read_is_free", reason="reading changes nothing") if req.effect == "read" else None


_ROLE_RANK = {"viewer": 1, "operator": 2, "approver": 3}


def requester_role(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    # A person's request (chat in the terminal, Slack or the console) is acted on with the platform's powers, so the
    # person must hold the role that may ask for writes; an approval would only let someone else decide what an
    # anonymous caller asked for. The agent working an incident is the platform itself.
    needed = policy.writes_asked_by_people_need
    if req.requester_role == "agent" or _ROLE_RANK.get(req.requester_role or "", 0) >= _ROLE_RANK[needed]:
        return None
    who = f"{req.actor} has role {req.requester_role}" if req.requester_role else f"{req.actor} is not a person of the platform"
    return Deny(
        rule="requester_role",
        message=f"writes asked for by people need role {needed} or above (policy writes_asked_by_people_need); {who}. "
        f"Nothing was changed: ask an operator to make the request, or ask the service owner for the role "
        f"(dataops users add NAME --role {needed})",
    )


def resolve_needs_verification(_policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.needs_verification and not req.history.verified:
        return Deny(
            rule="resolve_needs_verification",
            message="an incident is resolved only after a verification in this thread showed the problem gone; fix and verify first, or escalate",
        )
    return None


def safe_writes(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    # Only plain writes outside the approval layers can be "safe": a policy file listing a destructive or gold
    # tool here must not turn it into a free action.
    if req.tool in policy.safe_writes and req.effect == "write" and req.layer not in policy.approval_layers:
        return Allow(rule="safe_writes", reason=f"{req.tool} only records findings or stops harm")
    return None


def freeze_window(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    for freeze in policy.freeze_windows:
        if freeze.start <= req.now < freeze.end:
            return Deny(rule="freeze_window", message=f"{freeze.reason}: no changes until {freeze.end.isoformat()}; {ESCALATE_HINT}")
    return None


def token_budget(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.history.tokens_used > policy.token_budget_per_incident:
        return Deny(
            rule="token_budget",
            message=f"this incident has used {req.history.tokens_used} tokens of its {policy.token_budget_per_incident}; {ESCALATE_HINT}",
        )
    return None


def related_incidents(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    limit = policy.escalation.max_related_open_incidents
    if req.history.related_open_incidents > limit:
        return Deny(
            rule="related_incidents",
            message=f"{req.history.related_open_incidents} related incidents are open (more than {limit}): "
            f"a wider problem needs a human; {ESCALATE_HINT}",
        )
    return None


def recurrence(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    limit = policy.escalation.recurrences_per_week
    if req.history.recurrences_last_week >= limit:
        return Deny(
            rule="recurrence",
            message=f"this cause was seen {req.history.recurrences_last_week} times in seven days (limit {limit}): "
            f"fixing it again hides a recurring problem; {ESCALATE_HINT}",
        )
    return None


def destructive(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.effect == "destructive":
        return _approval(policy, "destructive", f"{req.tool} deletes data or history on {req.table or 'the lake'}")
    return None


def _span(req: PolicyRequest) -> float:
    return req.span_days or 0.0


def backfill_limit(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.runs_pipeline and _span(req) > policy.backfill.deny_over_days:
        return Deny(
            rule="backfill_limit",
            message=f"{req.tool} over {_span(req):g} days exceeds the {policy.backfill.deny_over_days:g}-day limit; "
            f"split it into approved pieces or {ESCALATE_HINT}",
        )
    return None


def rerun_rate(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    limit = policy.max_reruns_per_pipeline_per_hour
    if req.runs_pipeline and req.history.reruns_last_hour >= limit:
        return Deny(
            rule="rerun_rate",
            message=f"{req.pipeline or 'this pipeline'} was re-run {req.history.reruns_last_hour} times in the last hour (limit {limit}); "
            f"re-running again will not help; {ESCALATE_HINT}",
        )
    return None


def retry_budget(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    # The re-run tools retry transient failures themselves within what is left; once the incident's budget is
    # spent, another re-run only hammers a source that is down.
    budget, attempts, waited = policy.retry_budget, req.history.retry_attempts, req.history.retry_waited_s
    if req.runs_pipeline and attempts is not None and budget.spent(attempts=attempts, waited_s=waited):
        return Deny(
            rule="retry_budget",
            message=f"this incident's re-runs already made {attempts} attempt(s) over {waited / 60:.0f} minute(s); "
            f"its retry budget is {budget.describe()} (policy retry_budget); {ESCALATE_HINT}",
        )
    return None


DATA_LAYERS = ("bronze", "silver", "gold", "quarantine")


def incident_scope(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    # Text inside data may talk the model into acting elsewhere; while working an incident, data writes outside
    # its table and lineage need a human.
    if req.history.in_scope is False and req.layer in DATA_LAYERS:
        return _approval(policy, "incident_scope", f"{req.tool} targets {req.table}, outside the incident's table and its lineage")
    return None


def rerun_of_published(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.runs_pipeline and req.history.window_failed is False:
        return _approval(
            policy,
            "rerun_of_published",
            f"every run of this window succeeded; re-running {req.pipeline} rewrites published data, gold included",
        )
    return None


def backfill_approval(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.runs_pipeline and req.span_days is None:
        return _approval(policy, "backfill_approval", f"{req.tool} does not say how many days it rewrites")
    if req.runs_pipeline and _span(req) > policy.backfill.approval_over_days:
        return _approval(
            policy, "backfill_approval", f"{req.tool} rewrites {_span(req):g} days (over {policy.backfill.approval_over_days:g})"
        )
    return None


def rollback_approval(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.restores_snapshot:
        return _approval(policy, "rollback_approval", f"rolling {req.table} back discards what was published since")
    return None


def layer_approval(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.layer in policy.approval_layers:
        return _approval(policy, "layer_approval", f"{req.tool} changes {req.table or req.layer}, which readers use directly")
    return None


def listed_writes(policy: PolicySpec, req: PolicyRequest) -> Decision | None:
    if req.tool in policy.allow_without_approval:
        return Allow(rule="listed_writes", reason=f"{req.tool} is allowed without approval within the limits")
    return None


def unlisted_write(policy: PolicySpec, req: PolicyRequest) -> Decision:
    return _approval(policy, "unlisted_write", f"{req.tool} is not among the writes allowed without approval")


RULES: tuple[Rule, ...] = (
    known_effect,
    read_is_free,
    requester_role,
    resolve_needs_verification,
    safe_writes,
    freeze_window,
    token_budget,
    related_incidents,
    recurrence,
    destructive,
    backfill_limit,
    rerun_rate,
    retry_budget,
    incident_scope,
    rerun_of_published,
    backfill_approval,
    rollback_approval,
    layer_approval,
    listed_writes,
)


def decide(policy: PolicySpec, request: PolicyRequest) -> Decision:
    """The decision of the first rule that speaks; a write no rule allows needs approval."""
    for rule in RULES:
        decision = rule(policy, request)
        if decision is not None:
            return decision
    return unlisted_write(policy, request)
