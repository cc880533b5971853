"""Compile a checked route file into a Plan, reporting every problem of meaning on the way.

Structure was checked against the JSON Schema already (router.config.check); what is checked
here needs the whole file: references between aliases and providers, effective timeouts after
overrides, capabilities, budget scopes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from router.config._checks import check_layer_timeouts, check_route
from router.config._names import check_model_name, resolve_ref
from router.config._salvage import PLACEHOLDER, Dropped
from router.config._tables import Path, check_prices, compile_budgets, compile_error_rules
from router.config.load import Document
from router.config.model import (
    BreakerCfg,
    PoolCfg,
    ProviderCfg,
    RetryCfg,
    RouteCfg,
    RouteFileCfg,
    TargetCfg,
    TimeoutCfg,
)
from router.diagnostics import Diagnostic
from router.errors import Action, ErrorClass
from router.plan.routes import (
    BudgetSpec,
    Layer,
    Plan,
    ProviderSpec,
    RateLimitSpec,
    Recover,
    Route,
    StateSpec,
    Step,
    Target,
    freeze,
)
from router.plan.targets import EMPTY_LAYER, build_target, shared_max_tokens
from router.providers import catalog, registry
from router.secret import Secret


def _layer(timeout: TimeoutCfg | None, retry: RetryCfg | None, breaker: BreakerCfg | None,
           on: Mapping[ErrorClass, Action] | None, max_tokens: int | None = None) -> Layer:
    if not (timeout or retry or breaker or on or max_tokens is not None):
        return EMPTY_LAYER  # shared, so that targets of plain routes compile once
    return Layer(
        timeouts=freeze(timeout.model_dump(exclude_none=True)) if timeout else freeze({}),
        retry=freeze(retry.model_dump(exclude_none=True)) if retry else freeze({}),
        breaker=freeze(breaker.model_dump(exclude_none=True)) if breaker else freeze({}),
        actions=freeze(on or {}),
        max_tokens=max_tokens,
    )


@dataclass
class _Compiler:
    cfg: RouteFileCfg
    doc: Document
    env: Mapping[str, str]
    diags: list[Diagnostic] = field(default_factory=list)
    providers: dict[str, ProviderSpec] = field(default_factory=dict)
    provider_layers: dict[str, Layer] = field(default_factory=dict)
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    defaults: Layer = field(default_factory=Layer)

    reported: set[Diagnostic] = field(default_factory=set)
    dropped: Dropped = field(default_factory=Dropped)  # what salvage left out of the file
    contradicting: set[str] = field(default_factory=set)
    unsure: set[str] = field(default_factory=set)  # routes whose settings lost a part
    _targets: dict[tuple[Any, ...], tuple[tuple[Any, ...], Target]] = field(
        default_factory=dict)

    def error(self, path: Path, code: str, message: str, hint: str = "", *,
              key: bool = False, severity: str = "error") -> None:
        mark = self.doc.mark(path, key=key)
        d = Diagnostic.at(mark, "error" if severity == "error" else "warning", code,
                          self.doc.redact(message), self.doc.redact(hint))
        if d not in self.reported:  # a set: a file may have thousands of diagnostics
            self.reported.add(d)
            self.diags.append(d)

    def warn(self, path: Path, code: str, message: str, hint: str = "", *,
             key: bool = False) -> None:
        self.error(path, code, message, hint, key=key, severity="warning")

    # -- providers ------------------------------------------------------------------------
    def compile_providers(self) -> None:
        for name, p in (self.cfg.providers or {}).items():
            self.providers[name] = self._provider_spec(name, p)
            self.provider_layers[name] = _layer(p.timeout, p.retry, p.breaker, p.on,
                                                p.max_tokens)
            self.model_overrides.update({
                f"{name}:{m}": info.model_dump(exclude_none=True)
                for m, info in (p.models or {}).items()
            })

    def _provider_spec(self, name: str, p: ProviderCfg) -> ProviderSpec:
        missing = tuple(
            r.var for r in self.doc.env_refs
            if not r.present and not r.has_default and r.path[:2] == ("providers", name)
        )
        key_env = registry.key_env(p.kind)
        given = p.api_key.get_secret_value() if p.api_key is not None else ""
        api_key = Secret(given) if given else None
        if api_key is None and "api_key" not in p.model_fields_set and key_env:
            value = self.env.get(key_env)
            api_key = Secret(value) if value else None
            bearer = any(h.lower() == "authorization" for h in (p.headers or {}))
            lost = self.dropped.touches("providers", name)  # a key or header left out
            if not value and not bearer and not lost and registry.requires_key(p.kind):
                missing = (*missing, key_env)
                self.warn(("providers", name), "W107",
                          f"provider {name!r} has no api_key and {key_env} is not set",
                          f"export {key_env}=... before starting (a provider without api_key "
                          f"reads {key_env})", key=True)
        rl = p.rate_limit
        return ProviderSpec(name=name, kind=p.kind, base_url=p.base_url, api_key=api_key,
                            headers=freeze(p.headers or {}), options=freeze(p.options()),
                            key_env=key_env, missing_env=missing,
                            rate_limit=RateLimitSpec(f"provider:{name}", rl.rpm, rl.tpm,
                                                     rl.mode or "skip") if rl else None,
                            unknown_price=p.unknown_price, max_connections=p.max_connections)

    # -- routes ---------------------------------------------------------------------------
    def compile_routes(self) -> None:
        """Every alias, those it refers to first (so no recursion follows a long chain of
        aliases); a reference that closes a cycle is E021 and is left out."""
        models = self.cfg.models or {}
        order, cycles = alias_order(models)
        for cycle in cycles:
            shown = cycle if len(cycle) <= 9 else [*cycle[:4], f"... {len(cycle) - 7} more",
                                                    *cycle[-3:]]
            self.error(("models", cycle[-1]), "E021", f"alias cycle: {' -> '.join(shown)}",
                       "an alias may refer to another alias, but never back to itself",
                       key=True)
        for alias in order:
            route = self._compile_route(alias, models[alias])
            if route is not None:
                self.routes[alias] = route

    def _compile_route(self, alias: str, raw: Sequence[Any] | RouteCfg) -> Route | None:
        rc = raw if isinstance(raw, RouteCfg) else RouteCfg(chain=list(raw))
        base: Path = ("models", alias, "chain") if isinstance(raw, RouteCfg) else ("models", alias)
        route_layer = _layer(rc.timeout, rc.retry, None, rc.on, rc.max_tokens)
        steps: list[Step] = []
        seen: dict[str, Path] = {}
        for i, item in enumerate(rc.chain):
            for step in self._item_steps((*base, i), item, route_layer):
                for t in step.targets:
                    if t.key in seen:
                        self.error((*base, i), "E022",
                                   f"target {t.key} is listed twice in the chain of {alias!r}",
                                   "a target is tried (with its retries) once per call; "
                                   "remove the second entry")
                    seen.setdefault(t.key, (*base, i))
                steps.append(step)
        if not rc.chain:
            self.error(("models", alias), "E023", f"the chain of {alias!r} is empty",
                       "list at least one target, e.g. [openai:gpt-4o-mini]", key=True)
        budgets: tuple[BudgetSpec, ...] = ()
        if rc.budget is not None:
            budgets = (BudgetSpec(f"alias:{alias}", rc.budget.usd, rc.budget.per or "total",
                                  rc.budget.warn_at),)
        route = Route(alias=alias, steps=tuple(steps),
                      deadline=rc.deadline if rc.deadline is not None else self.cfg_deadline,
                      requires=frozenset(rc.requires or ()), budgets=budgets,
                      max_tokens=shared_max_tokens([t for s in steps for t in s.targets]),
                      recover=(rc.stream and rc.stream.recover) or self.default_recover)
        if not self._is_unsure(alias, route):
            check_route(route, seen, self.contradicting, explicit_deadline=rc.deadline
                        is not None, error=self.error, warn=self.warn)
        return route

    def _is_unsure(self, alias: str, route: Route) -> bool:
        """Whether ``route`` lost a part of its settings or chain to salvage (checks of its
        effective values would judge settings that are not the ones written)."""
        d = self.dropped
        if alias in self.unsure or d.touches("models", alias) or d.touches("defaults") or any(
                d.touches("providers", p) for p in {t.provider for t in route.targets}):
            self.unsure.add(alias)
        return alias in self.unsure

    @property
    def unknown_price(self) -> Literal["fail", "zero"] | None:
        return self.cfg.defaults.unknown_price if self.cfg.defaults else None

    @property
    def default_recover(self) -> Recover:
        d = self.cfg.defaults
        return (d.stream.recover if d and d.stream else None) or "replay"

    @property
    def cfg_deadline(self) -> float | None:
        return self.cfg.defaults.deadline if self.cfg.defaults else None

    def _item_steps(self, path: Path, item: Any, route_layer: Layer) -> list[Step]:
        if isinstance(item, PoolCfg):
            members = [
                self._target((*path, "pool", j), m, route_layer, allow_alias=False)
                for j, m in enumerate(item.pool)
            ]
            targets = tuple(t for ts in members for t in ts)
            return [Step(targets, item.strategy or "weighted")] if targets else []
        return [Step((t,)) for t in self._target(path, item, route_layer, allow_alias=True)]

    def _target(self, path: Path, item: str | TargetCfg, route_layer: Layer, *,
                allow_alias: bool) -> list[Target]:
        ref = item if isinstance(item, str) else item.target
        ref_path = path if isinstance(item, str) else (*path, "target")
        if self._lost(ref):
            self.unsure.add(path_alias(path))
            return []
        if ":" not in ref and ref in (self.cfg.models or {}):
            if not allow_alias or isinstance(item, TargetCfg):
                self.error(ref_path, "E026",
                           f"{ref!r} is an alias: it cannot be used inside a pool or with "
                           "per-target settings",
                           "list the alias as a plain chain entry, or name provider:model here")
                return []
            # Compiled before this alias (alias_order), or not at all: a reference that closes
            # a cycle (E021) finds nothing.
            sub = self.routes.get(ref)
            if ref in self.unsure:
                self.unsure.add(path_alias(path))
            return list(sub.targets) if sub else []
        resolved = resolve_ref(ref_path, ref, self.providers, list(self.cfg.models or {}),
                               self.error)
        if resolved is None:
            return []
        pname, model = resolved
        layers = [route_layer]
        weight = 1.0
        if isinstance(item, TargetCfg):
            layers.append(_layer(item.timeout, item.retry, None, item.on, item.max_tokens))
            weight = item.weight if item.weight is not None else 1.0
        spec = self.providers[pname]
        check_model_name(ref_path, spec, model, self.warn)
        return [build_target(self.defaults, spec, self.provider_layers[pname], model,
                             self.model_overrides.get(f"{pname}:{model}"), *layers,
                             weight=weight, unknown_price=self.unknown_price, cache=self._targets)]

    def _lost(self, ref: str) -> bool:
        """Whether ``ref`` names what salvage left out: a chain entry, an alias, a provider,
        or a bare model name whose provider may be one that was left out."""
        d = self.dropped
        if ref == PLACEHOLDER or d.lost_alias(ref):
            return True
        split = registry.split_target(ref)
        if split is not None:
            return d.lost_provider(split[0])
        return (bool(d.providers or d.all_providers) and ref not in (self.cfg.models or {})
                and catalog.detect_kind(ref) is not None)


def path_alias(path: Path) -> str:
    """The alias a path under ``models`` belongs to."""
    return str(path[1])


def alias_order(models: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The aliases of ``models``, each after the aliases its chain names (a depth-first
    post-order, walked without recursion), and every cycle found, as the path that closes it
    (``[a, b, c, a]``)."""
    def refs(alias: str) -> list[str]:
        raw = models[alias]
        chain = raw.chain if isinstance(raw, RouteCfg) else raw
        return [item for item in chain
                if isinstance(item, str) and ":" not in item and item in models]

    order: list[str] = []
    cycles: list[list[str]] = []
    done: set[str] = set()
    for root in models:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [iter(refs(root))]
        while stack:
            ref = next(stack[-1], None)
            if ref is None:
                stack.pop()
                alias = path.pop()
                on_path.discard(alias)
                done.add(alias)
                order.append(alias)
            elif ref in on_path:
                cycles.append([*path[path.index(ref):], ref])
            elif ref not in done:
                path.append(ref)
                on_path.add(ref)
                stack.append(iter(refs(ref)))
    return order, cycles


def compile_plan(cfg: RouteFileCfg, doc: Document, env: Mapping[str, str] | None = None, *,
                 dropped: Dropped | None = None) -> tuple[Plan, list[Diagnostic]]:
    """Compile a structurally valid route file; the diagnostics say what is wrong in meaning.
    The Plan is only usable when no diagnostic is an error. ``dropped``: what salvage left
    out of a file with structural errors (nothing is said about what it cannot know)."""
    import os

    c = _Compiler(cfg, doc, os.environ if env is None else env, dropped=dropped or Dropped())
    d = cfg.defaults
    if d is not None:
        c.defaults = _layer(d.timeout, d.retry, d.breaker, d.on, d.max_tokens)
    c.compile_providers()
    c.contradicting = check_layer_timeouts(cfg, c.error)
    c.compile_routes()
    budgets = compile_budgets(cfg, c.providers, c.routes, c.error, c.dropped, c.unsure)
    rules = compile_error_rules(cfg, c.providers, c.error, c.dropped)
    by_scope: dict[str, list[BudgetSpec]] = {}
    for b in budgets:
        by_scope.setdefault(b.scope, []).append(b)
    st = cfg.state
    state = StateSpec() if st is None else StateSpec(
        kind=st.kind, path=st.path, url=st.url, prefix=st.prefix or "router:",
        on_store_error=st.on_store_error or "fail_closed",
        share_breakers=bool(st.share_breakers))
    plan = Plan(
        file=doc.file,
        providers=freeze(c.providers),
        routes=freeze(c.routes),
        budgets=tuple(budgets),
        error_rules=tuple(rules),
        defaults=c.defaults,
        default_deadline=d.deadline if d else None,
        default_max_tokens=d.max_tokens if d else None,
        provider_layers=freeze(c.provider_layers),
        model_overrides=freeze(c.model_overrides),
        state=state,
        default_unknown_price=d.unknown_price if d else None,
        budgets_by_scope=freeze({k: tuple(v) for k, v in by_scope.items()}),
        default_recover=c.default_recover,
    )
    check_prices(plan, c.warn, c.dropped)
    return plan, c.diags


__all__ = ["compile_plan"]
