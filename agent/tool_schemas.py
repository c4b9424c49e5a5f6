"""Tool definitions for chat-completions: each registered tool's pydantic input schema in OpenAI's strict subset.

Strict mode makes the endpoint's arguments match the schema, but it accepts only part of JSON Schema: $refs are
inlined, every property is required (optional ones nullable), objects are closed, and keywords it refuses are
said in the description instead. `drop_unset` takes the nulls strict mode made the model send for optional
fields back out of its arguments, so the tool's own defaults apply. A schema strict mode cannot express (an
open mapping, Any, a recursive model) is still offered, unconstrained. Our side re-validates every call anyway.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tools.base import ToolSpec

log = logging.getLogger("agent.llm")  # under the planner's logger, where its other warnings are

# OpenAI's strict mode accepts this subset of JSON Schema; other keywords are dropped, and the ones that
# still matter to the model (lengths, defaults) are said in the description. Our side re-validates anyway.
_STRICT_KEYWORDS = frozenset(
    {"type", "description", "enum", "const", "pattern", "format", "minimum", "maximum", "exclusiveMinimum"}
    | {"exclusiveMaximum", "multipleOf", "minItems", "maxItems"}
)
_STRICT_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
_AS_TEXT = {"minLength": "At least {} characters.", "maxLength": "At most {} characters.", "uniqueItems": "Items are distinct."}
_NOT_EMPTY = "Not empty."


class _NotStrict(Exception):
    """The input schema has a shape strict mode cannot express (an open mapping, Any, a recursive model)."""


def tool_definition(spec: ToolSpec[Any, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chat-completions function tool for `spec`: strict when its input schema allows, its effect in the description."""
    schema = spec.input.model_json_schema() if schema is None else schema
    function: dict[str, Any] = {"name": spec.name, "description": f"[{spec.effect}] {spec.description}"}
    try:
        function |= {"parameters": strict_schema(schema), "strict": True}
    except _NotStrict as exc:
        # Still offered, unconstrained: a tool author's open-ended input must not take the planner down.
        log.warning("tool %s is offered without strict mode: %s", spec.name, exc)
        function |= {"parameters": {k: v for k, v in schema.items() if k != "title"}, "strict": False}
    return {"type": "function", "function": function}


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` in OpenAI's strict subset: $refs inlined, every property required, optional ones nullable, objects closed."""
    return _strict(schema, schema.get("$defs", {}), ())


def _strict(node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    node, seen = _resolve(node, defs, seen)
    if not any(k in node for k in ("type", "anyOf", "enum", "const")):
        raise _NotStrict(f"a value of any type ({node.get('title') or node.get('description') or 'untitled'})")
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in node.items():
        if key == "format" and value not in _STRICT_FORMATS:
            notes.append(f"Format: {value}.")
        elif key in _STRICT_KEYWORDS:
            out[key] = value
        elif key in _AS_TEXT:
            notes.append(_NOT_EMPTY if (key, value) == ("minLength", 1) else _AS_TEXT[key].format(value))
        elif key == "items":
            out["items"] = _strict(value, defs, seen)
        elif key == "anyOf":
            out["anyOf"] = [_strict(v, defs, seen) for v in value]
        elif key == "additionalProperties" and value is not False:
            raise _NotStrict("an open mapping (dict) cannot be strict")
    if node.get("type") == "object":
        if "properties" not in node:
            raise _NotStrict("an object without declared properties cannot be strict")
        required = set(node.get("required", ()))
        out["properties"] = {
            name: _strict_property(sub, defs, seen, optional=name not in required) for name, sub in node["properties"].items()
        }
        out["required"] = list(node["properties"])
        out["additionalProperties"] = False
    if notes:
        out["description"] = " ".join([out["description"], *notes] if out.get("description") else notes)
    return out


def _strict_property(node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...], *, optional: bool) -> dict[str, Any]:
    out = _strict(node, defs, seen)
    if not optional:
        return out
    default = _resolve(node, defs, seen)[0].get("default")
    if default is not None:
        hint = f"Null for the default ({json.dumps(default)})."
        out["description"] = f"{out['description']} {hint}" if out.get("description") else hint
    return _nullable(out)


def _nullable(out: dict[str, Any]) -> dict[str, Any]:
    kind = out.get("type")
    if "anyOf" in out:
        if not any(v.get("type") == "null" for v in out["anyOf"]):
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        return out
    if isinstance(kind, str) and "enum" not in out and "const" not in out:
        return {**out, "type": [kind, "null"]}
    if isinstance(kind, list):
        return out if "null" in kind else {**out, "type": [*kind, "null"]}
    # An enum or const would refuse null even with a nullable type: keep it whole in one branch.
    inner = {k: v for k, v in out.items() if k != "description"}
    described = {"description": out["description"]} if "description" in out else {}
    return {"anyOf": [inner, {"type": "null"}], **described}


def _resolve(node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Follow a local $ref (or pydantic's single-entry allOf around one); the node's own keys win."""
    while True:
        if "$ref" in node:
            name = str(node["$ref"]).removeprefix("#/$defs/")
            if name in seen or name not in defs:
                raise _NotStrict(f"a recursive or external reference {node['$ref']!r}")
            node, seen = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}, (*seen, name)
        elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
            node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node, seen


def drop_unset(value: Any, node: dict[str, Any], defs: dict[str, Any]) -> Any:
    """`value` without the nulls strict mode made the model send for optional fields, so our defaults apply."""
    try:
        node, _ = _resolve(node, defs, ())
    except _NotStrict:
        return value
    if isinstance(value, dict) and isinstance(node.get("properties"), dict):
        properties, required = node["properties"], set(node.get("required", ()))
        return {
            k: drop_unset(v, properties.get(k, {}), defs)
            for k, v in value.items()
            if not (v is None and k in properties and k not in required)
        }
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [drop_unset(v, node["items"], defs) for v in value]
    if isinstance(value, dict | list) and isinstance(node.get("anyOf"), list):
        wanted = "properties" if isinstance(value, dict) else "items"
        for variant in node["anyOf"]:
            if wanted in _resolve(variant, defs, ())[0]:
                return drop_unset(value, variant, defs)
    return value
