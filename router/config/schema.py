"""The route file's JSON Schema (the published one plus installed plugin kinds) and its
compiled validators: jsonschema-rs answers "is it valid?", jsonschema explains failures. Shared
by the structural check (check.py) and the explanation of failures (_explain.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import jsonschema_rs

from router.config.model import KIND_FIELDS
from router.providers import plugins, registry
from router.providers.kinds import KINDS
from router.secret import SECRET_SETTINGS

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

Path = tuple[str | int, ...]
T = TypeVar("T")

#: The published schema (schemas/routes.schema.json). Files are checked against
#: ``effective_schema()``: this one plus the kinds of installed provider plugins.
SCHEMA: dict[str, Any] = plugins.static_schema()
SECRET_KEYS = SECRET_SETTINGS | {"headers"}
ALL_KIND_FIELDS = frozenset().union(*KIND_FIELDS.values())
#: kind -> an example base_url, for hints (from the kinds table).
BASE_URLS = {k: s.base_url_example for k, s in KINDS.items() if k != "fake"}


def effective_schema() -> dict[str, Any]:
    """The schema files are checked against: the same object while the plugin kinds stay."""
    return registry.route_schema()


def _per_schema(cache: dict[int, tuple[dict[str, Any], T]],
                build: Callable[[dict[str, Any]], T]) -> T:
    """build(schema), compiled once per effective schema (the entry keeps the schema alive,
    so its id is not reused)."""
    schema = effective_schema()
    hit = cache.get(id(schema))
    if hit is None:
        if len(cache) >= 8:
            cache.clear()
        hit = cache[id(schema)] = (schema, build(schema))
    return hit[1]


_VALIDATORS: dict[int, tuple[dict[str, Any], Draft202012Validator]] = {}


def explaining_validator() -> Draft202012Validator:
    # jsonschema explains failures only; a valid file never imports it (~100 ms).
    from jsonschema import Draft202012Validator

    return _per_schema(_VALIDATORS, Draft202012Validator)


# -- the yes/no check ---------------------------------------------------------------------------
# jsonschema (pure Python) takes seconds on a 5,000-alias file; jsonschema-rs validates the
# same schema (draft 2020-12, unevaluatedProperties included) in milliseconds. It answers "is
# this valid?"; jsonschema then explains the failures, on the failing aliases only.


class Fast:
    """Compiled jsonschema-rs validators: the whole file, an alias name, a route."""

    def __init__(self, schema: dict[str, Any]) -> None:
        defs = schema["$defs"]
        self._file = jsonschema_rs.validator_for(schema)
        self._alias = jsonschema_rs.validator_for({"$defs": defs, "$ref": "#/$defs/alias_name"})
        self._route = jsonschema_rs.validator_for({"$defs": defs, "$ref": "#/$defs/route"})

    def check(self, x: Any) -> bool:
        if self._file.is_valid(x):
            return True
        # jsonschema-rs reads JSON, which has no infinity: it rejects YAML's `.inf` (a duration
        # with no limit), which the schema admits. Such rare files get jsonschema's verdict.
        return has_infinity(x) and explaining_validator().is_valid(x)

    def alias_ok(self, x: Any) -> bool:
        return bool(self._alias.is_valid(x))

    def route_ok(self, x: Any) -> bool:
        return bool(self._route.is_valid(x))


def has_infinity(x: Any) -> bool:
    """Whether an infinite number is anywhere in ``x`` (walked without recursion)."""
    stack = [x]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and math.isinf(v):
            return True
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


_FAST: dict[int, tuple[dict[str, Any], Fast]] = {}


def fast_validator() -> Fast:
    return _per_schema(_FAST, Fast)


def dotted(path: Path) -> str:
    """``models.fast.chain[1].timeout``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "the route file"


def is_secret(path: Path) -> bool:
    return any(isinstance(p, str) and p.lower() in SECRET_KEYS for p in path)


