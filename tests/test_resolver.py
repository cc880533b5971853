"""Ad-hoc routes resolve outside the Plan, through a bounded LRU cache: the Plan stays
immutable, and endless distinct model names cannot grow memory without bound."""

from __future__ import annotations

import dataclasses

import pytest

from router.config.validate import validate_dict
from router.errors import NoRouteError
from router.plan.resolver import RouteResolver
from router.plan.routes import Plan

DOC = {"version": 1,
       "providers": {"openai": {"kind": "openai", "api_key": "${OPENAI_API_KEY}"},
                     "claude": {"kind": "anthropic", "api_key": "${ANTHROPIC_API_KEY}"}},
       "models": {"fast": ["openai:gpt-4o-mini"]}}
ENV = {"OPENAI_API_KEY": "sk-test-aaaaaaaaaaaa", "ANTHROPIC_API_KEY": "sk-ant-test-bbbbbbbb"}


def _plan() -> Plan:
    result = validate_dict(DOC, env=ENV)
    assert result.plan is not None
    return result.plan


def test_an_alias_is_the_plans_own_route_and_is_not_cached() -> None:
    plan = _plan()
    resolver = RouteResolver(plan)
    assert resolver.resolve("fast") is plan.routes["fast"]
    assert len(resolver) == 0


def test_an_adhoc_route_is_built_once_and_then_reused() -> None:
    resolver = RouteResolver(_plan())
    first = resolver.resolve("openai:gpt-4o,claude:claude-haiku-4-5")
    assert [t.key for t in first.targets] == ["openai:gpt-4o", "claude:claude-haiku-4-5"]
    assert resolver.resolve("openai:gpt-4o,claude:claude-haiku-4-5") is first


def test_the_cache_keeps_at_most_size_routes_dropping_the_least_recently_used() -> None:
    resolver = RouteResolver(_plan(), size=3)
    a = resolver.resolve("openai:m-a")
    resolver.resolve("openai:m-b")
    resolver.resolve("openai:m-c")
    assert resolver.resolve("openai:m-a") is a  # a is now the most recently used
    for i in range(100):
        resolver.resolve(f"openai:m-{i}")
    assert len(resolver) == 3
    assert resolver.resolve("openai:m-a") is not a  # evicted, built anew


def test_a_name_that_resolves_to_nothing_raises_and_is_not_cached() -> None:
    resolver = RouteResolver(_plan())
    with pytest.raises(NoRouteError):
        resolver.resolve("nosuch:model")
    assert len(resolver) == 0


def test_the_plan_has_no_mutable_cache_of_its_own() -> None:
    plan = _plan()
    plan.resolve("openai:gpt-4o")
    assert all(not isinstance(getattr(plan, f.name), dict | list | set)
               for f in dataclasses.fields(plan)), "Plan fields are frozen mappings and tuples"
