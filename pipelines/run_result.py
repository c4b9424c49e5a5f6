"""What a pipeline run did (`RunResult`), as the CLI prints it, the ledger keeps it, metrics count it and the
agent reads it; and the run ids that name runs. Its own module, so every reader of a result imports this, not
the promotion that produces it.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from pipelines.extent import DayExtent


class TableOutcome(BaseModel):
    table: str
    rows_written: int = 0
    rows_quarantined: int = 0
    snapshot_id: int | None = None
    quality_score: float | None = None
    held_days: list[str] = Field(default_factory=list)
    rows_kept: int = Field(default=0, description="Published rows kept because this run's revision of them was refused")


class QuarantineGroup(BaseModel):
    """Rows this run held back for one reason."""

    target_table: str
    expectation: str
    scope: str
    rows: int
    first_ts: datetime | None
    last_ts: datetime | None
    sample: list[str] = Field(default_factory=list, description="record keys and reasons of a few held rows")


class DayRows(BaseModel):
    """One UTC day's part of a run's `rows_out`, `rows_quarantined` and `rows_already_held`."""

    rows_out: int = 0
    rows_quarantined: int = 0
    rows_already_held: int = 0


class RunResult(BaseModel):
    """What a run did, as the CLI prints it and the ledger keeps it."""

    run_id: str
    pipeline: str
    status: str
    window_start: datetime
    window_end: datetime
    as_of: datetime
    records_fetched: int = 0
    bronze_new: int = 0
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = Field(default=0, description="rows this run newly wrote to quarantine")
    rows_already_held: int = Field(
        default=0,
        description="rows this run held back that an earlier run had already quarantined for the same record, check and "
        "values (a re-run of a window): not written twice, but still not published",
    )
    held_days: list[str] = Field(default_factory=list)
    rows_by_day: dict[str, DayRows] | None = Field(
        default=None,
        description="rows_out and rows_quarantined by the UTC day (YYYY-MM-DD) of each row, a quarantine row without a time "
        "under the window's first day; None when the run cannot tell its days apart (it held back the whole window, or "
        "promoted staged files) or did not finish",
    )
    extents: list[DayExtent] = Field(
        default_factory=list, description="silver days held back or published partial, with the slots they have and lack"
    )
    tables: list[TableOutcome] = Field(default_factory=list)
    quarantine: list[QuarantineGroup] = Field(default_factory=list, description="what this run newly quarantined, by reason")
    error: str | None = None
    error_kind: str | None = Field(default=None, description="transient (worth a retry) or permanent")
    retry_after_s: float | None = Field(default=None, description="The wait a transient failure's source asked for (Retry-After)")
    duration_s: float = 0.0
    commit_retries: int = Field(default=0, description="commits retried on fresh metadata because another writer committed first")
    replans: int = Field(default=0, description="promotions planned again because what they validated changed before publishing")

    def quarantined_text(self, unit: str = "") -> str:
        """The rows this run quarantined, with those an earlier run already holds: "3", "0 (+1 already held)", or
        with a unit "0 quarantined (+1 already held)"."""
        held = f" (+{self.rows_already_held} already held)" if self.rows_already_held else ""
        return f"{self.rows_quarantined}{' ' + unit if unit else ''}{held}"


def new_run_id(pipeline: str, now: datetime | None = None) -> str:
    """Run ids sort by start time: 20230101T000000123456Z-carbon_intensity-1a2b3c."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}Z-{pipeline}-{secrets.token_hex(3)}"
