"""The Ray executor of backfills: one Ray task per run (a partition, or a pack of consecutive partitions, see
`pipelines/backfill.py`), each the pipeline's own run over its window.

Ray is an optional extra (`pip install -e '.[ray]'`; `make install` installs it). Without an address a local
Ray cluster is started with every core (or `cpus`) and shut down afterwards. With one (the `ray_address`
setting or `--ray-address`: `ray://head:10001` for a remote cluster, `auto` on a cluster node) the
backfill joins that cluster, with the token in RAY_AUTH_MODE=token and RAY_AUTH_TOKEN when it has one; its nodes must run this platform's code (the project's image) and reach the
same catalog, warehouse and ops database, so SQLite files and a local warehouse are refused there.

A task receives the settings (without the Slack and model secrets, which it never needs) and keeps one
platform context per worker process, so catalogs and suites are opened once per worker, not per task.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from tenacity import RetryCallState

from config.errors import PipelineError
from config.settings import DataopsSettings
from pipelines.context import PlatformContext
from pipelines.partition_runs import ExecutorName, failed_result, run_partition, shared_storage_problems
from pipelines.retry import Backoff, retrying
from pipelines.run_result import RunResult
from pipelines.sources.base import Window

log = logging.getLogger(__name__)
INIT_ATTEMPTS = 3
INIT_BACKOFF = Backoff(first_s=2.0, factor=2.0, max_wait_s=4.0, jitter=0.0)
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # results are small JSON documents; do not reserve 30% of memory for them
_SECRETS_TASKS_DO_NOT_NEED = ("slack_bot_token", "slack_app_token", "slack_signing_secret", "llm_api_key")
_CONTEXTS: dict[str, PlatformContext] = {}


def _worker_context(settings_json: str) -> PlatformContext:
    ctx = _CONTEXTS.get(settings_json)
    if ctx is None:
        ctx = _CONTEXTS[settings_json] = PlatformContext.open(DataopsSettings(**json.loads(settings_json)))
    return ctx


def partition_task(settings_json: str, pipeline: str, start: str, end: str, as_of: str, attempt: int) -> str:
    """Body of one Ray task: run one window (a partition or a pack) in the worker and return its RunResult as JSON."""
    ctx = _worker_context(settings_json)
    window = Window(start=datetime.fromisoformat(start), end=datetime.fromisoformat(end))
    return run_partition(ctx, pipeline, window, as_of=datetime.fromisoformat(as_of), attempt=attempt).model_dump_json()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PipelineError(
            "the ray executor needs Ray, an optional extra: `pip install -e '.[ray]'` (`make install` installs it), or use --executor local"
        ) from None
    return ray


class RayRunner:
    """Runs as Ray tasks, yielded as they complete."""

    name: ExecutorName = "ray"
    cluster: str | None
    workers: int

    def __init__(self, settings: DataopsSettings, pipeline: str, as_of: datetime, *, address: str | None, cpus: int | None) -> None:
        self.ray = _import_ray()
        self.pipeline, self.as_of = pipeline, as_of
        address = address or settings.ray_address or None
        if address not in (None, "local"):
            problems = shared_storage_problems(settings)
            if problems:
                raise PipelineError(
                    f"Ray cluster {address}: its workers cannot reach this platform's data because "
                    + "; ".join(problems)
                    + ". Point every setting at shared services (see .env.example), or run without an address for a local cluster"
                )
        self._started_here = not self.ray.is_initialized()
        if self._started_here:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
            if address in (None, "local"):
                options |= {"num_cpus": cpus or os.cpu_count() or 1, "object_store_memory": LOCAL_OBJECT_STORE_BYTES}
            elif cpus is not None:
                raise PipelineError("--cpus sizes a local Ray cluster only; a cluster at an address has the CPUs its nodes have")
            try:
                # "local" always starts a new cluster; None would join one `ray start` left running on this machine
                self._init(address or "local", options)
            except Exception as exc:  # connection refused, version mismatch, no cluster at "auto", no token
                hint = ""
                if address and os.environ.get("RAY_AUTH_MODE") != "token":
                    hint = "; a cluster with token authentication (Ray 2.52+, switched on by RAY_AUTH_MODE=token on its nodes) needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN here too"
                raise PipelineError(
                    f"cannot start or join Ray at {address or 'a new local cluster'}: {type(exc).__name__}: {exc}{hint}"
                ) from exc
        self.workers = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        self.cluster = address or f"local ({self.workers} CPUs)"
        clean = settings.model_copy(update=dict.fromkeys(_SECRETS_TASKS_DO_NOT_NEED))
        self._settings_json = clean.model_dump_json()
        self._task = self.ray.remote(num_cpus=1, max_retries=0)(partition_task)  # retries are the backfill's, counted
        self._outstanding: list[Any] = []

    def _init(self, address: str, options: dict[str, Any]) -> None:
        """ray.init, again after a pause when a Ray Client server failed to start this session's server process
        (ConnectionAbortedError "Initialization failure from server": seen now and then, gone on a second try).
        The pauses are the platform's one backoff rule (pipelines/retry.py `retrying`): 2 s, then 4 s."""

        def log_retry(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning("Ray at %s refused this session (%s); connecting again", address, (str(error).splitlines() or ["?"])[0])

        connect = retrying(
            INIT_BACKOFF,
            attempts=INIT_ATTEMPTS,
            retry_on=lambda exc: isinstance(exc, ConnectionAbortedError),
            wait=time.sleep,
            before_sleep=log_retry,
        )
        connect(self.ray.init, address=address, **options)

    def run(self, windows: list[Window], *, attempt: int) -> Iterator[tuple[Window, RunResult]]:
        ray = self.ray
        refs = {
            self._task.remote(
                self._settings_json, self.pipeline, w.start.isoformat(), w.end.isoformat(), self.as_of.isoformat(), attempt
            ): w
            for w in windows
        }
        self._outstanding = list(refs)
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                window = refs.pop(ref)
                self._outstanding.remove(ref)
                yield window, self._result(ref, window)

    def _result(self, ref: Any, window: Window) -> RunResult:
        exceptions = self.ray.exceptions
        try:
            return RunResult.model_validate_json(self.ray.get(ref))
        except exceptions.RayTaskError as exc:  # the task itself raised outside the run (bad settings in the worker)
            return failed_result(self.pipeline, window, self.as_of, f"task failed: {exc}", kind="permanent")
        except exceptions.RayError as exc:  # worker or node died, object lost: the partition may simply run again
            return failed_result(self.pipeline, window, self.as_of, f"{type(exc).__name__}: {exc}", kind="transient")

    def close(self) -> None:
        for ref in self._outstanding:
            self.ray.cancel(ref, force=True)
        self._outstanding = []
        if self._started_here:
            self.ray.shutdown()
