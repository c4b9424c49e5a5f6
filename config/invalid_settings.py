"""Settings validation errors as one line a person can act on: the environment variable, the bad value, the valid ones."""

from __future__ import annotations

import re
import typing
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

_URL_PASSWORD = re.compile(r"(?P<head>://[^\s/:@]*:)[^\s@/]+@")


def describe_invalid(
    error: ValidationError, model: type[BaseModel], secrets: frozenset[str] | set[str] | tuple[str, ...], *, urls: tuple[str, ...] = ()
) -> str:
    """One line: `DATAOPS_NAME='value' is not valid: why; valid: what` for each bad setting, joined by '; '.

    Secret settings are shown as (hidden), and the password inside a URL setting (`urls`) as ***."""
    problems = []
    for item in error.errors(include_url=False):
        name = str(item["loc"][0]) if item["loc"] else ""
        reason = str(item["msg"]).removeprefix("Value error, ")
        if not name:
            problems.append(reason)
            continue
        shown = "(hidden)" if name in secrets else repr(item.get("input"))
        if name in urls:
            shown = _URL_PASSWORD.sub(r"\g<head>***@", shown)
        field = model.model_fields.get(name)
        valid = _valid_values(field.annotation, field.metadata) if field is not None and item["type"] != "value_error" else ""
        problems.append(f"DATAOPS_{name.upper()}={shown} is not valid: {reason}" + (f"; valid: {valid}" if valid else ""))
    return "; ".join(problems)


def _valid_values(annotation: Any, metadata: list[Any]) -> str:
    """'an integer from 1 to 65535', 'a number above 0', 'one of 'local', 'ray''... from a field's type and bounds."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    kind = annotation if not args else args[0]
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(kind))
    noun = {int: "an integer", float: "a number", bool: "true or false", datetime: "an ISO 8601 instant (2023-01-01T00:00Z)"}.get(kind, "")
    limits = {attr: getattr(rule, attr) for rule in metadata for attr in ("ge", "gt", "le", "lt") if getattr(rule, attr, None) is not None}
    if "ge" in limits and "le" in limits:
        bounds = [f"from {limits['ge']:g} to {limits['le']:g}"]
    else:
        words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}
        bounds = [f"{words[attr]} {bound:g}" for attr, bound in limits.items()]
    return " ".join(p for p in (noun, " and ".join(bounds)) if p)
