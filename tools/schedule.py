"""Schedule tools: pause and resume a pipeline's schedule; and the words that say a pipeline is paused.

A pause is a person's (or the agent's) decision recorded in the ops database; `paused_note` says who made
it, why, and how to undo it, so a refused re-run, the runbook planner and the report all name the same facts.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from pipelines.context import PlatformContext
from pipelines.control import pause_note
from tools import names
from tools.base import Target, ToolContext, ToolInput, ToolSpec


class PausePipelineInput(ToolInput):
    pipeline: str = Field(description="The pipeline whose schedule stops firing, e.g. carbon_intensity.")
    reason: str = Field(min_length=1, max_length=500, description="Why, for whoever resumes it.")


class ResumePipelineInput(ToolInput):
    pipeline: str = Field(description="The pipeline whose schedule fires again.")
    reason: str = Field(default="", max_length=500, description="Why it is safe to resume.")


class ScheduleResult(BaseModel):
    pipeline: str
    paused: bool
    changed: bool = Field(description="False when the schedule was already in that state.")


def paused_notes(platform: PlatformContext) -> dict[str, str]:
    """Every paused pipeline with who paused it, why, and how to resume it (the words of `dataops status`)."""
    return {name: pause_note(name, state.changed_by, state.reason) for name, state in platform.control.states().items() if state.paused}


def paused_note(platform: PlatformContext, pipeline: str) -> str | None:
    """`paused_notes` of one pipeline; None when it is not paused."""
    return paused_notes(platform).get(pipeline)


def _set(ctx: ToolContext, pipeline: str, paused: bool, reason: str) -> ScheduleResult:
    ctx.platform.inventory.pipeline(pipeline)  # names the known ones if unknown
    before = ctx.platform.control.is_paused(pipeline)
    if before != paused:
        ctx.platform.control.set_paused(pipeline, paused, reason=reason, actor=ctx.actor)
    return ScheduleResult(pipeline=pipeline, paused=paused, changed=before != paused)


def pause_pipeline(ctx: ToolContext, args: PausePipelineInput) -> ScheduleResult:
    return _set(ctx, args.pipeline, True, args.reason)


def resume_pipeline(ctx: ToolContext, args: ResumePipelineInput) -> ScheduleResult:
    return _set(ctx, args.pipeline, False, args.reason)


def _target(ctx: ToolContext, args: PausePipelineInput | ResumePipelineInput) -> Target:
    spec = ctx.platform.inventory.pipelines.get(args.pipeline)
    return Target(layer="ops", table="ops.schedules", pipeline=args.pipeline if spec else None)


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.PAUSE_PIPELINE,
        description="Stop a pipeline's schedule (runs already going finish). Use on schema drift, so nothing half-understood lands.",
        input=PausePipelineInput,
        result=ScheduleResult,
        effect="write",
        run=pause_pipeline,
        target=_target,
    ),
    ToolSpec(
        name=names.RESUME_PIPELINE,
        description="Let a paused pipeline's schedule fire again; it catches up from its watermark.",
        input=ResumePipelineInput,
        result=ScheduleResult,
        effect="write",
        run=resume_pipeline,
        target=_target,
    ),
]
