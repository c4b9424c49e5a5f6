"""The layout of a quarantine row, one for every table's `quarantine.<source>`: what was held back, by which
check, why, and the original values (canonical JSON), so a person can judge it and a release can restore it.

The promotion writes these rows for failing records; remediation writes them for partitions a person or the
agent quarantines by hand, and reads them back to release them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from config.inventory import TableSpec
from pipelines.sources.base import canonical_json


def quarantine_row(
    *,
    ts: datetime | None,
    record_key: str,
    target: str,
    expectation: str,
    scope: str,
    reason: str,
    original: str,
    run_id: str,
    now: datetime,
) -> dict[str, Any]:
    """One row of `quarantine.<source>`."""
    return {
        "ts": ts,
        "record_key": record_key,
        "target_table": target,
        "expectation": expectation,
        "scope": scope,
        "reason": reason,
        "original": original,
        "run_id": run_id,
        "quarantined_at": now,
    }


def row_key(spec: TableSpec, row: dict[str, Any]) -> str:
    """The row's key columns joined with `|`, instants in ISO 8601: how quarantine and silver name a row."""
    return "|".join(v.isoformat() if isinstance(v, datetime) else str(v) for v in (row[k] for k in spec.key))


def original_json(row: dict[str, Any]) -> str:
    """The row as canonical JSON, instants in ISO 8601: the `original` a quarantine row keeps."""
    return canonical_json({k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()})
