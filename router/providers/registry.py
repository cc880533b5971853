"""Provider kinds: which class serves each kind, and how model references are parsed.

Built-in kinds are registered explicitly here (no import tricks). Other packages add kinds
through the ``router.providers`` entry-point group, read once on first need (never at
``import router``), or with ``register_provider_kind`` at run time; see
``router.providers.plugins``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import threading
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from router.providers.kinds import KINDS, KindSpec
from router.providers.plugins import (
    PluginError,
    PluginKind,
    PluginWarning,
    effective_schema,
    load_entry_points,
    make_plugin_kind,
)

if TYPE_CHECKING:
    from router.providers.base import Provider

__all__ = [
    "KindInfo",
    "PluginError",
    "PluginKind",
    "PluginWarning",
    "available_kinds",
    "describe_kinds",
    "is_available",
    "key_env",
    "kind_spec",
    "plugin_kind",
    "plugin_kinds",
    "provider_class",
    "register_provider_kind",
    "requires_key",
    "route_schema",
    "skipped_plugins",
    "split_target",
    "unregister_provider_kind",
]

#: kind -> "module:Class", from the kinds table. Imported on first use so that `import router`
#: stays light.
_BUILTIN: dict[str, str] = {kind: spec.provider_class for kind, spec in KINDS.items()}
BUILTIN_KINDS = frozenset(_BUILTIN)
_LOADED: dict[str, type[Provider]] = {}  # built-in kinds' classes, imported or replaced
_PLUGINS: dict[str, PluginKind] = {}  # kinds from entry points and from run time
_skipped: list[str] | None = None  # None until the entry points were read
_discovery_lock = threading.Lock()


def register_provider_kind(kind: str, cls: type[Provider]) -> None:
    """Make ``kind`` usable in route files, served by ``cls``; its ``config_schema`` (if any)
    joins the route-file schema. A built-in kind keeps its settings and gets ``cls`` as its
    class (a stand-in for tests). Raises PluginError when ``cls`` cannot serve a kind."""
    if kind in _BUILTIN:
        _LOADED[kind] = cls
        return
    _PLUGINS[kind] = make_plugin_kind(kind, cls)


def unregister_provider_kind(kind: str) -> None:
    """Undo ``register_provider_kind`` (a built-in kind gets its own class back)."""
    _PLUGINS.pop(kind, None)
    _LOADED.pop(kind, None)


def _discover() -> None:
    global _skipped
    if _skipped is not None:
        return
    with _discovery_lock:
        if _skipped is not None:
            return
        found, skipped = load_entry_points(BUILTIN_KINDS)
        for p in found:
            if p.kind in _PLUGINS:  # registered at run time before discovery: that one wins
                skipped.append(f"provider plugin {p.kind!r} of {p.source.removeprefix('plugin ')}"
                               f" skipped: kind {p.kind!r} was registered at run time")
            else:
                _PLUGINS[p.kind] = p
        _skipped = skipped
    for problem in skipped:
        # An explicit location: the line in router that noticed is of no use to the reader.
        warnings.warn_explicit(problem, PluginWarning, filename="router", lineno=0,
                               module=__name__)


def plugin_kinds(*, discover: bool = True) -> Mapping[str, PluginKind]:
    """Every kind that does not ship with router (``discover=False``: without reading the
    entry points if that has not happened yet)."""
    if discover:
        _discover()
    return MappingProxyType(_PLUGINS)


def plugin_kind(kind: str, *, discover: bool = True) -> PluginKind | None:
    """The plugin serving ``kind``; None for a built-in or unknown kind."""
    if kind in _BUILTIN:
        return None
    if kind not in _PLUGINS and discover:
        _discover()
    return _PLUGINS.get(kind)


def skipped_plugins() -> list[str]:
    """One line per plugin that could not be used, saying which and why."""
    _discover()
    return list(_skipped or ())


def route_schema() -> dict[str, Any]:
    """The route-file JSON Schema as this installation reads it: the published schema plus
    every plugin kind and its settings (the same object while the kinds do not change)."""
    return effective_schema(tuple(plugin_kinds().values()))


def provider_class(kind: str) -> type[Provider]:
    """The Provider class of ``kind``; KeyError when no such kind is available."""
    cls = _LOADED.get(kind)
    if cls is None:
        if kind not in _BUILTIN:
            plugin = plugin_kind(kind)
            if plugin is None:
                raise KeyError(kind)
            return plugin.cls
        module, _, name = _BUILTIN[kind].partition(":")
        cls = getattr(importlib.import_module(module), name)
        _LOADED[kind] = cls
    return cls


def available_kinds() -> list[str]:
    """Every kind this installation can serve."""
    builtin = {k for k in set(_BUILTIN) | set(_LOADED) if is_available(k)}
    return sorted(builtin | set(plugin_kinds()))


@functools.cache
def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def is_available(kind: str) -> bool:
    """Whether a provider class for ``kind`` is registered and importable."""
    if kind in _LOADED:
        return True
    ref = _BUILTIN.get(kind)
    if ref is None:
        return plugin_kind(kind) is not None
    return _module_exists(ref.partition(":")[0])


def kind_spec(kind: str) -> KindSpec | None:
    """The table entry of a built-in kind (None for a plugin or unknown kind)."""
    return KINDS.get(kind)


def key_env(kind: str) -> str | None:
    """The environment variable a provider of ``kind`` reads its key from when none is set
    (built-in kinds from the kinds table, so that compiling never imports the HTTP stack)."""
    if kind in _LOADED:
        return _LOADED[kind].key_env
    spec = KINDS.get(kind)
    if spec is not None:
        return spec.key_env
    plugin = plugin_kind(kind)
    return plugin.cls.key_env if plugin is not None else None


def requires_key(kind: str) -> bool:
    """Whether calls of a provider of ``kind`` need a key."""
    if kind in _LOADED:
        return _LOADED[kind].requires_key
    spec = KINDS.get(kind)
    if spec is not None:
        return spec.requires_key
    plugin = plugin_kind(kind)
    return plugin.cls.requires_key if plugin is not None else True


def split_target(ref: str) -> tuple[str, str] | None:
    """``"provider:model"`` -> (provider, model); the model may contain ':' (``llama3.2:3b``)."""
    provider, sep, model = ref.partition(":")
    if not sep or not provider or not model:
        return None
    return provider, model


@dataclass(frozen=True)
class KindInfo:
    """What ``router providers`` shows of one kind."""

    kind: str
    source: str  # "built-in", "plugin DIST VERSION" or "run time (module.Class)"
    distribution: str | None
    version: str | None
    key_env: str | None
    default_base_url: str | None
    capabilities: dict[str, Any]
    settings: list[str]
    available: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_kinds() -> list[KindInfo]:
    """Every kind, built-in ones first, with where it comes from and what it declares (from
    the kinds table; plugin kinds from their classes)."""
    out = []
    for kind, spec in KINDS.items():
        out.append(KindInfo(
            kind, "built-in", None, None, spec.key_env, spec.default_base_url,
            asdict(spec.capabilities), sorted(spec.settings), is_available(kind)))
    for p in plugin_kinds().values():
        out.append(KindInfo(p.kind, p.source, p.distribution, p.version, p.cls.key_env,
                            p.cls.default_base_url, asdict(p.cls.capabilities_default),
                            sorted(p.fields), True))
    return out
