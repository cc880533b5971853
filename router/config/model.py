"""Pydantic models of the route file. They mirror schemas/routes.schema.json (the truth);
tests/test_schema_agreement.py proves both accept and reject the same corpus."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from router.config.units import parse_duration, parse_money
from router.errors import Action, ErrorClass


def _duration(v: Any) -> float:
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise ValueError("a duration is a number of seconds or a string like 500ms, 5s, 2m")
    return parse_duration(v)


def _money(v: Any) -> float:
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise ValueError("an amount is a number of US dollars")
    return parse_money(v)


def _number(v: Any) -> Any:
    if isinstance(v, bool):  # JSON Schema's "number" excludes booleans
        raise ValueError("expected a number")
    return v


def _integer(v: Any) -> Any:
    if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
        raise ValueError("expected an integer")
    return int(v) if isinstance(v, float) else v


Duration = Annotated[float, BeforeValidator(_duration)]
Money = Annotated[float, BeforeValidator(_money)]
Number = Annotated[float, BeforeValidator(_number)]
Int = Annotated[int, BeforeValidator(_integer)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")]
AliasName = Annotated[str, StringConstraints(pattern=r"^[^:,\s]+$")]
TargetRef = Annotated[str, StringConstraints(pattern=r"^\S+$")]
OnMap = dict[ErrorClass, Action]
Capability = Literal["tools", "vision", "json_object", "json_schema", "streaming"]
Window = Literal["minute", "hour", "day", "month", "total"]
ProviderKind = Literal[
    "openai", "openai-compatible", "anthropic", "google", "ollama", "azure-openai", "fake"
]
FakeOutcome = Literal[
    "ok", "auth", "permission", "not_found", "invalid_request", "context_window",
    "content_policy", "rate_limit", "quota_exhausted", "overloaded", "server",
    "timeout", "network", "stream_interrupted",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class TimeoutCfg(_Model):
    connect: Duration | None = None
    first_token: Duration | None = None
    total: Duration | None = None
    idle: Duration | None = None


class RetryCfg(_Model):
    attempts: Annotated[Int, Field(ge=1, le=20)] | None = None
    initial: Duration | None = None
    max: Duration | None = None
    multiplier: Annotated[Number, Field(ge=1)] | None = None
    jitter: Literal["full", "none"] | None = None
    max_retry_after: Duration | None = None


class BreakerCfg(_Model):
    enabled: bool | None = None
    failures: Annotated[Int, Field(ge=1)] | None = None
    cooldown: Duration | None = None


class DefaultsCfg(_Model):
    timeout: TimeoutCfg | None = None
    retry: RetryCfg | None = None
    breaker: BreakerCfg | None = None
    on: OnMap | None = None
    deadline: Duration | None = None
    max_tokens: Annotated[Int, Field(ge=1)] | None = None


class PriceCfg(_Model):
    input: Annotated[Number, Field(ge=0)]
    output: Annotated[Number, Field(ge=0)]
    cached_input: Annotated[Number, Field(ge=0)] | None = None


class ModelInfoCfg(_Model):
    context_window: Annotated[Int, Field(ge=1)] | None = None
    max_output_tokens: Annotated[Int, Field(ge=1)] | None = None
    tools: bool | None = None
    vision: bool | None = None
    json_object: bool | None = None
    json_schema: bool | None = None
    streaming: bool | None = None
    price: PriceCfg | None = None


class FakeStepCfg(_Model):
    outcome: FakeOutcome
    latency: Duration | None = None
    text: str | None = None
    retry_after: Duration | None = None
    status: Annotated[Int, Field(ge=100, le=599)] | None = None


#: Settings that only some provider kinds accept (the schema's if/then blocks).
KIND_FIELDS: dict[str, frozenset[str]] = {
    "openai": frozenset({"organization", "project"}),
    "openai-compatible": frozenset({"max_tokens_field", "stream_usage"}),
    "azure-openai": frozenset({"api_version", "deployments"}),
    "anthropic": frozenset({"anthropic_version"}),
    "google": frozenset(),
    "ollama": frozenset({"keep_alive"}),
    "fake": frozenset({"script", "text", "latency"}),
}
COMMON_PROVIDER_FIELDS = frozenset(
    {"kind", "api_key", "base_url", "headers", "timeout", "retry", "breaker", "models"}
)
REQUIRED_BASE_URL = frozenset({"openai-compatible", "azure-openai"})


class ProviderCfg(_Model):
    kind: ProviderKind
    api_key: SecretStr | None = None
    base_url: str | None = None
    headers: dict[str, str] | None = Field(default=None, repr=False)
    timeout: TimeoutCfg | None = None
    retry: RetryCfg | None = None
    breaker: BreakerCfg | None = None
    models: dict[str, ModelInfoCfg] | None = None
    # kind-specific settings (see KIND_FIELDS)
    organization: str | None = None
    project: str | None = None
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    stream_usage: bool | None = None
    api_version: str | None = None
    deployments: dict[str, str] | None = None
    anthropic_version: str | None = None
    keep_alive: Duration | None = None
    script: Annotated[list[FakeOutcome | FakeStepCfg], Field(min_length=1)] | None = None
    text: str | None = None
    latency: Duration | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> ProviderCfg:
        allowed = KIND_FIELDS[self.kind]
        for name in self.model_fields_set - COMMON_PROVIDER_FIELDS:
            if name not in allowed:
                raise ValueError(f"{name!r} is not a setting of kind {self.kind!r}")
        if self.kind in REQUIRED_BASE_URL and self.base_url is None:
            raise ValueError(f"kind {self.kind!r} needs base_url")
        return self

    def options(self) -> dict[str, Any]:
        """The kind-specific settings that were set."""
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
    description: str | None = None

    @model_validator(mode="after")
    def _unique_requires(self) -> RouteCfg:
        if self.requires is not None and len(set(self.requires)) != len(self.requires):
            raise ValueError("requires lists a capability twice")
        return self


class ErrorRuleCfg(_Model):
    provider: str | None = None
    kind: str | None = None
    status: Annotated[Int, Field(ge=100, le=599)] | None = None
    code: str | None = None
    type: str | None = None
    match: Annotated[str, StringConstraints(min_length=1)] | None = None
    error_class: ErrorClass = Field(alias="class")


class BudgetCfg(_Model):
    scope: Annotated[
        str, StringConstraints(pattern=r"^(global|provider:.+|alias:.+|target:.+:.+|tag:[^=]+=.*)$")
    ]
    usd: Money
    per: Window | None = None
    warn_at: Annotated[Number, Field(gt=0, le=1)] | None = None


class RouteFileCfg(_Model):
    schema_: str | None = Field(default=None, alias="$schema")
    version: Literal[1]
    defaults: DefaultsCfg | None = None
    providers: dict[Name, ProviderCfg] | None = None
    models: dict[AliasName, list[ChainItem] | RouteCfg] | None = None
    errors: list[ErrorRuleCfg] | None = None
    budgets: list[BudgetCfg] | None = None

    @model_validator(mode="before")
    @classmethod
    def _version_not_bool(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("version"), bool | float):
            v = data["version"]
            if isinstance(v, bool) or v != 1:
                raise ValueError("version must be 1")
            return {**data, "version": 1}
        return data
