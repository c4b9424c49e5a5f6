"""A row-scope suite run over a large batch a slice at a time, with one outcome as if run over the whole.

Great Expectations holds a pandas copy of its batch and its own per-row state: a few hundred thousand rows
cost hundreds of megabytes. A suite whose every expectation is row scope (and derives no column) judges each
row alone, so slices give the same failing rows; counts add up and samples are the first found.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from config.inventory import SuiteSpec
from pipelines.validation.suite import ROW, ExpectationOutcome, SuiteOutcome, validate

SLICE_ROWS = 10_000  # Great Expectations holds a pandas copy and per-row results: ~4 KB a row while it validates
_SAMPLE = 5


def sliceable(suite: SuiteSpec) -> bool:
    """Whether the suite judges every row alone, so slices of a batch give what the whole batch gives."""
    return not suite.derived and all(e.scope == "row" for e in suite.expectations)


def validate_in_slices(suite: SuiteSpec, data: pa.Table, *, as_of: datetime, slice_rows: int = SLICE_ROWS) -> SuiteOutcome:
    """`validate` over `data`, `slice_rows` at a time; `sliceable(suite)` must hold."""
    if not sliceable(suite):
        raise ValueError(f"suite {suite.name} has partition, table or derived checks: it must see the whole batch")
    merged = SuiteOutcome(suite=suite.name, row_count=0, outcomes=[])
    for start in range(0, data.num_rows, slice_rows):
        merged = combine(merged, validate(suite, data.slice(start, slice_rows), as_of=as_of))
    return merged


def combine(first: SuiteOutcome, then: SuiteOutcome) -> SuiteOutcome:
    """One outcome for `first`'s rows followed by `then`'s (row numbers of `then` shift by `first.row_count`)."""
    if not then.outcomes:
        return first.model_copy(update={"row_count": first.row_count + then.row_count})
    if not first.outcomes:
        return then if not first.row_count else then.model_copy(update=_shifted_rows(then, first.row_count))
    shift = first.row_count
    return first.model_copy(
        update={
            "row_count": first.row_count + then.row_count,
            "outcomes": [_merge(a, b, shift) for a, b in zip(first.outcomes, then.outcomes, strict=True)],
            "failing_rows": {**first.failing_rows, **{shift + r: names for r, names in then.failing_rows.items()}},
            "held_days": {**first.held_days, **then.held_days},
            "table_failures": sorted(set(first.table_failures) | set(then.table_failures)),
        }
    )


def _shifted_rows(outcome: SuiteOutcome, shift: int) -> dict[str, object]:
    return {
        "row_count": outcome.row_count + shift,
        "outcomes": [o.model_copy(update={"sample": _shifted(o, shift)}) for o in outcome.outcomes],
        "failing_rows": {shift + r: names for r, names in outcome.failing_rows.items()},
    }


def _shifted(outcome: ExpectationOutcome, shift: int) -> list[dict[str, object]]:
    return [{**s, ROW: s[ROW] + shift} if isinstance(s.get(ROW), int) else s for s in outcome.sample]


def _merge(total: ExpectationOutcome, part: ExpectationOutcome, shift: int) -> ExpectationOutcome:
    elements = total.element_count + part.element_count
    unexpected = total.unexpected_count + part.unexpected_count
    observed = dict(total.observed)
    if "unexpected_percent" in observed or "unexpected_percent" in part.observed:
        observed["unexpected_percent"] = 100.0 * unexpected / elements if elements else 0.0
    if "missing_count" in observed or "missing_count" in part.observed:
        observed["missing_count"] = int(observed.get("missing_count") or 0) + int(part.observed.get("missing_count") or 0)
    return total.model_copy(
        update={
            "success": total.success and part.success,
            "element_count": elements,
            "unexpected_count": unexpected,
            "observed": observed,
            "sample": (total.sample + _shifted(part, shift))[:_SAMPLE],
        }
    )
