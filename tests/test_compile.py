"""Compiling a checked route file into a Plan: effective settings, references, ad-hoc routes."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from router import Router
from router.config.validate import validate_dict, validate_text
from router.engine.decision import order_targets
from router.errors import Action, ConfigError, ErrorClass, NoRouteError
from router.plan.routes import Plan

KEY_ENV = {"OPENAI_API_KEY": "sk-test-openai", "ANTHROPIC_API_KEY": "sk-ant-test"}


def plan_of(doc: dict[str, Any], env: dict[str, str] | None = None) -> Plan:
    result = validate_dict(doc, env=KEY_ENV if env is None else env)
    assert not result.errors, [d.format_text() for d in result.errors]
    assert result.plan is not None
    return result.plan


BASE: dict[str, Any] = {
    "version": 1,
    "providers": {"openai": {"kind": "openai"}, "anthropic": {"kind": "anthropic"},
                  "local": {"kind": "ollama"}},
}


def test_settings_merge_builtin_defaults_provider_route_target_in_that_order() -> None:
    plan = plan_of({**BASE,
                    "defaults": {"timeout": {"connect": "3s", "total": "50s"},
                                 "retry": {"attempts": 3, "initial": "1s"}},
                    "providers": {**BASE["providers"],
                                  "openai": {"kind": "openai", "timeout": {"total": "40s"},
                                             "retry": {"max": "4s"}}},
                    "models": {"r": {"chain": ["openai:gpt-4o-mini",
                                               {"target": "openai:gpt-4o",
                                                "timeout": {"total": "5s"},
                                                "retry": {"attempts": 1}}],
                                     "retry": {"initial": "200ms"}}}})
    a, b = plan.routes["r"].targets
    assert (a.timeouts.connect, a.timeouts.total) == (3.0, 40.0)
    assert (a.retry.attempts, a.retry.initial, a.retry.max) == (3, 0.2, 4.0)
    assert (b.timeouts.total, b.retry.attempts, b.retry.initial) == (5.0, 1, 0.2)
    assert b.timeouts.first_token == 5.0  # the builtin 30s is clamped to the target's total


def test_on_overrides_apply_per_route_and_per_target() -> None:
    plan = plan_of({**BASE, "defaults": {"on": {"server": "fallback"}},
                    "models": {"r": {"chain": ["openai:gpt-4o-mini",
                                               {"target": "openai:gpt-4o",
                                                "on": {"auth": "retry"}}],
                                     "on": {"content_policy": "fail"}}}})
    a, b = plan.routes["r"].targets
    assert a.actions[ErrorClass.SERVER] is Action.FALLBACK
    assert a.actions[ErrorClass.CONTENT_POLICY] is Action.FAIL
    assert a.actions[ErrorClass.RATE_LIMIT] is Action.RETRY  # built-in
    assert b.actions[ErrorClass.AUTH] is Action.RETRY
    assert a.actions[ErrorClass.AUTH] is Action.FALLBACK


def test_alias_references_expand_in_place() -> None:
    plan = plan_of({**BASE, "models": {"fast": ["openai:gpt-4o-mini"],
                                       "smart": ["claude-sonnet-4-5", "fast", "local:llama3.2"]}})
    assert [t.key for t in plan.routes["smart"].targets] == [
        "anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini", "local:llama3.2"]


def test_bare_model_names_resolve_to_the_one_provider_of_their_kind() -> None:
    plan = plan_of({**BASE, "models": {"r": ["gpt-4o-mini", "o3-mini", "claude-haiku-4-5"]}})
    assert [t.key for t in plan.routes["r"].targets] == [
        "openai:gpt-4o-mini", "openai:o3-mini", "anthropic:claude-haiku-4-5"]


def test_model_names_may_contain_colons() -> None:
    plan = plan_of({**BASE, "models": {"r": ["local:llama3.2:3b"]}})
    t = plan.routes["r"].targets[0]
    assert (t.provider, t.model) == ("local", "llama3.2:3b")


def test_capabilities_come_from_the_catalog_with_file_overrides() -> None:
    plan = plan_of({**BASE, "providers": {**BASE["providers"], "local": {
        "kind": "ollama", "models": {"llava": {"vision": True, "context_window": 4096},
                                     "llama3.2": {"vision": False}}}},
        "models": {"r": ["openai:gpt-4o-mini", "local:llava", "local:llama3.2"]}})
    gpt, llava, llama = plan.routes["r"].targets
    assert gpt.capabilities.context_window == 128_000 and gpt.capabilities.vision
    assert llava.capabilities.context_window == 4096 and llava.capabilities.vision
    assert not llama.capabilities.vision


def test_price_override_reaches_the_target() -> None:
    plan = plan_of({**BASE, "providers": {**BASE["providers"], "local": {
        "kind": "ollama", "models": {"llama3.2": {"price": {"input": 0.1, "output": 0.2}}}}},
        "models": {"r": ["local:llama3.2"]}})
    price = plan.routes["r"].targets[0].price
    assert price is not None and (price.input, price.output) == (0.1, 0.2)


def test_alias_budget_becomes_an_alias_scoped_budget() -> None:
    plan = plan_of({**BASE, "models": {"r": {"chain": ["openai:gpt-4o"],
                                             "budget": {"usd": "$5", "per": "hour"}}},
                    "budgets": [{"scope": "provider:openai", "usd": 50, "per": "day"}]})
    (b,) = plan.routes["r"].budgets
    assert (b.scope, b.usd, b.per) == ("alias:r", 5.0, "hour")
    assert [(x.scope, x.usd) for x in plan.budgets] == [("provider:openai", 50.0)]


def test_provider_key_is_read_from_its_kind_variable_when_not_set() -> None:
    plan = plan_of({**BASE, "models": {"r": ["openai:gpt-4o"]}})
    key = plan.providers["openai"].api_key
    assert key is not None and key.get_secret_value() == "sk-test-openai"
    assert "sk-test-openai" not in repr(plan.providers["openai"])


def test_strict_router_build_fails_naming_the_missing_variable_of_a_used_provider() -> None:
    with pytest.raises(ConfigError) as info:
        Router.from_dict({**BASE, "models": {"r": ["openai:gpt-4o"]}}, env={}, strict=True)
    assert "OPENAI_API_KEY" in str(info.value)
    assert [d.code for d in info.value.diagnostics] == ["E060"]


def test_unused_provider_without_key_does_not_block_the_router() -> None:
    router = Router.from_dict({**BASE, "models": {"r": ["local:llama3.2"]}}, env={})
    assert "r" in router.plan.routes


def test_config_error_lists_every_error_with_its_position() -> None:
    text = ("version: 1\nproviders:\n  openai: {kind: openai}\nmodels:\n"
            "  a: [opnai:gpt-4o]\n  b: [openai:gpt-4o, openai:gpt-4o]\n")
    result = validate_text(text, "r.yaml", env=KEY_ENV)
    assert [(d.code, d.line) for d in result.errors] == [("E020", 5), ("E022", 6)]


def test_adhoc_provider_model_and_comma_chains_resolve() -> None:
    plan = plan_of({**BASE, "models": {"fast": ["openai:gpt-4o-mini"]}})
    assert [t.key for t in plan.resolve("anthropic:claude-haiku-4-5").targets] == [
        "anthropic:claude-haiku-4-5"]
    assert [t.key for t in plan.resolve("gpt-4o, fast ,local:qwen2.5").targets] == [
        "openai:gpt-4o", "openai:gpt-4o-mini", "local:qwen2.5"]
    assert plan.resolve("gpt-4o").targets == plan.resolve("gpt-4o").targets  # the same, each time


@pytest.mark.parametrize("name", ["nope:gpt-4o", "mystery-model", ""])
def test_unknown_model_names_raise_no_route(name: str) -> None:
    plan = plan_of({**BASE, "models": {"fast": ["openai:gpt-4o-mini"]}})
    with pytest.raises(NoRouteError):
        plan.resolve(name)


def test_weighted_pool_orders_members_by_weight() -> None:
    plan = plan_of({**BASE, "models": {"r": {"chain": [
        {"pool": ["openai:gpt-4o-mini", {"target": "anthropic:claude-haiku-4-5", "weight": 3}]},
        "local:llama3.2"]}}})
    route = plan.routes["r"]
    rng = random.Random(7)
    firsts = Counter(order_targets(route, rng, i)[0].provider for i in range(4000))
    assert 0.70 < firsts["anthropic"] / 4000 < 0.80  # weight 3 of 4
    assert all(order_targets(route, rng, i)[2].key == "local:llama3.2" for i in range(20))


def test_round_robin_pool_rotates_per_call() -> None:
    plan = plan_of({**BASE, "models": {"r": {"chain": [
        {"pool": ["openai:gpt-4o-mini", "openai:gpt-4o", "local:llama3.2"],
         "strategy": "round_robin"}]}}})
    route = plan.routes["r"]
    rng = random.Random(0)
    assert [order_targets(route, rng, i)[0].model for i in range(4)] == [
        "gpt-4o-mini", "gpt-4o", "llama3.2", "gpt-4o-mini"]


def test_plan_values_are_immutable() -> None:
    plan = plan_of({**BASE, "models": {"r": ["openai:gpt-4o"]}})
    t = plan.routes["r"].targets[0]
    with pytest.raises(AttributeError):
        t.model = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.routes["x"] = plan.routes["r"]  # type: ignore[index]



def _alias_ladder(n: int, last: str) -> dict[str, Any]:
    models: dict[str, Any] = {f"a{i}": [f"a{i + 1}"] for i in range(n)}
    models[f"a{n}"] = [last]
    return {"version": 1, "providers": {"o": {"kind": "openai", "api_key": "${OPENAI_API_KEY}"}},
            "models": models}


def test_a_long_chain_of_aliases_compiles_without_recursion() -> None:
    # 300 aliases each naming the next crashed validate with RecursionError.
    plan = plan_of(_alias_ladder(3000, "o:gpt-4o-mini"))
    assert [t.key for t in plan.routes["a0"].targets] == ["o:gpt-4o-mini"]
    assert list(plan.routes)[:2] == ["a3000", "a2999"]  # each alias after those it names


def test_a_long_alias_cycle_is_one_e021_with_a_short_message() -> None:
    result = validate_dict(_alias_ladder(3000, "a0"), env=KEY_ENV)
    (d,) = [d for d in result.errors if d.code == "E021"]
    assert d.message.startswith("alias cycle: a0 -> a1 -> a2 -> a3 -> ... 2995 more -> ")
    assert d.message.endswith("a2999 -> a3000 -> a0")


@pytest.mark.parametrize(("ref", "hint"), [
    ("fsat", "did you mean the alias 'fast'?"),
    ("openai/gpt-4o", "did you mean 'openai:gpt-4o'?"),
    ("opnai/gpt-4o", "did you mean 'openai:gpt-4o'?"),
    ("o4mini", "did you mean 'openai:o4-mini'?"),
    ("llama3.2", "did you mean 'local:llama3.2'?"),
])
def test_e024_says_what_the_name_most_likely_meant(ref: str, hint: str) -> None:
    result = validate_dict({**BASE, "models": {"fast": ["openai:gpt-4o-mini"], "r": [ref]}},
                           env=KEY_ENV)
    [d] = result.errors
    assert (d.code, d.hint) == ("E024", hint)


def test_e024_without_anything_close_shows_the_form() -> None:
    doc = {**BASE, "providers": {"openai": {"kind": "openai"}}, "models": {"r": ["zzzzzz"]}}
    [d] = validate_dict(doc, env=KEY_ENV).errors
    assert (d.code, d.hint) == ("E024", "write it as provider:model, e.g. local:llama3.2")
