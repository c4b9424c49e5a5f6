"""A source whose timestamps moved (local summer time labelled UTC) is diagnosed as a clock shift, not an outage.

Before, three July days the carbon API served an hour late left two incidents with two wrong causes: the missing
first hour was a "source outage" and the collision after the span "duplicates with changed values", which the
agent closed as contained. Silver kept the three days an hour off and nobody was told.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.clock_shift import find_shift
from agent.diagnose import diagnose
from pipelines import faults
from pipelines.context import PlatformContext
from pipelines.monitors.findings import findings_from_run
from pipelines.promotion import run_pipeline
from pipelines.sources.base import Window
from tests.conftest import utc

HALF_HOUR = timedelta(minutes=30)
SPAN = (utc(2023, 7, 10), utc(2023, 7, 13))


def slots(start: datetime, count: int) -> list[datetime]:
    return [start + i * HALF_HOUR for i in range(count)]


def test_a_gap_then_a_collision_of_one_length_is_a_late_clock() -> None:
    gap, collision = slots(utc(2023, 7, 10), 2), slots(utc(2023, 7, 13), 2)
    shift = find_shift(gap + collision, collision, HALF_HOUR)
    assert shift is not None
    assert (shift.start, shift.end, shift.shift, shift.direction) == (utc(2023, 7, 10), utc(2023, 7, 13), timedelta(hours=1), "late")
    assert shift.likely_reason() == "Europe/London summer time, UTC+1, labelled as UTC"
    assert shift.describe().startswith(
        "the source's timestamps from 2023-07-10 00:00 to 2023-07-13 00:00 UTC are 1 hour late: the first hour"
    )


def test_a_collision_then_a_gap_is_an_early_clock_and_winter_names_no_summer_time() -> None:
    collision, gap = slots(utc(2023, 1, 9, 23), 2), slots(utc(2023, 1, 11, 23), 2)
    shift = find_shift(collision + gap, collision, HALF_HOUR)
    assert shift is not None
    assert (shift.start, shift.end, shift.direction) == (utc(2023, 1, 10), utc(2023, 1, 12), "early")
    assert shift.likely_reason() is None


def test_unlike_lengths_a_slot_missing_between_or_no_collision_is_no_clock_shift() -> None:
    gap, collision = slots(utc(2023, 7, 10), 2), slots(utc(2023, 7, 13), 2)
    assert find_shift(gap[:1] + collision, collision, HALF_HOUR) is None, "a gap of one slot and a collision of two"
    between = [utc(2023, 7, 11, 12)]
    assert find_shift(gap + between + collision, collision, HALF_HOUR) is None, "another slot missing inside the span"
    assert find_shift(gap + collision, [], HALF_HOUR) is None, "only gaps: an outage"


def test_the_autumn_clock_change_labelled_utc_moves_one_hour_onto_the_next() -> None:
    # 29 October 2023: 00:00-01:00 UTC is 01:00-02:00 BST, and 01:00 UTC is 01:00 GMT again.
    gap, collision = slots(utc(2023, 10, 29), 2), slots(utc(2023, 10, 29, 1), 2)
    shift = find_shift(gap + collision, collision, HALF_HOUR)
    assert shift is not None
    assert (shift.start, shift.end, shift.direction) == (utc(2023, 10, 29), utc(2023, 10, 29, 1), "late")
    assert shift.likely_reason() == "Europe/London summer time, UTC+1, labelled as UTC"


def test_a_real_day_served_an_hour_late_is_diagnosed_as_one_moved_clock(ctx: PlatformContext) -> None:
    ctx.faults.inject(faults.SourceFault(kind="local_time", source="carbon_intensity", start=SPAN[0], end=SPAN[1], value="mislabelled"))
    result = run_pipeline(ctx, "carbon_intensity", Window(start=utc(2023, 7, 8), end=utc(2023, 7, 15)), as_of=utc(2023, 7, 16))
    now = datetime.now(UTC)
    incidents = {}
    for finding in findings_from_run(result, silver="silver.carbon_intensity"):
        incident, _ = ctx.incidents.report(finding, now=now)
        incidents[incident.kind] = incident
    assert set(incidents) == {"completeness", "validation"}
    for kind, incident in incidents.items():
        found = diagnose(ctx, incident, utc(2023, 7, 16))
        assert found.cause == "clock_shift", (kind, found)
        assert "from 2023-07-10 00:00 to 2023-07-13 00:00 UTC are 1 hour late" in found.summary
        assert "Europe/London summer time" in found.summary


def test_an_outage_beside_changed_duplicates_of_another_length_stays_two_causes(ctx: PlatformContext) -> None:
    ctx.faults.inject(faults.SourceFault(kind="outage", source="carbon_intensity", start=utc(2023, 7, 10), end=utc(2023, 7, 10, 1)))
    ctx.faults.inject(
        faults.SourceFault(
            kind="duplicates",
            source="carbon_intensity",
            field="intensity.actual",
            value=40,
            start=utc(2023, 7, 12),
            end=utc(2023, 7, 12, 3),
        )
    )
    result = run_pipeline(ctx, "carbon_intensity", Window(start=utc(2023, 7, 8), end=utc(2023, 7, 15)), as_of=utc(2023, 7, 16))
    causes = set()
    for finding in findings_from_run(result, silver="silver.carbon_intensity"):
        incident, _ = ctx.incidents.report(finding, now=datetime.now(UTC))
        causes.add(diagnose(ctx, incident, utc(2023, 7, 16)).cause)
    assert "clock_shift" not in causes
    assert "duplicates_changed" in causes
