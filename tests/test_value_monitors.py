"""Value monitors: calibrated on their own history, incremental, quiet on real data, loud on real defects."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.errors import DefinitionError
from config.inventory import FalseAlarmBudget, MonitorSpec, load_inventory
from pipelines.context import PlatformContext
from pipelines.monitors.calibration import calibrate
from pipelines.monitors.models import MIN_REPEATED_POINTS
from pipelines.monitors.residuals import SeriesFrame, tail_probability
from pipelines.monitors.state import load_state
from pipelines.monitors.value import check_value, findings_of, score_points
from pipelines.promotion import run_pipeline
from pipelines.sources import neso
from tests.conftest import REPO, utc, window

REPLAY = REPO / "pipelines" / "sources" / "replay_data"


def _neso(start: str, end: str) -> pd.DataFrame:
    d = pd.read_csv(REPLAY / "neso_2023_national_intensity.csv.gz", parse_dates=["from"])
    d = d[(d["from"] >= start) & (d["from"] < end)].dropna()
    return d[(d.actual > 0) & ((d.actual - d.forecast).abs() <= 120)]  # what the suite lets into silver


def _temperature(start: str, end: str) -> pd.DataFrame:
    w = pd.read_csv(REPLAY / "era5_uk_t2m_hourly.csv.gz", parse_dates=["time"])
    return w[(w.time >= start) & (w.time < end)].reset_index(drop=True)


def _spec(model: str, **extra: Any) -> MonitorSpec:
    return MonitorSpec.model_validate(
        {"name": f"test_{model}", "kind": "value", "table": "silver.x", "expression": "x", "model": model, **extra}
    )


def _error_frame(d: pd.DataFrame) -> SeriesFrame:
    return SeriesFrame(ts=pd.DatetimeIndex(d["from"]), x=(d.actual - d.forecast).to_numpy(float), ref=d.forecast.to_numpy(float))


def test_incremental_scoring_equals_full_scoring() -> None:
    """Ticks of uneven sizes (3 slots, half a day, a day and a half...) score and flag exactly what one pass does."""
    d = _neso("2023-01-01", "2023-03-15")
    d.loc[d["from"] == "2023-03-08 10:00:00+00:00", "forecast"] += 100  # a glitch, so something is flagged
    frame = _error_frame(d)
    spec = _spec("forecast_error", reference="forecast")
    full_state: dict[str, Any] = {}
    full, full_flags = score_points(spec, frame, np.arange(len(frame.x)), full_state)
    state: dict[str, Any] = {}
    pieces, flags, start = [], [], 0
    for size in [3, 24, 72, 1, 500, 37, 2000, 5000]:
        fresh = np.arange(start, min(start + size, len(frame.x)))
        scored, flagged = score_points(spec, frame, fresh, state)
        pieces += scored
        flags += flagged
        start += size
    scored, flagged = score_points(spec, frame, np.arange(start, len(frame.x)), state)
    pieces += scored
    flags += flagged
    assert [(p.ts, round(p.score, 9), p.rule) for p in pieces] == [(p.ts, round(p.score, 9), p.rule) for p in full]
    assert [p.ts for p in flags] == [p.ts for p in full_flags] and flags, "the glitch is flagged either way"
    assert state["daily_max"] == full_state["daily_max"] and state["threshold"] == full_state["threshold"]
    bias = {k: v for k, v in full_state.items() if k.startswith("bias")}
    assert len(bias["bias_scores"]) >= 10, "the day-bias rule judged days here, past its warm-up"
    assert {k: v for k, v in state.items() if k.startswith("bias")} == bias


def _offset_day(start: str, end: str, day: str, offset: float) -> SeriesFrame:
    """The real series with ``offset`` added to one day's actuals, then what the suite lets into silver."""
    d = pd.read_csv(REPLAY / "neso_2023_national_intensity.csv.gz", parse_dates=["from"])
    inside = (d["from"] >= day) & (d["from"] < pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1))
    d.loc[inside, "actual"] += offset
    d = d[(d["from"] >= start) & (d["from"] < end)].dropna()
    return _error_frame(d[(d.actual > 0) & ((d.actual - d.forecast).abs() <= 120)])


def test_a_day_biased_by_an_offset_is_found_once_it_is_over_and_dated_from_its_start() -> None:
    """+50 gCO2/kWh on every actual of 12 July 2023: no slot leaves what single slots may do, the day's mean does."""
    spec = _spec("forecast_error", reference="forecast", budget={"incidents": 1, "per_days": 90})
    frame = _offset_day("2023-04-01", "2023-07-14", "2023-07-12", 50)
    _, flagged = score_points(spec, frame, np.arange(len(frame.x)), {})
    [bias] = [p for p in flagged if p.rule == "bias" and p.ts.date().isoformat() == "2023-07-12"]
    assert bias.since is not None and bias.since.isoformat() == "2023-07-12T00:00:00+00:00"
    assert bias.direction == "high" and 50 < bias.value < 70, bias.detail  # the offset plus the day's own miss
    [finding] = [f for f in findings_of(spec, frame, [bias], threshold=10.0)]
    assert finding.title.startswith("test_forecast_error: biased all day from 2023-07-12T00:00:00+00:00 to 2023-07-12T23:30")
    assert "mean error over the day +6" in finding.title and finding.evidence["rule"] == "bias"
    clean = _offset_day("2023-04-01", "2023-07-14", "2023-07-12", 0)
    _, quiet = score_points(spec, clean, np.arange(len(clean.x)), {})
    assert not [p for p in quiet if p.rule == "bias" and p.ts.date().isoformat() == "2023-07-12"], "no offset: 12 July is ordinary"


def test_a_day_with_too_few_slots_is_not_judged_for_bias() -> None:
    """A day mostly missing (an outage) or mostly held in quarantine has no mean to speak of."""
    spec = _spec("forecast_error", reference="forecast")
    frame = _offset_day("2023-04-01", "2023-07-14", "2023-07-12", 50)
    keep = ~((frame.ts >= pd.Timestamp("2023-07-12 06:00", tz="UTC")) & (frame.ts < pd.Timestamp("2023-07-13", tz="UTC")))
    short = SeriesFrame(ts=frame.ts[keep], x=frame.x[keep], ref=None if frame.ref is None else frame.ref[keep])
    _, flagged = score_points(spec, short, np.arange(len(short.x)), {})
    assert not [p for p in flagged if p.rule == "bias" and p.ts.date().isoformat() == "2023-07-12"]


def test_a_real_month_of_forecast_error_opens_nothing() -> None:
    """March 2023's forecast misses reach 60 gCO2/kWh, which is ordinary for NESO, and its largest blip (6 March
    08:00: 282 between 233 and 214, actual 229) is within what the forecast's own slot-to-slot changes do."""
    frame = _error_frame(_neso("2023-01-01", "2023-04-01"))
    fresh = np.flatnonzero(frame.ts >= pd.Timestamp("2023-03-01", tz="UTC"))
    _, flagged = score_points(_spec("forecast_error", reference="forecast", budget={"incidents": 1, "per_days": 30}), frame, fresh, {})
    assert flagged == []


def test_a_forecast_glitch_is_its_own_finding() -> None:
    d = _neso("2023-01-01", "2023-03-09")
    d.loc[d["from"] == "2023-03-08 10:00:00+00:00", "forecast"] += 100  # one slot jumps; its neighbours do not
    frame = _error_frame(d)
    fresh = np.flatnonzero(frame.ts >= pd.Timestamp("2023-03-08", tz="UTC"))[:-1]
    _, flagged = score_points(_spec("forecast_error", reference="forecast"), frame, fresh, {})
    assert [(p.ts.isoformat(), p.rule, p.direction) for p in flagged] == [("2023-03-08T10:00:00+00:00", "glitch", "low")]


def test_temperature_weather_is_not_an_incident_but_a_stuck_sensor_and_a_unit_change_are() -> None:
    w = _temperature("2023-01-01", "2023-04-01")
    spec = _spec("physical")

    def flagged(values: np.ndarray) -> list[Any]:
        frame = SeriesFrame(ts=pd.DatetimeIndex(w.time), x=values)
        return score_points(spec, frame, np.flatnonzero(frame.ts >= pd.Timestamp("2023-02-01", tz="UTC")), {})[1]

    clean = w.temp_2m.to_numpy(float).copy()
    assert flagged(clean) == [], "two months of real hourly temperature, cold snaps included"
    stuck = clean.copy()
    stuck[1000:1012] = stuck[1000]  # twelve identical hours
    rules = {p.rule for p in flagged(stuck)}
    assert rules == {"stuck"}
    kelvin = clean.copy()
    kelvin[1500:] += 273.15
    found = flagged(kelvin)
    assert found[0].ts == pd.Timestamp(w.time[1500]).to_pydatetime() and found[0].rule == "impossible_step"
    assert {p.rule for p in found[1:5]} == {"unit_change"}


def test_a_few_hours_of_one_temperature_are_a_stuck_sensor_in_a_series_that_never_repeats() -> None:
    """ERA5 temperature to four decimals repeats a value at most once in a row over 2020 to 2025; four equal hours
    cannot be weather. The carbon series (whole gCO2/kWh, runs of 3) still needs more (the test below)."""
    w = _temperature("2023-01-01", "2023-04-01")
    values = w.temp_2m.to_numpy(float).copy()
    values[1000:1004] = values[1000]  # four identical hours
    frame = SeriesFrame(ts=pd.DatetimeIndex(w.time), x=values)
    flagged = score_points(_spec("physical"), frame, np.flatnonzero(frame.ts >= pd.Timestamp("2023-02-01", tz="UTC")), {})[1]
    assert [(p.index, p.rule) for p in flagged] == [(1003, "stuck")]


def test_a_stuck_meter_in_a_seasonal_series_is_found() -> None:
    d = _neso("2023-01-01", "2023-03-01").reset_index(drop=True)
    x = d.actual.to_numpy(float).copy()
    x[2200:2212] = x[2200]  # six hours of one value
    frame = SeriesFrame(ts=pd.DatetimeIndex(d["from"]), x=x)
    _, flagged = score_points(_spec("seasonal"), frame, np.arange(2000, len(x)), {})
    assert flagged[0].rule == "stuck" and 2200 + 6 <= flagged[0].index < 2212
    assert all(2200 <= p.index <= 2212 for p in flagged), "only the stuck hours and the jump back when the meter recovers"


def test_a_day_that_repeats_the_day_before_is_found_and_dated_from_its_start() -> None:
    """A stale copy of yesterday published as today: no real series repeats its day slot for slot (over 2023 the
    carbon series' longest run is 3, ERA5 temperature's since 2020 is 1), so the run rule finds it, and the incident
    starts where the copy starts, not where the rule had seen enough."""
    d = _neso("2023-01-01", "2023-03-03").reset_index(drop=True)
    x = d.actual.to_numpy(float).copy()
    day = pd.DatetimeIndex(d["from"])
    today = np.flatnonzero((day >= pd.Timestamp("2023-03-02", tz="UTC")) & (day < pd.Timestamp("2023-03-03", tz="UTC")))
    spec = _spec("seasonal")
    frame = SeriesFrame(ts=day, x=x)
    assert score_points(spec, frame, today, {})[1] == [], "the real 2 March is quiet"
    x[today] = x[today - 48]  # the day before, slot for slot
    _, flagged = score_points(spec, SeriesFrame(ts=day, x=x), today, {})
    assert flagged and {p.rule for p in flagged} == {"repeated_day"}
    assert flagged[0].since == day[today[0]].to_pydatetime() and flagged[0].index == today[0] + MIN_REPEATED_POINTS
    (finding,) = findings_of(spec, SeriesFrame(ts=day, x=x), flagged, threshold=4.0)
    assert finding.occurred_at == day[today[0]].to_pydatetime() and "a stale copy of the day before?" in finding.title
    w = _temperature("2023-01-01", "2023-03-03")
    temps = w.temp_2m.to_numpy(float).copy()
    hours = pd.DatetimeIndex(w.time)
    copied = np.flatnonzero(hours >= pd.Timestamp("2023-03-02", tz="UTC"))
    temps[copied] = temps[copied - 24]
    _, flagged = score_points(_spec("physical"), SeriesFrame(ts=hours, x=temps), copied, {})
    assert {p.rule for p in flagged} == {"repeated_day"}


def test_a_forecast_copied_from_the_actual_is_a_stuck_error() -> None:
    d = _neso("2023-01-01", "2023-03-03").reset_index(drop=True)
    today = np.flatnonzero(pd.DatetimeIndex(d["from"]) >= pd.Timestamp("2023-03-02", tz="UTC"))
    spec = _spec("forecast_error", reference="forecast")
    assert score_points(spec, _error_frame(d), today, {})[1] == []
    d.loc[today, "forecast"] = d.loc[today, "actual"]
    frame = _error_frame(d)
    _, flagged = score_points(spec, frame, today, {})
    assert flagged and {p.rule for p in flagged} == {"stuck"} and flagged[0].since == frame.ts[today[0]].to_pydatetime()
    (finding,) = findings_of(spec, frame, flagged, threshold=4.0)
    assert "stuck at 0 from 2023-03-02T00:00:00+00:00" in finding.title and "a copied column?" in finding.title


def test_a_forecast_frozen_at_one_value_is_stuck_though_its_error_moves() -> None:
    d = _neso("2023-01-01", "2023-03-03").reset_index(drop=True)
    today = np.flatnonzero(pd.DatetimeIndex(d["from"]) >= pd.Timestamp("2023-03-02", tz="UTC"))
    spec = _spec("forecast_error", reference="forecast")
    d.loc[today, "forecast"] = d.loc[today[0], "forecast"]
    frame = _error_frame(d)
    _, flagged = score_points(spec, frame, today, {})
    assert flagged and {p.rule for p in flagged} == {"stuck"} and flagged[0].since == frame.ts[today[0]].to_pydatetime()
    frozen = float(d.loc[today[0], "forecast"])
    (finding,) = findings_of(spec, frame, flagged, threshold=4.0)
    assert f"stuck at {frozen:g} from 2023-03-02T00:00:00+00:00" in finding.title and "identical forecasts in a row" in finding.title
    assert "a copied column?" not in finding.title


def test_warming_up_with_a_short_history_says_so() -> None:
    d = _neso("2023-01-01", "2023-01-10")
    state: dict[str, Any] = {}
    scored, flagged = score_points(_spec("forecast_error", reference="forecast"), _error_frame(d), np.arange(len(d)), state)
    assert scored == [] and flagged == []
    assert state["status"] == "warming_up" and "of 14 days of history" in state["detail"]


def test_the_threshold_follows_the_budget_and_the_history() -> None:
    rng = np.random.default_rng(1)
    maxima = list(3.0 + rng.gumbel(0.0, 0.4, 120))
    loose = calibrate(FalseAlarmBudget(incidents=1, per_days=7), 48, maxima)
    strict = calibrate(FalseAlarmBudget(incidents=1, per_days=90), 48, maxima)
    assert loose.score < strict.score
    assert strict.floor == pytest.approx(np.log10(48 * 90))
    few = calibrate(FalseAlarmBudget(), 48, maxima[:3])
    assert few.gumbel is None and few.score == few.floor


def test_tail_probability_is_heavier_for_heavy_tailed_history() -> None:
    rng = np.random.default_rng(0)
    normal, heavy = rng.standard_normal(2000), rng.standard_t(2, 2000)
    z = np.array([6.0])
    assert tail_probability(heavy, z)[0] > 10 * tail_probability(normal, z)[0]
    assert tail_probability(normal, np.array([0.0]))[0] == pytest.approx(1.0, abs=1e-3)


def test_value_monitor_on_the_real_pipeline_flags_a_glitch_once(ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch) -> None:
    original = neso._REPLAY["carbon_intensity"]

    def glitched(*args: Any) -> dict[str, Any]:
        body = original(*args)
        for record in body["data"]:
            if record["from"] == "2023-03-08T10:00Z":
                record["intensity"] = {**record["intensity"], "forecast": record["intensity"]["forecast"] + 100}
        return body

    monkeypatch.setitem(neso._REPLAY, "carbon_intensity", glitched)
    run_pipeline(ctx, "carbon_intensity", window((2023, 2, 1), (2023, 3, 9)))
    spec = ctx.inventory.monitors["forecast_error"]
    (finding,) = check_value(ctx, spec, utc(2023, 3, 9))
    assert finding.kind == "forecast_glitch" and finding.severity == "info" and finding.cause_key == "forecast_error:glitch"
    assert finding.title.startswith("forecast_error: forecast glitch, 1 slot(s) from 2023-03-08T10:00:00+00:00")
    assert finding.evidence["direction"] == "low" and finding.evidence["score"] >= finding.evidence["threshold"]
    assert check_value(ctx, spec, utc(2023, 3, 9) + timedelta(hours=1)) == [], "points already judged are not judged again"
    _, state = load_state(ctx, "forecast_error")
    assert state["status"] == "active" and "threshold" in state["detail"]


def test_a_malformed_monitors_file_is_refused_with_the_key_named(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    for name in ("sources", "tables", "pipelines", "suites"):
        (config / f"{name}.yaml").write_text((REPO / "config" / f"{name}.yaml").read_text())
    (config / "monitors.yaml").write_text(
        "monitors:\n  bad:\n    kind: value\n    table: silver.carbon_intensity\n    expression: actual\n    budjet: 3\n"
    )
    with pytest.raises(DefinitionError, match="budjet"):
        load_inventory(config)
    (config / "monitors.yaml").write_text(
        "monitors:\n  bad:\n    kind: value\n    table: silver.carbon_intensity\n    expression: actual\n    model: magic\n"
    )
    with pytest.raises(DefinitionError, match="model"):
        load_inventory(config)


def test_dataops_monitors_shows_warming_up_then_the_calibrated_threshold(ctx: PlatformContext) -> None:
    from pipelines.incident_cli import monitors_report

    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 1), (2023, 1, 8)))
    spec = ctx.inventory.monitors["forecast_error"]
    assert check_value(ctx, spec, utc(2023, 1, 8)) == []
    rows = {m["name"]: m for m in monitors_report(ctx, utc(2023, 1, 8))["monitors"]}
    assert rows["forecast_error"]["status"] == "warming_up"
    assert rows["forecast_error"]["detail"].startswith("warming up: 6 of 14 days of history")
    assert rows["temperature"]["status"] == "not evaluated yet"
    run_pipeline(ctx, "carbon_intensity", window((2023, 1, 8), (2023, 1, 20)))
    check_value(ctx, spec, utc(2023, 1, 20))
    row = {m["name"]: m for m in monitors_report(ctx, utc(2023, 1, 20))["monitors"]}["forecast_error"]
    assert row["status"] == "active" and row["threshold"] >= np.log10(48 * 90) - 1e-3


def test_the_nab_detector_model_scores_incrementally_and_flags_a_unit_change() -> None:
    """`model: detector` (the NAB-benchmarked detector) also gives tick-by-tick scores equal to one pass, and sees a
    meter that starts reporting ten times too much."""
    d = _neso("2023-01-01", "2023-02-20").reset_index(drop=True)
    x = d.actual.to_numpy(float).copy()
    x[2300:] = x[2300:] * 10  # from 18 February 01:30 the meter reports in the wrong unit
    frame = SeriesFrame(ts=pd.DatetimeIndex(d["from"]), x=x)
    spec = _spec("detector")
    fresh = np.arange(1900, len(x))
    full_state: dict[str, Any] = {}
    full, full_flags = score_points(spec, frame, fresh, full_state)
    state: dict[str, Any] = {}
    pieces = [p for chunk in np.array_split(fresh, 7) for p in score_points(spec, frame, chunk, state)[0]]
    assert [(p.ts, round(p.score, 9)) for p in pieces] == [(p.ts, round(p.score, 9)) for p in full]
    assert full_flags and 2300 <= full_flags[0].index < 2310 and full_flags[0].direction == "high"


@pytest.mark.slow
def test_a_meter_reading_high_for_a_day_is_a_bias_finding_through_the_real_pipeline(
    ctx: PlatformContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The published actual 50 gCO2/kWh high for all of 18 July, its index band following it as NESO's does: every
    slot passes the suite and the point rules, and once the day is over the monitor reports the day's bias (the rule
    speaks once it has judged 28 days of its own, after the monitor's 14 days of warm-up)."""
    original = neso._REPLAY["carbon_intensity"]
    bands = ((40, "very low"), (120, "low"), (200, "moderate"), (290, "high"))

    def offset(*args: Any) -> dict[str, Any]:
        body = original(*args)
        for record in body["data"]:
            if record["from"].startswith("2023-07-18") and record["intensity"].get("actual") is not None:
                actual = record["intensity"]["actual"] + 50
                index = next((name for limit, name in bands if actual < limit), "very high")
                record["intensity"] = {**record["intensity"], "actual": actual, "index": index}
        return body

    monkeypatch.setitem(neso._REPLAY, "carbon_intensity", offset)
    run_pipeline(ctx, "carbon_intensity", window((2023, 6, 1), (2023, 7, 20)))
    spec = ctx.inventory.monitors["forecast_error"]
    found = [f for f in check_value(ctx, spec, utc(2023, 7, 20)) if f.evidence["rule"] == "bias"]
    [bias] = [f for f in found if f.evidence["start"] == "2023-07-18T00:00:00+00:00"]
    assert bias.kind == "value_anomaly" and bias.cause_key == "forecast_error:bias" and bias.evidence["direction"] == "high"
    assert bias.evidence["score"] >= bias.evidence["threshold"], "the evidence reads as a finding, as the other rules' do"
    assert bias.title.startswith("forecast_error: biased all day from 2023-07-18T00:00:00+00:00 to 2023-07-18T23:30:00+00:00")
    _, state = load_state(ctx, "forecast_error")
    assert state["bias_flagged"] == ["2023-07-18"], "the weeks before it are clean"
