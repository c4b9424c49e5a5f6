"""Backfills: day partitions on the local executor and on a real local Ray cluster, with the same outcome."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from config.errors import PipelineError
from config.settings import DataopsSettings
from pipelines import backfill, faults
from pipelines.backfill import BackfillReport, run_backfill
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.partition_runs import shared_storage_problems
from pipelines.ray_executor import RayRunner, partition_task
from tests.conftest import utc
from tests.fakes.postgres_server import PostgresServer, postgres_server_fixture
from tests.fakes.ray_cluster import RayCluster, ray_cluster_fixture
from tests.fakes.s3_server import S3Server, s3_server_fixture

postgres_server = postgres_server_fixture
s3_server = s3_server_fixture
ray_cluster = ray_cluster_fixture

AS_OF = utc(2024, 1, 1)
RUN_COLUMNS = {"run_id", "fetched_at", "quarantined_at"}


def contents(ctx: PlatformContext, pipeline: str = "carbon_intensity") -> dict[str, tuple[int, str]]:
    """Rows and a digest of every table the pipeline writes, without what differs between any two runs."""
    spec = ctx.inventory.pipeline(pipeline)
    digests = {}
    for name in (spec.silver, spec.quarantine, *(ctx.inventory.mart(m).table for m in spec.marts)):
        data = load_table(ctx.catalog, name).scan().to_arrow()
        rows = []
        for row in data.select([c for c in data.column_names if c not in RUN_COLUMNS]).to_pylist():
            if isinstance(row.get("original"), str):
                row["original"] = {k: v for k, v in json.loads(row["original"]).items() if k not in RUN_COLUMNS}
            rows.append(json.dumps(row, default=str, sort_keys=True))
        digests[name] = (len(rows), hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest())
    return digests


def failures(report: BackfillReport) -> list[str]:
    return [f"{o.start.date()}: {o.error}" for o in report.outcomes if o.status == "failed"]


def other_home(settings: DataopsSettings, name: str) -> PlatformContext:
    return PlatformContext.open(settings.model_copy(update={"home": settings.home.parent / name}))


def test_local_backfill_runs_each_day_and_converges_when_run_again(ctx: PlatformContext) -> None:
    seen: list[tuple[str, int]] = []
    report = run_backfill(
        ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 4), as_of=AS_OF,
        on_partition=lambda o, total: seen.append((o.start.date().isoformat(), total)),
    )  # fmt: skip
    assert (report.executor, report.partitions, report.succeeded, report.failed) == ("local", 3, 3, 0)
    assert seen == [("2023-03-01", 3), ("2023-03-02", 3), ("2023-03-03", 3)]
    assert [(o.start, o.end) for o in report.outcomes] == [(utc(2023, 3, d), utc(2023, 3, d + 1)) for d in (1, 2, 3)]
    assert report.rows_out == 144 and report.commit_retries == 0 and report.replans == 0
    first = contents(ctx)
    assert first["silver.carbon_intensity"][0] == 144
    again = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 4), as_of=AS_OF)
    assert again.succeeded == 3 and contents(ctx) == first, "a backfill run again changes nothing"
    assert [r.status for r in ctx.ledger.runs(pipeline="carbon_intensity")] == ["succeeded"] * 6, "every partition run is in the ledger"


def test_partitions_are_whole_utc_days_of_the_asked_size() -> None:
    weeks = backfill.plan_partitions(utc(2023, 3, 1, 6), utc(2023, 3, 11), partition_days=7)
    assert [(w.start, w.end) for w in weeks] == [(utc(2023, 3, 1), utc(2023, 3, 8)), (utc(2023, 3, 8), utc(2023, 3, 11))]
    with pytest.raises(PipelineError, match="at least one day"):
        backfill.plan_partitions(utc(2023, 3, 1), utc(2023, 3, 2), partition_days=0)


def test_transient_failures_run_again_and_are_counted(settings: DataopsSettings) -> None:
    ctx = PlatformContext.open(settings.model_copy(update={"run_backoff_s": 0.0}))
    ctx.faults.inject(
        faults.SourceFault(kind="transient_error", source="carbon_intensity", start=utc(2023, 3, 2), end=utc(2023, 3, 3), times=1)
    )
    report = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 4), as_of=AS_OF)
    assert (report.succeeded, report.failed, report.task_retries) == (3, 0, 1)
    assert [o.attempts for o in report.outcomes] == [1, 2, 1]


def test_a_partition_that_keeps_failing_is_reported_and_the_rest_lands(settings: DataopsSettings) -> None:
    ctx = PlatformContext.open(settings.model_copy(update={"run_backoff_s": 0.0, "run_max_attempts": 2}))
    ctx.faults.inject(faults.SourceFault(kind="transient_error", source="carbon_intensity", start=utc(2023, 3, 2), end=utc(2023, 3, 3)))
    report = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 4), as_of=AS_OF)
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert [o.start for o in failed] == [utc(2023, 3, 2)] and failed[0].attempts == 2 and "503" in (failed[0].error or "")
    assert report.succeeded == 2 and contents(ctx)["silver.carbon_intensity"][0] == 96


def test_refusals_say_what_to_do(ctx: PlatformContext) -> None:
    with pytest.raises(PipelineError, match="before it starts"):
        run_backfill(ctx, "carbon_intensity", utc(2023, 3, 4), utc(2023, 3, 1), as_of=AS_OF)
    with pytest.raises(PipelineError, match="after the clock"):
        run_backfill(ctx, "carbon_intensity", utc(2024, 3, 1), utc(2024, 3, 4), as_of=AS_OF)
    with pytest.raises(PipelineError, match="unknown executor"):
        run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 2), as_of=AS_OF, executor="spark")  # type: ignore[arg-type]
    ctx.control.set_paused("carbon_intensity", True, reason="investigating")
    with pytest.raises(PipelineError, match=r"paused.*dataops resume carbon_intensity"):
        run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 2), as_of=AS_OF)


def test_a_ray_cluster_elsewhere_needs_shared_storage(settings: DataopsSettings) -> None:
    problems = shared_storage_problems(settings)
    assert len(problems) == 3 and "DATAOPS_WAREHOUSE=s3://" in problems[1]
    with pytest.raises(PipelineError, match=r"cannot reach this platform's data.*SQLite"):
        RayRunner(settings, "carbon_intensity", AS_OF, address="ray://10.255.255.1:10001", cpus=None)
    shared = settings.model_copy(
        update={
            "catalog_uri": "postgresql+psycopg2://u@db/iceberg", "warehouse": "s3://lake/warehouse",
            "ops_db_url": "postgresql+psycopg2://u@db/ops",
        }
    )  # fmt: skip
    assert shared_storage_problems(shared) == []
    rest = settings.model_copy(
        update={"catalog_type": "rest", "rest_catalog_uri": "http://rest:8181", "ops_db_url": "postgresql+psycopg2://u@db/ops"}
    )
    assert shared_storage_problems(rest) == [], "a REST catalog without a warehouse setting keeps the tables where its server says"


def test_partition_task_runs_one_partition_from_settings_json(settings: DataopsSettings) -> None:
    """The body of a Ray task, called as a worker calls it: settings as JSON in, a RunResult as JSON out."""
    with_secret = settings.model_copy(update={"slack_bot_token": "xoxb-secret"})
    result = json.loads(
        partition_task(with_secret.model_dump_json(), "carbon_intensity", "2023-03-01T00:00:00+00:00", "2023-03-02T00:00:00+00:00",
                       AS_OF.isoformat(), 1)
    )  # fmt: skip
    assert result["status"] == "succeeded" and result["rows_out"] == 48


@pytest.mark.slow
def test_ray_backfill_publishes_what_the_local_one_does(settings: DataopsSettings) -> None:
    """A real local Ray cluster over the real January 2023 defects: the same tables as one partition after another."""
    start, end = utc(2023, 1, 22), utc(2023, 2, 1)
    on_ray = other_home(settings, "ray")
    report = run_backfill(on_ray, "carbon_intensity", start, end, executor="ray", as_of=AS_OF, cpus=2)
    assert (report.executor, report.workers, report.partitions, report.failed) == ("ray", 2, 10, 0), failures(report)
    assert report.cluster == "local (2 CPUs)"
    assert {o.start.day for o in report.outcomes if o.rows_quarantined} >= {24, 26, 31}, "the real defects are held back"
    assert len({o.run_id for o in report.outcomes}) == 10, "one run per partition, each in the ledger"
    assert all(on_ray.ledger.run(o.run_id) is not None for o in report.outcomes)
    local = other_home(settings, "local")
    expected = run_backfill(local, "carbon_intensity", start, end, as_of=AS_OF)
    assert (expected.succeeded, expected.quarantined) == (report.succeeded, report.quarantined)
    assert contents(on_ray) == contents(local)
    again = run_backfill(on_ray, "carbon_intensity", start, end, executor="ray", as_of=AS_OF, cpus=2)
    assert again.failed == 0 and contents(on_ray) == contents(local), "run again on Ray, nothing changes"


@pytest.mark.slow
def test_a_ray_worker_that_dies_costs_one_retry(settings: DataopsSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ctx = PlatformContext.open(settings.model_copy(update={"run_backoff_s": 0.0}))
    marker = tmp_path / "died-once"
    real_runner_for = backfill.runner_for

    def dying_runner(*args: Any, **kwargs: Any) -> Any:
        runner = real_runner_for(*args, **kwargs)
        crash_path = str(marker)

        def die_once_on_march_2(settings_json: str, pipeline: str, start: str, *rest: Any) -> str:
            if start.startswith("2023-03-02") and not os.path.exists(crash_path):
                open(crash_path, "w").close()
                os._exit(1)  # the worker process dies mid-task, as on an OOM kill
            return partition_task(settings_json, pipeline, start, *rest)

        runner._task = runner.ray.remote(num_cpus=1, max_retries=0)(die_once_on_march_2)
        return runner

    monkeypatch.setattr(backfill, "runner_for", dying_runner)
    report: BackfillReport = run_backfill(ctx, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 4), executor="ray", as_of=AS_OF, cpus=2)
    assert marker.exists()
    assert (report.succeeded, report.failed, report.task_retries) == (3, 0, 1)
    assert {o.start.day: o.attempts for o in report.outcomes} == {1: 1, 2: 2, 3: 1}
    assert contents(ctx)["silver.carbon_intensity"][0] == 144


def test_cli_backfill_prints_a_report(settings: DataopsSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    from evals.cli import app

    monkeypatch.setenv("DATAOPS_HOME", str(settings.home))
    runner = CliRunner()
    done = runner.invoke(
        app, ["backfill", "carbon_intensity", "--start", "2023-03-01", "--end", "2023-03-03", "--as-of", "2024-01-01", "--json"]
    )
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["executor"], report["partitions"], report["succeeded"], report["rows_out"]) == ("local", 2, 2, 96)
    assert {"commit_retries", "replans", "task_retries", "outcomes"} <= set(report)
    chosen: list[str] = []
    real_runner_for = backfill.runner_for

    def recording_runner_for(ctx: PlatformContext, pipeline: str, executor: str, **kwargs: Any) -> Any:
        chosen.append(executor)
        return real_runner_for(ctx, pipeline, "local", **kwargs)

    monkeypatch.setattr(backfill, "runner_for", recording_runner_for)
    monkeypatch.setenv("DATAOPS_BACKFILL_EXECUTOR", "ray")
    by_setting = runner.invoke(
        app, ["backfill", "carbon_intensity", "--start", "2023-03-01", "--end", "2023-03-02", "--as-of", "2024-01-01"]
    )
    assert by_setting.exit_code == 0 and chosen == ["ray"], "the setting picks the executor when --executor is not given"
    monkeypatch.undo()
    monkeypatch.setenv("DATAOPS_HOME", str(settings.home))
    wrong = runner.invoke(app, ["backfill", "carbon_intensity", "--start", "2023-03-01", "--end", "2023-03-03", "--executor", "spark"])
    assert wrong.exit_code == 2 and "not one of local, ray" in wrong.output
    human = runner.invoke(app, ["backfill", "carbon_intensity", "--start", "2023-03-01", "--end", "2023-03-02", "--as-of", "2024-01-01"])
    assert human.exit_code == 0 and "commit retries 0, re-plans 0, task retries 0" in " ".join(human.stdout.split())


@pytest.mark.slow
def test_ray_cluster_at_an_address_on_postgres_and_s3(
    settings: DataopsSettings, postgres_server: PostgresServer, s3_server: S3Server, ray_cluster: RayCluster
) -> None:
    """The team set-up by settings alone, from the command line: `dataops backfill --executor ray` joins a Ray
    cluster at ray:// (token auth), on a Postgres catalog and ops database and an S3 warehouse.

    A fresh process, as a user runs it: Ray Client refuses a process that already ran a local cluster (noted)."""
    shared = {
        "catalog_uri": postgres_server.create_database("catalog_ray"),
        "ops_db_url": postgres_server.create_database("ops_ray"),
        "warehouse": f"s3://{s3_server.bucket}/ray",
        **s3_server.settings(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")}
    env |= {f"DATAOPS_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in shared.items()}
    env |= {"DATAOPS_HOME": str(settings.home), "DATAOPS_RAY_ADDRESS": ray_cluster.address, **ray_cluster.auth_env}
    env |= {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    dataops = str(Path(sys.executable).parent / "dataops")
    args = ["backfill", "carbon_intensity", "--start", "2023-03-01", "--end", "2023-03-04", "--as-of", "2024-01-01"]
    done = subprocess.run([dataops, *args, "--executor", "ray", "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, [o["error"] for o in json.loads(done.stdout or "{}").get("outcomes", []) if o["error"]] or done.stderr[
        -3000:
    ]
    report = json.loads(done.stdout)
    assert (report["cluster"], report["workers"], report["succeeded"], report["failed"]) == (ray_cluster.address, 2, 3, 0)
    ctx = PlatformContext.open(settings.model_copy(update=shared))
    runs = [ctx.ledger.run(o["run_id"]) for o in report["outcomes"]]
    assert all(r is not None and r.status == "succeeded" for r in runs), "every partition run is in the Postgres ops database"
    assert any(key.startswith("ray/silver/carbon_intensity/data/") for key in s3_server.keys("ray/"))
    local = other_home(settings, "local")
    run_backfill(local, "carbon_intensity", utc(2023, 3, 1), utc(2023, 3, 4), as_of=AS_OF)
    assert contents(ctx) == contents(local)
    no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
    refused = subprocess.run([dataops, *args, "--executor", "ray"], capture_output=True, text=True, env=no_token, timeout=600)
    assert refused.returncode == 2 and "RAY_AUTH_MODE=token" in " ".join(refused.stderr.split()), refused.stderr[-2000:]


def test_cli_backfill_stopped_by_ctrl_c_says_how_to_finish(settings: DataopsSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    from evals.cli import app
    from pipelines import backfill

    def interrupted(*args: Any, **kwargs: Any) -> BackfillReport:
        raise KeyboardInterrupt

    monkeypatch.setenv("DATAOPS_HOME", str(settings.home))
    monkeypatch.setattr(backfill, "run_backfill", interrupted)
    done = CliRunner().invoke(app, ["backfill", "carbon_intensity", "--start", "2023-03-01", "--end", "2023-03-03"])
    assert done.exit_code == 130 and "Run the same backfill again" in " ".join(done.output.split())


class _RayRefusingTwice:
    """The `ray` module as RayRunner._init sees it: `init` refused (ConnectionAbortedError) `refusals` times."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls: list[dict[str, Any]] = []

    def init(self, **options: Any) -> None:
        self.calls.append(options)
        if len(self.calls) <= self.refusals:
            raise ConnectionAbortedError("Initialization failure from server:\nTraceback ...")


@pytest.mark.parametrize("refusals", [2, 3])
def test_joining_ray_is_tried_three_times_with_the_backoff_between(refusals: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import ray_executor

    waits: list[float] = []
    monkeypatch.setattr(ray_executor.time, "sleep", waits.append)
    runner = RayRunner.__new__(RayRunner)
    runner.ray = _RayRefusingTwice(refusals)
    if refusals < ray_executor.INIT_ATTEMPTS:
        runner._init("ray://head:10001", {"logging_level": 30})
    else:
        with pytest.raises(ConnectionAbortedError):
            runner._init("ray://head:10001", {"logging_level": 30})
    assert runner.ray.calls == [{"address": "ray://head:10001", "logging_level": 30}] * 3
    assert waits == [2.0, 4.0]
