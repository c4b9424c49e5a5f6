"""A Ray cluster head on loopback (`ray start --head` with a Ray Client server), as a team's cluster runs one.

The backfill joins it at `ray://127.0.0.1:<port>` exactly as it would join `ray://head:10001`; its workers
are separate processes started by the cluster, not by the test, so nothing is shared with the driver but
the settings each task receives. Token authentication is on, as on any cluster worth the name: the
driver joins with `RAY_AUTH_MODE=token` and the cluster's `RAY_AUTH_TOKEN` in its environment. The token
is this machine's Ray token (`ray get-auth-token --generate`, ~/.ray/auth_token): a process that ran a
local Ray cluster before keeps using the token it loaded then, so a fresh random one would be refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.fakes import free_port

__all__ = ["RayCluster", "ray_cluster_fixture"]


def _ray() -> str:
    found = Path(sys.executable).with_name("ray")
    if found.exists():
        return str(found)
    on_path = shutil.which("ray")
    if on_path is None:
        raise RuntimeError("the `ray` command is missing; install the ray extra (`pip install -e '.[dev,ray]'`, which make test does)")
    return on_path


class RayCluster:
    def __init__(self, *, cpus: int = 2) -> None:
        self.cpus = cpus
        self.gcs_port = free_port()
        self.client_port = free_port()
        self.address = f"ray://127.0.0.1:{self.client_port}"
        self.token = ""
        self.auth_env: dict[str, str] = {}

    def __enter__(self) -> RayCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "RAY_USAGE_STATS_ENABLED": "0"}
        env = {k: v for k, v in env.items() if not k.startswith("DATAOPS_")}  # the cluster knows nothing of the platform
        env |= self.auth_env
        return subprocess.run([_ray(), *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)

    def start(self) -> None:
        token = self._run("get-auth-token", "--generate", timeout=60)
        if token.returncode != 0 or not token.stdout.strip():
            raise RuntimeError(f"ray get-auth-token failed ({token.returncode}): {token.stderr[-2000:]}")
        self.token = token.stdout.strip().splitlines()[-1]
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        done = self._run(
            "start", "--head", f"--port={self.gcs_port}", f"--ray-client-server-port={self.client_port}", "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.cpus}", "--include-dashboard=false", "--disable-usage-stats", timeout=180,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"ray start failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")

    def stop(self) -> None:
        self._run("stop", "--force", timeout=120)


@pytest.fixture
def ray_cluster_fixture() -> Iterator[RayCluster]:
    with RayCluster() as cluster:
        yield cluster
