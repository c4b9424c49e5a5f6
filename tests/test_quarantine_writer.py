"""The quarantine writer's counts: rows newly written, and rows an earlier run had already held (pipelines/quarantine_writer.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pipelines.context import PlatformContext
from pipelines.plan import Plan
from pipelines.quarantine import quarantine_row
from pipelines.quarantine_writer import QuarantineWriter
from pipelines.run_result import RunResult
from tests.conftest import utc, window

NOW = utc(2026, 12, 7)


class _Run:
    """What a promotion run holds that the writer reads (the `QuarantineRun` protocol)."""

    def __init__(self, ctx: PlatformContext, run_id: str) -> None:
        self.ctx = ctx
        self.p = ctx.inventory.pipeline("carbon_intensity")
        self.window = window((2023, 1, 24), (2023, 1, 25))
        self.result = RunResult(
            run_id=run_id,
            pipeline="carbon_intensity",
            status="running",
            window_start=self.window.start,
            window_end=self.window.end,
            as_of=NOW,
        )
        self.snapshots: dict[str, int | None] = {}
        self.quarantine_rows: list[dict[str, Any]] = []
        self.run_id = run_id

    def props(self, layer: str, plan: Plan | None = None) -> dict[str, str]:
        return {"run_id": self.run_id}

    def hold(self, *slots: datetime) -> None:
        self.quarantine_rows += [
            quarantine_row(
                ts=ts, record_key=ts.isoformat(), target="silver.carbon_intensity", expectation="forecast_tracks_actual", scope="row",
                reason="misses by 300", original=f'{{"from": "{ts.isoformat()}"}}', run_id=self.run_id, now=NOW,
            )
            for ts in slots
        ]  # fmt: skip


def test_a_re_planned_attempt_does_not_count_its_own_rows_as_held_before(ctx: PlatformContext) -> None:
    """A staged promotion flushes as it goes; after a re-plan it validates the same rows again. They are this run's
    own rows, not an earlier run's: written once, counted once, never 'already held'."""
    slots = [utc(2023, 1, 24, 11), utc(2023, 1, 24, 11, 30)]
    run = _Run(ctx, "run-1")
    writer = QuarantineWriter(run)
    run.hold(*slots)
    assert writer.flush() == 2
    run.hold(*slots)  # the second attempt, after the plan went stale
    assert (writer.flush(), writer.already_held) == (2, 0)
    again = _Run(ctx, "run-2")  # a later run of the same window
    later = QuarantineWriter(again)
    again.hold(*slots)
    assert (later.flush(), later.already_held) == (0, 2)


def test_the_run_log_and_the_cli_table_count_rows_already_held_the_same_way() -> None:
    from pipelines.run_log import run_line
    from pipelines.run_result import RunResult
    from tests.conftest import utc

    result = RunResult(
        run_id="r", pipeline="carbon_intensity", status="succeeded", window_start=utc(2023, 1, 3), window_end=utc(2023, 1, 4),
        as_of=utc(2023, 1, 5), rows_out=47, rows_quarantined=0, rows_already_held=1,
    )  # fmt: skip
    assert result.quarantined_text() == "0 (+1 already held)"
    assert "47 rows published, 0 quarantined (+1 already held), no day held" in run_line(result)
    assert result.model_copy(update={"rows_already_held": 0, "rows_quarantined": 2}).quarantined_text("quarantined") == "2 quarantined"
