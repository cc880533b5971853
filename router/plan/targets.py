"""Targets from layered settings (built-in < defaults < provider < route < target entry), and
the routes of names that are no alias (``provider:model``, bare model names, ``a,b`` chains).

Shared by the compiler and by ``Plan.resolve`` at run time; imports no config models, and
not ``routes`` (which imports this module): the values come from ``values``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

from router.errors import NoRouteError
from router.plan.first_token import DEFAULT_BASE, adaptive_bases
from router.plan.values import (
    BUILTIN_BREAKER,
    BUILTIN_RETRY,
    BUILTIN_TIMEOUTS,
    BreakerPolicy,
    Layer,
    Price,
    ProviderSpec,
    RateLimitSpec,
    Recover,
    RetryPolicy,
    Route,
    Step,
    Target,
    merged_actions,
)
from router.providers import catalog, registry
from router.providers.kinds import KINDS, model_capabilities
from router.specs import Capabilities, Timeouts

EMPTY_LAYER = Layer()


class PlanView(Protocol):
    """What ad-hoc routes read of a Plan (routes.Plan; typed here so this module does not
    import routes, which imports it)."""

    @property
    def routes(self) -> Mapping[str, Route]: ...
    @property
    def providers(self) -> Mapping[str, ProviderSpec]: ...
    @property
    def provider_layers(self) -> Mapping[str, Layer]: ...
    @property
    def model_overrides(self) -> Mapping[str, Mapping[str, Any]]: ...
    @property
    def defaults(self) -> Layer: ...
    @property
    def default_unknown_price(self) -> Literal["fail", "zero"] | None: ...
    @property
    def default_deadline(self) -> float | None: ...
    @property
    def default_max_tokens(self) -> int | None: ...
    @property
    def default_recover(self) -> Recover: ...


def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        out.update(layer)
    return out


def capabilities_for(kind: str, model: str, override: Mapping[str, Any] | None,
                     options: Mapping[str, Any] | None = None) -> Capabilities:
    """What ``model`` can do: the one answer providers give too (``kinds.model_capabilities``:
    the kind's default or a plugin's, the catalog's facts), the route file's ``models:`` entry
    on top."""
    plugin = registry.plugin_kind(kind) if kind not in KINDS else None
    default = plugin.cls.capabilities_default if plugin is not None else None
    return model_capabilities(kind, model, override, options=options, default=default)


def build_target(plan_defaults: Layer, provider: ProviderSpec, provider_layer: Layer,
                 model: str, model_override: Mapping[str, Any] | None,
                 *layers: Layer, weight: float = 1.0, max_tokens: int | None = None,
                 unknown_price: Literal["fail", "zero"] | None = None,
                 cache: dict[tuple[Any, ...], tuple[tuple[Any, ...], Target]] | None = None,
                 ) -> Target:
    """One Target with every layer merged: builtin < defaults < provider < route < target.

    Targets built from the same provider spec, model and layer objects are equal; with a
    ``cache`` (one per compilation) each is built once. Keys hold object ids, so an entry
    keeps the objects and a hit checks they are the same ones."""
    objects = (provider, model_override, plan_defaults, provider_layer, *layers)
    key = (model, weight, max_tokens, unknown_price, *map(id, objects))
    if cache is not None:
        hit = cache.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], objects, strict=True)):
            return hit[1]
    target = _build_target(plan_defaults, provider, provider_layer, model, model_override,
                           *layers, weight=weight, max_tokens=max_tokens,
                           unknown_price=unknown_price)
    if cache is not None:
        cache[key] = (objects, target)
    return target



def _price(cfg: Mapping[str, Any]) -> Price:
    """A route file's ``price:``, its long-context ``tiers`` ascending by ``above``."""
    tiers = sorted(cfg.get("tiers") or (), key=lambda t: t["above"])
    return Price(cfg["input"], cfg["output"], cfg.get("cached_input"), cfg.get("cache_write"),
                 cfg.get("cache_write_1h"),
                 tuple((t["above"], Price(t["input"], t["output"], t.get("cached_input"),
                                          t.get("cache_write"), t.get("cache_write_1h")))
                       for t in tiers), cfg.get("web_search"))

def _build_target(plan_defaults: Layer, provider: ProviderSpec, provider_layer: Layer,
                  model: str, model_override: Mapping[str, Any] | None,
                  *layers: Layer, weight: float = 1.0, max_tokens: int | None = None,
                  unknown_price: Literal["fail", "zero"] | None = None) -> Target:
    all_layers = (plan_defaults, provider_layer, *layers)
    if max_tokens is None:  # the most specific layer that sets one wins
        max_tokens = next((la.max_tokens for la in reversed(all_layers)
                           if la.max_tokens is not None), None)
    t = _merge_timeouts([la.timeouts for la in all_layers])
    r = _merge(*(la.retry for la in all_layers))
    b = _merge(*(la.breaker for la in all_layers))
    price = model_override.get("price") if model_override else None
    limits = [provider.rate_limit] if provider.rate_limit is not None else []
    rl = model_override.get("rate_limit") if model_override else None
    if rl:
        limits.append(RateLimitSpec(f"target:{provider.name}:{model}", rl.get("rpm"),
                                    rl.get("tpm"), rl.get("mode", "skip")))
    timeouts, adaptive = _timeouts(t, provider.kind, model)
    return Target(
        key=f"{provider.name}:{model}",
        provider=provider.name,
        kind=provider.kind,
        model=model,
        timeouts=timeouts,
        retry=RetryPolicy(**{**_policy_dict(BUILTIN_RETRY), **r}),
        breaker=BreakerPolicy(**{**_policy_dict(BUILTIN_BREAKER), **b}),
        actions=merged_actions(*(la.actions for la in all_layers)),
        capabilities=capabilities_for(provider.kind, model, model_override, provider.options),
        weight=weight,
        max_tokens=max_tokens,
        price=_price(price) if isinstance(price, Mapping) else None,
        rate_limits=tuple(limits),
        unknown_price=provider.unknown_price or unknown_price,
        missing_env=provider.missing_env,
        first_token_adaptive=adaptive,
    )


def shared_max_tokens(targets: Sequence[Target]) -> int | None:
    """The output limit all ``targets`` share (a Route's), or None when they differ."""
    limits = {t.max_tokens for t in targets}
    return limits.pop() if len(limits) == 1 else None


def _merge_timeouts(layers: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Merge timeout layers; a value inherited from a broader layer than the one that set
    ``total`` is clamped to that total (a target's ``total: 10s`` bounds the defaults' 20s
    first_token), while one set as specifically as total is kept, so checks can flag it."""
    out: dict[str, float] = {}
    level: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for k, v in layer.items():
            out[k], level[k] = v, i
    total = out.get("total")
    if total is not None:
        for k in ("connect", "first_token", "idle"):
            if k in out and level[k] < level["total"] and out[k] > total:
                out[k] = total
    return out


def _timeouts(t: Mapping[str, float], kind: str,
              model: str) -> tuple[Timeouts, tuple[float, float] | None]:
    """The effective timeouts, and the adaptive first-token bases when no layer set
    ``first_token`` (None otherwise: an explicit value always wins)."""
    # Built-in values the file did not set never exceed the file's total.
    total = t.get("total", BUILTIN_TIMEOUTS.total)
    first = t.get("first_token")
    adaptive = None
    if first is None:
        adaptive = adaptive_bases(t.get("first_token_base", DEFAULT_BASE),
                                  catalog.is_reasoning_model(kind, model), total)
        first = adaptive[0]
    return Timeouts(
        connect=t.get("connect", min(BUILTIN_TIMEOUTS.connect, total)),
        first_token=first,
        total=total,
        idle=t.get("idle", min(BUILTIN_TIMEOUTS.idle, total)),
    ), adaptive


def timeout_contradictions(t: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(name, value, total) for each of connect, first_token, idle longer than total."""
    total = t.get("total")
    if total is None:
        return []
    return [(n, t[n], total) for n in ("first_token", "connect", "idle")
            if n in t and t[n] > total]


def _policy_dict(p: RetryPolicy | BreakerPolicy) -> dict[str, Any]:
    return {name: getattr(p, name) for name in p.__slots__}


def adhoc_route(plan: PlanView, model: str) -> Route:
    """A route for a name that is no alias: ``p:m``, a bare model name, or ``a,b,c``."""
    steps: list[Step] = []
    for ref in (r.strip() for r in model.split(",")):
        if not ref:
            continue
        if ref in plan.routes:
            steps.extend(plan.routes[ref].steps)
            continue
        split = registry.split_target(ref)
        if split is None:
            kind = catalog.detect_kind(ref)
            of_kind = [p for p in plan.providers.values() if p.kind == kind] if kind else []
            if len(of_kind) != 1:
                raise NoRouteError(_no_route_message(plan, ref, kind, len(of_kind)))
            split = (of_kind[0].name, ref)
        pname, m = split
        spec = plan.providers.get(pname)
        if spec is None:
            raise NoRouteError(f"{ref!r}: no provider named {pname!r} "
                               f"(defined: {', '.join(plan.providers) or 'none'})")
        steps.append(Step((build_target(plan.defaults, spec, plan.provider_layers[pname], m,
                                        plan.model_overrides.get(f"{pname}:{m}"),
                                        unknown_price=plan.default_unknown_price),)))
    if not steps:
        raise NoRouteError(f"{model!r} names no target")
    return Route(alias=model, steps=tuple(steps), deadline=plan.default_deadline,
                 max_tokens=shared_max_tokens([t for s in steps for t in s.targets]),
                 recover=plan.default_recover)


def _no_route_message(plan: PlanView, ref: str, kind: str | None, n: int) -> str:
    if kind is None:
        close = difflib.get_close_matches(ref, list(plan.routes), n=1)
        return (f"{ref!r} is not an alias and not provider:model"
                + (f"; did you mean {close[0]!r}?" if close else ""))
    if n == 0:
        return f"{ref!r} is a {kind} model but no provider of kind {kind} is configured"
    return f"{ref!r} is a {kind} model and several providers have that kind: write provider:model"
