"""The name of every tool, once: code outside `tools/` refers to a tool through these, never a string.

The registry refuses a tool whose name is not here and a name here without its tool, so the two cannot drift.
"""

from __future__ import annotations

from typing import Final

ANNOTATE_INCIDENT: Final = "annotate_incident"
BACKFILL_RANGE: Final = "backfill_range"
COMPACT_TABLE: Final = "compact_table"
CURRENT_METRICS: Final = "current_metrics"
DELETE_PARTITION: Final = "delete_partition"
DIFF_SNAPSHOTS: Final = "diff_snapshots"
ESCALATE_INCIDENT: Final = "escalate_incident"
EXPIRE_SNAPSHOTS: Final = "expire_snapshots"
FIND_GREENEST_WINDOW: Final = "find_greenest_window"
GET_INCIDENT: Final = "get_incident"
GET_RUN: Final = "get_run"
LIST_ACTIONS: Final = "list_actions"
LIST_APPROVALS: Final = "list_approvals"
LIST_INCIDENTS: Final = "list_incidents"
LIST_RUNS: Final = "list_runs"
PAUSE_PIPELINE: Final = "pause_pipeline"
PROFILE_PARTITION: Final = "profile_partition"
QUARANTINE_PARTITION: Final = "quarantine_partition"
QUERY_LAKE: Final = "query_lake"
REFETCH_AND_DIFF: Final = "refetch_and_diff"
REFETCH_RANGE: Final = "refetch_range"
RELEASE_PARTITION: Final = "release_partition"
RERUN_WINDOW: Final = "rerun_window"
RESOLVE_INCIDENT: Final = "resolve_incident"
RESUME_PIPELINE: Final = "resume_pipeline"
ROLLBACK_TABLE: Final = "rollback_table"
SEARCH_MEMORY: Final = "search_memory"
TABLE_HISTORY: Final = "table_history"
TABLE_LINEAGE: Final = "table_lineage"
VALIDATE_PARTITION: Final = "validate_partition"

ALL: Final = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, str))
