"""The runbook planner: deterministic plans from config/runbooks.yaml, the default when no model is set.

It is stateless: where it stands in a runbook is read back from the turns (each call id carries the index
of the step that proposed it), so a restart or a resumed approval continues at the right step. In chat it
answers a fixed set of questions with read tools and proposes the actions it recognises; it says it is
the runbook planner whenever it speaks.

It never proposes a re-run or backfill of a paused pipeline (`{pauses}`, gathered with the incident): a
person paused it for a reason the runbook cannot judge, and the run would be refused after someone had
approved it. It escalates instead, naming who paused the pipeline, why, and how to resume it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.chat_intents import plan_chat
from agent.facts import PIPELINE_RUNNERS
from agent.planner import Outcome, PlanningState, PlanStep, ProposedCall, Turn
from config.errors import DefinitionError

NAME = "runbook planner"
_FIELD = re.compile(r"\{([a-zA-Z_][\w.]*)\}")
_COMPARE = re.compile(r"^(not\s+)?([\w.]+)\s*(?:(==|!=|>=|<=|>|<)\s*(.+))?$")


class RunbookStepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    foreach: str | None = Field(
        default=None, description="A path to a list: one call per item, `{item}` in args; `save` keeps the list of results"
    )
    save: str | None = None
    when: str | None = None
    only: str | None = Field(default=None, description="With `foreach`: a condition on `item` an item must meet to get its call")
    finish: Literal["resolved", "escalated", "nothing_to_do"] | None = None
    note: str = ""

    @field_validator("when", "only")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        # A malformed condition fails when the runbooks load, naming itself, not in the middle of an incident.
        for part in conditions(value or ""):
            if not _COMPARE.match(part):
                raise ValueError(f"condition {part!r} is not '<path>', 'not <path>' or '<path> <op> <value>' (joined by 'and')")
        return value


class RunbookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kinds: tuple[str, ...]
    doc: str = ""
    steps: tuple[RunbookStepSpec, ...]


def load_runbooks(path: Path, *, tools: set[str] | None = None) -> dict[str, RunbookSpec]:
    """Read and check the runbooks; a step naming an unknown tool fails here, not in the middle of an incident."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        books = {name: RunbookSpec.model_validate({"name": name, **body}) for name, body in (raw.get("runbooks") or {}).items()}
    except FileNotFoundError:
        raise DefinitionError(f"runbooks file {path} does not exist; set DATAOPS_RUNBOOKS_FILE or restore config/runbooks.yaml") from None
    except (yaml.YAMLError, ValidationError, TypeError) as exc:
        raise DefinitionError(f"runbooks file {path} is invalid: {exc}") from None
    seen: dict[str, str] = {}
    for book in books.values():
        for kind in book.kinds:
            if kind in seen:
                raise DefinitionError(f"incident kind {kind!r} is claimed by runbooks {seen[kind]!r} and {book.name!r}")
            seen[kind] = book.name
        for step in book.steps:
            if (step.tool is None) == (step.finish is None):
                raise DefinitionError(f"runbook {book.name!r}: every step has either `tool` or `finish`: {step}")
            if tools is not None and step.tool is not None and step.tool not in tools:
                raise DefinitionError(f"runbook {book.name!r} names unknown tool {step.tool!r}; known: {', '.join(sorted(tools))}")
    return books


def lookup(path: str, scope: dict[str, Any]) -> Any:
    """`a.b.0.c` in nested dicts and lists; None where a part is missing."""
    value: Any = scope
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def render(template: Any, scope: dict[str, Any]) -> Any:
    """Fill `{path}` fields; a template that is exactly one field keeps the value's type (ids stay ints)."""
    if isinstance(template, dict):
        return {k: render(v, scope) for k, v in template.items()}
    if not isinstance(template, str):
        return template
    whole = _FIELD.fullmatch(template)
    if whole:
        return lookup(whole.group(1), scope)
    return _FIELD.sub(lambda m: _text(lookup(m.group(1), scope)), template)


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) if value else "none"
    return "?" if value is None else str(value)


# " and " outside quotes: `evidence.note == 'rain and wind'` is one comparison.
_AND = re.compile(r"""\s+and\s+(?=(?:[^'"]*'[^']*')*(?:[^'"]*"[^"]*")*[^'"]*$)""")


def conditions(condition: str) -> list[str]:
    """The comparisons a `when` joins with "and", quoted values kept whole."""
    return [part for part in _AND.split(condition.strip()) if part] if condition.strip() else []


def holds(condition: str, scope: dict[str, Any]) -> bool:
    """Whether a step's `when` holds: one comparison, or several joined by "and" (all must hold). The value compared
    with is a literal, or another path's value written as "{path}"."""
    parts = conditions(condition)
    if len(parts) > 1:
        return all(holds(part, scope) for part in parts)
    match = _COMPARE.match(condition.strip())
    if not match:
        raise DefinitionError(f"runbook condition {condition!r} is not '<path>', 'not <path>' or '<path> <op> <value>' (joined by 'and')")
    negate, path, op, literal = match.groups()
    value = lookup(path, scope)
    if op is None:
        result = bool(value)
    else:
        reference = _FIELD.fullmatch(literal.strip())  # "{evidence.bad_run_id}": another path's value, not a literal
        expected = lookup(reference[1], scope) if reference else yaml.safe_load(literal)
        try:
            result = {
                "==": value == expected,
                "!=": value != expected,
                ">": value is not None and value > expected,
                "<": value is not None and value < expected,
                ">=": value is not None and value >= expected,
                "<=": value is not None and value <= expected,
            }[op]
        except TypeError:
            result = False
    return not result if negate else result


def _index(turn: Turn) -> tuple[int, int]:
    """(step index, item index) from a call id ending in -rb<step> or -rb<step>x<item>; (-1, -1) for other calls."""
    tail = turn.call.id.rsplit("-rb", 1)
    step, _, item = tail[1].partition("x") if len(tail) == 2 else ("", "", "")
    if not step.isdigit() or (item and not item.isdigit()):
        return -1, -1
    return int(step), int(item) if item else -1


def _items(step: RunbookStepSpec, scope: dict[str, Any]) -> list[Any]:
    """What a step iterates over: its `foreach` list, or one pass."""
    if step.foreach is None:
        return [None]
    value = lookup(step.foreach, scope)
    items = list(value) if isinstance(value, list | tuple) else []
    return [item for item in items if step.only is None or holds(step.only, scope | {"item": item})]


def _paused_run(tool: str, arguments: dict[str, Any], scope: dict[str, Any]) -> str | None:
    """Why a call that runs a paused pipeline is not proposed; None for any other call."""
    pipeline = arguments.get("pipeline")
    note = (scope.get("pauses") or {}).get(pipeline) if tool in PIPELINE_RUNNERS else None
    if note is None:
        return None
    window = f" over {arguments.get('start')}..{arguments.get('end')}" if arguments.get("start") else ""
    return (
        f"{note}. {tool}{window} was not proposed: a re-run or backfill would bypass the pause; "
        f"a human must decide when {pipeline} runs again."
    )


class RunbookPlanner:
    """Follows the runbook of the incident's kind, one tool call per step."""

    name = NAME

    def __init__(self, runbooks: dict[str, RunbookSpec]) -> None:
        self.runbooks = runbooks
        self.by_kind = {kind: book for book in runbooks.values() for kind in book.kinds}

    def plan(self, state: PlanningState) -> PlanStep:
        if state.mode == "chat":
            return plan_chat(state, planner=NAME)
        incident = state.incident or {}
        book = self.by_kind.get(str(incident.get("kind")))
        if book is None:
            return self._finish("escalated", f"No runbook covers incidents of kind {incident.get('kind')!r}; a human must look.")
        scope = dict(state.context.get("vars") or {})
        scope["verification"] = state.verification or {}
        done = {_index(t): t for t in state.turns}
        for index, step in enumerate(book.steps):
            if step.when is not None and not holds(step.when, scope):
                continue
            if step.finish is not None:
                return self._finish(step.finish, render(step.note, scope), book=book.name)
            items = _items(step, scope)
            results: list[dict[str, Any]] = []
            for k, item in enumerate(items):
                turn = done.get((index, k if step.foreach else -1))
                if turn is None:
                    suffix = f"x{k}" if step.foreach else ""
                    arguments = render(step.args, scope | {"item": item})
                    paused = _paused_run(str(step.tool), arguments, scope)
                    if paused is not None:
                        return self._finish("escalated", paused, book=book.name)
                    call = ProposedCall(id=f"{state.thread_id}-s{state.step}-rb{index}{suffix}", name=str(step.tool), arguments=arguments)
                    of = f" ({k + 1} of {len(items)})" if step.foreach else ""
                    return PlanStep(calls=[call], planner=NAME, message=f"{book.name}: step {index + 1} of {len(book.steps)}{of}")
                if turn.status != "ok":
                    if state.context.get("effects", {}).get(turn.call.name) == "read" and turn.status == "error":
                        continue  # a failed diagnosis step does not stop the runbook; its result is simply missing
                    return self._finish("escalated", f"{turn.call.name} was {turn.status}: {turn.message}", book=book.name)
                results.append(turn.result or {})
            if step.save and (results or step.foreach):
                scope[step.save] = results if step.foreach else results[0]
        return self._finish("escalated", f"runbook {book.name} ran out of steps without a verified fix", book=book.name)

    def _finish(self, outcome: Outcome, note: str, *, book: str | None = None) -> PlanStep:
        prefix = f"[{NAME}{f', {book}' if book else ''}] "
        return PlanStep(outcome=outcome, message=prefix + note, planner=NAME)
