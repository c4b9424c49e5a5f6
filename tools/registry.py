"""The one inventory of tools: the agent, the policy engine, the docs and the tests all read it."""

from __future__ import annotations

from typing import Any

from config.errors import ToolError
from tools import forecast, incidents, lake, maintenance, names, observe, oversight, partitions, rollback, runs, schedule, source, verify
from tools.base import ToolSpec

_MODULES = (incidents, runs, lake, source, observe, oversight, verify, partitions, rollback, schedule, maintenance, forecast)


def _collect() -> dict[str, ToolSpec[Any, Any]]:
    found: dict[str, ToolSpec[Any, Any]] = {}
    for module in _MODULES:
        for spec in module.TOOLS:
            if spec.name in found:
                raise ToolError(f"tool {spec.name!r} is registered twice ({module.__name__}); tool names are unique")
            found[spec.name] = spec
    if set(found) != names.ALL:
        raise ToolError(f"tools/names.py and the tool modules disagree: {sorted(set(found) ^ names.ALL)}")
    return found


REGISTRY: dict[str, ToolSpec[Any, Any]] = _collect()


def get_tool(name: str) -> ToolSpec[Any, Any]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ToolError(f"unknown tool {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
