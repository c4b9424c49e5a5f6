"""One table-metadata computation per transaction state, instead of one per look.

pyiceberg 0.12's `Transaction.table_metadata` is a property that applies every staged update to the table's
metadata and returns a deep copy of the result, each time it is read. Planning and committing one append
reads it dozens of times (133 per one-day carbon-intensity run, 735,000 deep copies in a 100,000-row
promotion), and a deep copy costs in proportion to the table's history, so the cost of a commit grew with
every snapshot the table had.

`install()` replaces the property with one that computes the metadata once per (base metadata, staged
updates) pair and hands back that result while neither has changed. It is the same value the original
returns: the inputs are the very objects it would read (compared by identity, and held, so an identity is
never reused), pyiceberg's metadata models are frozen, and every update builds new models rather than
changing old ones. The deep copy the original makes on each read only protected callers from each other
against changes that frozen models already refuse. `tests/test_wap.py` checks the cached value equals a
fresh computation after every kind of update the platform makes.

For the same reason the metadata is not deep-copied at the end of each computation: pyiceberg's
`update_table_metadata` returns `model_copy(deep=True)` of its result, a copy of every snapshot, ref and log
entry the table has, on every transaction state and again in the catalog's commit, so its cost grew with the
history too. `shared_update` is the same computation, from pyiceberg's own update handlers, returning the
(frozen, copy-on-write) result itself; `install()` has the catalog's commit use it as well.
`tests/test_metadata_cache.py` compares it with pyiceberg's on every look and on every commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyiceberg.catalog
from pyiceberg.table import Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import (
    TableUpdate,
    _apply_table_update,
    _TableMetadataUpdateContext,
    _update_table_metadata_log,
    update_table_metadata,
)
from pyiceberg.utils.datetime import datetime_to_millis

_ORIGINAL = Transaction.__dict__["table_metadata"]
_ORIGINAL_UPDATE = update_table_metadata


def shared_update(
    base_metadata: TableMetadata,
    updates: tuple[TableUpdate, ...],
    enforce_validation: bool = False,
    metadata_location: str | None = None,
) -> TableMetadata:
    """pyiceberg 0.12's `update_table_metadata`, without the deep copy of the result (see the module docstring)."""
    if enforce_validation:  # a table's first metadata: validated from scratch, as pyiceberg does
        return _ORIGINAL_UPDATE(base_metadata, updates, enforce_validation, metadata_location)
    context = _TableMetadataUpdateContext()
    new_metadata = base_metadata
    for update in updates:
        new_metadata = _apply_table_update(update, new_metadata, context)
    if context.has_changes():
        if metadata_location:
            new_metadata = _update_table_metadata_log(new_metadata, metadata_location, base_metadata.last_updated_ms)
        if base_metadata.last_updated_ms == new_metadata.last_updated_ms:
            new_metadata = new_metadata.model_copy(update={"last_updated_ms": datetime_to_millis(datetime.now().astimezone())})
    new_metadata.spec().check_compatible(new_metadata.schema())
    new_metadata.sort_order().check_compatible(new_metadata.schema())
    return new_metadata


def _table_metadata(self: Transaction) -> TableMetadata:
    base, updates = self._table.metadata, self._updates
    cached: tuple[Any, Any, TableMetadata] | None = getattr(self, "_dataops_metadata", None)
    if cached is not None and cached[0] is base and cached[1] is updates:
        return cached[2]
    result = shared_update(base, updates)
    self._dataops_metadata = (base, updates, result)  # type: ignore[attr-defined]
    return result


def install() -> None:
    """Make `Transaction.table_metadata` compute once per state, and every computation skip the deep copy (idempotent)."""
    Transaction.table_metadata = property(_table_metadata)  # type: ignore[method-assign,assignment]
    pyiceberg.catalog.update_table_metadata = shared_update  # type: ignore[attr-defined]


def uninstall() -> None:
    """pyiceberg's own property and commit computation again (tests compare the two)."""
    Transaction.table_metadata = _ORIGINAL  # type: ignore[method-assign]
    pyiceberg.catalog.update_table_metadata = _ORIGINAL_UPDATE  # type: ignore[attr-defined]
