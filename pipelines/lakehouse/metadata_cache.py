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
"""

from __future__ import annotations

from typing import Any

from pyiceberg.table import Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import update_table_metadata

_ORIGINAL = Transaction.__dict__["table_metadata"]


def _table_metadata(self: Transaction) -> TableMetadata:
    base, updates = self._table.metadata, self._updates
    cached: tuple[Any, Any, TableMetadata] | None = getattr(self, "_dataops_metadata", None)
    if cached is not None and cached[0] is base and cached[1] is updates:
        return cached[2]
    result = update_table_metadata(base, updates)
    self._dataops_metadata = (base, updates, result)  # type: ignore[attr-defined]
    return result


def install() -> None:
    """Make `Transaction.table_metadata` compute once per state (idempotent)."""
    Transaction.table_metadata = property(_table_metadata)  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    """pyiceberg's own property again (tests compare the two)."""
    Transaction.table_metadata = _ORIGINAL  # type: ignore[method-assign]
