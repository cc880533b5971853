"""The compiled Plan: every alias resolved to ordered Targets with effective settings.

Compiled once from a checked route file; immutable afterwards. The engine and dry-run read it,
never the raw config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from router.plan.values import (
    BUILTIN_BREAKER,
    BUILTIN_RETRY,
    BUILTIN_TIMEOUTS,
    BreakerPolicy,
    BudgetSpec,
    ErrorRule,
    Layer,
    Price,
    ProviderSpec,
    RateLimitSpec,
    Recover,
    RetryPolicy,
    Route,
    StateSpec,
    Step,
    Strategy,
    Target,
    Window,
    freeze,
    merged_actions,
)

__all__ = [
    "BUILTIN_BREAKER",
    "BUILTIN_RETRY",
    "BUILTIN_TIMEOUTS",
    "BreakerPolicy",
    "BudgetSpec",
    "ErrorRule",
    "Layer",
    "Plan",
    "Price",
    "ProviderSpec",
    "RateLimitSpec",
    "Recover",
    "RetryPolicy",
    "Route",
    "StateSpec",
    "Step",
    "Strategy",
    "Target",
    "Window",
    "freeze",
    "merged_actions",
]



@dataclass(frozen=True)
class Plan:
    """The immutable result of compiling a route file."""

    file: str
    providers: Mapping[str, ProviderSpec]
    routes: Mapping[str, Route]
    budgets: tuple[BudgetSpec, ...] = ()
    error_rules: tuple[ErrorRule, ...] = ()
    defaults: Layer = field(default_factory=Layer)
    default_deadline: float | None = None
    default_max_tokens: int | None = None
    provider_layers: Mapping[str, Layer] = field(default_factory=dict)
    model_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    state: StateSpec = field(default_factory=StateSpec)
    default_unknown_price: Literal["fail", "zero"] | None = None
    budgets_by_scope: Mapping[str, tuple[BudgetSpec, ...]] = field(default_factory=dict)
    default_recover: Recover = "replay"  # ad-hoc routes' stream recovery

    def budgets_for(self, target: Target, route: Route,
                    tags: Mapping[str, str] | None) -> list[BudgetSpec]:
        """Every budget that a call of ``route`` on ``target`` with ``tags`` counts against."""
        by = self.budgets_by_scope
        found: list[BudgetSpec] = list(route.budgets)
        if not by:
            return found
        for scope in ("global", f"provider:{target.provider}", f"target:{target.key}",
                      f"alias:{route.alias}"):
            found.extend(by.get(scope, ()))
        if tags:
            for k, v in tags.items():
                found.extend(by.get(f"tag:{k}={v}", ()))
        return found

    def resolve(self, model: str) -> Route:
        """The route for an alias, ``"provider:model"``, a bare model name, or a comma-separated
        ad-hoc chain of those, built anew each time (a Router caches them: plan.resolver).
        Raises NoRouteError when nothing matches."""
        route = self.routes.get(model)
        if route is not None:
            return route
        from router.plan.targets import adhoc_route  # cold path: imported on first ad-hoc use

        return adhoc_route(self, model)
