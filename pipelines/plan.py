"""What a promotion means to publish, what it was computed from, and how a run knows its plan went stale."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from config.errors import PublishConflictError
from pipelines.context import PlatformContext
from pipelines.lakehouse import wap
from pipelines.lakehouse.catalog import load_table
from pipelines.validation.suite import ExpectationOutcome

PUBLISH_ATTEMPTS = 3  # plans of one promotion (validation conflicts re-plan)
BRONZE_PLAN_COLUMNS = ("ts", "record_key", "payload", "payload_hash", "run_id", "fetched_at")  # what conform reads


@dataclass
class Plan:
    """Rows a promotion means to publish, and what they were computed from."""

    rows: pa.Table
    inputs: dict[str, int | None] = field(default_factory=dict)  # input table -> main snapshot read
    checks: list[ExpectationOutcome] = field(default_factory=list)  # outcomes found while planning (days present)


class StalePlan(PublishConflictError):
    """What a promotion validated changed before it was published: plan again."""


def span(days: list[datetime]) -> str:
    """`2023-01-05`, or `2023-01-05..2023-01-09` for several days (sorted)."""
    return days[0].date().isoformat() if len(days) == 1 else f"{days[0].date()}..{days[-1].date()}"


def changed_input(ctx: PlatformContext, inputs: dict[str, int | None], days: list[datetime]) -> str | None:
    """The first input table whose files for `days` differ from those read at the snapshots `inputs` names, if any."""
    for name, read in inputs.items():
        if wap.days_changed(load_table(ctx.catalog, name), days, since=read):
            return name
    return None
