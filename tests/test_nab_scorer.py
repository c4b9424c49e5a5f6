"""The NAB scorer reproduces NAB's published scores; the monitors' anomaly detector behaves on a known series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import nab_scoring
from pipelines.monitors.anomaly import AnomalyDetector, AnomalyDetectorError, AnomalyDetectorSpec

FIXTURES = Path(__file__).parent / "fixtures" / "nab"
NUMENTA = FIXTURES / "results" / "numenta"
FILES = sorted(p.name.removeprefix("numenta_") for p in (NUMENTA / "realKnownCause").glob("numenta_*.csv"))
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def published_rows(profile: str) -> dict[str, pd.Series]:
    table = pd.read_csv(NUMENTA / f"numenta_{profile}_scores.csv")
    return {row["File"]: row for _, row in table.iterrows()}


def numenta_sweep(file: str) -> tuple[nab_scoring.FileSweep, pd.DataFrame]:
    name = f"realKnownCause/{file}"
    frame = pd.read_csv(NUMENTA / "realKnownCause" / f"numenta_{file}")
    windows = nab_scoring.load_windows(FIXTURES / "labels" / "combined_windows.json")[name]
    return nab_scoring.sweep_file(name, frame["timestamp"], frame["anomaly_score"], windows), frame


def test_fixtures_hold_three_files() -> None:
    assert FILES == ["ec2_request_latency_system_failure.csv", "rogue_agent_key_hold.csv", "rogue_agent_key_updown.csv"]


def test_profiles_match_nab_config() -> None:
    assert nab_scoring.load_profiles(FIXTURES / "config" / "profiles.json") == nab_scoring.PROFILES


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("file", FILES)
def test_reproduces_published_numenta_scores(file: str, profile: str) -> None:
    sweep, frame = numenta_sweep(file)
    row = published_rows(profile)[f"realKnownCause/{file}"]
    result = nab_scoring.score_file(sweep, nab_scoring.PROFILES[profile], float(row["Threshold"]))
    assert result.score == pytest.approx(float(row["Score"]), abs=1e-9)
    assert (result.tp, result.tn, result.fp, result.fn, result.rows) == (row["TP"], row["TN"], row["FP"], row["FN"], row["Total_Count"])
    # NAB's per-row S(t) column: each window's TP or FN at its first row, each FP at its row
    np.testing.assert_allclose(result.contributions, frame[f"S(t)_{profile}"].to_numpy(), atol=1e-9)


@pytest.mark.parametrize("file", FILES)
def test_windows_cover_the_labelled_rows(file: str) -> None:
    sweep, frame = numenta_sweep(file)
    in_window = (sweep.tp_value > 0).astype(int)
    np.testing.assert_array_equal(in_window, frame["label"].to_numpy())


def test_probation_is_fifteen_percent_capped_at_750_rows() -> None:
    assert nab_scoring.probation_length(1882) == 282
    assert nab_scoring.probation_length(4032) == 604
    assert nab_scoring.probation_length(22695) == 750


def test_threshold_sweep_agrees_with_scoring_each_threshold() -> None:
    sweeps = [numenta_sweep(f)[0] for f in FILES]
    for profile in nab_scoring.PROFILES.values():
        curve = nab_scoring.threshold_curve(sweeps, profile)
        assert curve.thresholds[0] == nab_scoring.NO_DETECTION_THRESHOLD
        assert curve.scores[0] == pytest.approx(-profile.fn_weight * 7)  # 3 + 2 + 2 windows
        assert np.all(np.diff(curve.thresholds) < 0)
        picks = np.random.default_rng(0).choice(len(curve.thresholds), 25, replace=False)
        for i in [*picks, len(curve.thresholds) - 1]:
            direct = sum(nab_scoring.score_file(s, profile, float(curve.thresholds[i])).score for s in sweeps)
            assert curve.scores[i] == pytest.approx(direct, abs=1e-7)
        threshold, best = curve.best()
        assert best == pytest.approx(curve.scores.max())
        assert nab_scoring.score_corpus(sweeps, profile).threshold == threshold


def test_ties_go_to_the_highest_threshold() -> None:
    stamps = pd.date_range("2024-01-01", periods=40, freq="5min")
    scores = np.full(40, 0.1)
    scores[30], scores[32] = 0.9, 0.5  # 0.5 only adds a later detection in the same window: same score
    sweep = nab_scoring.sweep_file("f.csv", stamps, scores, [(stamps[30], stamps[34])])
    curve = nab_scoring.threshold_curve([sweep], nab_scoring.PROFILES["standard"])
    assert curve.scores[1] == curve.scores[2]
    assert curve.best()[0] == pytest.approx(0.9)


def test_perfect_and_null_detectors_normalise_to_100_and_0() -> None:
    stamps = pd.date_range("2024-01-01", periods=200, freq="5min")
    windows = [(stamps[60], stamps[69]), (stamps[120], stamps[139])]
    perfect = np.zeros(200)
    perfect[[60, 120]] = 1.0
    for profile in nab_scoring.PROFILES.values():
        best = nab_scoring.score_corpus([nab_scoring.sweep_file("f.csv", stamps, perfect, windows)], profile)
        null = nab_scoring.score_corpus([nab_scoring.sweep_file("f.csv", stamps, np.zeros(200), windows)], profile, threshold=0.5)
        assert best.normalised == pytest.approx(100.0)
        assert null.normalised == pytest.approx(0.0)


def test_window_limit_missing_from_the_data_is_named() -> None:
    stamps = pd.date_range("2024-01-01", periods=10, freq="5min")
    with pytest.raises(nab_scoring.NabScoringError, match=r"2024-02-01 00:00:00 is not a timestamp of f\.csv"):
        nab_scoring.sweep_file("f.csv", stamps, np.zeros(10), [(pd.Timestamp("2024-02-01"), stamps[9])])


def test_published_corpus_scores_match_the_data_readme() -> None:
    results = FIXTURES / "published_scores"  # every detector's published *_scores.csv for the 25 files
    files = pd.read_csv(results / "numenta" / "numenta_standard_scores.csv")["File"].tolist()
    published = nab_scoring.published_scores(results, files, PROFILES)
    assert round(published["numenta"]["standard"], 1) == 66.9
    assert round(published["ARTime"]["standard"], 1) == 73.0
    assert published["null"]["standard"] == pytest.approx(0.0)
    assert "random" not in published  # its results cover 15 of the 25 files


# -- the monitors' detector ---------------------------------------------------------------------------
SPIKE, SHIFT = 24 * 25 + 5, 24 * 32


def seasonal_series() -> tuple[pd.DatetimeIndex, np.ndarray]:
    """40 days of hourly values with a daily cycle and noise, a spike, and a level shift a week later."""
    stamps = pd.date_range("2024-01-01", periods=24 * 40, freq="h", tz="UTC")
    hours = np.arange(len(stamps))
    values = 100 + 20 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(7).normal(0, 2, len(stamps))
    values[SPIKE] += 40
    values[SHIFT:] += 25
    return stamps, values


def test_detector_scores_injected_anomalies_far_above_normal_points() -> None:
    stamps, values = seasonal_series()
    scores = AnomalyDetector().score_series(stamps, values)
    normal = np.r_[200:SPIKE, SPIKE + 1 : SHIFT]
    alert = AnomalyDetectorSpec().alert_score
    assert scores[SPIKE] >= 0.9
    assert scores[SHIFT] >= alert
    assert np.flatnonzero(scores >= alert).tolist() == [SPIKE, SHIFT]  # nothing else alerts
    assert np.median(scores[normal]) < 0.45
    assert np.quantile(scores[normal], 0.99) < 0.75
    assert scores.min() >= 0.0 and scores.max() < 1.0
    assert np.all(scores[:100] == 0.0)  # min_history usable points before anything is scored


def test_detector_is_deterministic_and_latest_matches_the_series() -> None:
    stamps, values = seasonal_series()
    detector = AnomalyDetector()
    first = detector.score_series(stamps, values)
    np.testing.assert_array_equal(first, AnomalyDetector().score_series(list(stamps.to_pydatetime()), values))
    np.testing.assert_array_equal(detector.score_latest(stamps, values, 30), first[-30:])


def test_excluded_point_does_not_pull_the_baseline() -> None:
    stamps, values = seasonal_series()
    exclude = np.zeros(len(values), dtype=bool)
    exclude[500] = True
    calm = AnomalyDetector().score_series(stamps, values, exclude=exclude)
    wild = values.copy()
    wild[500] += 1000.0
    flagged = AnomalyDetector().score_series(stamps, wild, exclude=exclude)
    others = np.arange(len(values)) != 500
    np.testing.assert_array_equal(calm[others], flagged[others])  # nothing else moved
    assert flagged[500] >= 0.9  # the excluded point itself is still scored
    unflagged = AnomalyDetector().score_series(stamps, wild)
    assert not np.array_equal(unflagged[others], calm[others])  # without the flag it is learnt from


def test_detector_inputs_are_checked() -> None:
    stamps, values = seasonal_series()
    with pytest.raises(AnomalyDetectorError, match="960 timestamps but 959 values"):
        AnomalyDetector().score_series(stamps, values[:-1])
    with pytest.raises(AnomalyDetectorError, match="sensitivity must be > 0, got 0"):
        AnomalyDetectorSpec(sensitivity=0)
    gappy = values.copy()
    gappy[300] = np.nan
    assert AnomalyDetector().score_series(stamps, gappy)[300] == 0.0
    assert len(AnomalyDetector().score_latest(stamps, values, 0)) == 0


def test_sensitivity_raises_scores() -> None:
    stamps, values = seasonal_series()
    calm = AnomalyDetector(AnomalyDetectorSpec(sensitivity=0.5)).score_series(stamps, values)
    keen = AnomalyDetector(AnomalyDetectorSpec(sensitivity=2.0)).score_series(stamps, values)
    assert np.median(keen[200:]) > np.median(calm[200:])


def test_an_incident_alerts_once_and_closes_after_quiet_points() -> None:
    spec = AnomalyDetectorSpec()
    assert (spec.alert_evidence, spec.incident_hold, spec.incident_points) == (3.4, 0.5, 25)
    evidence = np.zeros(200)
    evidence[10] = 5.0  # opens an incident
    evidence[11:50] = 2.0  # at least half the alert evidence: keeps it open, however long
    evidence[60] = 5.0  # 10 quiet points after the last holding one: the same incident
    evidence[120] = 5.0  # 59 quiet points later: a new incident
    detector = AnomalyDetector(spec)
    scores = detector.score_evidence(evidence)
    assert np.flatnonzero(scores >= spec.alert_score).tolist() == [10, 120]
    assert scores[60] == pytest.approx(spec.incident_damping * 5.0 / (5.0 + spec.evidence_half))
    known = np.zeros(200, dtype=bool)
    known[11:50] = True  # inside a known incident: these neither hold the incident open nor open one
    assert np.flatnonzero(detector.score_evidence(evidence, exclude=known) >= spec.alert_score).tolist() == [10, 60, 120]
    known[:] = False
    known[10] = True  # still scored, but opens nothing: 60 opens the incident
    assert np.flatnonzero(detector.score_evidence(evidence, exclude=known) >= spec.alert_score).tolist() == [10, 60, 120]


def test_scores_are_the_evidence_mapped_and_damped() -> None:
    stamps, values = seasonal_series()
    detector = AnomalyDetector()
    evidence = detector.evidence_series(stamps, values)
    np.testing.assert_array_equal(detector.score_evidence(evidence), detector.score_series(stamps, values))
    assert evidence.min() >= 0.0
    with pytest.raises(AnomalyDetectorError, match=r"incident_hold must be in \(0, 1\], got 0"):
        AnomalyDetectorSpec(incident_hold=0)


def test_a_new_shape_in_the_same_range_alerts_once_it_starts() -> None:
    """A daily cycle that turns into a square wave: every value within the range seen before, the shape new."""
    stamps = pd.date_range("2024-01-01", periods=24 * 12 * 20, freq="5min", tz="UTC")  # 20 days at 5 minutes
    phase = 2 * np.pi * np.arange(len(stamps)) / 288
    values = 10 * np.sin(phase) + np.random.default_rng(5).normal(0, 0.3, len(stamps))
    change = 288 * 15
    values[change:] = 10 * np.sign(np.sin(phase[change:])) * 0.9 + np.random.default_rng(6).normal(0, 0.3, len(stamps) - change)
    scores = AnomalyDetector().score_series(stamps, values)
    alerts = np.flatnonzero(scores >= AnomalyDetectorSpec().alert_score)
    assert any(change <= a < change + 288 for a in alerts)
    assert not any(1000 <= a < change for a in alerts)
