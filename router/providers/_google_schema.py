"""JSON Schema to the Gemini API ``Schema`` object, "a select subset of an OpenAPI 3.0 schema".

Fields kept are those of ``google.ai.generativelanguage.v1beta.Schema`` (type, format, title,
description, nullable, enum, items, properties, required, propertyOrdering, anyOf, min/max
Items/Length/Properties, minimum, maximum, pattern, example, default); the API answers 400
("Unknown name ...") to anything else, e.g. ``additionalProperties`` or ``$schema``. References
are inlined, ``oneOf`` becomes ``anyOf``, ``allOf`` is merged, and ``null`` in a type list or an
``anyOf`` becomes ``nullable``. Reference: https://ai.google.dev/api/caching#Schema
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_COPIED = ("title", "description", "pattern", "example", "default", "minimum", "maximum",
           "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
           "propertyOrdering")
#: format values the API accepts per type; others fail the request on the Gemini Developer API.
_FORMATS = {"STRING": {"enum", "date-time"}, "NUMBER": {"float", "double"},
            "INTEGER": {"int32", "int64"}}
_MAX_DEPTH = 32  # bounds recursive $refs: past it a schema degrades to its bare type


def to_gemini_schema(schema: Any) -> dict[str, Any]:
    """The Gemini ``Schema`` for a JSON Schema (a non-object gives ``{}``, i.e. any value)."""
    if not isinstance(schema, Mapping):
        return {}
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), Mapping):
            defs.update(schema[key])
    return _convert(schema, defs, 0)


def _resolve(ref: Any, defs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if not isinstance(ref, str):
        return None
    for prefix in ("#/$defs/", "#/definitions/"):
        if ref.startswith(prefix):
            target = defs.get(ref[len(prefix):])
            return target if isinstance(target, Mapping) else None
    return None


def _convert(schema: Any, defs: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        return {}
    if "$ref" in schema:
        target = _resolve(schema["$ref"], defs)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        if target is None or depth >= _MAX_DEPTH:
            return _convert({"type": "object", **rest}, defs, _MAX_DEPTH)
        return _convert({**target, **rest}, defs, depth + 1)
    if isinstance(schema.get("allOf"), list):
        return _convert(_merge_all_of(schema, defs), defs, depth + 1)
    out: dict[str, Any] = {k: schema[k] for k in _COPIED if k in schema}
    _type(schema.get("type"), out)
    variants = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(variants, list):
        _any_of(variants, defs, depth, out)
    _enum(schema, out)
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = fmt
    if depth < _MAX_DEPTH:
        _children(schema, defs, depth, out)
    return out


def _type(value: Any, out: dict[str, Any]) -> None:
    types = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    names = [t for t in types if isinstance(t, str) and t != "null"]
    if len(names) < len(types):
        out["nullable"] = True
    if len(names) == 1:
        out["type"] = names[0].upper()
    elif len(names) > 1:
        out["anyOf"] = [{"type": t.upper()} for t in names]


def _any_of(variants: list[Any], defs: Mapping[str, Any], depth: int,
            out: dict[str, Any]) -> None:
    nulls = [v for v in variants if isinstance(v, Mapping) and v.get("type") == "null"]
    rest = [_convert(v, defs, depth + 1) for v in variants if v not in nulls]
    if nulls:
        out["nullable"] = True
    if len(rest) == 1:
        for key, value in rest[0].items():
            out.setdefault(key, value)
    elif rest:
        out["anyOf"] = rest


def _enum(schema: Mapping[str, Any], out: dict[str, Any]) -> None:
    values = schema.get("enum")
    if "const" in schema:
        values = [schema["const"]]
    if not isinstance(values, list):
        return
    if None in values:
        out["nullable"] = True
    strings = [v for v in values if v is not None]
    # The API's enum holds strings only: other enums are dropped rather than rejected.
    if strings and all(isinstance(v, str) for v in strings):
        out["enum"] = strings
        out.setdefault("type", "STRING")


def _children(schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int,
              out: dict[str, Any]) -> None:
    props = schema.get("properties")
    if isinstance(props, Mapping) and props:
        out.setdefault("type", "OBJECT")
        # A single anyOf variant was merged in already: its properties and required stay, and
        # every required name must be a property (the API rejects the schema otherwise).
        merged = {**out.get("properties", {}),
                  **{str(k): _convert(v, defs, depth + 1) for k, v in props.items()}}
        out["properties"] = merged
        required = list(dict.fromkeys(
            r for r in (*out.get("required", ()), *(schema.get("required") or ()))
            if r in merged))
        if required:
            out["required"] = required
        else:
            out.pop("required", None)
    items = schema.get("items")
    if isinstance(items, list | Mapping) and items:
        out.setdefault("type", "ARRAY")
    if isinstance(items, Mapping):
        out["items"] = _convert(items, defs, depth + 1)
    elif isinstance(items, list) and items:  # a tuple: any of its item schemas
        converted = [_convert(i, defs, depth + 1) for i in items]
        out["items"] = converted[0] if len(converted) == 1 else {"anyOf": converted}


def _merge_all_of(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    props: dict[str, Any] = dict(merged.get("properties") or {})
    required: list[Any] = list(merged.get("required") or ())
    for part in schema["allOf"]:
        if isinstance(part, Mapping) and "$ref" in part:
            part = _resolve(part["$ref"], defs)
        if not isinstance(part, Mapping):
            continue
        props.update(part.get("properties") or {})
        required += [r for r in part.get("required") or () if r not in required]
        for key, value in part.items():
            if key not in ("properties", "required"):
                merged.setdefault(key, value)
    if props:
        merged["properties"] = props
    if required:
        merged["required"] = required
    return merged
