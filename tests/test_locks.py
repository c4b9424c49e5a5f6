"""The file locks (filelock on flock(2)): exclusive across processes and threads, and released when a holder dies.

Each holder here is a real process killed with SIGKILL while it holds the lock: nothing of ours runs on the
way out, so only the kernel can release it. A soft lock (a marker file) would be left behind and stop the
pipeline, the memory or the lineage file until someone removed it by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from config.settings import DataopsSettings
from memory.store import LOCK_FILE, IncidentMemory
from pipelines.control import PipelineBusyError, PipelineControl
from pipelines.ledger import Ledger
from tests.conftest import REPO

HOLD = """
import sys, time
from pathlib import Path
kind, where = sys.argv[1], Path(sys.argv[2])
if kind == "run":
    from pipelines.control import PipelineControl
    from pipelines.ledger import Ledger
    held = PipelineControl(Ledger(f"sqlite:///{where / 'ops.db'}"), where).exclusive("weather")
elif kind == "table":
    from pipelines.control import PipelineControl
    from pipelines.ledger import Ledger
    held = PipelineControl(Ledger(f"sqlite:///{where / 'ops.db'}"), where).table_lock("silver.weather")
else:
    from config.settings import load_settings
    from memory.store import IncidentMemory
    held = IncidentMemory.open(load_settings(home=where))._client()
with held:
    print("held", flush=True)
    time.sleep(120)
"""


@contextmanager
def holder(kind: str, where: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding lock `kind` until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, kind, str(where)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture
def control(settings: DataopsSettings) -> PipelineControl:
    settings.home.mkdir(parents=True, exist_ok=True)
    return PipelineControl(Ledger(settings.ops_db), settings.home)


def test_the_run_lock_names_its_holder_and_is_released_when_the_holder_is_killed(
    control: PipelineControl, settings: DataopsSettings
) -> None:
    with holder("run", settings.home) as process:
        with pytest.raises(PipelineBusyError) as busy, control.exclusive("weather"):
            pytest.fail("two runs of one pipeline at once")
        assert str(busy.value) == f"pipeline weather is already running (pid {process.pid}); wait for it or pause it"
        with control.exclusive("carbon_intensity"):
            pass  # other pipelines are not held up
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    with control.exclusive("weather"):  # at once: a non-blocking try would raise if anything still held it
        assert (settings.home / "locks" / "weather.lock").read_text() == f"pid {os.getpid()}"


def test_the_run_lock_is_exclusive_between_threads_of_one_process(control: PipelineControl) -> None:
    outcomes: list[str] = []
    with control.exclusive("weather"):

        def second() -> None:
            try:
                with control.exclusive("weather"):
                    outcomes.append("ran")
            except PipelineBusyError:
                outcomes.append("busy")

        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
    assert outcomes == ["busy"]
    with control.exclusive("weather"):
        pass  # released when the block ended


def test_a_table_lock_waits_for_its_holder_and_is_released_when_the_holder_is_killed(
    control: PipelineControl, settings: DataopsSettings
) -> None:
    entered = threading.Event()
    with holder("table", settings.home) as process:

        def wait_for_lock() -> None:
            with control.table_lock("silver.weather"):
                entered.set()

        waiter = threading.Thread(target=wait_for_lock, daemon=True)
        waiter.start()
        assert not entered.wait(1.0), "the table lock is exclusive: the writer waits for the holder"
        os.kill(process.pid, signal.SIGKILL)
        assert entered.wait(30), "the kernel released the killed holder's lock"
    waiter.join(timeout=5)


def test_the_memory_lock_is_released_when_its_holder_is_killed(settings: DataopsSettings) -> None:
    memory = IncidentMemory.open(settings)
    with holder("memory", settings.home) as process:
        done = threading.Event()
        counted: list[int] = []

        def count() -> None:
            counted.append(memory.count())
            done.set()

        threading.Thread(target=count, daemon=True).start()
        assert not done.wait(1.0), "the memory is held by the other process"
        os.kill(process.pid, signal.SIGKILL)
        assert done.wait(60), "the kernel released the killed holder's lock"
    assert counted == [0]
    assert (memory.path / LOCK_FILE).exists(), "the lock file stays: waiters share one inode"
