"""The one backoff rule and the retry budget (pipelines/retry.py), as the policy declares it and the tools use it.

Waits are asserted as the numbers the rule computes and the results record, never as wall-clock time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.errors import DefinitionError, PolicyError, TransientSourceError
from pipelines import faults
from pipelines.retry import Backoff, Failure, RetryBudget, retry, retrying
from policies.engine import decide
from policies.model import CallHistory, PolicyRequest, load_policy

T0 = datetime(2023, 3, 1, 12, tzinfo=UTC)
POLICY_FILE = Path(__file__).resolve().parent.parent / "config" / "policy.yaml"


Flaky = tuple[list[tuple[int, datetime]], Callable[[int, datetime], bool], Callable[[bool], Failure | None]]


def flaky(failures: int, *, retry_after_s: float | None = None) -> Flaky:
    """An operation failing transiently `failures` times, then succeeding; records (attempt, at) of each call."""
    calls: list[tuple[int, datetime]] = []

    def attempt(number: int, at: datetime) -> bool:
        calls.append((number, at))
        return number > failures

    def failure(ok: bool) -> Failure | None:
        return None if ok else Failure(error="503 Service Unavailable", transient=True, retry_after_s=retry_after_s)

    return calls, attempt, failure


# -- the backoff ------------------------------------------------------------------------------------------


def test_backoff_without_jitter_doubles_up_to_the_longest_wait() -> None:
    backoff = Backoff(first_s=60, factor=2, max_wait_s=400, jitter=0)
    assert [backoff.delay(n) for n in range(1, 6)] == [60, 120, 240, 400, 400]


def test_jitter_stays_in_its_bounds_and_is_the_same_for_the_same_seed() -> None:
    backoff = Backoff(first_s=60, factor=2, max_wait_s=10_000, jitter=0.25)
    for n in range(1, 8):
        base = 60 * 2 ** (n - 1)
        waits = {backoff.delay(n, seed=f"incident-{i}") for i in range(50)}
        assert all(0.75 * base <= w <= 1.25 * base for w in waits)
        assert len(waits) > 40, "different seeds spread the retries"
    assert [backoff.delay(n, seed="a") for n in range(1, 5)] == [backoff.delay(n, seed="a") for n in range(1, 5)]


def test_retry_after_wins_only_when_longer_and_never_past_the_longest_wait() -> None:
    backoff = Backoff(first_s=60, factor=2, max_wait_s=900, jitter=0)
    assert backoff.wait(1, retry_after_s=300) == 300
    assert backoff.wait(1, retry_after_s=5) == 60
    assert backoff.wait(3, retry_after_s=None) == 240
    assert backoff.wait(1, retry_after_s=3600) == 900


def test_a_backoff_longer_at_first_than_at_most_is_refused() -> None:
    with pytest.raises(ValueError, match=r"max_wait_s \(10\) is shorter than first_s \(60\); raise max_wait_s"):
        Backoff(first_s=60, max_wait_s=10)


# -- the budget -----------------------------------------------------------------------------------------------


def test_recovers_after_four_attempts_with_the_waits_on_the_platform_clock() -> None:
    calls, attempt, failure = flaky(3)
    slept: list[float] = []
    budget = RetryBudget(backoff=Backoff(first_s=60, jitter=0))

    ok, report = retry(attempt, failure, budget=budget, start=T0, wait=slept.append)

    assert ok is True and report.recovered
    assert slept == [60, 120, 240] == [a.waited_s for a in report.attempts[1:]]
    assert [at for _, at in calls] == [T0, T0 + timedelta(seconds=60), T0 + timedelta(seconds=180), T0 + timedelta(seconds=420)]
    assert report.summary() == "recovered after 4 attempts over 7 minutes"
    assert report.last_error == "503 Service Unavailable"


def test_the_attempt_budget_ends_the_retrying() -> None:
    calls, attempt, failure = flaky(99)
    ok, report = retry(attempt, failure, budget=RetryBudget(backoff=Backoff(jitter=0)), start=T0, wait=lambda _s: None)

    assert ok is False and len(calls) == 5 and report.stopped == "attempts"
    assert report.summary() == (
        "still failing after 5 attempts over 15 minutes: the retry budget (5 attempts over at most 30 minutes) is spent"
    )


def test_the_time_budget_ends_the_retrying_before_a_wait_that_does_not_fit() -> None:
    _, attempt, failure = flaky(99)
    budget = RetryBudget(max_attempts=10, max_minutes=10, backoff=Backoff(first_s=120, jitter=0))

    _, report = retry(attempt, failure, budget=budget, start=T0, wait=lambda _s: None)

    assert [a.waited_s for a in report.attempts] == [0, 120, 240]  # the next wait (480 s) would pass 10 minutes
    assert report.stopped == "time" and report.waited_s == 360


def test_a_retry_after_longer_than_what_is_left_stops_instead_of_retrying_early() -> None:
    _, attempt, failure = flaky(99, retry_after_s=600)

    _, report = retry(attempt, failure, budget=RetryBudget(), start=T0, wait=lambda _s: None)

    assert [a.waited_s for a in report.attempts] == [0, 600, 600, 600]
    assert report.stopped == "retry_after"
    assert report.summary().startswith("still failing after 4 attempts over 30 minutes: the source asked to wait 10 minutes")


def test_a_permanent_failure_is_never_retried() -> None:
    def attempt(_n: int, _at: datetime) -> str:
        return "schema drift"

    _, report = retry(attempt, lambda r: Failure(error=r, transient=False), budget=RetryBudget(), start=T0, wait=lambda _s: None)
    assert len(report.attempts) == 1 and report.stopped == "not_transient"


def test_what_is_left_of_a_budget() -> None:
    budget = RetryBudget()
    assert budget.left(attempts=2, waited_s=600) == budget.model_copy(update={"max_attempts": 3, "max_minutes": 20.0})
    assert budget.left(attempts=5, waited_s=0) is None
    assert budget.spent(attempts=1, waited_s=1800)
    assert not budget.spent(attempts=4, waited_s=1799)


# -- the policy declares it ---------------------------------------------------------------------------------


def test_the_default_policy_declares_five_attempts_over_thirty_minutes() -> None:
    budget = load_policy(POLICY_FILE).retry_budget
    assert (budget.max_attempts, budget.max_minutes) == (5, 30)
    assert budget.describe() == "5 attempts over at most 30 minutes"


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("{max_attempts: 0}", "retry_budget.max_attempts: Input should be greater than or equal to 1"),
        ("{max_minutes: -5}", "retry_budget.max_minutes: Input should be greater than 0"),
        ("{backoff: {jitter: 1.5}}", "retry_budget.backoff.jitter: Input should be less than 1"),
        (
            "{max_minutes: 1, backoff: {first_s: 120}}",
            "retry_budget: Value error, backoff.first_s (120 s) is longer than max_minutes (1 min), so no retry would ever fit; "
            "lower backoff.first_s or raise max_minutes",
        ),
        ("{attempts: 5}", "retry_budget.attempts: Extra inputs are not permitted"),
    ],
)
def test_a_bad_budget_is_refused_naming_the_field(tmp_path: Path, block: str, problem: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(f"retry_budget: {block}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == f"policy file {path} is invalid: {problem}"


def _rerun(history: CallHistory) -> PolicyRequest:
    return PolicyRequest(
        tool="rerun_window", effect="write", runs_pipeline=True, layer="silver", table="silver.carbon_intensity",
        pipeline="carbon_intensity", span_days=1, history=history, now=T0,
    )  # fmt: skip


def test_the_policy_refuses_a_rerun_once_the_incidents_budget_is_spent() -> None:
    policy = load_policy(POLICY_FILE)
    assert decide(policy, _rerun(CallHistory(retry_attempts=4, retry_waited_s=900))).kind == "allow"
    spent = decide(policy, _rerun(CallHistory(retry_attempts=5, retry_waited_s=900)))
    assert (spent.kind, spent.rule) == ("deny", "retry_budget")
    assert spent.message == (  # type: ignore[union-attr]
        "this incident's re-runs already made 5 attempt(s) over 15 minute(s); its retry budget is 5 attempts over at most "
        "30 minutes (policy retry_budget); call escalate_incident with what you found instead"
    )
    timed_out = decide(policy, _rerun(CallHistory(retry_attempts=2, retry_waited_s=1800)))
    assert timed_out.rule == "retry_budget"
    assert decide(policy, _rerun(CallHistory(retry_attempts=None))).kind == "allow", "outside an incident: no count"


# -- the faults that model it ---------------------------------------------------------------------------------


def test_a_503_fault_carries_its_retry_after_and_recovers_after_times() -> None:
    fault = faults.load_fault({"kind": "transient_error", "source": "carbon_intensity", "times": 2, "retry_after_s": 120})
    assert isinstance(fault, faults.SourceFault)
    injected = faults.SourceFaults([fault])
    for _ in range(2):
        with pytest.raises(TransientSourceError) as caught:
            injected.apply("carbon_intensity", T0, T0 + timedelta(days=1), {"data": []})
        assert caught.value.retry_after_s == 120
        assert "503 Service Unavailable with Retry-After 120" in str(caught.value)
    assert injected.apply("carbon_intensity", T0, T0 + timedelta(days=1), {"data": []}) == {"data": []}


def test_a_429_fault_carries_its_value_as_retry_after() -> None:
    fault = faults.load_fault({"kind": "rate_limited", "source": "carbon_intensity", "value": 30})
    assert isinstance(fault, faults.SourceFault)
    with pytest.raises(TransientSourceError) as caught:
        faults.SourceFaults([fault]).apply("carbon_intensity", T0, T0 + timedelta(days=1), {"data": []})
    assert caught.value.retry_after_s == 30


def test_retry_after_is_refused_on_faults_that_are_not_a_503() -> None:
    with pytest.raises(DefinitionError) as caught:
        faults.load_fault({"kind": "rate_limited", "source": "carbon_intensity", "retry_after_s": 30})
    assert "retry_after_s: only transient_error takes it, not rate_limited; rate_limited takes its Retry-After as `value`" in str(
        caught.value
    )


# -- the same rule for code that fails by raising (tenacity underneath) ---------------------------------------


def test_retrying_waits_the_backoff_or_the_retry_after_the_error_carries_and_reraises_the_last() -> None:
    waits: list[float] = []
    errors = [TransientSourceError("503", retry_after_s=30), TransientSourceError("503"), TransientSourceError("503 again")]

    def fetch() -> str:
        raise errors.pop(0)

    controller = retrying(
        Backoff(first_s=2, factor=2, max_wait_s=60, jitter=0),
        attempts=3,
        retry_on=lambda e: isinstance(e, TransientSourceError),
        wait=waits.append,
    )
    with pytest.raises(TransientSourceError, match="503 again"):
        controller(fetch)
    assert waits == [30, 4], "Retry-After (30 s) beat the first backoff (2 s); the second wait is the backoff's"


def test_retrying_lets_other_errors_through_at_once_and_returns_what_succeeds() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TransientSourceError("reset")
        return "ok"

    def broken() -> str:
        calls.append(1)
        raise KeyError("a bug")

    def controller() -> Callable[[Callable[[], str]], str]:
        return retrying(
            Backoff(first_s=1, jitter=0), attempts=5, retry_on=lambda e: isinstance(e, TransientSourceError), wait=lambda _s: None
        )

    assert controller()(flaky) == "ok" and len(calls) == 2
    calls.clear()
    with pytest.raises(KeyError):
        controller()(broken)
    assert len(calls) == 1


def test_an_exception_inside_a_budgeted_retry_is_not_retried() -> None:
    calls: list[int] = []

    def attempt(number: int, _at: datetime) -> bool:
        calls.append(number)
        raise RuntimeError("a bug, not a transient failure")

    with pytest.raises(RuntimeError):
        retry(attempt, lambda _r: None, budget=RetryBudget(), start=T0, wait=lambda _s: None)
    assert calls == [1]
