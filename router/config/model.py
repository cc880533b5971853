"""Pydantic models of the route file. They mirror schemas/routes.schema.json (the truth);
tests/test_schema_agreement.py proves both accept and reject the same corpus."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    Strict,
    StrictBool,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from router.config.units import parse_duration, parse_money
from router.errors import Action, ErrorClass
from router.providers import registry
from router.providers.kinds import COMMON_SETTINGS, KINDS


def _float(v: int | float) -> float:
    # JSON Schema compares integers of any size; past float's range they mean +-infinity.
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _duration(v: Any) -> float:
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise ValueError("a duration is a number of seconds or a string like 500ms, 5s, 2m")
    return parse_duration(v if isinstance(v, str) else _float(v))


def _money(v: Any) -> float:
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise ValueError("an amount is a number of US dollars")
    return parse_money(v if isinstance(v, str) else _float(v))


def _number(v: Any) -> float:
    # JSON Schema's "number": no booleans, and no strings pydantic would otherwise coerce.
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError("expected a number")
    return _float(v)


def _integer(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float) or (
            isinstance(v, float) and not v.is_integer()):
        raise ValueError("expected an integer")
    return int(v) if isinstance(v, float) else v


Duration = Annotated[float, BeforeValidator(_duration)]
Money = Annotated[float, BeforeValidator(_money)]
Number = Annotated[float, BeforeValidator(_number)]
Int = Annotated[int, BeforeValidator(_integer)]
Name = Annotated[str, StringConstraints(strict=True,
                                        pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$(?!\n)")]
AliasName = Annotated[str, StringConstraints(strict=True, pattern=r"^[^:,\s]+$(?!\n)")]
TargetRef = Annotated[str, StringConstraints(strict=True, pattern=r"^\S+$(?!\n)")]
OnMap = dict[ErrorClass, Action]
Capability = Literal["tools", "vision", "documents", "json_object", "json_schema",
                     "streaming"]
Window = Literal["minute", "hour", "day", "month", "total"]
FakeOutcome = Literal[
    "ok", "auth", "permission", "not_found", "invalid_request", "context_window",
    "content_policy", "rate_limit", "quota_exhausted", "overloaded", "server",
    "timeout", "network", "stream_interrupted",
]


class _Model(BaseModel):
    # Agreement with the schema (tests/test_schema_agreement.py): aliased fields accept only
    # their alias (`class`, `$schema`), patterns use Python's re as jsonschema does (each
    # `$` is `$(?!\n)`: Python's also matches before a final newline, ECMA 262's and
    # jsonschema-rs's do not), and an explicit null is rejected (the schema has no "null"
    # type) rather than read as "unset".
    model_config = ConfigDict(frozen=True, extra="forbid", regex_engine="python-re")

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("null is not allowed here; remove the key to leave it unset")
        return v


class TimeoutCfg(_Model):
    connect: Duration | None = None
    first_token: Duration | None = None
    total: Duration | None = None
    idle: Duration | None = None
    first_token_base: Duration | None = None  # the adaptive first_token's base


class RetryCfg(_Model):
    attempts: Annotated[Int, Field(ge=1, le=20)] | None = None
    initial: Duration | None = None
    max: Duration | None = None
    multiplier: Annotated[Number, Field(ge=1)] | None = None
    jitter: Literal["full", "none"] | None = None
    max_retry_after: Duration | None = None


class BreakerCfg(_Model):
    enabled: StrictBool | None = None
    failures: Annotated[Int, Field(ge=1)] | None = None
    cooldown: Duration | None = None


UnknownPrice = Literal["fail", "zero"]


class RateLimitCfg(_Model):
    rpm: Annotated[Int, Field(ge=1)] | None = None
    tpm: Annotated[Int, Field(ge=1)] | None = None
    mode: Literal["skip", "wait"] | None = None


Recover = Literal["replay", "continue", "off"]


class StreamCfg(_Model):
    recover: Recover | None = None


class DefaultsCfg(_Model):
    timeout: TimeoutCfg | None = None
    retry: RetryCfg | None = None
    breaker: BreakerCfg | None = None
    on: OnMap | None = None
    deadline: Duration | None = None
    max_tokens: Annotated[Int, Field(ge=1)] | None = None
    unknown_price: UnknownPrice | None = None
    stream: StreamCfg | None = None


class PriceTierCfg(_Model):
    above: Annotated[Int, Field(ge=1)]
    input: Annotated[Number, Field(ge=0)]
    output: Annotated[Number, Field(ge=0)]
    cached_input: Annotated[Number, Field(ge=0)] | None = None
    cache_write: Annotated[Number, Field(ge=0)] | None = None
    cache_write_1h: Annotated[Number, Field(ge=0)] | None = None


class PriceCfg(_Model):
    input: Annotated[Number, Field(ge=0)]
    output: Annotated[Number, Field(ge=0)]
    cached_input: Annotated[Number, Field(ge=0)] | None = None
    cache_write: Annotated[Number, Field(ge=0)] | None = None
    cache_write_1h: Annotated[Number, Field(ge=0)] | None = None
    tiers: Annotated[list[PriceTierCfg], Field(min_length=1)] | None = None
    web_search: Annotated[Number, Field(ge=0)] | None = None


class ModelInfoCfg(_Model):
    context_window: Annotated[Int, Field(ge=1)] | None = None
    max_output_tokens: Annotated[Int, Field(ge=1)] | None = None
    tools: StrictBool | None = None
    vision: StrictBool | None = None
    documents: StrictBool | None = None
    json_object: StrictBool | None = None
    json_schema: StrictBool | None = None
    streaming: StrictBool | None = None
    prefill: StrictBool | None = None
    n: StrictBool | None = None
    parallel_tool_calls: StrictBool | None = None
    price: PriceCfg | None = None
    rate_limit: RateLimitCfg | None = None


class FakeStepCfg(_Model):
    outcome: FakeOutcome
    latency: Duration | None = None
    text: StrictStr | None = None
    retry_after: Duration | None = None
    status: Annotated[Int, Field(ge=100, le=599)] | None = None


#: Settings that only some built-in provider kinds accept (the schema's if/then blocks), from
#: the kinds table; ProviderCfg below types each of them.
_BUILTIN_KIND_FIELDS: dict[str, frozenset[str]] = {k: s.settings for k, s in KINDS.items()}
COMMON_PROVIDER_FIELDS = COMMON_SETTINGS
REQUIRED_BASE_URL = frozenset(k for k, s in KINDS.items() if s.requires_base_url)
BUILTIN_KINDS: frozenset[str] = frozenset(KINDS)


class _KindFields(Mapping[str, frozenset[str]]):
    """Kind -> its own settings, plugin kinds included. Looking up a kind that is not built-in
    reads the plugins' entry points (once); iterating lists the kinds known so far."""

    def __getitem__(self, kind: str) -> frozenset[str]:
        if kind in _BUILTIN_KIND_FIELDS:
            return _BUILTIN_KIND_FIELDS[kind]
        plugin = registry.plugin_kind(kind)
        if plugin is None:
            raise KeyError(kind)
        return plugin.fields

    def __iter__(self) -> Iterator[str]:
        yield from _BUILTIN_KIND_FIELDS
        yield from registry.plugin_kinds(discover=False)

    def __len__(self) -> int:
        return len(_BUILTIN_KIND_FIELDS) + len(registry.plugin_kinds(discover=False))


#: Settings that only some provider kinds accept (the schema's if/then blocks).
KIND_FIELDS: Mapping[str, frozenset[str]] = _KindFields()


def _provider_kind(v: str) -> str:
    if v in BUILTIN_KINDS or registry.plugin_kind(v) is not None:
        return v
    known = [*KINDS, *registry.plugin_kinds()]
    raise ValueError(f"{v!r} is not a provider kind (kinds: {', '.join(known)})")


class ProviderCfg(_Model):
    """One provider. A plugin kind's settings are kept aside, checked by its own schema, and
    returned by ``options()``."""

    kind: Annotated[StrictStr, AfterValidator(_provider_kind)]
    api_key: Annotated[SecretStr, Strict()] | None = None
    base_url: StrictStr | None = None
    headers: dict[str, StrictStr] | None = Field(default=None, repr=False)
    timeout: TimeoutCfg | None = None
    retry: RetryCfg | None = None
    breaker: BreakerCfg | None = None
    models: dict[str, ModelInfoCfg] | None = None
    rate_limit: RateLimitCfg | None = None
    unknown_price: UnknownPrice | None = None
    max_connections: Annotated[Int, Field(ge=1)] | None = None
    on: OnMap | None = None
    max_tokens: Annotated[Int, Field(ge=1)] | None = None
    # kind-specific settings (see KIND_FIELDS)
    organization: StrictStr | None = None
    project: StrictStr | None = None
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    stream_usage: StrictBool | None = None
    cache_control: StrictBool | None = None
    api_version: StrictStr | None = None
    deployments: dict[str, StrictStr] | None = None
    anthropic_version: StrictStr | None = None
    keep_alive: Duration | None = None
    script: Annotated[list[FakeOutcome | FakeStepCfg], Field(min_length=1)] | None = None
    text: StrictStr | None = None
    latency: Duration | None = None
    _plugin_settings: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _plugin_kind(cls, data: Any, handler: ModelWrapValidatorHandler[ProviderCfg]
                     ) -> ProviderCfg:
        kind = data.get("kind") if isinstance(data, dict) else None
        plugin = registry.plugin_kind(kind) if isinstance(kind, str) else None
        if plugin is None:
            return handler(data)
        errors = plugin.settings_errors(data)
        if errors:
            raise ValueError("; ".join(errors))
        common = {k: v for k, v in data.items() if k in COMMON_PROVIDER_FIELDS}
        cfg = handler(common)
        cfg.keep_plugin_settings({k: v for k, v in data.items() if k in plugin.fields})
        return cfg

    @model_validator(mode="after")
    def _kind_fields(self) -> ProviderCfg:
        allowed = KIND_FIELDS[self.kind]
        for name in self.model_fields_set - COMMON_PROVIDER_FIELDS:
            if name not in allowed:
                raise ValueError(f"{name!r} is not a setting of kind {self.kind!r}")
        if self.kind in REQUIRED_BASE_URL and self.base_url is None:
            raise ValueError(f"kind {self.kind!r} needs base_url")
        return self

    def keep_plugin_settings(self, settings: dict[str, Any]) -> None:
        """Keep a plugin kind's settings (checked by the plugin's own schema) for options()."""
        self._plugin_settings = settings

    def options(self) -> dict[str, Any]:
        """The kind-specific settings that were set."""
        if self.kind not in BUILTIN_KINDS:
            return dict(self._plugin_settings)
        return {k: getattr(self, k) for k in KIND_FIELDS[self.kind] if k in self.model_fields_set}


class TargetCfg(_Model):
    target: TargetRef
    timeout: TimeoutCfg | None = None
    retry: RetryCfg | None = None
    on: OnMap | None = None
    weight: Annotated[Number, Field(ge=0)] | None = None
    max_tokens: Annotated[Int, Field(ge=1)] | None = None


class PoolCfg(_Model):
    pool: Annotated[list[TargetRef | TargetCfg], Field(min_length=1)]
    strategy: Literal["weighted", "round_robin", "random", "ordered"] | None = None


ChainItem = TargetRef | TargetCfg | PoolCfg


class AliasBudgetCfg(_Model):
    usd: Money
    per: Window | None = None
    warn_at: Annotated[Number, Field(gt=0, le=1)] | None = None


class RouteCfg(_Model):
    chain: list[ChainItem]
    on: OnMap | None = None
    budget: AliasBudgetCfg | None = None
    deadline: Duration | None = None
    requires: list[Capability] | None = None
    timeout: TimeoutCfg | None = None
    retry: RetryCfg | None = None
    max_tokens: Annotated[Int, Field(ge=1)] | None = None
    stream: StreamCfg | None = None
    description: StrictStr | None = None

    @model_validator(mode="after")
    def _unique_requires(self) -> RouteCfg:
        if self.requires is not None and len(set(self.requires)) != len(self.requires):
            raise ValueError("requires lists a capability twice")
        return self


class ErrorRuleCfg(_Model):
    provider: StrictStr | None = None
    kind: StrictStr | None = None
    status: Annotated[Int, Field(ge=100, le=599)] | None = None
    code: StrictStr | None = None
    type: StrictStr | None = None
    match: Annotated[str, StringConstraints(strict=True, min_length=1)] | None = None
    error_class: ErrorClass = Field(alias="class")


class BudgetCfg(_Model):
    scope: Annotated[
        str, StringConstraints(
            strict=True, pattern=r"^(global|provider:.+|alias:.+|target:.+:.+|tag:[^=]+=.*)$(?!\n)")
    ]
    usd: Money
    per: Window | None = None
    warn_at: Annotated[Number, Field(gt=0, le=1)] | None = None


class StateCfg(_Model):
    kind: Literal["memory", "sqlite", "redis"]
    path: Annotated[str, StringConstraints(strict=True, min_length=1)] | None = None
    url: Annotated[str, StringConstraints(strict=True,
                                          pattern=r"^(redis|rediss|unix)://")] | None = None
    prefix: StrictStr | None = None
    on_store_error: Literal["fail_closed", "fail_open"] | None = None
    share_breakers: StrictBool | None = None

    @model_validator(mode="after")
    def _needs(self) -> StateCfg:
        if self.kind == "sqlite" and self.path is None:
            raise ValueError("state kind sqlite needs path")
        if self.kind == "redis" and self.url is None:
            raise ValueError("state kind redis needs url")
        return self


class RouteFileCfg(_Model):
    schema_: StrictStr | None = Field(default=None, alias="$schema")
    version: Literal[1]
    defaults: DefaultsCfg | None = None
    providers: dict[Name, ProviderCfg] | None = None
    models: dict[AliasName, list[ChainItem] | RouteCfg] | None = None
    errors: list[ErrorRuleCfg] | None = None
    budgets: list[BudgetCfg] | None = None
    state: StateCfg | None = None

    @model_validator(mode="before")
    @classmethod
    def _version_not_bool(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(isinstance(k, str) and k.startswith("x-")
                                          for k in data):
            # Top-level x- keys hold YAML anchors and notes: the schema admits them, and
            # nothing reads them.
            data = {k: v for k, v in data.items() if not (isinstance(k, str)
                                                          and k.startswith("x-"))}
        if isinstance(data, dict) and isinstance(data.get("version"), bool | float):
            v = data["version"]
            if isinstance(v, bool) or v != 1:
                raise ValueError("version must be 1")
            return {**data, "version": 1}
        return data
