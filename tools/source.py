"""Source tools: ask a pipeline's source for a day again and compare what it serves with silver."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field

from config.errors import SourceError, ToolError
from pipelines import refetch
from pipelines.refetch import SourceComparison
from pipelines.source_extent import MAX_DAYS, ExtentComparison, compare_extent
from tools import names
from tools.base import Target, ToolContext, ToolInput, ToolSpec


class RefetchAndDiffInput(ToolInput):
    pipeline: str = Field(description="The pipeline whose source to ask, e.g. carbon_intensity, generation_mix or weather.")
    day: date = Field(description="The UTC day to fetch again and compare with silver, YYYY-MM-DD.")


def refetch_and_diff(ctx: ToolContext, args: RefetchAndDiffInput) -> SourceComparison:
    ctx.platform.inventory.pipeline(args.pipeline)  # names the known ones if unknown
    try:
        return refetch.refetch_and_diff(ctx.platform, args.pipeline, args.day, as_of=ctx.now)
    except SourceError as exc:
        source = ctx.platform.inventory.pipeline(args.pipeline).source
        raise ToolError(
            f"the {source} source failed for {args.day}: {type(exc).__name__}: {exc}. "
            "Nothing was compared; retry later, or escalate if the source keeps failing."
        ) from None


class RefetchRangeInput(ToolInput):
    pipeline: str = Field(description="The pipeline whose source to ask.")
    start: date = Field(description="First UTC day to compare, YYYY-MM-DD.")
    end: date = Field(description=f"The day after the last one (exclusive), YYYY-MM-DD; at most {MAX_DAYS} days after start.")


def refetch_range(ctx: ToolContext, args: RefetchRangeInput) -> ExtentComparison:
    ctx.platform.inventory.pipeline(args.pipeline)
    try:
        return compare_extent(ctx.platform, args.pipeline, args.start, args.end, as_of=ctx.now)
    except SourceError as exc:
        source = ctx.platform.inventory.pipeline(args.pipeline).source
        raise ToolError(
            f"the {source} source failed for {args.start}..{args.end}: {type(exc).__name__}: {exc}. "
            "Nothing was compared; retry later, or escalate if the source keeps failing."
        ) from None


def _range_target(ctx: ToolContext, args: RefetchRangeInput) -> Target:
    silver = ctx.platform.inventory.pipeline(args.pipeline).silver
    return Target(layer="source", table=silver, pipeline=args.pipeline, partition=args.start.isoformat())


def _source_target(ctx: ToolContext, args: RefetchAndDiffInput) -> Target:
    silver = ctx.platform.inventory.pipeline(args.pipeline).silver
    return Target(layer="source", table=silver, pipeline=args.pipeline, partition=args.day.isoformat())


TOOLS: list[ToolSpec[Any, Any]] = [
    ToolSpec(
        name=names.REFETCH_AND_DIFF,
        description=(
            "Fetch one day from a pipeline's source as it stands now and compare it with silver, writing nothing: slots missing "
            "in silver or at the source, values revised since, and a verdict (would a re-run fill it, or does the source still lack it)."
        ),
        input=RefetchAndDiffInput,
        result=SourceComparison,
        effect="read",
        run=refetch_and_diff,
        target=_source_target,
    ),
    ToolSpec(
        name=names.REFETCH_RANGE,
        description=(
            "Fetch every day of [start, end) from a pipeline's source as it stands now and compare each with silver, writing "
            "nothing: which days a backfill would complete (joined into ranges), which the source still lacks and how many slots."
        ),
        input=RefetchRangeInput,
        result=ExtentComparison,
        effect="read",
        run=refetch_range,
        target=_range_target,
    ),
]
