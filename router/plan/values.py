"""The values a compiled Plan is made of: targets, steps, routes, policies, provider specs,
settings layers. Frozen dataclasses with no logic beyond their own small helpers; ``routes``
(the Plan) and ``targets`` (building them) both read them, and neither imports the other's
way back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from router.errors import DEFAULT_ACTIONS, Action, ErrorClass
from router.secret import SECRET_SETTINGS, Secret
from router.specs import Capabilities, Timeouts

Strategy = Literal["single", "weighted", "round_robin", "random", "ordered"]
Window = Literal["minute", "hour", "day", "month", "total"]
Recover = Literal["replay", "continue", "off"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one target is retried: ``attempts`` tries in all, jittered exponential backoff."""

    attempts: int = 2
    initial: float = 0.5
    max: float = 8.0
    multiplier: float = 2.0
    jitter: Literal["full", "none"] = "full"
    max_retry_after: float = 60.0

    def backoff_cap(self, retry_number: int) -> float:
        """The largest wait before retry ``retry_number`` (1 = the first retry)."""
        return float(min(self.max, self.initial * self.multiplier ** (retry_number - 1)))

    def worst_case_waits(self) -> float:
        """The sum of the largest waits of every retry."""
        return sum(self.backoff_cap(n) for n in range(1, self.attempts))


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """Open after ``failures`` consecutive retryable failures; probe again after ``cooldown``."""

    enabled: bool = True
    failures: int = 5
    cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None  # writing the prompt cache (Anthropic); None: input's
    cache_write_1h: float | None = None  # writing it for an hour; None: cache_write's
    #: Long-context prices, ascending by start: a call whose input tokens exceed ``start``
    #: pays that tier's rates on every token (the highest such tier), as Anthropic and
    #: Google bill prompts over 200k tokens.
    tiers: tuple[tuple[int, Price], ...] = ()
    web_search: float | None = None  # USD per 1,000 searches of the provider's web search tool

    def for_input(self, input_tokens: int) -> Price:
        """The rates in force for a call with ``input_tokens`` prompt tokens."""
        for start, tier in reversed(self.tiers):
            if input_tokens > start:
                return tier
        return self


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """A local limiter shared by every call of this Router (and every replica, with a shared
    store): ``key`` is ``provider:NAME`` or ``target:P:M``."""

    key: str
    rpm: int | None = None
    tpm: int | None = None
    mode: Literal["skip", "wait"] = "skip"


@dataclass(frozen=True, slots=True)
class StateSpec:
    """Where budgets, rate limits and shared breaker state live."""

    kind: Literal["memory", "sqlite", "redis"] = "memory"
    path: str | None = None
    url: str | None = field(default=None, repr=False)  # may hold a password
    prefix: str = "router:"
    on_store_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    share_breakers: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """One provider:model with the settings in force for it in one route."""

    key: str
    provider: str
    kind: str
    model: str
    timeouts: Timeouts
    retry: RetryPolicy
    breaker: BreakerPolicy
    actions: Mapping[ErrorClass, Action]
    capabilities: Capabilities
    weight: float = 1.0
    max_tokens: int | None = None  # effective: target entry < route < provider < defaults
    price: Price | None = None  # from the route file; else the price table is asked
    rate_limits: tuple[RateLimitSpec, ...] = ()
    unknown_price: Literal["fail", "zero"] | None = None  # None: fail when under a budget
    #: Environment variables its provider needs and the environment lacked when the plan was
    #: compiled (its key): the engine skips the target (``missing_key``), naming them.
    missing_env: tuple[str, ...] = ()
    #: No layer set ``first_token``: the adaptive limit's bases (plain request, request that
    #: turns reasoning on), ``timeouts.first_token`` being the first (router.plan.first_token).
    first_token_adaptive: tuple[float, float] | None = None

    def __repr__(self) -> str:
        return f"Target({self.key})"


@dataclass(frozen=True, slots=True)
class Step:
    """One position in a chain: a single target, or a pool whose members share the position."""

    targets: tuple[Target, ...]
    strategy: Strategy = "single"


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """A spending cap on a scope (global, provider:X, alias:X, target:P:M, tag:K=V)."""

    scope: str
    usd: float
    per: Window = "total"
    warn_at: float | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """What a model name resolves to: ordered steps plus route-wide limits."""

    alias: str
    steps: tuple[Step, ...]
    deadline: float | None = None
    requires: frozenset[str] = frozenset()
    budgets: tuple[BudgetSpec, ...] = ()
    # The output limit every target of the route shares (sent when the caller gives none);
    # None when there is none or the targets' own limits differ (each Target carries its own).
    max_tokens: int | None = None
    #: What a stream does when it fails after its first chunk: replay, continue or off.
    recover: Recover = "replay"

    @property
    def targets(self) -> tuple[Target, ...]:
        """Every target in chain order (pool members in listed order)."""
        return tuple(t for s in self.steps for t in s.targets)


@dataclass(frozen=True)
class ProviderSpec:
    """A provider as configured: the key is a Secret read from the environment."""

    name: str
    kind: str
    base_url: str | None
    api_key: Secret | None = field(repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets
    key_env: str | None = None
    missing_env: tuple[str, ...] = ()
    rate_limit: RateLimitSpec | None = None
    unknown_price: Literal["fail", "zero"] | None = None
    max_connections: int | None = None  # connections open at once to its host (None: default)

    def secret_values(self) -> list[str]:
        """Every configured secret of this provider: the key, each header value, and each
        string under a secret setting name (token, password...) in a plugin's settings."""
        found = [] if self.api_key is None else [self.api_key.get_secret_value()]
        found += (v for v in self.headers.values() if v)
        stack: list[tuple[str | None, Any]] = [(None, self.options)]
        while stack:
            name, value = stack.pop()
            if isinstance(value, Mapping):
                stack.extend((str(k), v) for k, v in value.items())
            elif isinstance(value, list | tuple):
                stack.extend((name, v) for v in value)
            elif isinstance(value, str) and value and name in SECRET_SETTINGS:
                found.append(value)
        return found


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """A user rule that classifies a provider error before the built-in table."""

    error_class: ErrorClass
    provider: str | None = None
    kind: str | None = None
    status: int | None = None
    code: str | None = None
    type: str | None = None
    match: str | None = None  # lower-cased substring

    def matches(self, provider: str, kind: str, status: int | None, code: str | None,
                type_: str | None, message: str) -> bool:
        return (
            (self.provider is None or self.provider == provider)
            and (self.kind is None or self.kind == kind)
            and (self.status is None or self.status == status)
            and (self.code is None or self.code == code)
            and (self.type is None or self.type == type_)
            and (self.match is None or self.match in message.lower())
        )


@dataclass(frozen=True, slots=True)
class Layer:
    """Settings for targets that come from defaults, a provider, a route or a target entry."""

    timeouts: Mapping[str, float] = field(default_factory=dict)
    retry: Mapping[str, Any] = field(default_factory=dict)
    breaker: Mapping[str, Any] = field(default_factory=dict)
    actions: Mapping[ErrorClass, Action] = field(default_factory=dict)
    max_tokens: int | None = None  # the output limit sent when the caller gives none


# first_token: the adaptive limit's base for an ordinary model (router.plan.first_token).
BUILTIN_TIMEOUTS = Timeouts(connect=5.0, first_token=10.0, total=120.0, idle=30.0)
BUILTIN_RETRY = RetryPolicy()
BUILTIN_BREAKER = BreakerPolicy()


def freeze(d: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(d))


_DEFAULT_ACTIONS_FROZEN = MappingProxyType(dict(DEFAULT_ACTIONS))


def merged_actions(*layers: Mapping[ErrorClass, Action]) -> Mapping[ErrorClass, Action]:
    """Built-in actions overridden by each layer in turn (later wins)."""
    if not any(layers):
        return _DEFAULT_ACTIONS_FROZEN
    out = dict(DEFAULT_ACTIONS)
    for layer in layers:
        out.update(layer)
    return freeze(out)
