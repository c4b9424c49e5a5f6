"""Benchmark: the monitors' anomaly detector on the Numenta Anomaly Benchmark (NAB v1.1).

    python benchmarks/nab.py [--data DIR] [--labels FILE] [--json] [--workers N] [--sensitivity S]

Runs `pipelines.monitors.anomaly.AnomalyDetector` point by point (each point scored against the points
before it) over every data file under --data, scores the result as NAB does (`benchmarks/nab_scoring.py`):
one threshold per profile for all files, chosen by sweeping every distinct score, then the normalised
score 100 (S - S_null) / (S_perfect - S_null) for the standard, reward_low_FP_rate and reward_low_FN_rate
profiles. Prints them beside the published detectors' scores on the same files, recomputed from NAB's
``results/<detector>/<detector>_<profile>_scores.csv`` when that folder is next to the data.

One configuration for every file, as NAB requires: the detector's defaults (`AnomalyDetectorSpec`). The
published detectors' thresholds were optimised over all 58 NAB files, ours over the files scored here,
which favours us slightly when the corpus is a subset.

Defaults: data /work/shared/data/nab/data (or ../shared/data/nab/data beside the repository), labels
``<data>/../labels/combined_windows.json``, profiles ``<data>/../config/profiles.json`` when present.
``--json`` prints ``{"standard", "reward_low_FP_rate", "reward_low_FN_rate", "files", "threshold",
"published"}``; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from benchmarks import nab_scoring
from pipelines.monitors.anomaly import AnomalyDetector, AnomalyDetectorSpec

REPO = Path(__file__).resolve().parent.parent
DATA_CANDIDATES = (Path("/work/shared/data/nab/data"), REPO.parent / "shared" / "data" / "nab" / "data")
DETECTOR_NAMES = {
    "ARTime": "ARTime",
    "numenta": "Numenta HTM",
    "contextOSE": "CAD OSE",
    "htmjava": "HTM Java",
    "numentaTM": "NumentaTM",
    "relativeEntropy": "Relative Entropy",
    "earthgeckoSkyline": "earthgecko Skyline",
    "randomCutForest": "Random Cut Forest",
    "knncad": "KNN CAD",
    "twitterADVec": "Twitter ADVec",
    "skyline": "Etsy Skyline",
    "windowedGaussian": "Windowed Gaussian",
    "bayesChangePt": "Bayes changepoint",
    "expose": "EXPoSE",
    "null": "null",
}
PROFILE_ORDER = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_data_dir() -> Path:
    for candidate in DATA_CANDIDATES:
        if candidate.is_dir():
            return candidate
    return DATA_CANDIDATES[0]


def load_series(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    if list(frame.columns[:2]) != ["timestamp", "value"]:
        raise SystemExit(f"{path}: expected columns timestamp,value; found {list(frame.columns)}")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"])
    return frame


def detect_file(job: tuple[Path, str, AnomalyDetectorSpec]) -> tuple[str, np.ndarray, float]:
    """Score one data file point by point; returns (name, scores, seconds)."""
    data_dir, name, spec = job
    frame = load_series(data_dir / name)
    started = time.perf_counter()
    scores = AnomalyDetector(spec).score_series(frame["timestamp"], frame["value"].to_numpy(dtype=float))
    return name, scores, time.perf_counter() - started


def run(
    data_dir: Path, labels: Path, *, spec: AnomalyDetectorSpec, workers: int, profiles_path: Path | None
) -> tuple[dict[str, nab_scoring.CorpusScore], list[str]]:
    windows = nab_scoring.load_windows(labels)
    names = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*.csv"))
    if not names:
        raise SystemExit(f"no .csv data files under {data_dir}")
    unlabelled = [n for n in names if n not in windows]
    if unlabelled:
        raise SystemExit(f"{len(unlabelled)} data file(s) have no entry in {labels}: {', '.join(unlabelled[:5])}")
    profiles = nab_scoring.load_profiles(profiles_path) if profiles_path else nab_scoring.PROFILES
    jobs = [(data_dir, n, spec) for n in names]
    results: dict[str, tuple[np.ndarray, float]] = {}
    started = time.perf_counter()
    with Pool(max(1, workers)) as pool:
        for done, (name, scores, seconds) in enumerate(pool.imap_unordered(detect_file, jobs), start=1):
            results[name] = (scores, seconds)
            progress(f"[{done:2d}/{len(names)}] {name}: {len(scores)} points in {seconds:.1f}s")
    progress(f"detection: {time.perf_counter() - started:.1f}s wall for {sum(len(s) for s, _ in results.values())} points")
    sweeps = []
    for name in names:
        frame = load_series(data_dir / name)
        sweeps.append(nab_scoring.sweep_file(name, frame["timestamp"], results[name][0], windows[name]))
    return {p: nab_scoring.score_corpus(sweeps, profiles[p]) for p in PROFILE_ORDER}, names


def report(scores: dict[str, nab_scoring.CorpusScore], published: dict[str, dict[str, float]]) -> None:
    standard = scores["standard"]
    print(f"\nPer file, standard profile (threshold {standard.threshold:.4f}):")
    print(f"  {'file':56s} {'score':>7s} {'windows hit':>11s} {'FP points':>9s}")
    for f in standard.files:
        print(f"  {f.name:56s} {f.score:7.3f} {f'{f.windows_detected}/{f.windows}':>11s} {f.fp:9d}")
    rows = [("this detector", {p: s.normalised for p, s in scores.items()})]
    rows += [(DETECTOR_NAMES.get(k, k), v) for k, v in published.items()]
    rows.sort(key=lambda r: -r[1].get("standard", float("-inf")))
    print(f"\nNormalised NAB scores on these {len(standard.files)} files ({standard.perfect_score:.0f} windows):")
    print(f"  {'detector':22s} " + " ".join(f"{p:>19s}" for p in PROFILE_ORDER))
    for label, values in rows:
        marker = "*" if label == "this detector" else " "
        print(f" {marker}{label:22s} " + " ".join(f"{values.get(p, float('nan')):19.1f}" for p in PROFILE_ORDER))
    print("  thresholds: " + ", ".join(f"{p} {s.threshold:.4f}" for p, s in scores.items()))
    if published:
        print("  (published detectors: thresholds optimised over all 58 NAB files; this detector: over these files)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of NAB data files (<group>/<file>.csv)")
    parser.add_argument("--labels", type=Path, default=None, help="windows in combined_windows.json format")
    parser.add_argument("--profiles", type=Path, default=None, help="NAB profiles.json (default: beside the data, else built in)")
    parser.add_argument("--results", type=Path, default=None, help="NAB results folder of the published detectors")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON on stdout")
    parser.add_argument("--workers", type=int, default=2, help="processes scoring files in parallel (default 2)")
    parser.add_argument("--sensitivity", type=float, default=None, help="override AnomalyDetectorSpec.sensitivity")
    args = parser.parse_args(argv)

    data_dir = (args.data or default_data_dir()).resolve()
    if not data_dir.is_dir():
        raise SystemExit(f"data folder {data_dir} does not exist; pass --data DIR")
    nab_root = data_dir.parent
    labels = args.labels or nab_root / "labels" / "combined_windows.json"
    if not labels.is_file():
        raise SystemExit(f"labels {labels} do not exist; pass --labels FILE")
    profiles_path = args.profiles or (nab_root / "config" / "profiles.json")
    spec = AnomalyDetectorSpec() if args.sensitivity is None else replace(AnomalyDetectorSpec(), sensitivity=args.sensitivity)

    started = time.perf_counter()
    scores, names = run(data_dir, labels, spec=spec, workers=args.workers, profiles_path=profiles_path if profiles_path.is_file() else None)
    results_dir = args.results or nab_root / "results"
    published = nab_scoring.published_scores(results_dir, names, PROFILE_ORDER) if results_dir.is_dir() else {}
    progress(f"total: {time.perf_counter() - started:.1f}s")

    if args.json:
        out = {p: round(scores[p].normalised, 2) for p in PROFILE_ORDER}
        print(
            json.dumps(
                {
                    **out,
                    "files": len(names),
                    "threshold": {p: scores[p].threshold for p in PROFILE_ORDER},
                    "published": {k: {p: round(v, 2) for p, v in vals.items()} for k, vals in published.items()},
                }
            )
        )
    else:
        report(scores, published)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
