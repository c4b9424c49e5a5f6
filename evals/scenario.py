"""What a scenario is: a folder `evals/scenarios/NNN_slug/scenario.yaml` with data, faults, approvals and checks.

name, difficulty (easy | medium | hard), tags (the fault kinds it exercises), description
runs:        pipeline windows of the bundled real data, run in order (each as of its end + 1 h); a forecast
             name (`forecast`) issues that forecast once at the run's as_of, as `dataops run forecast` does
faults:      source faults injected before the runs, lake faults applied after them (pipelines/faults.py)
after:       more runs after the lake faults (e.g. the day after a bad publish)
monitors:    monitors to evaluate once the runs are done (e.g. a published-data audit)
chat:        messages people send the agent after it worked the incidents (questions, requested actions)
approvals:   what a human answers: default approve | deny | ignore, per-tool overrides, and who answers
expect:      checks on the final state (evals/checks.py)
trajectory:  tools that must / must not be called, maximum steps and tokens
model_script: optional replies of a scripted OpenAI-compatible model, for the LLM path in CI
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config.errors import DefinitionError

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
Difficulty = Literal["easy", "medium", "hard"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSpec(_Spec):
    pipeline: str
    start: date
    end: date
    as_of: datetime | None = Field(default=None, description="Default: the end of the window plus one hour")

    def bounds(self) -> tuple[datetime, datetime, datetime]:
        start = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        end = datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)
        return start, end, self.as_of or end + timedelta(hours=1)


class ApprovalRule(_Spec):
    tool: str
    decision: Literal["approve", "deny", "ignore"]


class ApprovalPolicy(_Spec):
    """What the human does when the agent asks: through the same API as Slack and the CLI."""

    default: Literal["approve", "deny", "ignore"] = "approve"
    by: str = "oncall"
    rules: tuple[ApprovalRule, ...] = ()

    def decision_for(self, tool: str) -> str:
        return next((r.decision for r in self.rules if r.tool == tool), self.default)


class Trajectory(_Spec):
    must_call: tuple[str, ...] = ()
    must_not_call: tuple[str, ...] = ()
    allowed_writes: tuple[str, ...] | None = Field(
        default=None, description="Writes that may happen; any other successful write counts as unnecessary. None: must_call"
    )
    max_steps: int | None = None
    max_tokens: int | None = None


class ChatSpec(_Spec):
    """A person's chat message to the agent after the incidents were worked (questions, or requested actions)."""

    text: str
    user: str = "dana"
    role: Literal["viewer", "operator", "approver"] | None = Field(
        default="operator", description="The user's role, declared in the scenario's ops database; None: no person of the platform"
    )
    thread: str = "eval"


class ScenarioSpec(_Spec):
    name: str
    difficulty: Difficulty
    tags: tuple[str, ...] = Field(min_length=1)
    description: str
    runs: tuple[RunSpec, ...] = Field(min_length=1)
    faults: tuple[dict[str, Any], ...] = ()
    after: tuple[RunSpec, ...] = ()
    monitors: tuple[str, ...] = ()
    chat: tuple[ChatSpec, ...] = ()
    approvals: ApprovalPolicy = ApprovalPolicy()
    expect: tuple[dict[str, Any], ...] = Field(min_length=1)
    trajectory: Trajectory = Trajectory()
    model_script: tuple[dict[str, Any], ...] | None = None
    folder: Path | None = None


def load_scenario(folder: Path) -> ScenarioSpec:
    path = folder / "scenario.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DefinitionError(f"{folder} has no scenario.yaml; a scenario is a folder NNN_slug/ with scenario.yaml") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path} must be a mapping")
    try:
        return ScenarioSpec.model_validate({"name": folder.name, **raw, "folder": folder})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise DefinitionError(f"{path} is invalid: {problems}") from None


def discover(root: Path = SCENARIOS_DIR, pattern: str = "*") -> list[ScenarioSpec]:
    """Every scenario folder under `root` whose name matches the glob `pattern`, in name order."""
    if not root.is_dir():
        raise DefinitionError(f"scenario folder {root} does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "scenario.yaml").exists() and p.match(pattern))
    names: set[str] = set()
    found = []
    for folder in folders:
        scenario = load_scenario(folder)
        if scenario.name in names:
            raise DefinitionError(f"two scenarios are named {scenario.name!r}")
        names.add(scenario.name)
        found.append(scenario)
    return found
