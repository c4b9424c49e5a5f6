"""A suite run over a large batch a slice at a time, with one outcome as if run over the whole.

Great Expectations holds a pandas copy of its batch and its own per-row state: a few hundred thousand rows
cost hundreds of megabytes. A suite can be sliced when every expectation judges each row alone (a column-map
expectation over the row's own values, `ROW_LOCAL`) and the suite derives no column:

- row scope (every row must pass): slices give the same failing rows; counts add up, samples are the first found;
- table scope (a verdict on the whole batch, with or without `mostly`): each slice contributes its element,
  missing and unexpected counts, and the verdict is taken once, on the totals (`judge`), as Great Expectations
  takes it on the whole batch.

An aggregate (a median, a mean, uniqueness, a row count), a row-scope `mostly`, a partition check or a derived
column (window functions) needs the whole batch at once: such a suite is not `sliceable`.

    validate_in_slices = judge(tally_in_slices)      one batch
    judge(combine(tally, tally, ...))                 a batch worked in parts (pipelines/staged_promotion.py)
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from config.inventory import ExpectationSpec, SuiteSpec
from pipelines.validation.suite import ROW, ExpectationOutcome, SuiteOutcome, validate

SLICE_ROWS = 10_000  # Great Expectations holds a pandas copy and per-row results: ~4 KB a row while it validates
_SAMPLE = 5

# Column-map expectations whose unexpected rows are found one row at a time: the unexpected rows of a batch are
# the union of its slices', so counts add up. Not here: `expect_column_values_to_be_unique` (duplicates across
# slices), `..._to_be_increasing` (compares neighbours), and every column aggregate (mean, median, row count ...).
ROW_LOCAL = frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_null",
        "expect_column_values_to_match_regex",
        "expect_column_values_to_not_match_regex",
        "expect_column_values_to_match_regex_list",
        "expect_column_values_to_not_match_regex_list",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_not_be_in_set",
        "expect_column_value_lengths_to_be_between",
        "expect_column_value_lengths_to_equal",
    }
)


def sliceable(suite: SuiteSpec) -> bool:
    """Whether slices of a batch give what the whole batch gives: no derived column, and every expectation counted
    row by row (`counted`)."""
    return not suite.derived and all(counted(e) for e in suite.expectations)


def counted(spec: ExpectationSpec) -> bool:
    """Whether the expectation's verdict follows from counts of rows judged alone: a row-scope check every row must
    pass, or a table-scope check judged on the batch's totals. A row-scope `mostly` is judged per batch yet names
    rows, so slices would disagree on which rows fail: it needs the whole batch."""
    if spec.expectation not in ROW_LOCAL:
        return False
    if spec.scope == "table":
        return True
    return spec.scope == "row" and _mostly(spec) >= 1.0


def validate_in_slices(suite: SuiteSpec, data: pa.Table, *, as_of: datetime, slice_rows: int | None = None) -> SuiteOutcome:
    """`validate` over `data`, `slice_rows` at a time; `sliceable(suite)` must hold."""
    return judge(suite, tally_in_slices(suite, data, as_of=as_of, slice_rows=slice_rows))


def tally_in_slices(suite: SuiteSpec, data: pa.Table, *, as_of: datetime, slice_rows: int | None = None) -> SuiteOutcome:
    """The counts, failing rows and samples of `data`, `slice_rows` (default `SLICE_ROWS`, read at call time: tests
    shrink it) at a time. Table-scope verdicts are provisional: `judge` takes them on the totals once every part of
    the batch is in (`combine` adds tallies up)."""
    if not sliceable(suite):
        raise ValueError(
            f"suite {suite.name} has aggregate, partition, row-scope `mostly` or derived checks: it must see the whole batch "
            f"(sliceable expectations: {', '.join(sorted(ROW_LOCAL))})"
        )
    step = slice_rows or SLICE_ROWS
    merged = SuiteOutcome(suite=suite.name, row_count=0, outcomes=[])
    for start in range(0, data.num_rows, step):
        merged = combine(merged, validate(suite, data.slice(start, step), as_of=as_of))
    return merged


def judge(suite: SuiteSpec, tally: SuiteOutcome) -> SuiteOutcome:
    """The outcome of the whole batch from its tally: each table-scope expectation judged on the summed counts, as
    Great Expectations judges a column-map expectation (the share of considered rows that pass, against `mostly`;
    missing values are not considered, except by the null checks, which report no `missing_count`)."""
    if not tally.outcomes:
        return tally
    outcomes = []
    for spec, outcome in zip(suite.expectations, tally.outcomes, strict=True):
        if spec.scope == "table":
            outcome = outcome.model_copy(update={"success": _passes(outcome, _mostly(spec))})
        outcomes.append(outcome)
    failures = [o.name for o in outcomes if o.scope == "table" and not o.success]  # in suite order, as `validate` lists them
    return tally.model_copy(update={"outcomes": outcomes, "table_failures": failures})


def _mostly(spec: ExpectationSpec) -> float:
    return float(spec.kwargs.get("mostly", 1.0))


def _considered(outcome: ExpectationOutcome) -> int:
    return outcome.element_count - int(outcome.observed.get("missing_count") or 0)


def _passes(outcome: ExpectationOutcome, mostly: float) -> bool:
    considered = _considered(outcome)
    if outcome.element_count == 0 or considered == 0:
        return True  # vacuously, as Great Expectations has it
    return (float(considered) - float(outcome.unexpected_count)) / float(considered) >= mostly


def combine(first: SuiteOutcome, then: SuiteOutcome) -> SuiteOutcome:
    """One tally for `first`'s rows followed by `then`'s (row numbers of `then` shift by `first.row_count`).

    Table-scope verdicts of the result are provisional (each part's, and-ed): `judge` the final tally."""
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
    if "missing_count" in observed or "missing_count" in part.observed:
        observed["missing_count"] = int(observed.get("missing_count") or 0) + int(part.observed.get("missing_count") or 0)
    if "unexpected_percent" in observed or "unexpected_percent" in part.observed:
        # Of the values considered (missing ones are not), in Great Expectations' order of operations, so the
        # sliced figure equals the whole batch's to the last bit.
        considered = elements - int(observed.get("missing_count") or 0)
        observed["unexpected_percent"] = unexpected / considered * 100 if considered else None
    return total.model_copy(
        update={
            "success": total.success and part.success,
            "element_count": elements,
            "unexpected_count": unexpected,
            "observed": observed,
            "sample": (total.sample + _shifted(part, shift))[:_SAMPLE],
        }
    )
