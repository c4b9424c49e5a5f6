"""The eval report: JSON (`scenarios` + `summary`), a markdown table, and a PNG of pass rate per fault kind and model."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from evals.runner import ScenarioResult


def _rate(results: list[ScenarioResult]) -> float:
    return round(sum(r.passed for r in results) / len(results), 3) if results else 0.0


def _group(results: list[ScenarioResult], key: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[ScenarioResult]] = defaultdict(list)
    for r in results:
        for value in r.tags if key == "tag" else [getattr(r, key)]:
            groups[str(value)].append(r)
    return {
        name: {
            "scenarios": len(rs),
            "passed": sum(r.passed for r in rs),
            "pass_rate": _rate(rs),
            "mean_steps": round(mean(r.steps for r in rs), 1),
            "mean_tokens": round(mean(r.tokens for r in rs), 1),
        }
        for name, rs in sorted(groups.items())
    }


def summarize(results: list[ScenarioResult]) -> dict[str, Any]:
    by_model: dict[str, list[ScenarioResult]] = defaultdict(list)
    for r in results:
        by_model[r.model].append(r)
    return {
        "scenarios": len(results),
        "passed": sum(r.passed for r in results),
        "pass_rate": _rate(results),
        "policy_violations": sum(len(r.policy_violations) for r in results),
        "unnecessary_writes": sum(len(r.unnecessary_writes) for r in results),
        "errors": sum(1 for r in results if r.error),
        "by_model": {m: _group(rs, "model")[m] for m, rs in by_model.items()},
        "by_difficulty": _group(results, "difficulty"),
        "by_fault": _group(results, "tag"),
    }


def to_json(results: list[ScenarioResult]) -> dict[str, Any]:
    scenarios = [
        {
            "name": r.name,
            "difficulty": r.difficulty,
            "model": r.model,
            "tags": r.tags,
            "passed": r.passed,
            "checks": [c.model_dump() for c in r.checks],
            "policy_violations": r.policy_violations,
            "unnecessary_writes": r.unnecessary_writes,
            "steps": r.steps,
            "tokens": r.tokens,
            "cost_usd": r.cost_usd,
            "time_to_detect_s": r.time_to_detect_s,
            "time_to_remediate_s": r.time_to_remediate_s,
            "incidents": r.incidents,
            "error": r.error,
            "duration_s": r.duration_s,
            "report": r.report,
            "judge": r.judge,
        }
        for r in results
    ]
    return {"scenarios": scenarios, "summary": summarize(results)}


def to_markdown(results: list[ScenarioResult]) -> str:
    summary = summarize(results)
    lines = [
        f"**{summary['passed']}/{summary['scenarios']} passed** ({summary['pass_rate']:.0%}); policy violations: "
        f"{summary['policy_violations']}; unnecessary writes: {summary['unnecessary_writes']}",
        "",
        "| scenario | difficulty | model | passed | steps | tokens | TTD (s, data time) | TTR (s) | failed checks |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        failed = "; ".join(f"{c.check}: {c.detail}" for c in r.checks if not c.passed) or (r.error or "")
        ttd = f"{r.time_to_detect_s:g}" if r.time_to_detect_s is not None else "-"
        ttr = f"{r.time_to_remediate_s:g}" if r.time_to_remediate_s is not None else "-"
        lines.append(
            f"| {r.name} | {r.difficulty} | {r.model} | {'✅' if r.passed else '❌'} | {r.steps} | {r.tokens} | {ttd} | {ttr} | {failed.replace('|', '/')} |"
        )
    lines += ["", "| fault kind | scenarios | pass rate | mean steps | mean tokens |", "|---|---|---|---|---|"]
    for tag, g in summary["by_fault"].items():
        lines.append(f"| {tag} | {g['scenarios']} | {g['pass_rate']:.0%} | {g['mean_steps']} | {g['mean_tokens']} |")
    return "\n".join(lines) + "\n"


def to_png(results: list[ScenarioResult], path: Path) -> None:
    """Grouped bars: pass rate per fault kind, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r.model for r in results})
    tags = sorted({t for r in results for t in r.tags})
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(8.0, len(tags) * 0.55), 4.5))
    for i, model in enumerate(models):
        rates = [_rate([r for r in results if r.model == model and tag in r.tags]) * 100 for tag in tags]
        ax.bar([x + i * width for x in range(len(tags))], rates, width=width, label=model)
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(tags))], tags, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("pass rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Agent eval: pass rate per fault kind")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(results: list[ScenarioResult], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "markdown": folder / "report.md", "png": folder / "pass_rate.png"}
    paths["json"].write_text(json.dumps(to_json(results), indent=2, default=str))
    paths["markdown"].write_text(to_markdown(results))
    to_png(results, paths["png"])
    return paths
