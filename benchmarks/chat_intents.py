"""Benchmark: does the runbook planner understand chat it was never trained on?

    python benchmarks/chat_intents.py [--corpus FILE] [--json] [--misses]

Trains the intent classifier on the `train` phrasings of the paraphrase corpus (default
agent/chat/paraphrases.yaml), exactly as the planner does at first use, and reads every `test` phrasing
against the corpus' platform clock and the shipped inventory. Reports, over the test split only:

  intent_accuracy   share of test phrasings whose kind is right (an unsure answer counts as wrong)
  slot_accuracy     share of the slots written on test phrasings (table, pipeline, start, end, at,
                    snapshot_id, aggregate, metric, hours) that come back with exactly that value,
                    whatever kind was predicted

The test split is fixed in the corpus file and never trained on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.chat.intents import CORPUS, IntentClassifier, load_corpus, read_intent
from agent.chat.names import names_of
from config.settings import load_settings


def run(corpus_path: Path) -> tuple[dict[str, float | int], list[str]]:
    corpus = load_corpus(corpus_path)
    train, test = corpus.split("train"), corpus.split("test")
    started = time.perf_counter()
    model = IntentClassifier([c.text for c in train], [c.intent for c in train])
    trained_s = time.perf_counter() - started
    names = names_of(load_settings().config_dir)
    right_kind = slots_total = slots_right = 0
    misses: list[str] = []
    for case in test:
        intent = read_intent(case.text, now=corpus.now, names=names, model=model)
        ok = intent.kind == case.intent and not intent.unsure
        right_kind += ok
        got = intent.slots()
        wrong = {k: (v, got.get(k)) for k, v in case.slots.items() if str(got.get(k)) != str(v)}
        slots_total += len(case.slots)
        slots_right += len(case.slots) - len(wrong)
        if not ok or wrong:
            label = f"{intent.kind}{' (unsure)' if intent.unsure else ''} p={intent.confidence}"
            misses.append(f"{case.text!r}: want {case.intent}, got {label}" + (f"; slots want/got {wrong}" if wrong else ""))
    report: dict[str, float | int] = {
        "cases": len(corpus.cases),
        "test_cases": len(test),
        "intent_accuracy": round(right_kind / len(test), 3) if test else 0.0,
        "slot_accuracy": round(slots_right / slots_total, 3) if slots_total else 0.0,
        "train_seconds": round(trained_s, 2),
    }
    return report, misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="paraphrase corpus (YAML, intents -> train/test)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--misses", action="store_true", help="also list every test phrasing read wrong")
    args = parser.parse_args()
    report, misses = run(args.corpus)
    if args.json:
        print(json.dumps(report | ({"misses": misses} if args.misses else {})))
        return
    print(f"{report['cases']} phrasings, {report['test_cases']} held out")
    print(
        f"intent accuracy {report['intent_accuracy']:.3f}   slot accuracy {report['slot_accuracy']:.3f}   (trained in {report['train_seconds']} s)"
    )
    if args.misses:
        print("\n".join(misses) or "no misses")


if __name__ == "__main__":
    main()
