"""What a tool is: an input model, a result model, a function, a declared effect and an idempotency key.

The input model's field descriptions are the prompt the model reads; the `ToolContext` (platform, clock,
actor, memory) is passed in and never appears in the schema. A tool never decides whether it may run:
the policy engine does that from the tool's `effect`, its traits and its `target`, before the function is called.

Traits say what the agent and the policy engine need to know about a tool beyond its effect, so that no
code outside `tools/` has to recognise a tool by its name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from config.errors import DataOpsError, ToolError
from pipelines import lineage
from pipelines.context import PlatformContext
from pipelines.retry import RetryBudget

if TYPE_CHECKING:
    from memory.store import IncidentMemory
    from tools.oversight_views import Oversight

Effect = Literal["read", "write", "destructive"]
EFFECTS: tuple[str, ...] = ("read", "write", "destructive")
In = TypeVar("In", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


class ToolInput(BaseModel):
    """Base of every tool input: unknown fields are refused, so a misspelt argument is an error, not a default."""

    model_config = ConfigDict(extra="forbid")


class Target(BaseModel):
    """What a call touches, as the policy engine sees it."""

    model_config = ConfigDict(frozen=True)

    layer: str | None = Field(default=None, description="bronze, silver, gold, quarantine, ops (incidents, schedules), source or memory")
    table: str | None = None
    pipeline: str | None = None
    partition: str | None = Field(default=None, description="A UTC day, YYYY-MM-DD")
    span_days: float | None = Field(default=None, description="Days of data the call rewrites (backfills, re-runs)")


@dataclass(kw_only=True)
class ToolContext:
    """Everything a tool may use; never part of the model-facing schema."""

    platform: PlatformContext
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    actor: str = "agent"
    incident_id: int | None = None
    call_id: str | None = None
    memory_factory: Callable[[], IncidentMemory] | None = None
    # What is left of the policy's per-incident budget for retrying transient source failures; the agent
    # fills it (policy budget minus the incident's earlier attempts), the default is the policy's default.
    retry_budget: RetryBudget = field(default_factory=RetryBudget)
    # Approvals and the audit log, read through the agent layer (a tool never imports the policies).
    oversight: Oversight | None = None

    def memory(self) -> IncidentMemory:
        if self.memory_factory is None:
            from memory.store import IncidentMemory

            return IncidentMemory.open(self.platform.settings)
        return self.memory_factory()


@dataclass(frozen=True, kw_only=True)
class ToolSpec(Generic[In, R]):
    """One tool: everything about it except how the agent decides to call it.

    Traits (all default to False):

    - `runs_pipeline`: re-runs a pipeline over a window; its result lists the runs with status and held days,
      and the policy's backfill limits, re-run rate and re-run-of-published rules apply to it.
    - `checks_containment`: a read whose result's `contained` says the quarantined rows stayed out of a
      published partition; a held check of the incident's own partition counts as verification.
    - `settles_incident`: changes an incident's status or notes: bookkeeping, not a change to data.
    - `needs_verification`: allowed only after a verification in the same thread showed the problem gone.
    - `restores_snapshot`: moves a table back to an earlier snapshot, discarding what was published since.
    - `defers_to_green_window`: heavy work the agent may run later, at the greenest window of the carbon-intensity
      forecast (DATAOPS_BACKFILL_GREEN_*), once the policy allowed or a person approved it.
    """

    name: str
    description: str
    input: type[In]
    result: type[R]
    effect: Effect
    run: Callable[[ToolContext, In], R]
    target: Callable[[ToolContext, In], Target] = field(default=lambda _ctx, _args: Target())
    runs_pipeline: bool = False
    checks_containment: bool = False
    settles_incident: bool = False
    needs_verification: bool = False
    restores_snapshot: bool = False
    defers_to_green_window: bool = False

    def __post_init__(self) -> None:
        # A trait that contradicts the effect would let a policy rule or the verification trust the wrong tool.
        changes = {
            "runs_pipeline": self.runs_pipeline,
            "settles_incident": self.settles_incident,
            "needs_verification": self.needs_verification,
            "restores_snapshot": self.restores_snapshot,
            "defers_to_green_window": self.defers_to_green_window,
        }
        if self.reads_only and any(changes.values()):
            wrong = ", ".join(name for name, on in changes.items() if on)
            raise ToolError(f"tool {self.name!r} is declared read but has traits of a write: {wrong}")
        if self.checks_containment and not self.reads_only:
            raise ToolError(f"tool {self.name!r} declares checks_containment, which only a read tool may; its effect is {self.effect!r}")

    @property
    def reads_only(self) -> bool:
        """The tool changes nothing (effect `read`)."""
        return self.effect == "read"

    def parse(self, arguments: dict[str, Any] | None) -> In:
        """Validate the model's arguments on our side; raise ToolError naming every bad field."""
        from pydantic import ValidationError

        try:
            return self.input.model_validate(arguments or {})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in exc.errors())
            fields = ", ".join(self.input.model_fields) or "none"
            raise ToolError(f"invalid arguments for {self.name}: {problems}. Its fields: {fields}") from None

    def idempotency_key(self, args: BaseModel) -> str:
        """Same tool, same arguments, same key: the audit log uses it to refuse doing a write twice in a thread."""
        canonical = json.dumps(args.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return f"{self.name}:{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"

    def invoke(self, ctx: ToolContext, args: BaseModel) -> R:
        """Run the tool; errors of the platform become ToolErrors the model can read."""
        assert isinstance(args, self.input)
        try:
            return self.run(ctx, args)
        except ToolError:
            raise
        except DataOpsError as exc:
            raise ToolError(f"{self.name} failed: {exc}") from exc


def table_target(ctx: ToolContext, table: str, **extra: Any) -> Target:
    """The target of a call on `table`, with a clear error for an unknown name."""
    spec = ctx.platform.inventory.table(table)
    return Target(layer=spec.layer, table=table, **extra)


def pipeline_of_table(ctx: ToolContext, table: str) -> str | None:
    return lineage.owning_pipeline(ctx.platform.inventory, table)
