"""A dropped file bigger than one group of days lands whole, in bounded memory, and exactly once across a crash.

The groups are made tiny here (a few records) so that a small file spans several staged flushes and groups:
a bad row and a conflicting duplicate far apart in the file, and a run killed between two groups.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from pipelines import staged_promotion
from pipelines.context import PlatformContext
from pipelines.lakehouse.catalog import load_table
from pipelines.promotion import RunResult, run_pipeline
from pipelines.sources import drop_staging
from pipelines.staged_promotion import StagedPromotion
from tests.conftest import window

HEADER = "country_code,country_or_region,year,emissions_intensity_gco2_per_kwh\n"
YEARS = range(2000, 2010)


@pytest.fixture(autouse=True)
def tiny_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drop_staging, "GROUP_ROWS", 40)  # about two of our years (and the bundled file's) per group
    monkeypatch.setattr(drop_staging, "FLUSH_ROWS", 7)


def big_file() -> str:
    """20 countries x 10 years, a conflicting duplicate split between the first and the last line, a row
    the suite refuses in the middle and a row that cannot be keyed."""
    lines = ["CLS,Clashland,2001,100\n"]
    for year in YEARS:
        for n in range(20):
            lines.append(f"C{chr(65 + n)}X,Country {n},{year},{10 + n + year % 7}\n")
    lines.insert(101, "HOT,Hotland,2005,5000\n")  # over the suite's 1300 gCO2/kWh
    lines.insert(150, "NOY,Noyearland,twenty,10\n")
    lines.append("CLS,Clashland,2001,180\n")
    return HEADER + "".join(lines)


def run(ctx: PlatformContext, progress: list[str] | None = None) -> RunResult:
    return run_pipeline(
        ctx, "country_intensity", window((2023, 1, 1), (2023, 1, 2)), progress=None if progress is None else progress.append
    )


def rows(ctx: PlatformContext, name: str) -> list[dict[str, Any]]:
    t = load_table(ctx.catalog, name)
    return [] if t.current_snapshot() is None else t.scan().to_arrow().to_pylist()


def silver_values(ctx: PlatformContext) -> list[tuple[Any, ...]]:
    """Silver as published, without the columns that name the run that landed a row."""
    skip = {"run_id", "fetched_at"}
    return sorted(tuple(v for k, v in sorted(r.items()) if k not in skip) for r in rows(ctx, "silver.country_intensity"))


def held(ctx: PlatformContext) -> list[tuple[str, str, str]]:
    """Quarantine rows, with the run that landed a held silver row taken out of its original values."""
    out = []
    for q in rows(ctx, "quarantine.country_intensity"):
        original = q["original"]
        if original.startswith("{"):
            values = json.loads(original)
            original = json.dumps({k: v for k, v in values.items() if k not in ("run_id", "fetched_at")}, sort_keys=True)
        out.append((q["record_key"], q["expectation"], original))
    return sorted(out)


def drop_into(ctx: PlatformContext) -> None:
    folder = ctx.settings.drop_folder / "country_intensity"
    folder.mkdir(parents=True)
    (folder / "big.csv").write_text(big_file())


@pytest.fixture
def reference(ctx: PlatformContext, tmp_path: Path) -> Iterator[PlatformContext]:
    """Another home where the same file landed in one uninterrupted run."""
    other = PlatformContext.open(load_settings(home=tmp_path / "reference"))
    drop_into(other)
    assert run(other).status == "succeeded"
    yield other
    other.ledger.engine.dispose()


def test_a_file_bigger_than_one_group_lands_whole(ctx: PlatformContext) -> None:
    drop_into(ctx)
    progress: list[str] = []
    result = run(ctx, progress)
    assert result.status == "succeeded", result.error
    (bronze_line,) = [p for p in progress if p.startswith("bronze:")]
    assert int(bronze_line.split(" in ")[1].split()[0]) > 3, f"several groups: {bronze_line}"
    silver = {(r["country_or_region"], r["year"]) for r in rows(ctx, "silver.country_intensity")}
    assert {(f"Country {n}", y) for n in range(20) for y in YEARS} <= silver, "every valid row of every group"
    assert not {name for name, _ in silver} & {"Clashland", "Hotland", "Noyearland"}
    quarantined = held(ctx)
    clash = [q for q in quarantined if q[0] == "Clashland"]
    assert [q[1] for q in clash] == ["conflicting_duplicate"] * 2, "both copies, from the first and the last line"
    assert [q[1] for q in quarantined if q[0].endswith("|Hotland")] == ["intensity_physical"]
    assert [q[1] for q in quarantined if q[0].startswith("big.csv#")] == ["payload_contract"]
    groups = {g.expectation: g.rows for g in result.quarantine}  # the bundled file has defects of its own
    assert groups["conflicting_duplicate"] == 2 and groups["intensity_physical"] >= 1 and groups["payload_contract"] >= 1
    assert result.rows_quarantined == sum(groups.values()) == len(quarantined), "groups written group by group add up"
    assert not list((ctx.settings.home / "staging").iterdir()), "the staged records are removed"
    again = run(ctx)
    assert (again.records_fetched, again.bronze_new, again.rows_quarantined) == (0, 0, 0), "the file is ingested once"


def _crash_on_second(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    real = getattr(StagedPromotion, step)
    calls = []

    def crashing(self: StagedPromotion, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(f"killed after the first group ({step})")
        return real(self, *args)

    monkeypatch.setattr(StagedPromotion, step, crashing)


@pytest.mark.parametrize("step", ["land", "plan_part"])
def test_a_run_killed_between_groups_reruns_to_the_silver_of_an_uninterrupted_run(
    ctx: PlatformContext, reference: PlatformContext, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    drop_into(ctx)
    with monkeypatch.context() as patch:
        _crash_on_second(patch, step)
        crashed = run(ctx)
    assert crashed.status == "failed" and "killed after the first group" in (crashed.error or "")
    assert rows(ctx, "bronze.country_intensity"), "the first group had landed in bronze"
    assert not rows(ctx, "silver.country_intensity"), "silver shows nothing of a file until all of it passed"
    rerun = run(ctx)
    assert rerun.status == "succeeded", rerun.error
    assert silver_values(ctx) == silver_values(reference)
    assert held(ctx) == held(reference), "nothing quarantined twice, nothing lost"
    bronze = [(r["record_key"], r["payload_hash"]) for r in rows(ctx, "bronze.country_intensity")]
    assert len(bronze) == len(set(bronze)) == len(rows(reference, "bronze.country_intensity")), "no record landed twice"


def test_a_day_bigger_than_a_part_is_worked_a_key_bucket_at_a_time(
    ctx: PlatformContext, reference: PlatformContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each year holds 20-odd records and a part at most 8: every day is split by key hash, in bronze and in
    silver, and lands as the same rows and quarantine as whole groups did, also across a crash mid-day."""
    monkeypatch.setattr(drop_staging, "GROUP_ROWS", 8)
    spilled: list[int] = []
    real_spill = staged_promotion.spill

    def counting(*args: Any, **kwargs: Any) -> Any:
        spilled.append(kwargs["buckets"])
        return real_spill(*args, **kwargs)

    monkeypatch.setattr(staged_promotion, "spill", counting)
    drop_into(ctx)
    with monkeypatch.context() as patch:
        _crash_on_second(patch, "_new_rows")  # the second part of the first day: that day's append never happens
        assert run(ctx).status == "failed"
    assert not rows(ctx, "bronze.country_intensity"), "a day's parts are appended in one commit, or not at all"
    rerun = run(ctx)
    assert rerun.status == "succeeded", rerun.error
    assert spilled and min(spilled) >= 3, f"days were split into buckets of at most ~8 records: {spilled}"
    assert silver_values(ctx) == silver_values(reference)
    assert held(ctx) == held(reference), "the same rows quarantined, for the same reasons"
    assert not list((ctx.settings.home / "staging").iterdir()), "staged records and spilled buckets are removed"
