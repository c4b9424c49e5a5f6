"""A full year of the real 2023 NESO series through the suites: the real defects are found, nothing else."""

from __future__ import annotations

from collections import Counter

import pytest

from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import run_pipeline, split_windows
from tests.conftest import utc

pytestmark = pytest.mark.slow


def test_the_suites_find_the_real_defects_of_2023(ctx: PlatformContext) -> None:
    results = [run_pipeline(ctx, "carbon_intensity", w) for w in split_windows(utc(2023, 1, 1), utc(2024, 1, 1), 31)]
    assert all(r.status in {"succeeded", "quarantined"} for r in results)
    held_days = sorted(d for r in results for d in r.held_days)
    assert held_days == ["2023-10-20", "2023-10-21", "2023-10-22"], "the 91-slot outage of 20-22 October"

    held = load_table(ctx.catalog, "quarantine.carbon_intensity").scan().to_arrow().to_pylist()
    rows = [q for q in held if q["scope"] == "row"]
    by_check = Counter(q["expectation"] for q in rows)
    assert by_check == {
        "actual_reported_after_slot": 5,  # 26 Jan 13:30-15:30, actual never published
        "actual_positive_and_physical": 1,  # 31 Jan 01:00, actual 0
        "actual_positive_and_physical,forecast_tracks_actual": 4,  # 7 Jun 09:30-11:00, actual 0
        "forecast_tracks_actual": 3,  # 24 Jan 11:00 (243 vs 60), 29 Apr 18:00 (335 vs 209), 18 May 05:00 (53 vs 194)
    }
    divergent = sorted(q["ts"].isoformat() for q in rows if q["expectation"] == "forecast_tracks_actual")
    assert divergent == ["2023-01-24T11:00:00+00:00", "2023-04-29T18:00:00+00:00", "2023-05-18T05:00:00+00:00"]
    partition = [q for q in held if q["scope"] == "partition"]
    assert len(partition) == 44 + 9
    silver = load_table(ctx.catalog, "silver.carbon_intensity").scan().to_arrow()
    assert silver.num_rows + len(rows) + len(partition) == 17_520 - 91, "every slot that exists ends in silver or quarantine"
