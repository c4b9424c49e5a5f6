"""The expectation suites encode grid-analyst knowledge; each rule fails where it should."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from config.inventory import load_inventory
from pipelines.validation.suite import gx_context, validate
from tests.conftest import REPO, utc

INVENTORY = load_inventory(REPO / "config")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def intensity_day(day: datetime, *, slots: int = 48, actual: float = 150.0, index: str = "moderate") -> pa.Table:
    ts = [day + timedelta(minutes=30 * i) for i in range(slots)]
    n = len(ts)
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "forecast": [actual] * n,
            "actual": [actual] * n,
            "index": [index] * n,
            "run_id": ["r"] * n,
            "fetched_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            "payload_hash": ["h"] * n,
        }
    )


def check(table: pa.Table, suite: str = "carbon_intensity"):  # type: ignore[no-untyped-def]
    return validate(INVENTORY.suite(suite), table, as_of=NOW)


def test_a_clean_day_passes_every_expectation() -> None:
    outcome = check(intensity_day(utc(2023, 3, 1)))
    assert outcome.success and not outcome.failing_rows and not outcome.held_days


@pytest.mark.parametrize("slots", [46, 50])
def test_dst_days_get_no_excuse_in_utc(slots: int) -> None:
    # 26 March 2023: the clocks went forward in the UK, yet a UTC day still has 48 slots.
    day = utc(2023, 3, 26)
    table = intensity_day(day, slots=min(slots, 48))
    if slots == 50:  # two slots stamped at local times fall outside the half-hour grid
        table = pa.concat_tables([table, intensity_day(day + timedelta(minutes=15), slots=2)])
    outcome = check(table)
    assert list(outcome.held_days) == [day]


def test_zero_intensity_is_not_physical() -> None:
    table = intensity_day(utc(2023, 3, 1))
    actual = table.column("actual").to_pylist()
    actual[3] = 0.0
    outcome = check(table.set_column(2, "actual", pa.array(actual)))
    assert outcome.failing_rows[3][0] == "actual_positive_and_physical"


def test_index_must_agree_with_the_value() -> None:
    outcome = check(intensity_day(utc(2023, 3, 1), actual=300.0, index="low"))
    assert all("index_agrees_with_value" in names for names in outcome.failing_rows.values())
    assert len(outcome.failing_rows) == 48


def test_slots_off_the_half_hour_are_refused() -> None:
    table = intensity_day(utc(2023, 3, 1) + timedelta(minutes=10), slots=1)
    outcome = check(table)
    assert "slot_on_half_hour" in outcome.failing_rows[0]


def test_generation_shares_must_sum_to_100() -> None:
    ts = [utc(2023, 3, 1)] * 9
    fuels = ["biomass", "coal", "imports", "gas", "nuclear", "other", "hydro", "solar", "wind"]
    table = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "fuel": fuels,
            "perc": [10.0] * 9,  # 90 %
            "run_id": ["r"] * 9,
            "fetched_at": pa.array([NOW] * 9, pa.timestamp("us", tz="UTC")),
            "payload_hash": ["h"] * 9,
        }
    )
    outcome = validate(INVENTORY.suite("generation_mix"), table, as_of=utc(2023, 3, 1, 1))
    assert all(names == ["shares_sum_to_100"] for names in outcome.failing_rows.values()) and len(outcome.failing_rows) == 9


def test_temperatures_stay_physical_and_smooth() -> None:
    ts = [utc(2023, 3, 1) + timedelta(hours=i) for i in range(4)]
    table = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "temperature_c": [5.0, 5.5, 41.9, 6.0],  # a Fahrenheit value spliced in
            "run_id": ["r"] * 4,
            "fetched_at": pa.array([NOW] * 4, pa.timestamp("us", tz="UTC")),
            "payload_hash": ["h"] * 4,
        }
    )
    outcome = validate(INVENTORY.suite("weather"), table, as_of=utc(2023, 3, 1, 5))
    assert set(outcome.failing_rows[2]) == {"temperature_physical", "temperature_changes_smoothly"}
    assert 3 not in outcome.failing_rows, "the next hour is judged against the last possible reading (5.5), not the spliced one"


def _complete_only(batch, gx_suite):  # type: ignore[no-untyped-def]
    from pipelines.validation.suite import ROW

    return batch.validate(gx_suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW]})


def _dst_day_with_strays() -> pa.Table:
    day = utc(2023, 3, 26)
    return pa.concat_tables([intensity_day(day), intensity_day(day + timedelta(minutes=15), slots=2)])


@pytest.mark.parametrize(
    "make",
    [
        lambda: intensity_day(utc(2023, 3, 1)),  # clean: the counts-only pass is the whole answer
        lambda: intensity_day(utc(2023, 3, 1), actual=300.0, index="low"),  # every row fails
        lambda: intensity_day(utc(2023, 3, 1), slots=46),  # a partition check fails
        _dst_day_with_strays,
    ],
)
def test_the_counts_only_first_pass_gives_the_same_outcome_as_complete_results(make, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Validation asks GX for counts first and for every unexpected row only when some row was unexpected: the
    outcome (successes, counts, observed values, samples, failing rows, held days) is the same as asking for all."""
    from pipelines.validation import suite as module

    fast = check(make())
    monkeypatch.setattr(module, "_clean_or_complete", _complete_only)
    assert fast == check(make())


def test_great_expectations_stays_quiet_below_errors(caplog: pytest.LogCaptureFixture) -> None:
    """GX sets some of its module loggers to INFO at import, and building a context then logs "Created temporary
    directory ... for ephemeral docs site" at INFO: the service log must not carry that. A logger in the state
    GX's import leaves it in, then a context built as `gx_context` builds it: nothing below ERROR comes out."""
    gx_context()  # GX imported
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.INFO)  # as its import does
    caplog.set_level(logging.INFO)
    gx_context.__wrapped__()  # type: ignore[attr-defined]  # a fresh context, as a new process builds it
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith("great_expectations") and r.levelno < logging.ERROR]
    assert not chatter, chatter


def test_outcomes_are_named_by_their_expectation_whatever_order_great_expectations_returns() -> None:
    """Great Expectations returns results grouped by column, not in the suite's order: each result is matched to its
    expectation by name, so a check on `x` declared after one on `y` keeps its own scope and rows."""
    from config.inventory import SuiteSpec

    suite = SuiteSpec.model_validate(
        {
            "name": "mixed",
            "table": "silver.carbon_intensity",
            "expectations": [
                {"name": "x_small", "expectation": "expect_column_values_to_be_between", "kwargs": {"column": "x", "max_value": 10},
                 "scope": "row", "why": "."},
                {"name": "y_present", "expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "y"},
                 "scope": "table", "why": "."},
                {"name": "x_mostly_small", "expectation": "expect_column_values_to_be_between",
                 "kwargs": {"column": "x", "max_value": 1000, "mostly": 0.5}, "scope": "table", "why": "."},
            ],
        }
    )  # fmt: skip
    data = pa.table({"ts": pa.array([NOW] * 3, pa.timestamp("us", tz="UTC")), "x": [1, 2, 300], "y": [1.0, None, 3.0]})
    outcome = validate(suite, data, as_of=NOW)
    assert [o.name for o in outcome.outcomes] == ["x_small", "y_present", "x_mostly_small"], "in the suite's order"
    assert {o.name: o.success for o in outcome.outcomes} == {"x_small": False, "y_present": False, "x_mostly_small": True}
    assert outcome.failing_rows == {2: ["x_small"]} and outcome.table_failures == ["y_present"]


def test_a_suite_naming_two_expectations_alike_is_refused() -> None:
    from config.inventory import SuiteSpec

    twice = {"name": "a", "expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "x"}, "scope": "row", "why": "."}
    with pytest.raises(ValueError, match="expectation name\\(s\\) a used twice"):
        SuiteSpec.model_validate({"name": "s", "table": "silver.weather", "expectations": [twice, twice]})


def _weather(values: list[float], start: datetime) -> pa.Table:
    ts = [start + timedelta(hours=i) for i in range(len(values))]
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "temperature_c": values,
            "run_id": ["r"] * len(values),
            "fetched_at": pa.array([NOW] * len(values), pa.timestamp("us", tz="UTC")),
            "payload_hash": ["h"] * len(values),
        }
    )


def test_a_plausible_but_wrong_plateau_is_held_and_the_good_hour_after_it_is_kept() -> None:
    """Three hours at 20 C in a 6 C March day: each is possible, so only their neighbours tell. The good hours
    around them outvote them: the three are held, and the return to 6.5 C (a jump back from a wrong reading) stays."""
    values = [6.0, 6.1, 6.3, 6.4, 20.0, 20.0, 20.0, 6.5, 6.4, 6.2, 6.0, 5.8]
    outcome = validate(INVENTORY.suite("weather"), _weather(values, utc(2023, 3, 2, 8)), as_of=utc(2023, 3, 3))
    assert {row: names for row, names in outcome.failing_rows.items()} == {
        4: ["temperature_changes_smoothly"],
        5: ["temperature_changes_smoothly"],
        6: ["temperature_changes_smoothly"],
    }


def test_a_lasting_jump_still_fails_at_its_first_hour() -> None:
    """A series spliced from another place: the level moves by 12 C and stays. No reading is off its neighbours for
    long, but the step into the new level is still a jump."""
    values = [6.0, 6.1, 6.3, 6.4, 6.5, 18.5, 18.6, 18.4, 18.3, 18.5, 18.6, 18.4]
    outcome = validate(INVENTORY.suite("weather"), _weather(values, utc(2023, 3, 2, 8)), as_of=utc(2023, 3, 3))
    assert set(outcome.failing_rows) == {5} and outcome.failing_rows[5] == ["temperature_changes_smoothly"]


def test_after_a_long_burst_the_first_good_hour_is_not_judged_by_a_step() -> None:
    """Ten hours in kelvin: each fails temperature_physical; the good hour after them (14 C, against 5.5 C eleven hours
    earlier) is weather, not a jump, so it stays."""
    ts = [utc(2023, 7, 1) + timedelta(hours=i) for i in range(13)]
    values = [5.0, 5.5, *[285.0 + i for i in range(10)], 14.0]
    table = pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "temperature_c": values,
            "run_id": ["r"] * 13,
            "fetched_at": pa.array([NOW] * 13, pa.timestamp("us", tz="UTC")),
            "payload_hash": ["h"] * 13,
        }
    )
    outcome = validate(INVENTORY.suite("weather"), table, as_of=utc(2023, 7, 2))
    assert 12 not in outcome.failing_rows and all("temperature_physical" in outcome.failing_rows[i] for i in range(2, 12))
    assert "temperature_changes_smoothly" in outcome.failing_rows[2], "the jump into the burst is still a jump"
