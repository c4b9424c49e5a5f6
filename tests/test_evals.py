"""The eval suite: every scenario passes with the runbook planner; the LLM path passes its subset; reports are complete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.errors import DefinitionError
from config.settings import load_settings
from evals.runner import run_scenario
from evals.scenario import SCENARIOS_DIR, discover, load_scenario
from pipelines.faults import FAULT_KINDS
from tools.registry import REGISTRY

SCENARIOS = discover()
SCRIPTED = [s for s in SCENARIOS if s.model_script]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for key in list(os.environ):
        if key.startswith("DATAOPS_"):
            monkeypatch.delenv(key)
    return load_settings(home=tmp_path / "unused")


def test_the_suite_covers_every_fault_every_write_tool_and_every_kind_of_outcome() -> None:
    assert len(SCENARIOS) >= 30
    injected = {f["kind"] for s in SCENARIOS for f in s.faults}
    missing = set(FAULT_KINDS) - injected
    assert not missing, f"no scenario injects {sorted(missing)}"
    tags = {t for s in SCENARIOS for t in s.tags}
    assert {"clean_run", "prompt_injection", "two_incidents_one_cause", "real_defect"} <= tags
    exercised = {t for s in SCENARIOS for t in s.trajectory.must_call} | {
        c["tool"] for s in SCENARIOS for c in s.expect if c.get("check") == "audit"
    }
    writes = {name for name, spec in REGISTRY.items() if spec.effect != "read"} - {
        "annotate_incident",
        "resolve_incident",
        "escalate_incident",
    }
    assert writes <= exercised, f"no scenario exercises {sorted(writes - exercised)}"
    statuses = {c.get("status") for s in SCENARIOS for c in s.expect if c.get("check") == "incident"}
    assert {"resolved", "escalated", "acknowledged"} <= statuses, "fixing, escalating and waiting for approval are all graded"
    assert {s.difficulty for s in SCENARIOS} == {"easy", "medium", "hard"}


@pytest.mark.slow
@pytest.mark.parametrize("spec", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_runbook_planner_passes(spec, settings) -> None:  # type: ignore[no-untyped-def]
    result = run_scenario(spec, settings, model="runbook")
    failed = [f"{c.check}: {c.detail}" for c in result.checks if not c.passed]
    assert result.passed, f"{result.error or ''} {failed}"
    assert result.policy_violations == [] and result.unnecessary_writes == []
    ended = [i for i in result.incidents if i["status"] in ("resolved", "escalated")]
    assert result.report or not (ended or spec.chat), "the report carries the agent's words for every settled incident and chat answer"


@pytest.mark.slow
@pytest.mark.parametrize("spec", SCRIPTED, ids=[s.name for s in SCRIPTED])
def test_the_llm_path_passes_with_the_real_openai_client(spec, settings) -> None:  # type: ignore[no-untyped-def]
    result = run_scenario(spec, settings, model="scripted")
    assert result.passed, [f"{c.check}: {c.detail}" for c in result.checks if not c.passed]
    assert result.tokens > 0, "tokens reported by the endpoint are counted"


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAOPS_")} | {"DATAOPS_HOME": str(home)}
    return subprocess.run([str(Path(sys.executable).parent / "dataops"), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_cli_writes_json_markdown_and_png_and_fails_on_a_failing_check(tmp_path: Path) -> None:
    done = _cli("eval", "--scenario", "001*", "--json", "--out", str(tmp_path / "out"), home=tmp_path / "home")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    [row] = report["scenarios"]
    assert {
        "name",
        "difficulty",
        "passed",
        "checks",
        "policy_violations",
        "steps",
        "tokens",
        "time_to_detect_s",
        "time_to_remediate_s",
        "report",
    } <= set(row)
    assert report["summary"]["pass_rate"] == 1.0 and report["summary"]["policy_violations"] == 0
    assert (tmp_path / "out" / "report.md").read_text().startswith("**1/1 passed**")
    assert (tmp_path / "out" / "pass_rate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A scenario kept outside the repo, whose expectation is wrong: the suite says so and exits 1.
    outside = tmp_path / "mine" / "900_wrong_expectation"
    shutil.copytree(SCENARIOS_DIR / "001_clean_run_do_nothing", outside)
    spec = yaml.safe_load((outside / "scenario.yaml").read_text())
    spec["expect"] = [{"check": "rows", "table": "silver.carbon_intensity", "day": "2023-03-02", "count": 47}]
    (outside / "scenario.yaml").write_text(yaml.safe_dump(spec))
    failed = _cli("eval", "--scenarios-dir", str(tmp_path / "mine"), "--out", str(tmp_path / "out2"), home=tmp_path / "home")
    assert failed.returncode == 1
    assert "FAIL 900_wrong_expectation" in failed.stdout and "has 48 rows on 2023-03-02 (want == 47)" in failed.stdout


def test_bad_scenarios_are_refused_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "001_bad"
    folder.mkdir()
    (folder / "scenario.yaml").write_text("difficulty: trivial\ntags: [x]\ndescription: d\nruns: []\nexpect: []\n")
    with pytest.raises(DefinitionError, match="difficulty"):
        load_scenario(folder)
    with pytest.raises(DefinitionError, match="does not exist"):
        discover(tmp_path / "nowhere")


def test_the_llm_judge_scores_report_text_and_never_gates() -> None:
    from evals.judge import judge_report
    from evals.model_server import ScriptedOpenAI

    with ScriptedOpenAI(ScriptedOpenAI.text('{"score": 0.75, "reason": "names the cause, misses the follow-up"}')) as server:
        settings = load_settings(llm_base_url=server.base_url, llm_model="judge", llm_api_key="sk-test")
        verdict = judge_report(settings, scenario="002", description="nulls", report="Contained: five slots held.")
        sent = server.chat_requests[0].messages[-1]["content"]
    assert (verdict.score, verdict.reason) == (0.75, "names the cause, misses the follow-up")
    assert "Contained: five slots held." in sent and sent.startswith("<data>")
    with pytest.raises(Exception, match="needs a model"):
        judge_report(load_settings(), scenario="x", description="y", report="z")
