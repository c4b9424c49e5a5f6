"""Leave-one-category-out cross-validation of NAB configurations, and `benchmarks/nab.py`'s scoring modes."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import nab, nab_scoring
from pipelines.monitors.anomaly import AnomalyDetector, AnomalyDetectorSpec

CATEGORIES = ("artificialNoAnomaly", "artificialWithAnomaly", "realKnownCause", "realTraffic")
STANDARD = nab_scoring.PROFILES["standard"]
ROWS = 400


def stamps() -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=ROWS, freq="5min")


def corpus_windows() -> dict[str, nab_scoring.Windows]:
    """Two files per category; the artificialNoAnomaly files have no windows, as in NAB."""
    t = stamps()
    out: dict[str, nab_scoring.Windows] = {}
    for c, category in enumerate(CATEGORIES):
        for f in range(2):
            start = 150 + 40 * f + 25 * c
            out[f"{category}/f{f}.csv"] = [] if category == "artificialNoAnomaly" else [(t[start], t[start + 30])]
    return out


def candidate_scores(name: str, candidate: int, windows: nab_scoring.Windows) -> np.ndarray:
    """Scores of one of three made-up detectors: early, late or noisy in the windows of the first corpus."""
    rng = np.random.default_rng(zlib.crc32(f"{name}:{candidate}".encode()))
    scores = rng.uniform(0.0, 0.5, ROWS)
    for start, _ in corpus_windows()[name]:
        i = int(stamps().get_loc(start))
        scores[i + (2 if candidate == 0 else 20)] = 0.9
    if candidate == 2:
        scores[rng.choice(ROWS, 6, replace=False)] = 0.95
    return scores


def shifted(windows: nab_scoring.Windows, rows: int) -> nab_scoring.Windows:
    step = pd.Timedelta(minutes=5 * rows)
    return [(start + step, end + step) for start, end in windows]


def table_for(windows: dict[str, nab_scoring.Windows]) -> dict[str, dict[str, float]]:
    """Candidate -> file -> standard score at threshold 0.8, the scores fixed and the labels as given."""
    table: dict[str, dict[str, float]] = {}
    for candidate in range(3):
        table[f"c{candidate}"] = {
            name: nab_scoring.score_file(
                nab_scoring.sweep_file(name, stamps(), candidate_scores(name, candidate, w), w), STANDARD, 0.8
            ).score
            for name, w in windows.items()
        }
    return table


def test_choose_breaks_ties_towards_the_first_candidate() -> None:
    assert nab_scoring.choose({"a": {"x": 1.0}, "b": {"x": 1.0}, "c": {"x": 0.5}}) == "a"
    assert nab_scoring.choose({"a": {"x": 1.0}, "b": {"x": 2.0}}) == "b"
    with pytest.raises(nab_scoring.NabScoringError, match="no candidate configurations"):
        nab_scoring.choose({})


def test_held_out_scores_never_reach_the_choice_of_their_fold() -> None:
    rng = np.random.default_rng(3)
    files = [f"{c}/f{i}.csv" for c in CATEGORIES for i in range(3)]
    table = {label: {f: float(rng.normal()) for f in files} for label in "abcde"}
    choices = nab_scoring.loco_choices(table)
    assert set(choices) == set(CATEGORIES)
    flipped = 0
    for held_out in CATEGORIES:
        for _ in range(20):  # any scores at all on the held-out files
            perturbed = {
                k: {f: (float(rng.normal(0, 100)) if f.startswith(held_out) else s) for f, s in v.items()} for k, v in table.items()
            }
            assert nab_scoring.loco_choices(perturbed)[held_out] == choices[held_out]
            flipped += nab_scoring.choose(perturbed) != nab_scoring.choose(table)
    assert flipped  # the held-out scores do change the choice made on every category


def test_moving_the_held_out_labels_leaves_its_configuration_unchanged() -> None:
    original = corpus_windows()
    choices = nab_scoring.loco_choices(table_for(original))
    for held_out in CATEGORIES[1:]:  # artificialNoAnomaly has no labels to move
        moved = {n: (shifted(w, 60) if n.startswith(held_out) else w) for n, w in original.items()}
        table = table_for(moved)
        assert nab_scoring.loco_choices(table)[held_out] == choices[held_out]
        before, after = table_for(original), table
        assert any(before[c][n] != after[c][n] for c in before for n in before[c] if n.startswith(held_out))


def test_loco_thresholds_ignore_the_held_out_labels() -> None:
    def sweeps(windows: dict[str, nab_scoring.Windows]) -> list[nab_scoring.FileSweep]:
        return [nab_scoring.sweep_file(n, stamps(), candidate_scores(n, 2, w), w) for n, w in windows.items()]

    original = corpus_windows()
    thresholds = nab_scoring.loco_thresholds(sweeps(original), STANDARD)
    for held_out in CATEGORIES[1:]:
        moved = {n: ([] if n.startswith(held_out) else w) for n, w in original.items()}
        assert nab_scoring.loco_thresholds(sweeps(moved), STANDARD)[held_out] == thresholds[held_out]


def test_cross_validation_normalises_over_every_file() -> None:
    windows = corpus_windows()
    files = {n: nab_scoring.score_file(nab_scoring.sweep_file(n, stamps(), np.zeros(ROWS), w), STANDARD, 0.5) for n, w in windows.items()}
    folds = tuple(
        nab_scoring.HeldOut(category=c, chosen="never", threshold=0.5, files=tuple(f for n, f in files.items() if n.startswith(c)))
        for c in CATEGORIES
    )
    cv = nab_scoring.CrossValidation(profile=STANDARD, folds=folds)
    assert cv.normalised == pytest.approx(0.0)  # the detector that never fires
    assert folds[0].normalised(STANDARD) is None  # no windows to normalise by
    assert folds[1].normalised(STANDARD) == pytest.approx(0.0)


# -- benchmarks/nab.py ---------------------------------------------------------------------------------
def write_corpus(root: Path) -> tuple[Path, Path]:
    """A small NAB-format corpus: a daily cycle at 5 minutes with a level shift inside each window."""
    t = pd.date_range("2024-01-01", periods=900, freq="5min")
    windows: dict[str, list[list[str]]] = {}
    rng = np.random.default_rng(11)
    for c, category in enumerate(CATEGORIES):
        folder = root / "data" / category
        folder.mkdir(parents=True)
        values = 50 + 10 * np.sin(2 * np.pi * np.arange(900) / 288) + rng.normal(0, 1, 900)
        if category != "artificialNoAnomaly":
            values[600 + 20 * c :] += 15
            windows[f"{category}/a.csv"] = [[str(t[580 + 20 * c]), str(t[640 + 20 * c])]]
        else:
            windows[f"{category}/a.csv"] = []
        pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(folder / "a.csv", index=False)
    labels = root / "labels.json"
    labels.write_text(json.dumps(windows))
    return root / "data", labels


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert nab.main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert isinstance(document, dict)
    return document


def test_threshold_mode_is_the_scorer_at_that_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, labels = write_corpus(tmp_path)
    document = run_json(["--data", str(data), "--labels", str(labels), "--threshold", "0.8", "--cache", str(tmp_path / "cache")], capsys)
    windows = nab_scoring.load_windows(labels)
    sweeps = []
    for name in sorted(windows):
        frame = pd.read_csv(data / name, parse_dates=["timestamp"])
        scores = AnomalyDetector().score_series(frame["timestamp"], frame["value"].to_numpy())
        sweeps.append(nab_scoring.sweep_file(name, frame["timestamp"], scores, windows[name]))
    for profile in nab.PROFILE_ORDER:
        expected = nab_scoring.score_corpus(sweeps, nab_scoring.PROFILES[profile], threshold=0.8)
        assert document[profile] == round(expected.normalised, 2)
        assert document["threshold"] == {p: 0.8 for p in nab.PROFILE_ORDER}
    # a second run reads the evidence from the cache and agrees
    assert (
        run_json(["--data", str(data), "--labels", str(labels), "--threshold", "0.8", "--cache", str(tmp_path / "cache")], capsys)
        == document
    )


def test_cv_mode_reports_every_fold_and_the_choice_on_all_categories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, labels = write_corpus(tmp_path)
    document = run_json(["--data", str(data), "--labels", str(labels), "--cv", "--no-cache"], capsys)
    ours = document["detectors"]["this detector"]  # type: ignore[index]
    for profile in nab.PROFILE_ORDER:
        assert set(ours[profile]["categories"]) == set(CATEGORIES)
        assert all(row["chosen"] in {nab.label(s) for s in nab.candidate_specs()} for row in ours[profile]["categories"].values())
    assert ours["standard"]["categories"]["artificialNoAnomaly"]["normalised"] is None
    assert document["configurations"] == len(nab.CANDIDATE_SETTINGS) * len(nab.ALERT_EVIDENCE)
    assert isinstance(document["default_is_choice_on_all_categories"], bool)


def test_shipped_defaults_are_a_candidate_of_the_cross_validation() -> None:
    assert AnomalyDetectorSpec() in nab.candidate_specs()
    assert nab.label(AnomalyDetectorSpec()) == "novelty_step=8 incident_points=25 incident_hold=0.5 alert_evidence=3.4"


def test_published_detectors_are_cross_validated_only_with_every_per_timestamp_file(tmp_path: Path) -> None:
    data, labels = write_corpus(tmp_path)
    corpus = nab.load_corpus(data, labels, None)
    results = tmp_path / "results"
    (results / "htm").mkdir(parents=True)
    for profile in nab.PROFILE_ORDER:
        rows = pd.DataFrame({"File": [*corpus.names, None], "Score": [0.5, -1.0, 0.25, 0.75, 0.5]})  # NAB's last row: totals
        rows.to_csv(results / "htm" / f"htm_{profile}_scores.csv", index=False)
    partial = nab.published(corpus, results, "htm")
    assert partial.cv == {} and partial.raw_files == 0
    assert partial.as_published["standard"] == {
        "artificialNoAnomaly": 0.5,
        "artificialWithAnomaly": -1.0,
        "realKnownCause": 0.25,
        "realTraffic": 0.75,
    }
    for name in corpus.names:
        folder = results / "htm" / Path(name).parent
        folder.mkdir(exist_ok=True)
        frame = pd.read_csv(data / name)
        frame["anomaly_score"] = np.where(frame["value"].diff().abs() > 8, 0.9, 0.1)  # fires on each level shift
        frame.to_csv(folder / f"htm_{Path(name).name}", index=False)
    complete = nab.published(corpus, results, "htm")
    assert complete.raw_files == len(corpus.names)
    cv = complete.cv["standard"]
    assert [f.category for f in cv.folds] == list(CATEGORIES)
    assert cv.normalised > 50  # every window is hit at the same threshold, whichever category is held out
