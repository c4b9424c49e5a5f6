"""A local S3-compatible server: moto's `moto_server` as a real process on 127.0.0.1, one bucket made.

Nothing in our code is replaced: pyiceberg's PyArrow FileIO (AWS SDK for C++) speaks the S3 protocol to
this server as it would to MinIO or AWS, given the endpoint, region, keys and path-style addressing::

    with S3Server() as s3:
        settings = load_settings(home=..., warehouse=f"s3://{s3.bucket}/lake", **s3.settings())
        ...
        assert any(key.endswith(".parquet") for key in s3.keys("lake/"))

moto accepts any access key; the ones below are sent so that request signing runs as it does against a real
store. If the server does not come up, `S3Server` raises with the server's own output: tests fail, never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.fakes import free_port

__all__ = ["S3Server", "s3_server_fixture"]

ACCESS_KEY_ID = "dataops-test"
SECRET_ACCESS_KEY = "dataops-test-secret"
REGION = "us-east-1"


def _moto_server() -> str:
    beside = Path(sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if not found:
        raise RuntimeError("moto_server is not installed; `pip install -e '.[dev]'` installs moto[server]")
    return found


class S3Server:
    """`moto_server` on a free port of 127.0.0.1 with `bucket` created; stops on exit."""

    def __init__(self, *, bucket: str = "warehouse", log_dir: Path | None = None) -> None:
        self.bucket = bucket
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log_path = (log_dir or Path(os.environ.get("TMPDIR", "/tmp"))) / f"moto_server_{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        log = self._log_path.open("wb")
        self._process = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 30
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self._process.returncode}: {self._log_path.read_text(errors='replace')}")
            try:
                self.client().list_buckets()
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer on {self.endpoint} within 30 s ({exc}); log: {self._log_path}") from exc
                time.sleep(0.1)
        self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def client(self) -> Any:
        """A boto3 S3 client on this server (the test's own view of the bucket)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under `prefix`."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [obj["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix) for obj in page.get("Contents", [])]

    def settings(self) -> dict[str, Any]:
        """The platform settings that point pyiceberg's FileIO at this server."""
        return {
            "s3_endpoint": self.endpoint,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
            "s3_path_style": True,
        }


@pytest.fixture
def s3_server_fixture(tmp_path: Path) -> Iterator[S3Server]:
    with S3Server(log_dir=tmp_path) as server:
        yield server
