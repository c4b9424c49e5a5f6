"""`dataops eval`: grade the agent on the scenarios of evals/scenarios (a plain function `evals/cli.py` assembles)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli_io import EXIT_FAILED, console, emit_json, out, usage_errors


def eval_command(
    model: Annotated[
        str, typer.Option(help="runbook (deterministic, default), scripted (real openai client, scripted server), openai (DATAOPS_LLM_*).")
    ] = "runbook",
    scenario: Annotated[str, typer.Option(help="Glob over scenario folder names, e.g. '0*' or '*schema*'.")] = "*",
    scenarios_dir: Annotated[Path | None, typer.Option(help="Run scenarios kept outside the repo, in the same format.")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Run each scenario N times (models are not always deterministic).")] = 1,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where report.json, report.md and pass_rate.png go.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report on stdout.")] = False,
    judge: Annotated[bool, typer.Option(help="Also let the configured model grade each report's text (a score; never gates).")] = False,
) -> None:
    """Grade the agent on scenarios: real pipelines, faults, monitors, policies and approvals; checks on the final state.

    Each scenario runs in a fresh state folder. Exits 1 when a scenario fails or a policy was violated.
    """
    from config.settings import load_settings
    from evals.report import summarize, to_json, to_markdown, write_reports
    from evals.runner import Model, run_scenario
    from evals.scenario import SCENARIOS_DIR, discover

    if model not in ("runbook", "scripted", "openai"):
        raise typer.BadParameter(f"{model!r} is not a model; valid: runbook, scripted, openai", param_hint="--model")
    with usage_errors():
        settings = load_settings()
        specs = discover(scenarios_dir or SCENARIOS_DIR, scenario)
        if model == "scripted":
            specs = [s for s in specs if s.model_script]
        if not specs:
            console.print(f"[red]error:[/red] no scenario matches {scenario!r} (with a model_script for --model scripted)")
            raise typer.Exit(2)
        chosen: Model = model  # type: ignore[assignment]
        results = []
        for spec in specs:
            for attempt in range(repeat):
                result = run_scenario(spec, settings, model=chosen)
                if judge:
                    from evals.judge import judge_report

                    verdict = judge_report(settings, scenario=spec.name, description=spec.description, report=result.report)
                    result = result.model_copy(update={"judge": verdict.model_dump()})
                results.append(result)
                if not as_json:
                    mark = "pass" if result.passed else "FAIL"
                    again = f" #{attempt + 1}" if repeat > 1 else ""
                    out.print(f"{mark} {spec.name}{again} [{spec.difficulty}] {result.duration_s:.1f}s", markup=False)
                    for check in result.checks:
                        if not check.passed:
                            out.print(f"     ✗ {check.check}: {check.detail}", markup=False, soft_wrap=True)
                    if result.error:
                        out.print(f"     error: {result.error}", markup=False, soft_wrap=True)
    folder = out_dir or settings.home / "evals" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = write_reports(results, folder)
    summary = summarize(results)
    if as_json:
        emit_json(to_json(results))
    else:
        out.print(to_markdown(results).split("\n\n")[0], markup=False)
        out.print(f"reports: {paths['json']}, {paths['markdown']}, {paths['png']}", markup=False)
    if summary["passed"] < summary["scenarios"] or summary["policy_violations"]:
        raise typer.Exit(EXIT_FAILED)
