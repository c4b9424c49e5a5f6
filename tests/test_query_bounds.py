"""Bounded queries everywhere: DATAOPS_QUERY_TIMEOUT_S and DATAOPS_QUERY_MEMORY_LIMIT stop user SQL in the CLI and the agent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from config.errors import QueryLimitError, ToolError
from pipelines.context import PlatformContext
from pipelines.promotion import run_pipeline
from pipelines.query import run_query
from tests.conftest import REPO, window
from tools import names
from tools.base import ToolContext
from tools.registry import REGISTRY

# Six copies of 48 rows: 48**6 ≈ 1.2e10 combinations, minutes to hours of work for DuckDB on any machine.
CROSS_JOIN = (
    "SELECT count(*) FROM silver.weather a, silver.weather b, silver.weather c, silver.weather d, silver.weather e, silver.weather f "
    "WHERE a.temperature_c + b.temperature_c + c.temperature_c + d.temperature_c + e.temperature_c + f.temperature_c > 1000"
)
SANITY_S = 120  # far above the limits under test; only a query that was never stopped would reach it
CLI = [str(Path(sys.executable).with_name("dataops"))]


@pytest.fixture
def weather(ctx: PlatformContext) -> PlatformContext:
    run_pipeline(ctx, "weather", window((2023, 1, 1), (2023, 1, 3)), as_of=datetime(2023, 2, 1, tzinfo=UTC))
    assert run_query(ctx, "SELECT count(*) FROM silver.weather").rows == [[48]]
    return ctx


def test_the_timeout_setting_interrupts_a_cross_join(weather: PlatformContext) -> None:
    weather.settings = weather.settings.model_copy(update={"query_timeout_s": 1.0})
    started = time.monotonic()
    with pytest.raises(QueryLimitError) as caught:
        run_query(weather, CROSS_JOIN)
    assert time.monotonic() - started < SANITY_S
    assert caught.value.setting == "DATAOPS_QUERY_TIMEOUT_S"
    assert str(caught.value).startswith("query interrupted after 1 s (DATAOPS_QUERY_TIMEOUT_S)")
    assert run_query(weather, "SELECT count(*) FROM silver.weather").rows == [[48]], "the next query runs normally"


def test_the_memory_limit_setting_stops_a_query_that_needs_more(weather: PlatformContext) -> None:
    weather.settings = weather.settings.model_copy(update={"query_memory_limit": "16MB"})
    with pytest.raises(QueryLimitError) as caught:
        run_query(weather, "SELECT list(i) FROM range(20000000) t(i)")
    assert caught.value.setting == "DATAOPS_QUERY_MEMORY_LIMIT"
    assert "memory limit 16MB (DATAOPS_QUERY_MEMORY_LIMIT)" in str(caught.value)
    big = weather.settings.model_copy(update={"query_memory_limit": "1GB"})
    weather.settings = big
    assert run_query(weather, "SELECT len(list(i)) FROM range(200000) t(i)").rows == [[200000]]


def test_the_agents_query_lake_is_bounded_by_the_same_setting(weather: PlatformContext) -> None:
    weather.settings = weather.settings.model_copy(update={"query_timeout_s": 1.0})
    spec = REGISTRY[names.QUERY_LAKE]
    context = ToolContext(platform=weather, now=datetime(2023, 2, 1, tzinfo=UTC), call_id="c1")
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"query interrupted after 1 s \(DATAOPS_QUERY_TIMEOUT_S\)"):
        spec.invoke(context, spec.parse({"sql": CROSS_JOIN}))
    assert time.monotonic() - started < SANITY_S


@pytest.mark.slow
def test_dataops_query_past_the_timeout_exits_2_with_one_line(weather: PlatformContext) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    env |= {"DATAOPS_HOME": str(weather.settings.home), "DATAOPS_QUERY_TIMEOUT_S": "1"}
    started = time.monotonic()
    done = subprocess.run([*CLI, "query", CROSS_JOIN], cwd=REPO, env=env, capture_output=True, text=True, timeout=SANITY_S + 60)
    assert time.monotonic() - started < SANITY_S + 60
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: query interrupted after 1 s (DATAOPS_QUERY_TIMEOUT_S)")
    assert "Traceback" not in done.stderr and done.stdout == ""
