"""The one backoff rule for transient failures, and the budget that ends the retrying.

    attempt ──fails transiently──► wait = max(backoff(n), Retry-After), at most `max_wait_s`
        ──► another attempt, while attempts < max_attempts and the waits fit in max_minutes
        ──► a `RetryReport`: every attempt with its wait and error, and one sentence for the report

`Backoff` is exponential with jitter: the n-th wait is `first_s * factor**(n-1)` scaled by a factor drawn
from [1 - jitter, 1 + jitter]. The draw comes from a seed (the call, the pipeline and window), so two
incidents do not retry in lockstep and a test sees the same waits every time. `RetryBudget` adds the
limits: attempts, and minutes of platform time spent waiting. A Retry-After the source sent is never cut
short by the budget: when it does not fit, retrying stops and the report says the source asked for more.

Who uses it: `serve` (pipelines/service.py) and backfills retry runs with a budget built from the settings
(`scheduler_budget`); the agent's re-run tools with the policy's per-incident budget; the HTTP fetcher's
waits between requests follow `Backoff` too. Waiting is a callable: `serve` sleeps, the eval runner and the
replay clock model the wait (the platform clock is simulated there, so nothing real waits 30 minutes).
Time spent is the sum of the waits: a run takes seconds, the waits between runs take minutes.

The loop itself is tenacity's. `retry()` drives a `tenacity.Retrying` whose `retry`, `wait` and `stop` are
this budget's rule (`_BudgetRule`), whose `sleep` is the caller's `Wait`, and whose `at` for each attempt
is `start` plus tenacity's `idle_for`. Loops that retry on exceptions (the HTTP fetcher, the lineage
sender, joining Ray, Iceberg commit conflicts) take `retrying()`: the same `Backoff` as a tenacity `wait`
(`BackoffWait`, honouring a `retry_after_s` the exception carries), a number of attempts, and the last
exception re-raised when they run out.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from config.settings import DataopsSettings

log = logging.getLogger(__name__)
Wait = Callable[[float], None]
T = TypeVar("T")
StopReason = Literal["recovered", "not_transient", "attempts", "time", "retry_after"]


def no_wait(_seconds: float) -> None:
    """Model a wait without sleeping: the platform clock is simulated (evals, replay), or the caller moves it."""


class Backoff(BaseModel):
    """Exponential waits with deterministic jitter; Retry-After wins when it is longer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_s: float = Field(default=60.0, ge=0, description="Seconds before the second attempt")
    factor: float = Field(default=2.0, ge=1, description="Each wait is this many times the one before")
    max_wait_s: float = Field(default=900.0, ge=0, description="Longest single wait, Retry-After included")
    jitter: float = Field(default=0.2, ge=0, lt=1, description="Waits are scaled by a factor in [1 - jitter, 1 + jitter]")

    @model_validator(mode="after")
    def _ordered(self) -> Backoff:
        if self.max_wait_s < self.first_s:
            raise ValueError(f"max_wait_s ({self.max_wait_s:g}) is shorter than first_s ({self.first_s:g}); raise max_wait_s")
        return self

    def delay(self, retry: int, *, seed: str = "") -> float:
        """The wait before retry number `retry` (1 = the second attempt), without Retry-After."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, not {retry}")
        base = min(self.max_wait_s, self.first_s * self.factor ** (retry - 1))
        scale = 1.0 + self.jitter * (2.0 * random.Random(f"{seed}:{retry}").random() - 1.0) if self.jitter else 1.0
        return round(min(self.max_wait_s, base * scale), 3)

    def wait(self, retry: int, *, retry_after_s: float | None = None, seed: str = "") -> float:
        """The backoff, or the source's Retry-After when longer; never more than `max_wait_s`."""
        return min(self.max_wait_s, max(self.delay(retry, seed=seed), retry_after_s or 0.0))


class RetryBudget(BaseModel):
    """How far retrying may go for one incident: attempts, and minutes of platform time spent waiting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=5, ge=1, le=100, description="Attempts in all, the first one included")
    max_minutes: float = Field(default=30.0, gt=0, le=24 * 60, description="Platform minutes the waits between attempts may take")
    backoff: Backoff = Backoff()

    @model_validator(mode="after")
    def _fits(self) -> RetryBudget:
        if self.max_attempts > 1 and self.backoff.first_s > self.max_minutes * 60:
            raise ValueError(
                f"backoff.first_s ({self.backoff.first_s:g} s) is longer than max_minutes ({self.max_minutes:g} min), "
                "so no retry would ever fit; lower backoff.first_s or raise max_minutes"
            )
        return self

    def left(self, *, attempts: int, waited_s: float) -> RetryBudget | None:
        """What remains after `attempts` made and `waited_s` waited; None when nothing does."""
        if attempts >= self.max_attempts or waited_s >= self.max_minutes * 60:
            return None
        minutes = self.max_minutes - waited_s / 60
        return self.model_copy(update={"max_attempts": self.max_attempts - attempts, "max_minutes": minutes})

    def spent(self, *, attempts: int, waited_s: float) -> bool:
        return self.left(attempts=attempts, waited_s=waited_s) is None

    def describe(self) -> str:
        return f"{self.max_attempts} attempt{'s' * (self.max_attempts != 1)} over at most {_duration(self.max_minutes * 60)}"


def platform_wait(settings: DataopsSettings) -> Wait:
    """How a retry outside the scheduler waits platform seconds: modelled under replay, slept with live sources.

    Under replay the platform clock is simulated (the eval runner's, or `serve`'s at thousands of simulated
    seconds per real one), so the wait is modelled: the next attempt runs as of the later instant. With live
    sources the platform clock is the wall clock, and the source must really be left alone that long.
    """
    return no_wait if settings.source_mode == "replay" else time.sleep


def scheduler_budget(settings: DataopsSettings) -> RetryBudget:
    """The budget `serve` and backfills retry a run with: `run_max_attempts`, waits from `run_backoff_s` doubling.

    No jitter: the settings declare none, and a scheduler retries one pipeline at a time. Retry-After is
    honoured up to `http_max_backoff_s`, the longest wait the settings allow between two attempts; a source
    asking for longer ends the retries, and the next scheduled run tries again.
    """
    longest = max(settings.http_max_backoff_s, settings.run_backoff_s)
    backoff = Backoff(first_s=settings.run_backoff_s, factor=2.0, max_wait_s=longest, jitter=0.0)
    return RetryBudget(
        max_attempts=settings.run_max_attempts, max_minutes=min(24 * 60, longest * settings.run_max_attempts / 60 + 1), backoff=backoff
    )


class Failure(BaseModel):
    """A failed attempt as the retry loop sees it."""

    model_config = ConfigDict(frozen=True)

    error: str
    transient: bool
    retry_after_s: float | None = None


class RunLike(Protocol):
    """The parts of a `RunResult` (pipelines/promotion.py) the retry reads; a protocol, as promotion imports the sources."""

    status: str
    error: str | None
    error_kind: str | None
    retry_after_s: float | None


def run_failure(result: RunLike) -> Failure | None:
    """A failed run as a `Failure`; transient when the ledger says so (source 5xx/429/timeouts, commit conflicts)."""
    if result.status != "failed":
        return None
    return Failure(error=result.error or "failed", transient=result.error_kind == "transient", retry_after_s=result.retry_after_s)


class Attempt(BaseModel):
    """One attempt: when (platform time), after how long a wait, and how it failed (None: it succeeded)."""

    number: int
    at: datetime
    waited_s: float = Field(description="Seconds waited before this attempt (0 for the first)")
    error: str | None = None
    retry_after_s: float | None = Field(default=None, description="The Retry-After the source sent with this failure")


class RetryReport(BaseModel):
    """Every attempt of one retried operation and why retrying stopped."""

    attempts: list[Attempt]
    stopped: StopReason
    budget: str = Field(description="The budget it ran under, in words")

    @property
    def recovered(self) -> bool:
        return self.stopped == "recovered"

    @property
    def waited_s(self) -> float:
        return round(sum(a.waited_s for a in self.attempts), 3)

    @property
    def last_error(self) -> str | None:
        return next((a.error for a in reversed(self.attempts) if a.error), None)

    def summary(self) -> str:
        """One sentence for the report: 'recovered after 4 attempts over 7 minutes', 'still failing after ...'."""
        n = len(self.attempts)
        span = f"{n} attempt{'s' * (n != 1)} over {_duration(self.waited_s)}"
        if self.stopped == "recovered":
            return "succeeded at the first attempt" if n == 1 else f"recovered after {span}"
        if self.stopped == "not_transient":
            return f"failed permanently after {span}; retrying would not help"
        last = self.attempts[-1]
        why = {
            "attempts": f"the retry budget ({self.budget}) is spent",
            "time": f"the retry budget ({self.budget}) has no time left for another wait",
            "retry_after": f"the source asked to wait {_duration(last.retry_after_s or 0)} (Retry-After), longer than the retry budget ({self.budget}) has left",
        }[self.stopped]
        return f"still failing after {span}: {why}"


def retry(
    attempt: Callable[[int, datetime], T],
    failure: Callable[[T], Failure | None],
    *,
    budget: RetryBudget,
    start: datetime,
    wait: Wait,
    seed: str = "",
) -> tuple[T, RetryReport]:
    """Call `attempt(number, at)` until it succeeds, fails for good, or the budget is spent.

    `at` is the platform instant of the attempt: `start` plus the waits so far. `wait(seconds)` is called
    before every retry (sleep, or nothing where the clock is simulated). Returns the last result and the report.
    An exception from `attempt` or `failure` is not a failure the budget knows: it propagates at once.
    """
    rule = _BudgetRule(failure, budget=budget, start=start, seed=seed)
    controller = Retrying(
        retry=rule.retry,
        wait=rule.wait,
        stop=rule.stop,
        sleep=lambda seconds: wait(float(seconds)),
        before=rule.before,
        before_sleep=rule.before_sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
    )
    result: T = controller(lambda: attempt(rule.number, rule.at))
    return result, RetryReport(attempts=rule.attempts, stopped=rule.stopped, budget=budget.describe())


class _BudgetRule:
    """The `retry`, `wait` and `stop` of one `retry()` call on tenacity, and the attempts it saw.

    tenacity asks, after each attempt: retry? (a transient failure), then the wait, then stop? (the budget's
    attempts, a Retry-After it cannot honour, or a wait that would pass its minutes), and sleeps in between.
    """

    def __init__(self, failure: Callable[[Any], Failure | None], *, budget: RetryBudget, start: datetime, seed: str) -> None:
        self.failure, self.budget, self.start, self.seed = failure, budget, start, seed
        self.attempts: list[Attempt] = []
        self.stopped: StopReason = "recovered"
        self.number, self.at = 1, start
        self._failed: Failure | None = None
        self._waited_before = 0.0

    def before(self, state: RetryCallState) -> None:
        self.number, self.at = state.attempt_number, self.start + timedelta(seconds=state.idle_for)

    def retry(self, state: RetryCallState) -> bool:
        assert state.outcome is not None
        if state.outcome.failed:
            return False  # an exception is not a failure this budget knows: tenacity re-raises it
        failed = self._failed = self.failure(state.outcome.result())
        self.attempts.append(
            Attempt(
                number=self.number,
                at=self.at,
                waited_s=self._waited_before,
                error=failed.error if failed else None,
                retry_after_s=failed.retry_after_s if failed else None,
            )
        )
        if failed is None or not failed.transient:
            self.stopped = "recovered" if failed is None else "not_transient"
            return False
        return True

    def wait(self, state: RetryCallState) -> float:
        assert self._failed is not None
        return self.budget.backoff.wait(state.attempt_number, retry_after_s=self._failed.retry_after_s, seed=self.seed)

    def stop(self, state: RetryCallState) -> bool:
        waited = state.idle_for
        reason = _stop(self._failed, budget=self.budget, attempts=state.attempt_number, waited=waited)
        if reason is None and waited + self.wait(state) > self.budget.max_minutes * 60:
            reason = "time"
        if reason is not None:
            self.stopped = reason
            return True
        self._waited_before = self.wait(state)
        return False

    def before_sleep(self, state: RetryCallState) -> None:
        error = self._failed.error if self._failed else "?"
        log.warning(
            "attempt %d/%d failed transiently (%s); retrying in %.1f s",
            state.attempt_number,
            self.budget.max_attempts,
            error,
            self._waited_before,
        )


def exception_retry_after(state: RetryCallState) -> float | None:
    """The `retry_after_s` the failed attempt's exception carries (a `TransientSourceError`'s Retry-After), if any."""
    if state.outcome is None or not state.outcome.failed:
        return None
    value = getattr(state.outcome.exception(), "retry_after_s", None)
    return float(value) if isinstance(value, int | float) else None


class BackoffWait:
    """A tenacity `wait`: the one backoff rule for the attempt just failed, Retry-After included when it is longer."""

    def __init__(
        self, backoff: Backoff, *, seed: str = "", retry_after: Callable[[RetryCallState], float | None] = exception_retry_after
    ) -> None:
        self.backoff, self.seed, self.retry_after = backoff, seed, retry_after

    def __call__(self, state: RetryCallState) -> float:
        return self.backoff.wait(state.attempt_number, retry_after_s=self.retry_after(state), seed=self.seed)


def retrying(
    backoff: Backoff,
    *,
    attempts: int,
    retry_on: Callable[[BaseException], bool],
    wait: Wait,
    seed: str = "",
    before: Callable[[RetryCallState], None] | None = None,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> Retrying:
    """A tenacity controller for code that fails by raising: `attempts` in all, waits from `backoff`.

    Exceptions `retry_on` accepts are retried; any other propagates at once, and the last accepted one is
    re-raised as it is when the attempts run out. `wait(seconds)` does the waiting (sleep, or a model of it).
    Use it as `controller(fn)` or `for attempt in controller: with attempt: ...`.
    """
    if attempts < 1:
        raise ValueError(f"attempts start at 1, not {attempts}")
    hooks: dict[str, Any] = {"before_sleep": before_sleep}
    if before is not None:
        hooks["before"] = before
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=BackoffWait(backoff, seed=seed),
        retry=retry_if_exception(retry_on),
        sleep=lambda seconds: wait(float(seconds)),
        reraise=True,
        **hooks,
    )


def _stop(failed: Failure | None, *, budget: RetryBudget, attempts: int, waited: float) -> StopReason | None:
    if failed is None:
        return "recovered"
    if not failed.transient:
        return "not_transient"
    if attempts >= budget.max_attempts:
        return "attempts"
    retry_after = failed.retry_after_s or 0.0
    if retry_after > budget.backoff.max_wait_s or waited + retry_after > budget.max_minutes * 60:
        return "retry_after"
    return None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} second{'s' * (round(seconds) != 1)}"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minute{'s' * (minutes != 1)}"
    return f"{seconds / 3600:.1f} hours"
