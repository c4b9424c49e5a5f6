"""benchmarks/chaos.py itself: a couple of real SIGKILLs, then its invariant and recovery checks hold and it says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_short_chaos_run_kills_recovers_and_loses_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "chaos.py"), "--kills", "2", "--serve-share", "0.5", "--seed", "3",
         "--skip", "concurrent", "--skip", "bad-inputs", "--json", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["lost_rows"] == 0 and report["survived"] == report["kills"] and report["failures"] == []
    assert (tmp_path / "killed").is_dir() and (tmp_path / "reference").is_dir(), "both homes were built and compared"
