"""Benchmark: the anomaly detector of `pipelines/monitors/anomaly.py` on the Numenta Anomaly Benchmark (NAB v1.1).

    python benchmarks/nab.py [--data DIR] [--labels FILE] [--json] [--workers N] [--sensitivity S]
    python benchmarks/nab.py --threshold X [--json]
    python benchmarks/nab.py --cv [--json]

Runs `pipelines.monitors.anomaly.AnomalyDetector` point by point (each point scored against the points
before it) over every data file under --data and scores the result with `benchmarks/nab_scoring.py`:

* default: the detector's defaults (`AnomalyDetectorSpec`), one threshold per profile chosen as NAB
  does, by sweeping every distinct score over the files scored (in-sample);
* ``--threshold X``: the defaults at the fixed threshold X for every profile, nothing optimised;
* ``--cv``: leave-one-category-out cross-validation. Each category (folder) is held out in turn; the
  configuration, detector settings and threshold together, is the one of `CANDIDATE_SETTINGS` x
  `ALERT_EVIDENCE` that scores best on the other categories' files, and the held-out files are scored
  with it. The threshold is ``alert_evidence``: a detection is a point scoring ``alert_score`` or more,
  the point where the detector itself opens an incident. Also prints what the same procedure chooses
  on all categories (the shipped defaults must be that choice for the standard profile), and the
  published detectors per category: cross-validated the same way (threshold swept on the other
  categories) when ``results/<detector>/<category>/<detector>_<file>`` holds their per-timestamp scores
  for every file, otherwise their published scores, whose threshold NAB optimised on all 58 files.

Every mode reports the normalised score 100 (S - S_null) / (S_perfect - S_null) for the standard,
reward_low_FP_rate and reward_low_FN_rate profiles. Evidence (steps 1 and 2 of the detector) is cached
per file and detector setting under --cache, keyed by the data, the settings and the detector's source.

Defaults: data /work/shared/data/nab/data (or ../shared/data/nab/data beside the repository), labels
``<data>/../labels/combined_windows.json``, profiles ``<data>/../config/profiles.json`` when present,
results ``<data>/../results``. ``--json`` prints one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import sys
import tempfile
import time
from dataclasses import dataclass, fields, replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from benchmarks import nab_scoring
from benchmarks.nab_scoring import CostProfile, FileSweep, HeldOut
from pipelines.monitors import anomaly
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
COMPARED = ("numenta", "ARTime")  # the published detectors `--cv` compares with
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "nab-evidence"

# The cross-validation's search space: 27 detector settings x 26 thresholds. Only novelty_step changes
# the evidence (3 detector passes); the incident settings and the threshold only turn it into scores.
CANDIDATE_SETTINGS: tuple[AnomalyDetectorSpec, ...] = tuple(
    AnomalyDetectorSpec(novelty_step=step, incident_points=points, incident_hold=hold)
    for step in (4, 8, 16)
    for points in (25, 50, 100)
    for hold in (0.5, 0.7, 1.0)
)
ALERT_EVIDENCE: tuple[float, ...] = tuple(round(2.5 + 0.1 * i, 1) for i in range(26))  # 2.5 to 5.0


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


def candidate_specs() -> list[AnomalyDetectorSpec]:
    """Every configuration the cross-validation chooses from, in the order ties are broken."""
    return [replace(s, alert_evidence=e) for s in CANDIDATE_SETTINGS for e in ALERT_EVIDENCE]


def label(spec: AnomalyDetectorSpec) -> str:
    return (
        f"novelty_step={spec.novelty_step} incident_points={spec.incident_points} "
        f"incident_hold={spec.incident_hold:.1f} alert_evidence={spec.alert_evidence:.1f}"
    )


@dataclass(frozen=True, kw_only=True)
class Corpus:
    """The data files with their windows: one zero-score sweep per file, to be given each detector's scores."""

    data_dir: Path
    names: tuple[str, ...]
    blanks: dict[str, FileSweep]
    profiles: dict[str, CostProfile]

    def sweeps(self, scores: dict[str, np.ndarray]) -> list[FileSweep]:
        return [replace(self.blanks[n], scores=np.asarray(scores[n], dtype=float)) for n in self.names]


def load_corpus(data_dir: Path, labels: Path, profiles_path: Path | None) -> Corpus:
    windows = nab_scoring.load_windows(labels)
    names = sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob("*.csv"))
    if not names:
        raise SystemExit(f"no .csv data files under {data_dir}")
    unlabelled = [n for n in names if n not in windows]
    if unlabelled:
        raise SystemExit(f"{len(unlabelled)} data file(s) have no entry in {labels}: {', '.join(unlabelled[:5])}")
    blanks = {}
    for name in names:
        stamps = load_series(data_dir / name)["timestamp"]
        blanks[name] = nab_scoring.sweep_file(name, stamps, np.zeros(len(stamps)), windows[name])
    profiles = nab_scoring.load_profiles(profiles_path) if profiles_path else nab_scoring.PROFILES
    return Corpus(data_dir=data_dir, names=tuple(names), blanks=blanks, profiles=profiles)


def detect_file(job: tuple[Path, str, AnomalyDetectorSpec]) -> tuple[str, np.ndarray, float]:
    """Evidence of one data file, point by point; returns (name, evidence, seconds)."""
    data_dir, name, spec = job
    frame = load_series(data_dir / name)
    started = time.perf_counter()
    evidence = AnomalyDetector(spec).evidence_series(frame["timestamp"], frame["value"].to_numpy(dtype=float))
    return name, evidence, time.perf_counter() - started


class EvidenceStore:
    """Every file's evidence per detector setting: kept for the run, and on disk under ``folder`` when given.

    A file's key hashes its bytes, the settings evidence depends on (not `anomaly.SCORING_FIELDS`) and
    the detector's source, so an edited detector never reads stale evidence.
    """

    def __init__(self, folder: Path | None, *, workers: int) -> None:
        self.folder, self.workers = folder, workers
        self.source = inspect.getsource(anomaly).encode()
        self.memory: dict[str, np.ndarray] = {}

    def key(self, spec: AnomalyDetectorSpec, data: bytes) -> str:
        settings = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in anomaly.SCORING_FIELDS}
        digest = hashlib.sha256(data)
        digest.update(json.dumps(settings, sort_keys=True).encode())
        digest.update(self.source)
        return digest.hexdigest()[:32]

    def get(self, corpus: Corpus, spec: AnomalyDetectorSpec) -> dict[str, np.ndarray]:
        keys = {n: self.key(spec, (corpus.data_dir / n).read_bytes()) for n in corpus.names}
        for key in keys.values():
            path = None if self.folder is None else self.folder / f"{key}.npy"
            if key not in self.memory and path is not None and path.is_file():
                self.memory[key] = np.load(path)
        jobs = [(corpus.data_dir, n, spec) for n in corpus.names if keys[n] not in self.memory]
        if jobs:
            started = time.perf_counter()
            with Pool(max(1, self.workers)) as pool:
                for done, (name, values, seconds) in enumerate(pool.imap_unordered(detect_file, jobs), start=1):
                    self.memory[keys[name]] = values
                    if self.folder is not None:
                        self.folder.mkdir(parents=True, exist_ok=True)
                        np.save(self.folder / f"{keys[name]}.npy", values)
                    progress(f"[{done:2d}/{len(jobs)}] {name}: {len(values)} points in {seconds:.1f}s")
            elapsed = time.perf_counter() - started
            progress(f"detection (novelty_step={spec.novelty_step}): {elapsed:.1f}s wall for {len(jobs)} files")
        return {n: self.memory[keys[n]] for n in corpus.names}


def detector_scores(corpus: Corpus, spec: AnomalyDetectorSpec, store: EvidenceStore) -> list[FileSweep]:
    detector = AnomalyDetector(spec)
    return corpus.sweeps({n: detector.score_evidence(e) for n, e in store.get(corpus, spec).items()})


@dataclass(frozen=True, kw_only=True)
class ProfileCV:
    """One profile's cross-validation, and the configuration the same choice makes on every category."""

    cv: nab_scoring.CrossValidation
    everywhere: AnomalyDetectorSpec
    everywhere_score: nab_scoring.CorpusScore


def score_table(corpus: Corpus, store: EvidenceStore) -> dict[str, dict[str, dict[str, float]]]:
    """Profile -> candidate label -> file -> score, for every candidate configuration."""
    tables: dict[str, dict[str, dict[str, float]]] = {p: {} for p in PROFILE_ORDER}
    for settings in CANDIDATE_SETTINGS:
        found = store.get(corpus, settings)
        for alert in ALERT_EVIDENCE:
            spec = replace(settings, alert_evidence=alert)
            sweeps = corpus.sweeps({n: AnomalyDetector(spec).score_evidence(found[n]) for n in corpus.names})
            for p in PROFILE_ORDER:
                scores = {s.name: nab_scoring.score_file(s, corpus.profiles[p], spec.alert_score).score for s in sweeps}
                tables[p][label(spec)] = scores
    return tables


def cross_validate(corpus: Corpus, store: EvidenceStore) -> dict[str, ProfileCV]:
    """Leave-one-category-out over `candidate_specs`, per profile."""
    specs = {label(s): s for s in candidate_specs()}
    tables = score_table(corpus, store)
    out = {}
    for p in PROFILE_ORDER:
        profile = corpus.profiles[p]
        folds = []
        for held_out, chosen in nab_scoring.loco_choices(tables[p]).items():
            sweeps = detector_scores(corpus, specs[chosen], store)
            files = [nab_scoring.score_file(s, profile, specs[chosen].alert_score) for s in sweeps]
            held = tuple(f for f in files if nab_scoring.category(f.name) == held_out)
            folds.append(HeldOut(category=held_out, chosen=chosen, threshold=specs[chosen].alert_score, files=held))
        everywhere = specs[nab_scoring.choose(tables[p])]
        sweeps = detector_scores(corpus, everywhere, store)
        out[p] = ProfileCV(
            cv=nab_scoring.CrossValidation(profile=profile, folds=tuple(folds)),
            everywhere=everywhere,
            everywhere_score=nab_scoring.score_corpus(sweeps, profile, everywhere.alert_score),
        )
    return out


@dataclass(frozen=True, kw_only=True)
class Published:
    """A published detector on these files: cross-validated when its per-timestamp scores cover them all."""

    detector: str
    raw_files: int
    cv: dict[str, nab_scoring.CrossValidation]  # per profile, empty without per-timestamp scores for every file
    as_published: dict[str, dict[str, float]]  # per profile, category -> score at NAB's 58-file threshold


def published(corpus: Corpus, results: Path, detector: str) -> Published:
    raw = {n: results / detector / Path(n).parent / f"{detector}_{Path(n).name}" for n in corpus.names}
    present = [n for n, path in raw.items() if path.is_file()]
    cv: dict[str, nab_scoring.CrossValidation] = {}
    as_published: dict[str, dict[str, float]] = {}
    for p in PROFILE_ORDER:
        profile = corpus.profiles[p]
        if len(present) == len(corpus.names):
            sweeps = corpus.sweeps({n: pd.read_csv(raw[n])["anomaly_score"].to_numpy(dtype=float) for n in corpus.names})
            folds = []
            for held_out, threshold in nab_scoring.loco_thresholds(sweeps, profile).items():
                held = [s for s in sweeps if nab_scoring.category(s.name) == held_out]
                files = tuple(nab_scoring.score_file(s, profile, threshold) for s in held)
                folds.append(HeldOut(category=held_out, chosen="swept", threshold=threshold, files=files))
            cv[p] = nab_scoring.CrossValidation(profile=profile, folds=tuple(folds))
        scores = nab_scoring.published_file_scores(results, detector, p)
        as_published[p] = {}
        for n in corpus.names:
            as_published[p][nab_scoring.category(n)] = as_published[p].get(nab_scoring.category(n), 0.0) + scores[n]
    return Published(detector=detector, raw_files=len(present), cv=cv, as_published=as_published)


def category_windows(corpus: Corpus) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, blank in corpus.blanks.items():
        out[nab_scoring.category(name)] = out.get(nab_scoring.category(name), 0) + blank.scored_windows
    return out


def normalised(score: float, windows: int, profile: CostProfile) -> float | None:
    if not windows:
        return None
    return nab_scoring.normalise(score, null=-profile.fn_weight * windows, perfect=profile.tp_weight * windows)


def cv_summary(corpus: Corpus, results: dict[str, ProfileCV], compared: list[Published]) -> dict[str, Any]:
    """The ``--cv --json`` document."""
    windows = category_windows(corpus)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    ours: dict[str, Any] = {"rule": "leave-one-category-out"}
    for p, result in results.items():
        categories = {
            f.category: {"score": round(f.score, 3), "normalised": rounded(f.normalised(result.cv.profile)), "fp": f.fp, "chosen": f.chosen}
            for f in result.cv.folds
        }
        ours[p] = {"overall": round(result.cv.normalised, 3), "categories": categories}
    detectors: dict[str, Any] = {"this detector": ours}
    for pub in compared:
        entry: dict[str, Any] = {"per_timestamp_files": pub.raw_files}
        if pub.cv:
            entry["rule"] = "leave-one-category-out"
            for p, cv in pub.cv.items():
                cats = {
                    f.category: {"score": round(f.score, 3), "normalised": rounded(f.normalised(cv.profile)), "fp": f.fp} for f in cv.folds
                }
                entry[p] = {"overall": round(cv.normalised, 3), "categories": cats}
        else:
            entry["rule"] = "as published: threshold optimised on all 58 NAB files, held-out categories included"
            for p, by_category in pub.as_published.items():
                profile = corpus.profiles[p]
                total = normalised(sum(by_category.values()), sum(windows.values()), profile)
                cats = {
                    c: {"score": round(s, 3), "normalised": rounded(normalised(s, windows[c], profile))} for c, s in by_category.items()
                }
                entry[p] = {"overall": rounded(total), "categories": cats}
        detectors[pub.detector] = entry
    default = AnomalyDetectorSpec()
    return {
        "mode": "cv",
        "files": len(corpus.names),
        "configurations": len(candidate_specs()),
        "detectors": detectors,
        "all_categories": {
            p: {"chosen": label(r.everywhere), "normalised": round(r.everywhere_score.normalised, 3)} for p, r in results.items()
        },
        "default": label(default),
        "default_is_choice_on_all_categories": results["standard"].everywhere == default,
    }


def report_cv(summary: dict[str, Any]) -> None:
    detectors = summary["detectors"]
    print(f"\nLeave-one-category-out cross-validation, {summary['configurations']} configurations, {summary['files']} files")
    for p in PROFILE_ORDER:
        ours = detectors["this detector"][p]
        print(f"\n{p}: cross-validated {ours['overall']:.1f}")
        print(f"  {'held-out category':24s} {'configuration chosen on the other categories':62s} {'score':>7s} {'norm.':>6s} {'FP':>4s}")
        for c, row in ours["categories"].items():
            norm = "-" if row["normalised"] is None else f"{row['normalised']:.1f}"
            print(f"  {c:24s} {row['chosen']:62s} {row['score']:7.2f} {norm:>6s} {row['fp']:4d}")
        everywhere = summary["all_categories"][p]
        print(f"  chosen on all categories: {everywhere['chosen']} (in-sample {everywhere['normalised']:.1f})")
    print(
        f"\nshipped default: {summary['default']}; the standard profile's choice on all categories: {summary['default_is_choice_on_all_categories']}"
    )
    categories = list(detectors["this detector"]["standard"]["categories"])
    print("\nPer category (raw score, normalised where the category has windows) and overall:")
    for name, entry in detectors.items():
        print(f"  {DETECTOR_NAMES.get(name, name)}: {entry['rule']}")
        for p in PROFILE_ORDER:
            cells = []
            for c in categories:
                row = entry[p]["categories"][c]
                cells.append(f"{row['score']:6.2f}" + ("" if row["normalised"] is None else f" ({row['normalised']:5.1f})"))
            print(f"    {p:19s} " + "  ".join(cells) + f"   overall {entry[p]['overall']:.1f}")
    print("  categories: " + ", ".join(categories))


def report(scores: dict[str, nab_scoring.CorpusScore], published: dict[str, dict[str, float]], *, fixed: bool) -> None:
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
    for name, values in rows:
        marker = "*" if name == "this detector" else " "
        print(f" {marker}{name:22s} " + " ".join(f"{values.get(p, float('nan')):19.1f}" for p in PROFILE_ORDER))
    print("  thresholds: " + ", ".join(f"{p} {s.threshold:.4f}" for p, s in scores.items()))
    rule = "fixed" if fixed else "optimised over these files (in-sample)"
    print(f"  (published detectors: thresholds optimised over all 58 NAB files; this detector: {rule}; `--cv` cross-validates)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of NAB data files (<category>/<file>.csv)")
    parser.add_argument("--labels", type=Path, default=None, help="windows in combined_windows.json format")
    parser.add_argument("--profiles", type=Path, default=None, help="NAB profiles.json (default: beside the data, else built in)")
    parser.add_argument("--results", type=Path, default=None, help="NAB results folder of the published detectors")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON on stdout")
    parser.add_argument("--workers", type=int, default=1, help="processes scoring files in parallel (default 1)")
    parser.add_argument("--sensitivity", type=float, default=None, help="override AnomalyDetectorSpec.sensitivity")
    parser.add_argument("--threshold", type=float, default=None, help="score with this fixed threshold, nothing optimised")
    parser.add_argument("--cv", action="store_true", help="leave-one-category-out cross-validation of the configuration")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"evidence cache folder (default {DEFAULT_CACHE})")
    parser.add_argument("--no-cache", action="store_true", help="compute every file's evidence afresh, store nothing")
    args = parser.parse_args(argv)
    if args.cv and (args.threshold is not None or args.sensitivity is not None):
        parser.error("--cv chooses the configuration itself; it takes neither --threshold nor --sensitivity")

    data_dir = (args.data or default_data_dir()).resolve()
    if not data_dir.is_dir():
        raise SystemExit(f"data folder {data_dir} does not exist; pass --data DIR")
    nab_root = data_dir.parent
    labels = args.labels or nab_root / "labels" / "combined_windows.json"
    if not labels.is_file():
        raise SystemExit(f"labels {labels} do not exist; pass --labels FILE")
    profiles_path = args.profiles or (nab_root / "config" / "profiles.json")
    corpus = load_corpus(data_dir, labels, profiles_path if profiles_path.is_file() else None)
    results_dir = args.results or nab_root / "results"
    store = EvidenceStore(None if args.no_cache else args.cache, workers=args.workers)
    started = time.perf_counter()

    if args.cv:
        results = cross_validate(corpus, store)
        compared = [published(corpus, results_dir, d) for d in COMPARED if (results_dir / d).is_dir()]
        summary = cv_summary(corpus, results, compared)
        progress(f"total: {time.perf_counter() - started:.1f}s")
        if args.json:
            print(json.dumps(summary))
        else:
            report_cv(summary)
        return 0

    spec = AnomalyDetectorSpec() if args.sensitivity is None else replace(AnomalyDetectorSpec(), sensitivity=args.sensitivity)
    sweeps = detector_scores(corpus, spec, store)
    scores = {p: nab_scoring.score_corpus(sweeps, corpus.profiles[p], args.threshold) for p in PROFILE_ORDER}
    others = nab_scoring.published_scores(results_dir, corpus.names, PROFILE_ORDER) if results_dir.is_dir() else {}
    progress(f"total: {time.perf_counter() - started:.1f}s")
    if args.json:
        out = {p: round(scores[p].normalised, 2) for p in PROFILE_ORDER}
        document = {
            **out,
            "files": len(corpus.names),
            "threshold": {p: scores[p].threshold for p in PROFILE_ORDER},
            "fixed_threshold": args.threshold is not None,
            "published": {k: {p: round(v, 2) for p, v in vals.items()} for k, vals in others.items()},
        }
        print(json.dumps(document))
    else:
        report(scores, others, fixed=args.threshold is not None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
