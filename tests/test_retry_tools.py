"""The re-run tool retries a source that answers 503 N times (a real local HTTP server), within the retry budget.

The source is the fake API on 127.0.0.1 (tests/fakes/source_api.py), reached through the real connector and
httpx with one request per run, so every retry of the tool is a request the server sees. The backoff is a
few hundredths of a second: the waits are asserted as recorded, never as wall-clock time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from config.settings import DataopsSettings
from pipelines.context import PlatformContext
from pipelines.retry import Backoff, RetryBudget
from policies.audit import AuditLog
from tests.fakes.source_api import Reply, SourceApi, load_fixture, source_api_fixture  # noqa: F401
from tools.base import ToolContext
from tools.runs import RerunWindowInput, WindowRunResult, rerun_window

AS_OF = datetime(2021, 4, 30, 23, tzinfo=UTC)  # when the fixtures were recorded
INTENSITY = "/intensity/{from}/{to}"
FAST = Backoff(first_s=0.01, factor=2, max_wait_s=2.0, jitter=0.5)


@pytest.fixture
def live(ctx: PlatformContext, source_api: SourceApi) -> PlatformContext:
    """The platform on live HTTP sources at the fake API; one request per run, so the tool's retries are the only ones."""
    ctx.settings = ctx.settings.model_copy(
        update={"source_mode": "http", "carbon_intensity_base_url": source_api.url, "http_timeout_s": 2.0, "http_max_attempts": 1}
    )
    return ctx


def rerun(ctx: PlatformContext, budget: RetryBudget) -> WindowRunResult:
    tool_ctx = ToolContext(platform=ctx, now=AS_OF, call_id="call-1", retry_budget=budget)
    return rerun_window(tool_ctx, RerunWindowInput(pipeline="carbon_intensity", start=date(2020, 1, 1), end=date(2020, 1, 2)))


def test_a_source_answering_503_three_times_is_retried_until_it_recovers(live: PlatformContext, source_api: SourceApi) -> None:
    source_api.route(INTENSITY, Reply.error(503), Reply.error(503), Reply.error(503), Reply.json(load_fixture("gb_with_dates.json")))

    result = rerun(live, RetryBudget(max_attempts=5, max_minutes=1, backoff=FAST))

    assert len(source_api.requests) == 4
    assert result.status in ("succeeded", "quarantined") and result.attempts == 4
    (run,) = result.runs
    assert run.status == result.status and run.attempts == 4
    assert [w / (0.01 * 2**i) for i, w in enumerate(run.waits_s)] == pytest.approx([1.0] * 3, abs=0.5)  # jitter ±50 %
    assert "answered 503" in str(result.last_error)
    assert result.retry.startswith("recovered after 4 attempts over")
    ledger = sorted(live.ledger.runs(pipeline="carbon_intensity"), key=lambda r: r.attempts)
    assert [(r.attempts, r.status) for r in ledger] == [(1, "failed"), (2, "failed"), (3, "failed"), (4, result.status)]
    assert live.catalog.load_table("silver.carbon_intensity").scan().to_arrow().num_rows == 48


def test_a_retry_after_longer_than_the_backoff_is_waited(live: PlatformContext, source_api: SourceApi) -> None:
    source_api.route(INTENSITY, Reply.retry_after(1), Reply.json(load_fixture("gb_with_dates.json")))

    result = rerun(live, RetryBudget(max_attempts=5, max_minutes=1, backoff=FAST))

    (run,) = result.runs
    assert run.waits_s == [1.0], "the source's Retry-After (1 s) wins over the 0.01 s backoff"
    assert result.attempts == 2 and len(source_api.requests) == 2


def test_a_source_still_failing_when_the_budget_is_spent_is_reported_with_its_attempts(
    live: PlatformContext, source_api: SourceApi
) -> None:
    source_api.route(INTENSITY, Reply.error(503, "maintenance"))

    result = rerun(live, RetryBudget(max_attempts=3, max_minutes=1, backoff=FAST))

    assert result.status == "failed" and result.attempts == 3 and len(source_api.requests) == 3
    assert result.retry.startswith("still failing after 3 attempts over")
    assert result.retry.endswith("the retry budget (3 attempts over at most 60 seconds) is spent")
    assert "maintenance" in str(result.last_error)
    assert live.catalog.load_table("silver.carbon_intensity").scan().to_arrow().num_rows == 0


def test_an_incidents_attempts_are_counted_across_its_reruns(ctx: PlatformContext, settings: DataopsSettings) -> None:
    from agent.facts import retry_spent

    audit = AuditLog(ctx.ledger)
    for n, (attempts, waited) in enumerate([(3, 180.0), (2, 60.0)]):
        call = f"incident-7-call-{n}"
        audit.judged(
            call_id=call, thread_id="incident-7", incident_id=7, actor="agent", planner="runbook planner", tokens=0,
            tool="rerun_window", arguments={}, decision="allow", reason="test",
        )  # fmt: skip
        audit.started(call, idem_key=f"k{n}")
        audit.succeeded(call, result={"attempts": attempts, "waited_s": waited, "runs": []}, duration_ms=1.0)

    assert retry_spent(audit, 7) == (5, 240.0)
    assert retry_spent(audit, 8) == (0, 0.0)
    assert RetryBudget().spent(attempts=5, waited_s=240.0)
