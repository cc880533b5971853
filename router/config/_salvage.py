"""The well-formed part of a route file that has structural errors, so that its meaning is
checked in the same run (issue 10: a schema error hid every check of meaning).

Each ill-formed part is left out at the smallest unit that keeps the rest readable: a key of a
settings block, a chain entry, a provider, an alias, a budget or error rule. What was left out
is recorded (``Dropped``) so that the compiler stays silent about what it cannot know: a route
naming a provider that was left out gets no E020, a route whose settings lost a part gets no
checks of effective values. Only the diagnostics come from a salvaged file, never a Plan.

Chain, budget and error-rule entries are replaced by placeholders rather than removed, so the
positions of the others (and the line numbers of their diagnostics) stay as written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from router.config.model import (
    AliasName,
    BudgetCfg,
    DefaultsCfg,
    ErrorRuleCfg,
    Name,
    PoolCfg,
    ProviderCfg,
    RouteCfg,
    RouteFileCfg,
    StateCfg,
    TargetCfg,
)
from router.config.schema import Path

#: Stands for a chain or pool entry that was left out: no alias or provider can have this name
#: (names have no NUL), and the compiler skips it silently.
PLACEHOLDER = "\0left-out\0"
_PLACEHOLDER_RULE = {"class": "server"}
_PLACEHOLDER_BUDGET = {"scope": "global", "usd": 0}


@dataclass
class Dropped:
    """What a salvaged file left out."""

    paths: list[Path] = field(default_factory=list)  # settings that may change effective values
    providers: set[str] = field(default_factory=set)  # whole providers
    aliases: set[str] = field(default_factory=set)  # whole aliases
    all_providers: bool = False  # providers: was not a mapping
    all_aliases: bool = False  # models: was not a mapping

    def touches(self, *prefix: str | int) -> bool:
        """Whether a part at or under ``prefix`` was left out."""
        n = len(prefix)
        return any(p[:n] == prefix for p in self.paths)

    def lost_provider(self, name: str) -> bool:
        return self.all_providers or name in self.providers

    def lost_alias(self, name: str) -> bool:
        return self.all_aliases or name in self.aliases

    def lost_entry(self, section: str, index: int) -> bool:
        """Whether entry ``index`` of ``budgets`` or ``errors`` is a placeholder."""
        return (section, index) in self.paths


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _ok(kind: Any, value: Any) -> bool:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        is_model = isinstance(kind, type) and issubclass(kind, BaseModel)
        adapter = _ADAPTERS[kind] = (TypeAdapter(kind) if is_model else TypeAdapter(
            kind, config=ConfigDict(regex_engine="python-re")))  # as the models' patterns
    try:
        adapter.validate_python(value)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


def _keys(model: type[BaseModel], value: Any, path: Path, dropped: Dropped,
          required: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """``value`` without the keys that make it ill-formed, each recorded; None when what is
    left is still ill-formed (a required key is)."""
    if not isinstance(value, dict):
        return None
    if _ok(model, value):
        return value
    base = {k: v for k, v in value.items() if k in required}
    kept = dict(base)
    for k, v in value.items():
        if k in required:
            continue
        if _ok(model, {**base, k: v}):
            kept[k] = v
        else:
            dropped.paths.append((*path, k))
    return kept if _ok(model, kept) else None


def _without_non_finite(data: Any) -> Any:
    """A copy of ``data`` without NaN or infinite numbers in mappings (E015 reported them)."""
    root: dict[str, Any] = {"": data}
    stack: list[tuple[dict[str, Any] | list[Any], Any, Any]] = [(root, "", data)]
    while stack:
        parent, key, value = stack.pop()
        if isinstance(value, dict):
            copy: dict[Any, Any] = {}
            for k, v in value.items():
                if not (isinstance(v, float) and not math.isfinite(v)):
                    copy[k] = v
                    stack.append((copy, k, v))
            parent[key] = copy
        elif isinstance(value, list):
            items = list(value)
            parent[key] = items
            stack.extend((items, i, v) for i, v in enumerate(items))
    return root[""]


def salvage(data: Any) -> tuple[RouteFileCfg | None, Dropped]:
    """The well-formed part of ``data`` as a config, and what was left out (None: nothing of
    the file could be read as a route file)."""
    dropped = Dropped()
    if not isinstance(data, dict):
        return None, dropped
    data = _without_non_finite(data)
    kept: dict[str, Any] = {"version": 1}
    if "defaults" in data:
        defaults = _keys(DefaultsCfg, data["defaults"], ("defaults",), dropped)
        if defaults is None:
            dropped.paths.append(("defaults",))
        else:
            kept["defaults"] = defaults
    kept["providers"] = _providers(data.get("providers", {}), dropped)
    kept["models"] = _models(data.get("models", {}), dropped)
    kept["errors"] = _entries(data.get("errors", []), "errors", dropped)
    kept["budgets"] = _entries(data.get("budgets", []), "budgets", dropped)
    state = _keys(StateCfg, data.get("state"), ("state",), dropped, ("kind", "path", "url"))
    if state is not None:
        kept["state"] = state
    try:
        return RouteFileCfg.model_validate(kept), dropped
    except ValidationError:  # a part no rule above knows how to leave out
        return None, dropped


def _providers(value: Any, dropped: Dropped) -> dict[str, Any]:
    if not isinstance(value, dict):
        dropped.all_providers = True
        return {}
    out = {}
    for name, p in value.items():
        kept = (_keys(ProviderCfg, p, ("providers", name), dropped, ("kind", "base_url"))
                if _ok(Name, name) else None)
        if kept is None:
            dropped.providers.add(str(name))
        else:
            out[name] = kept
    return out


def _models(value: Any, dropped: Dropped) -> dict[str, Any]:
    if not isinstance(value, dict):
        dropped.all_aliases = True
        return {}
    out = {}
    for alias, route in value.items():
        kept = _route(route, ("models", alias), dropped) if _ok(AliasName, alias) else None
        if kept is None:
            dropped.aliases.add(str(alias))
        else:
            out[alias] = kept
    return out


def _route(value: Any, path: Path, dropped: Dropped) -> Any:
    if isinstance(value, list):
        return _chain(value, path, dropped)
    if not isinstance(value, dict) or not isinstance(value.get("chain"), list):
        return None
    settings = {k: v for k, v in value.items() if k != "chain"}
    kept = _keys(RouteCfg, {**settings, "chain": []}, path, dropped, ("chain",))
    if kept is None:
        return None
    return {**kept, "chain": _chain(value["chain"], (*path, "chain"), dropped)}


def _chain(items: list[Any], path: Path, dropped: Dropped) -> list[Any]:
    out: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and "pool" in item and isinstance(item["pool"], list):
            pool = [_target(m, (*path, i, "pool", j), dropped)
                    for j, m in enumerate(item["pool"])]
            kept = _keys(PoolCfg, {**item, "pool": pool}, (*path, i), dropped, ("pool",))
            out.append(kept if kept is not None else PLACEHOLDER)
        else:
            out.append(_target(item, (*path, i), dropped))
    return out


def _target(item: Any, path: Path, dropped: Dropped) -> Any:
    if isinstance(item, str) and _ok(TargetCfg, {"target": item}):
        return item
    kept = _keys(TargetCfg, item, path, dropped, ("target",))
    if kept is None:
        dropped.paths.append(path)
        return PLACEHOLDER
    return kept


def _entries(value: Any, section: str, dropped: Dropped) -> list[Any]:
    """The budgets or error rules, each ill-formed one reduced to what the checks of meaning
    read (its scope, its provider), or to a placeholder."""
    if not isinstance(value, list):
        return []
    model, spare = ((BudgetCfg, _PLACEHOLDER_BUDGET) if section == "budgets"
                    else (ErrorRuleCfg, _PLACEHOLDER_RULE))
    keep = "scope" if section == "budgets" else "provider"
    out: list[Any] = []
    for i, entry in enumerate(value):
        if _ok(model, entry):
            out.append(entry)
            continue
        reduced = ({**spare, keep: entry[keep]} if isinstance(entry, Mapping) and keep in entry
                   else spare)
        if not _ok(model, reduced):
            reduced = spare
        out.append(reduced)
        if reduced is spare:
            dropped.paths.append((section, i))
    return out
