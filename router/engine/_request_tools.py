"""Tools and structured output as callers pass them (OpenAI-shaped dicts or our objects),
checked like the rest of a request (``router.engine.request``): bad input raises
InvalidRequestError naming the parameter path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.engine._checks import (
    cache_control,
    describe,
    fail,
    flag,
    json_value,
    nonempty,
    optional_text,
)
from router.types import ResponseFormat, Tool

_FORMAT_TYPES = frozenset({"text", "json_object", "json_schema"})


def to_tool(t: Tool | Mapping[str, Any], i: int = 0) -> Tool:
    """A Tool from a Tool or an OpenAI ``{"type": "function", "function": {...}}`` dict (a
    ``cache_control`` beside ``function``, as LiteLLM and Portkey take it)."""
    where = f"tools[{i}]"
    if isinstance(t, Tool):
        _tool_fields(t.name, t.description, t.parameters, t.strict, where)
        cache_control(t.cache_control, f"{where}.cache_control")
        return t
    if not isinstance(t, Mapping):
        fail(where, f"must be a dict or Tool, not {describe(t)}")
    kind = t.get("type", "function")
    if kind != "function":
        fail(f"{where}.type", f"must be function (got {describe(kind)})")
    fn, fn_path = (t["function"], f"{where}.function") if "function" in t else (t, where)
    if not isinstance(fn, Mapping):
        fail(fn_path, f"must be a dict, not {describe(fn)}")
    params = fn.get("parameters")
    if params is None or (isinstance(params, dict) and not params):
        params = {"type": "object", "properties": {}}
    name, description, strict = _tool_fields(fn.get("name"), fn.get("description"), params,
                                              fn.get("strict"), fn_path)
    return Tool(name=name, description=description, parameters=params, strict=strict,
                cache_control=cache_control(t.get("cache_control"), f"{where}.cache_control"))


def _tool_fields(name: object, description: object, parameters: object, strict: object,
                 where: str) -> tuple[str, str | None, bool | None]:
    name = nonempty(name, f"{where}.name")
    if not isinstance(parameters, dict):
        fail(f"{where}.parameters", f"must be a JSON Schema object, not {describe(parameters)}")
    json_value(parameters, f"{where}.parameters")
    return (name, optional_text(description, f"{where}.description"),
            flag(strict, f"{where}.strict"))


def to_response_format(rf: ResponseFormat | Mapping[str, Any] | None) -> ResponseFormat | None:
    """A ResponseFormat from ours or OpenAI's dict (json_object / json_schema)."""
    if rf is None:
        return None
    if isinstance(rf, ResponseFormat):
        if rf.type not in _FORMAT_TYPES:
            fail("response_format.type", "must be text, json_object or json_schema "
                                         f"(got {describe(rf.type)})")
        if rf.type == "json_schema" and not isinstance(rf.schema, dict):
            fail("response_format.schema", f"must be an object, not {describe(rf.schema)}")
        json_value(rf.schema, "response_format.schema")
        optional_text(rf.name, "response_format.name")
        flag(rf.strict, "response_format.strict")
        return rf
    if not isinstance(rf, Mapping):
        fail("response_format", f"must be a dict or ResponseFormat, not {describe(rf)}")
    kind = rf.get("type")
    if kind == "json_schema":
        return _json_schema_format(rf.get("json_schema"))
    if kind in ("json_object", "text"):
        return ResponseFormat(kind)
    fail("response_format.type", f"must be text, json_object or json_schema "
                                 f"(got {describe(kind)})")


def _json_schema_format(js: object) -> ResponseFormat:
    where = "response_format.json_schema"
    if not isinstance(js, Mapping):
        fail(where, f"must be an object, not {describe(js)}")
    schema = js.get("schema")
    if not isinstance(schema, Mapping):
        fail(f"{where}.schema", f"must be an object, not {describe(schema)}")
    schema = json_value(dict(schema), f"{where}.schema")
    return ResponseFormat("json_schema", schema=schema,
                          name=optional_text(js.get("name"), f"{where}.name") or "response",
                          strict=flag(js.get("strict"), f"{where}.strict"))


__all__ = ["to_response_format", "to_tool"]
