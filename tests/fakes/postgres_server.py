"""A throwaway PostgreSQL server: Debian's `postgresql` binaries, a fresh cluster in a temporary folder.

Nothing is faked but the machine: `initdb` makes a cluster, `pg_ctl` starts it on a free port of 127.0.0.1
(its unix socket in the same folder, so it never touches /var/run/postgresql), and tests get SQLAlchemy
URLs of fresh databases on it::

    with PostgresServer() as pg:
        url = pg.create_database("catalog")     # postgresql+psycopg2://dataops@127.0.0.1:PORT/catalog

Postgres refuses to run as root, so under root the cluster belongs to the `postgres` user (created by the
Debian package) and its commands run through `runuser`; the folder lives in /tmp rather than pytest's
tmp_path, whose parents only root may enter. When `initdb` is missing and we are root, the Debian package
is installed with apt-get (as `make system-deps` does). Anything that stops the server from starting raises
with the server's own log: the tests that need it fail, they never skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.fakes import free_port

__all__ = ["PostgresServer", "postgres_server_fixture"]

SUPERUSER = "dataops"


def _bin_dir() -> Path:
    """The folder of initdb and pg_ctl, installing Debian's postgresql when it is missing and we are root."""
    for attempt in range(2):
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
        found = shutil.which("initdb") or (candidates[0] if candidates else None)
        if found:
            return Path(os.path.realpath(found)).parent
        if attempt == 0 and os.geteuid() == 0 and shutil.which("apt-get"):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
            done = subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"], env=env, capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"apt-get install postgresql failed ({done.returncode}): {done.stderr[-2000:]}")
            continue
        break
    raise RuntimeError("PostgreSQL's initdb is not installed: run `make system-deps` as root, or `sudo apt-get install postgresql`")


class PostgresServer:
    """A PostgreSQL cluster on a free port of 127.0.0.1, trust authentication for `dataops`; removed on stop."""

    def __init__(self) -> None:
        self.port = free_port()
        self._bin = _bin_dir()
        self._as_root = os.geteuid() == 0
        self._dir = Path(tempfile.mkdtemp(prefix="dataops-pg-"))
        self.data_dir = self._dir / "data"
        self.log_path = self._dir / "postgres.log"
        self._started = False

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_root:  # postgres will not run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self._dir)

    def start(self) -> None:
        if self._as_root:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root but there is no `postgres` user to own the cluster (Debian's package creates it)"
                ) from None
            os.chown(self._dir, owner.pw_uid, owner.pw_gid)
        init = self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stdout[-1500:]} {init.stderr[-1500:]}")
        options = (
            f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "-t", "60", "start")
        if started.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on port {self.port} ({started.returncode}): {started.stderr[-1500:]} log: {log}")
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
            self._started = False
        shutil.rmtree(self._dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """One cluster for the session; each test creates its own databases with `create_database`."""
    with PostgresServer() as server:
        yield server
