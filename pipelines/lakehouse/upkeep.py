"""Table upkeep as a scheduled job: compact small files, then expire old snapshots and delete orphan files.

`dataops serve` runs it every DATAOPS_MAINTENANCE_INTERVAL_HOURS; `dataops maintain` runs it now. Each step
holds the table's write lock and commits through a ref check, so it is safe beside running pipelines;
a table that fails is reported and the others still get their upkeep.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from config.errors import DataOpsError
from pipelines.context import PlatformContext
from pipelines.lakehouse.compaction import CompactionResult, compact_table
from pipelines.lakehouse.maintenance import MaintenanceResult, expire_and_clean

log = logging.getLogger(__name__)


class UpkeepResult(BaseModel):
    table: str
    compaction: CompactionResult | None = None
    expiry: MaintenanceResult | None = None
    error: str | None = None


def upkeep(ctx: PlatformContext, *, tables: list[str] | None = None, dry_run: bool = False) -> list[UpkeepResult]:
    """Compact (skipped on a dry run), then expire and clean, every table (or `tables`)."""
    s = ctx.settings
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}Z-upkeep-{secrets.token_hex(3)}"
    results = []
    for name in tables or sorted(ctx.inventory.tables):
        result = UpkeepResult(table=name)
        try:
            if not dry_run:
                result.compaction = compact_table(ctx, name, run_id=f"{run_id}-{name}", min_files=s.compaction_min_files)
            result.expiry = expire_and_clean(
                ctx, name, older_than=timedelta(hours=s.snapshot_retention_hours), retain_last=s.snapshot_retain_last, dry_run=dry_run
            )
        except DataOpsError as exc:
            log.error("upkeep of %s failed: %s", name, exc)
            result.error = f"{type(exc).__name__}: {exc}"
        results.append(result)
    return results
