"""Model strings to routes: the plan's aliases, and ad-hoc references ("provider:model", a bare
model name, "a,b" chains) built on first use and kept in a bounded LRU cache, so the Plan stays
immutable and a caller sending endless distinct model names cannot grow memory without bound.
"""

from __future__ import annotations

from collections import OrderedDict

from router.plan.routes import Plan, Route
from router.plan.targets import adhoc_route

#: Ad-hoc routes kept per Router; the least recently used one is dropped past this.
DEFAULT_SIZE = 256


class RouteResolver:
    """Resolves model strings against one Plan; ad-hoc routes are cached (LRU, ``size``)."""

    __slots__ = ("_cache", "_routes", "plan", "size")

    def __init__(self, plan: Plan, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.plan = plan
        self.size = size
        self._routes = plan.routes
        self._cache: OrderedDict[str, Route] = OrderedDict()

    def resolve(self, model: str) -> Route:
        """The route for ``model``; raises NoRouteError when nothing matches (never cached)."""
        route = self._routes.get(model)
        if route is not None:
            return route
        cache = self._cache
        route = cache.get(model)
        if route is not None:
            cache.move_to_end(model)
            return route
        route = adhoc_route(self.plan, model)
        cache[model] = route
        if len(cache) > self.size:
            cache.popitem(last=False)
        return route

    def __len__(self) -> int:
        return len(self._cache)


__all__ = ["DEFAULT_SIZE", "RouteResolver"]
