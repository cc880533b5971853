"""Provider plugins: kinds that other packages add, and the route-file schema that admits them.

A plugin is a ``Provider`` subclass published under the ``router.providers`` entry-point group
(the entry point's name is the kind) or passed to ``registry.register_provider_kind``. Its
optional ``config_schema`` class attribute is a JSON Schema of its own settings, e.g.
``{"properties": {"region": {"type": "string"}}, "required": ["region"]}``; the effective
schema adds it the way the built-in kinds add theirs (an ``if kind == ...`` / ``then`` block).

This module holds no state: ``registry`` owns the registered kinds and calls in here.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router.providers.base import Provider

ENTRY_POINT_GROUP = "router.providers"

_KIND = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")  # the pattern of provider names
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Keywords that would change how the rest of the provider mapping is read.
_FORBIDDEN = frozenset({"$id", "$schema", "$defs", "definitions", "additionalProperties",
                        "unevaluatedProperties", "patternProperties", "$dynamicAnchor"})


class PluginWarning(UserWarning):
    """A provider plugin could not be used and was skipped."""


class PluginError(ValueError):
    """A class or schema that cannot serve as a provider kind (the message says why)."""


@dataclass(frozen=True, eq=False)  # identity: effective schemas are cached per set of kinds
class PluginKind:
    """One provider kind that does not ship with router."""

    kind: str
    cls: type[Provider]
    config_schema: Mapping[str, Any]
    distribution: str | None = None  # None: registered at run time
    version: str | None = None
    _validator: Any = field(default=None, repr=False)

    @property
    def fields(self) -> frozenset[str]:
        """The names of the kind's own settings."""
        return frozenset(self.config_schema.get("properties", ()))

    @property
    def source(self) -> str:
        """Where the kind comes from, for humans."""
        if self.distribution is None:
            return f"run time ({self.cls.__module__}.{self.cls.__qualname__})"
        return f"plugin {self.distribution} {self.version or ''}".rstrip()

    def settings_errors(self, provider: Mapping[str, Any]) -> list[str]:
        """What is wrong with a provider mapping of this kind, judged by the kind's schema."""
        common = common_settings()
        out = [f"{key!r} is not a setting of kind {self.kind!r}"
               for key in provider if key not in common and key not in self.fields]
        for e in self._validator.iter_errors(dict(provider)):
            where = ".".join(str(p) for p in e.instance_path)
            out.append(f"{where}: {e.message}" if where else e.message)
        return out


def make_plugin_kind(kind: str, cls: Any, *, distribution: str | None = None,
                     version: str | None = None,
                     reserved: Collection[str] = ()) -> PluginKind:
    """Check that ``cls`` can serve ``kind`` and compile its settings schema.

    Raises PluginError naming what is wrong (a kind taken by a built-in, a class that is not a
    concrete Provider, a malformed ``config_schema``, ...).
    """
    from router.providers.base import Provider  # a plugin class has imported it already
    from router.specs import Capabilities

    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise PluginError(f"{kind!r} is not a valid kind name (letters, digits, _ . -)")
    if kind in reserved:
        raise PluginError(f"kind {kind!r} is a built-in kind")
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise PluginError(f"{_name(cls)} is not a subclass of router.providers.base.Provider")
    if inspect.isabstract(cls):
        missing = ", ".join(sorted(getattr(cls, "__abstractmethods__", ())))
        raise PluginError(f"{_name(cls)} does not implement {missing}")
    key_env = getattr(cls, "key_env", None)
    if key_env is not None and not (isinstance(key_env, str) and _ENV_VAR.fullmatch(key_env)):
        raise PluginError(f"{_name(cls)}.key_env must be an environment variable name or None")
    if not isinstance(getattr(cls, "default_base_url", None), str | None):
        raise PluginError(f"{_name(cls)}.default_base_url must be a string or None")
    if not isinstance(getattr(cls, "capabilities_default", None), Capabilities):
        raise PluginError(f"{_name(cls)}.capabilities_default must be a Capabilities")
    schema = _checked_schema(_name(cls), getattr(cls, "config_schema", None))
    return PluginKind(kind, cls, schema, distribution, version, _compile(schema))


def _name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _checked_schema(owner: str, schema: Any) -> dict[str, Any]:
    if schema is None:
        return {}
    if not isinstance(schema, Mapping):
        raise PluginError(f"{owner}.config_schema must be a JSON Schema object (a dict)")
    schema = json.loads(json.dumps(schema))  # a private, JSON-only copy
    bad = sorted(_FORBIDDEN & schema.keys())
    if bad:
        raise PluginError(f"{owner}.config_schema may not use {', '.join(bad)}: it describes "
                          "the kind's settings only (properties, required, ...)")
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        raise PluginError(f"{owner}.config_schema properties must be a mapping")
    clash = sorted(common_settings() & props.keys())
    if clash:
        raise PluginError(f"{owner}.config_schema redefines common provider settings "
                          f"{', '.join(clash)}")
    import jsonschema_rs  # a compiled extension: loaded when a plugin is checked

    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as e:
        raise PluginError(f"{owner}.config_schema is not a valid JSON Schema: "
                          f"{str(e).splitlines()[0]}") from e
    return dict(schema)


def _compile(schema: Mapping[str, Any]) -> Any:
    """A validator of the kind's block, with the route schema's $defs in reach (a plugin may
    write ``{"$ref": "#/$defs/duration"}``)."""
    import jsonschema_rs

    try:
        return jsonschema_rs.validator_for({"$defs": static_schema()["$defs"], **schema})
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as e:
        raise PluginError(f"config_schema does not compile: {str(e).splitlines()[0]}") from e


# -- discovery ----------------------------------------------------------------------------------


def load_entry_points(reserved: Collection[str]) -> tuple[list[PluginKind], list[str]]:
    """Every usable plugin of the ``router.providers`` group, and one line per skipped one.

    A plugin that fails to import, is no Provider or reuses a taken kind is skipped: one bad
    package must not stop route files that do not use it.
    """
    found: dict[str, PluginKind] = {}
    problems: list[str] = []
    import importlib.metadata  # ~30 ms: only when plugins are looked for

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
        version = ep.dist.version if ep.dist is not None else None
        where = f"provider plugin {ep.name!r} of {dist} {version or ''}".rstrip()
        if ep.name in found:
            other = found[ep.name].distribution
            problems.append(f"{where} skipped: kind {ep.name!r} is provided by {other} too")
            continue
        if ep.name in reserved:  # checked before importing anything
            problems.append(f"{where} skipped: {ep.name!r} is a built-in kind")
            continue
        try:
            obj = ep.load()
        except Exception as e:  # any import failure; the plugin is skipped, never fatal
            problems.append(f"{where} skipped: cannot load {ep.value} "
                            f"({type(e).__name__}: {e})")
            continue
        try:
            found[ep.name] = make_plugin_kind(ep.name, obj, distribution=dist, version=version,
                                              reserved=reserved)
        except PluginError as e:
            problems.append(f"{where} skipped: {e}")
    return list(found.values()), problems


# -- the effective schema -----------------------------------------------------------------------


@functools.cache
def static_schema() -> dict[str, Any]:
    """The published route-file schema (schemas/routes.schema.json), parsed once."""
    text = (resources.files("router") / "data" / "routes.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def common_settings() -> frozenset[str]:
    """The keys every provider mapping has (kind, api_key, base_url, ...): a plugin's schema
    may require them but not redefine them."""
    return frozenset(static_schema()["$defs"]["provider"]["properties"])


@functools.lru_cache(maxsize=8)
def effective_schema(kinds: tuple[PluginKind, ...]) -> dict[str, Any]:
    """The static schema with ``kinds`` added to the provider ``kind`` enum, each with an
    if/then block admitting its settings. No kinds: the static schema itself."""
    static = static_schema()
    if not kinds:
        return static
    defs = static["$defs"]
    provider = defs["provider"]
    kind_rule = provider["properties"]["kind"]
    blocks = [{"$comment": f"kind {k.kind}: {k.source}",
               "if": {"properties": {"kind": {"const": k.kind}}},
               "then": dict(k.config_schema)}
              for k in kinds]
    provider = {
        **provider,
        "properties": {**provider["properties"],
                       "kind": {**kind_rule, "enum": [*kind_rule["enum"],
                                                      *(k.kind for k in kinds)]}},
        "allOf": [*provider["allOf"], *blocks],
    }
    return {**static, "$defs": {**defs, "provider": provider}}
