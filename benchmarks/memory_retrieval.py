"""Benchmark: does the incident memory find the right past incident for a new, differently worded one?

    python benchmarks/memory_retrieval.py [--cases FILE] [--embedding sklearn] [--json] [--misses]

Loads the past incidents of --cases (default benchmarks/memory_cases.yaml) into a fresh incident memory in
a temporary DATAOPS_HOME, searches it with each held-out description and ranks every stored incident.
Reports, over the held-out set:

  hit@1   share of descriptions whose labelled incident ranks first
  hit@3   share whose labelled incident is among the first three (what the agent reads: k=3)
  MRR     mean of 1 / rank of the labelled incident

and, measured in the same run on the same cases, the same figures for a baseline: a plain bag-of-words
TF-IDF (scikit-learn defaults) fitted on the stored documents, ranked by cosine. The baseline sees the
whole stored corpus to learn its IDF weights, which the memory's embedding never does. Nothing is
downloaded; with `--embedding openai:<model>` the DATAOPS_LLM_* settings of the environment apply.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer

from config.settings import load_settings
from memory.store import IncidentMemory, MemoryRecord

CASES = Path(__file__).resolve().parent / "memory_cases.yaml"


@dataclass(kw_only=True, frozen=True)
class Query:
    text: str
    expected: str


@dataclass(kw_only=True)
class Scores:
    hit_at_1: float
    hit_at_3: float
    mrr: float
    queries: int
    misses: list[dict[str, str]]


def load_cases(path: Path = CASES) -> tuple[list[MemoryRecord], list[Query]]:
    """The stored incidents and the labelled held-out descriptions of a cases file."""
    data = yaml.safe_load(path.read_text())
    records = [MemoryRecord(kind="incident", **item) for item in data["incidents"]]
    queries = [Query(text=q["text"].strip(), expected=q["expected"]) for q in data["held_out"]]
    known = {r.id for r in records}
    unknown = sorted({q.expected for q in queries} - known)
    if unknown:
        raise SystemExit(f"{path}: held-out cases expect unknown incidents {unknown}")
    return records, queries


def score(rankings: Sequence[Sequence[str]], queries: Sequence[Query]) -> Scores:
    """hit@1, hit@3 and MRR of full rankings (ids, best first) against the labels."""
    ranks = [list(ranking).index(q.expected) + 1 if q.expected in ranking else None for ranking, q in zip(rankings, queries, strict=True)]
    misses = [
        {"text": q.text, "expected": q.expected, "first": ranking[0] if ranking else "", "rank": str(rank)}
        for rank, ranking, q in zip(ranks, rankings, queries, strict=True)
        if rank != 1
    ]
    return Scores(
        hit_at_1=sum(r == 1 for r in ranks) / len(queries),
        hit_at_3=sum(r is not None and r <= 3 for r in ranks) / len(queries),
        mrr=sum(1.0 / r for r in ranks if r is not None) / len(queries),
        queries=len(queries),
        misses=misses,
    )


def memory_rankings(records: list[MemoryRecord], queries: list[Query], *, embedding: str) -> list[list[str]]:
    """Each query's ranking of every stored incident by the incident memory."""
    with tempfile.TemporaryDirectory(prefix="dataops-memory-bench-") as home:
        memory = IncidentMemory.open(load_settings(home=Path(home), memory_embedding=embedding))
        memory.remember_many(records)
        return [[hit.record.id for hit in memory.search(q.text, k=len(records))] for q in queries]


def tfidf_rankings(records: list[MemoryRecord], queries: list[Query]) -> list[list[str]]:
    """Each query's ranking by a bag-of-words TF-IDF fitted on the stored documents (the baseline)."""
    vectorizer = TfidfVectorizer()
    documents = vectorizer.fit_transform([r.document() for r in records])
    similarity = (vectorizer.transform([q.text for q in queries]) @ documents.T).toarray()
    ids = [r.id for r in records]
    # A stable sort keeps ties in stored order, as a vector store would return them arbitrarily.
    return [[ids[i] for i in np.argsort(-row, kind="stable")] for row in similarity]


def evaluate(cases: Path = CASES, *, embedding: str = "sklearn") -> dict[str, Scores]:
    """The memory's and the baseline's scores on one cases file, measured in one run."""
    records, queries = load_cases(cases)
    return {
        "memory": score(memory_rankings(records, queries, embedding=embedding), queries),
        "tfidf_baseline": score(tfidf_rankings(records, queries), queries),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=Path, default=CASES, help="YAML with `incidents` and labelled `held_out` descriptions")
    parser.add_argument("--embedding", default="sklearn", help="memory embedding, as DATAOPS_MEMORY_EMBEDDING (default: sklearn)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--misses", action="store_true", help="also list the held-out descriptions whose incident did not rank first")
    args = parser.parse_args(argv)
    results = evaluate(args.cases, embedding=args.embedding)
    records, _ = load_cases(args.cases)
    if args.json:
        report = {name: asdict(s) if args.misses else {k: v for k, v in asdict(s).items() if k != "misses"} for name, s in results.items()}
        print(json.dumps({"cases": str(args.cases), "embedding": args.embedding, "stored": len(records), **report}, indent=2))
        return 0
    memory, baseline = results["memory"], results["tfidf_baseline"]
    print(f"{memory.queries} held-out descriptions against {len(records)} stored incidents ({args.cases.name})\n")
    print(f"  {'':28s} {'hit@1':>7s} {'hit@3':>7s} {'MRR':>7s}")
    print(f"  {'memory (' + args.embedding + ')':28s} {memory.hit_at_1:7.3f} {memory.hit_at_3:7.3f} {memory.mrr:7.3f}")
    print(f"  {'TF-IDF baseline':28s} {baseline.hit_at_1:7.3f} {baseline.hit_at_3:7.3f} {baseline.mrr:7.3f}")
    if baseline.mrr > 0:
        print(f"\n  memory / baseline: hit@1 x{_ratio(memory.hit_at_1, baseline.hit_at_1)}, MRR x{memory.mrr / baseline.mrr:.2f}")
    if args.misses:
        for name, s in results.items():
            print(f"\n{name}: not ranked first")
            for miss in s.misses:
                print(f"  {miss['expected']} ranked {miss['rank']} (first: {miss['first']}): {miss['text'][:100]}")
    return 0


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "inf"


if __name__ == "__main__":
    raise SystemExit(main())
