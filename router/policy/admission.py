"""Admission: whether a target may be tried now under its rate limits and budgets, and the
budget hold an attempt carries until it is settled (real cost) or released (failure).

The engine asks only for targets that are gated (a budget or a rate limit applies), so a plan
without either pays nothing here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from router.obs import log
from router.plan.routes import BudgetSpec, Plan, Route, Target
from router.policy import ratelimit
from router.policy.budget import Budgets, Hold, budget_key, describe_refusal
from router.policy.pricing import price_of, worst_case_cost
from router.policy.tokens import estimate_prompt_tokens, upper_bound_prompt_tokens
from router.state.base import Refusal, StateStore, StoreError, Usage, to_micro
from router.types import ChatRequest

_DEFAULT_MAX_OUTPUT = 4096
_HOLD_MARGIN = 60.0  # seconds a hold outlives its attempt's timeout, to be settled in time


@dataclass(slots=True)
class CallScope:
    """What admission needs to know of one call."""

    route: Route
    request: ChatRequest
    tags: Mapping[str, str] | None
    request_id: str
    specs: dict[str, list[BudgetSpec]] = field(default_factory=dict)
    upper_tokens: int | None = None


class Gate:
    """Rate limits and budgets of one Router, over its state store."""

    def __init__(self, plan: Plan, store: StateStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.plan = plan
        self.store = store
        self.fail_open = plan.state.on_store_error == "fail_open"
        self.budgets = Budgets(store, fail_open=self.fail_open, clock=clock)
        self._any_budgets = bool(plan.budgets_by_scope)
        self.share_breakers = plan.state.share_breakers
        self.clock = clock
        self._shared_open: set[str] = set()  # targets this Router last published as open

    def specs(self, scope: CallScope, target: Target) -> list[BudgetSpec]:
        found = scope.specs.get(target.key)
        if found is None:
            found = self.plan.budgets_for(target, scope.route, scope.tags)
            scope.specs[target.key] = found
        return found

    def may_gate(self, route: Route, target: Target) -> bool:
        """False when nothing can gate ``target`` on ``route`` (no rate limit, no shared
        breakers, no budget at all): the common case, answered without a CallScope."""
        return bool(target.rate_limits or self.share_breakers or self._any_budgets
                    or route.budgets)

    def gated(self, scope: CallScope, target: Target) -> bool:
        if target.rate_limits or self.share_breakers:
            return True
        if not (self._any_budgets or scope.route.budgets):
            return False
        return bool(self.specs(scope, target))

    def _max_output(self, scope: CallScope, target: Target) -> int:
        return (scope.request.max_tokens or target.max_tokens or scope.route.max_tokens
                or target.capabilities.max_output_tokens or _DEFAULT_MAX_OUTPUT)

    def _tokens(self, scope: CallScope) -> int:
        if scope.upper_tokens is None:
            scope.upper_tokens = upper_bound_prompt_tokens(scope.request)
        return scope.upper_tokens

    async def admit(self, scope: CallScope, target: Target, attempt: int,
                    remaining: float | None) -> tuple[tuple[str, str] | None, Hold | None]:
        """(None, hold) when the target may be tried (hold None when nothing is reserved);
        ((reason, detail), None) when it must be skipped: ``store_unavailable`` when the
        store is down and the policy is fail_closed."""
        try:  # one frame: a budgeted call pays no extra coroutine for the store-error policy
            if self.share_breakers and await self._opened_elsewhere(target):
                return ("breaker_open", "circuit breaker opened by another replica"), None
            if target.rate_limits:
                # As providers count it: the prompt (estimated) plus the output limit asked.
                tokens = estimate_prompt_tokens(scope.request) + (scope.request.max_tokens or 0)
                why = await ratelimit.acquire(self.store, target.rate_limits, tokens,
                                              remaining, fail_open=self.fail_open)
                if why is not None:
                    return ("rate_limited_locally", why), None
            specs = self.specs(scope, target)
            if not specs:
                return None, None
            amount = self.worst_case(scope, target)
            if isinstance(amount, str):
                return ("budget", amount), None
            hold_for = target.timeouts.total if remaining is None else min(
                target.timeouts.total, remaining)
            # The id must be unique across processes: request ids are not (a caller may pass
            # its own; forked workers inherit the engine's id prefix), and a store treats a live
            # id as "already held", so a shared id would let a second call through unheld.
            rid = f"{scope.request_id}:{attempt}:{os.urandom(8).hex()}"
            result = await self.budgets.reserve(rid, specs, amount, hold_for + _HOLD_MARGIN,
                                                output_cap=self._max_output(scope, target))
        except StoreError as e:
            return ("store_unavailable", f"state store unavailable ({e.message})"), None
        if isinstance(result, str):
            return ("budget", result), None
        return None, result

    def worst_case(self, scope: CallScope, target: Target) -> float | str:
        """The most this attempt can cost, or why it cannot be known (unknown_price: fail)."""
        price = price_of(target)
        if price is None:
            if (target.unknown_price or "fail") == "fail":
                return (f"no known price for {target.key}; under a budget it is skipped "
                        "(set a price, or unknown_price: zero)")
            return 0.0
        return worst_case_cost(price, self._tokens(scope),
                               self._max_output(scope, target)) or 0.0

    def simulate(self, scope: CallScope, target: Target, usage: Mapping[str, Usage],
                 now: float) -> tuple[str, str] | None:
        """Dry-run's admission: the budget verdict against a snapshot of the store."""
        specs = self.specs(scope, target)
        if not specs:
            return None
        amount = self.worst_case(scope, target)
        if isinstance(amount, str):
            return "budget", amount
        wanted = to_micro(amount)
        keys = [budget_key(s, now) for s in specs]
        for key in keys:
            u = usage.get(key.key, Usage(0, 0))
            if u.spent_micro + u.reserved_micro + wanted > key.cap_micro:
                return "budget", describe_refusal(Refusal(
                    key.key, key.cap_micro, u.spent_micro, u.reserved_micro, wanted), specs, keys)
        return None

    async def snapshot(self, route: Route, tags: Mapping[str, str] | None,
                       now: float) -> dict[str, Usage]:
        """Spend and holds of every budget ``route`` can count against, for dry-run."""
        specs = {id(s): s for t in route.targets
                 for s in self.plan.budgets_for(t, route, tags)}.values()
        out: dict[str, Usage] = {}
        for spec in specs:
            key = budget_key(spec, now).key
            out[key] = await self.store.usage(key)
        return out

    async def _opened_elsewhere(self, target: Target) -> bool:
        try:
            _, opened_at = await self.store.breaker_get(target.key)
        except StoreError as e:
            log.emit("store_error", operation="breaker_get", error=e.message)
            return False
        return opened_at is not None and self.clock() - opened_at < target.breaker.cooldown

    async def publish_breaker(self, target: Target, *, opened: bool) -> None:
        """Share a breaker that opened (or closed again) with the other replicas."""
        if not self.share_breakers or (not opened and target.key not in self._shared_open):
            return
        ttl = max(target.breaker.cooldown * 2, 1.0)
        try:
            await self.store.breaker_put(target.key, target.breaker.failures if opened else 0,
                                         self.clock() if opened else None, ttl)
        except StoreError as e:
            log.emit("store_error", operation="breaker_put", error=e.message)
            return
        if opened:
            self._shared_open.add(target.key)
        else:
            self._shared_open.discard(target.key)

    async def settle(self, hold: Hold | None, cost_usd: float | None) -> None:
        """Turn the hold into spend: the real cost, or the held worst case when unknown."""
        if hold is not None:
            await self.budgets.settle(hold, hold.amount_micro / 1e6 if cost_usd is None
                                      else cost_usd)

    async def release(self, hold: Hold | None) -> None:
        """Drop the hold: nothing is spent."""
        if hold is not None:
            await self.budgets.release(hold)

    async def drain(self) -> None:
        """Wait for holds still being settled or released after a cancellation."""
        await self.budgets.drain()
