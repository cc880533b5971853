"""What every call of one Router shares: its providers, breakers, admission (budgets and rate
limits), tracing and randomness (the clock reaches calls through the breakers and the gate).
Router builds one ``Runtime``; each call gets it explicitly, so no engine module reaches into
the Router.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from router.engine.decision import Try, order_targets
from router.errors import ConfigError, ErrorClass, LlmError, TimeoutError_, make_error
from router.obs import log
from router.plan.routes import Plan, Route, Target
from router.policy.admission import Gate
from router.policy.breaker import Breakers
from router.policy.budget import Hold
from router.providers import registry
from router.providers.base import HttpPool, Provider, ProviderConfig
from router.specs import Timeouts
from router.types import ChatRequest

if TYPE_CHECKING:
    from router.obs.tracing import Tracing

#: Routes whose pool positions are remembered; past it the table starts over (ad-hoc model
#: strings are unbounded in number, aliases are not).
_MAX_ORDERS = 4096


@dataclass(frozen=True, slots=True)
class Seat:
    """One configured provider as the engine uses it."""

    provider: Provider
    #: The provider bounds connect, first token, idle and total itself (the HTTP template);
    #: otherwise (fakes, plugins) the engine wraps each attempt in a timer of its own.
    enforces_timeouts: bool


def build_seats(plan: Plan, http: HttpPool) -> dict[str, Seat]:
    """A Seat per provider of ``plan``, sharing ``http``; registers their secrets."""
    seats: dict[str, Seat] = {}
    for name, spec in plan.providers.items():
        if not registry.is_available(spec.kind):
            raise ConfigError(f"provider {name!r}: kind {spec.kind!r} is not available in "
                              f"this installation (available: "
                              f"{', '.join(registry.available_kinds())})")
        cfg = ProviderConfig(name=name, kind=spec.kind, base_url=spec.base_url,
                             api_key=spec.api_key, headers=spec.headers, options=spec.options,
                             max_connections=spec.max_connections)
        provider = registry.provider_class(spec.kind)(cfg, http)
        seats[name] = Seat(provider, provider.enforces_timeouts)
        log.add_secrets(spec.secret_values())
    return seats


class RouteInfo:
    """What every call of one route shares: its targets, the counter of its pools' positions
    (None: a fixed order), whether a target reads the prompt's size (a context window or an
    adaptive first-token limit; else no call estimates its tokens) and whether anything can
    gate a target (budgets, rate limits, shared breakers; else no call asks admission)."""

    __slots__ = ("estimate", "gates", "positions", "targets")

    def __init__(self, route: Route, gate: Gate) -> None:
        self.targets = route.targets
        rotating = any(len(s.targets) > 1 and s.strategy not in ("single", "ordered")
                       for s in route.steps)
        self.positions: Iterator[int] | None = itertools.count() if rotating else None
        self.estimate = any(t.capabilities.context_window is not None
                            or t.first_token_adaptive is not None for t in self.targets)
        self.gates = any(gate.may_gate(route, t) for t in self.targets)


class Runtime:
    """The collaborators of one Router's calls (see the module docstring)."""

    __slots__ = ("breakers", "call_events", "gate", "plan", "rng", "routes", "seats", "tracing")

    def __init__(self, plan: Plan, seats: dict[str, Seat], gate: Gate, breakers: Breakers,
                 *, rng: random.Random, tracing: Tracing | None = None,
                 call_events: bool = True) -> None:
        self.plan = plan
        self.call_events = call_events  # route_done per call (router serve logs its own)
        self.seats = seats
        self.gate = gate
        self.breakers = breakers
        self.rng = rng
        self.tracing = tracing
        self.routes: dict[str, RouteInfo] = {}  # alias -> what its calls share

    # -- per call ---------------------------------------------------------------------------
    def route_info(self, route: Route) -> RouteInfo:
        """What every call of ``route`` shares, worked out on its first call."""
        found = self.routes.get(route.alias)
        if found is None:
            if len(self.routes) >= _MAX_ORDERS:
                self.routes.clear()
            found = self.routes[route.alias] = RouteInfo(route, self.gate)
        return found

    def order(self, route: Route, info: RouteInfo | None = None) -> Sequence[Target]:
        """The targets of ``route`` in the order this call tries them. Round-robin and
        weighted pools advance one position per call of their own route."""
        if info is None:
            info = self.route_info(route)
        if info.positions is None:
            return info.targets
        return order_targets(route, self.rng, next(info.positions))

    # -- per attempt ------------------------------------------------------------------------
    def classify(self, target: Target, err: LlmError) -> LlmError:
        """Apply the route file's ``errors:`` rules, then set the target."""
        for rule in self.plan.error_rules:
            if rule.matches(target.provider, target.kind, err.status, err.provider_code,
                            err.provider_type, err.provider_message or err.message):
                if rule.error_class is not err.error_class:
                    new = make_error(rule.error_class, err.message, status=err.status,
                                     retry_after=err.retry_after, target=target.key,
                                     provider_type=err.provider_type,
                                     provider_code=err.provider_code,
                                     provider_message=err.provider_message,
                                     timeout_kind=err.timeout_kind)
                    new.__cause__ = err
                    return new
                break
        return err.with_target(target.key)

    @staticmethod
    def timeouts_for(d: Try) -> Timeouts:
        """The target's timeouts with ``total`` = this attempt's limit and this call's
        adaptive first-token limit (a new value only when the call deadline shortened the
        one or the prompt or a reasoning request moved the other)."""
        t = d.target.timeouts
        if d.first_token is not None:
            return replace(t, total=d.timeout, first_token=d.first_token)
        return t if d.timeout == t.total else replace(t, total=d.timeout)

    @staticmethod
    def timeout_error(d: Try) -> LlmError:
        """Our own timer fired: the call deadline, or the total of a provider that does not
        enforce its timeouts itself."""
        kind = "deadline" if d.timeout_is_deadline else "total"
        return TimeoutError_(f"no answer within {d.timeout:.3g}s ({kind} timeout)",
                             timeout_kind=kind, target=d.target.key)

    @staticmethod
    def plugin_error(target: Target, e: Exception) -> LlmError:
        """Interface 6's last resort: a non-LlmError escaping a provider (a plugin bug)."""
        err = make_error(ErrorClass.SERVER, f"provider {target.provider!r} raised "
                         f"{type(e).__name__} (a bug in the provider, not a reply)",
                         target=target.key)
        err.__cause__ = e
        return err

    @staticmethod
    def request_for(target: Target, request: ChatRequest, hold: Hold | None) -> ChatRequest:
        """The request as sent to ``target``: with its max_tokens when the caller gave none,
        or the output limit a budget hold assumed (so the provider enforces the worst case);
        without ``parallel_tool_calls`` where the model lacks the switch (its capability)."""
        changes: dict[str, Any] = {}
        if request.max_tokens is None:
            cap = target.max_tokens or (hold.output_cap if hold is not None else None)
            if cap is not None:
                changes["max_tokens"] = cap
        if request.parallel_tool_calls is not None and not target.capabilities.parallel_tool_calls:
            changes["parallel_tool_calls"] = None
        return replace(request, **changes) if changes else request

    async def note_failure(self, target: Target, error: LlmError) -> None:
        """Count ``error`` against the target's breaker. A pool timeout (no free connection
        in time) says nothing about the provider's health: interface 1."""
        if error.timeout_kind == "pool":
            self.breakers.release_probe(target.key)
            return
        if self.breakers.record_failure(target.key, target.breaker, retryable=error.retryable):
            log.emit("breaker_opened", target=target.key, cooldown_s=target.breaker.cooldown)
            await self.gate.publish_breaker(target, opened=True)
