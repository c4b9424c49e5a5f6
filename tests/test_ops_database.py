"""The ops database under several processes starting at once, and across releases."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import inspect

from pipelines.ledger import Ledger


def _open(url: str, barrier: object) -> str:
    from policies.audit import AuditLog

    barrier.wait()  # type: ignore[attr-defined]
    try:
        AuditLog(Ledger(url))
    except Exception as exc:  # the finding: any start that fails
        return f"{type(exc).__name__}: {exc}"
    return "ok"


@pytest.mark.slow
def test_processes_starting_together_on_a_fresh_database_all_start(tmp_path: Path) -> None:
    # Found by benchmarks/chaos.py: four `dataops run` at once on a new home; the second CREATE TABLE failed.
    context = multiprocessing.get_context("spawn")
    for round_ in range(2):
        url = f"sqlite:///{tmp_path / f'ops{round_}.db'}"
        with context.Manager() as manager:
            barrier = manager.Barrier(6)
            with context.Pool(6) as pool:
                outcomes = pool.starmap(_open, [(url, barrier)] * 6)
        assert outcomes == ["ok"] * 6
        assert {"audit_log", "audit_diagnoses"} <= set(inspect(Ledger(url).engine).get_table_names())
