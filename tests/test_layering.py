"""Layered settings (issue 10): built-in < defaults < provider < route < target entry, for every
setting the schema allows at more than one layer. Each case sets the setting at every layer up
to one and checks that the compiled Target (or Route) carries that layer's value."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router import Router
from router.config.schema import SCHEMA
from router.config.validate import validate_dict, validate_file
from router.errors import Action, ErrorClass, LlmError
from router.plan.routes import BUILTIN_BREAKER, BUILTIN_RETRY, BUILTIN_TIMEOUTS, Plan, Route, Target
from tests.servers.openai import OpenAIServer, Reply, completion, usage

LAYERS = ("defaults", "provider", "route", "target")
ENV = {"OPENAI_API_KEY": "sk-test"}
MSG = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Setting:
    """One setting: where it goes in a layer's block, its value per layer, what it compiles
    to per layer, the built-in value, and how to read it from the plan."""

    name: str
    key: tuple[str, ...]
    raw: dict[str, Any]  # layer -> the value written in the file
    want: dict[str, Any]  # layer -> the compiled value
    builtin: Any
    read: Callable[[Route, Target], Any]


def _layered(name: str, key: tuple[str, ...], raw: list[Any], want: list[Any], builtin: Any,
             read: Callable[[Route, Target], Any], layers: tuple[str, ...] = LAYERS) -> Setting:
    return Setting(name, key, dict(zip(layers, raw, strict=True)),
                   dict(zip(layers, want, strict=True)), builtin, read)


def _timeout(part: str, raw: list[str], want: list[float]) -> Setting:
    return _layered(f"timeout.{part}", ("timeout", part), raw, want,
                    getattr(BUILTIN_TIMEOUTS, part), lambda r, t: getattr(t.timeouts, part))


def _retry(part: str, raw: list[Any], want: list[Any]) -> Setting:
    return _layered(f"retry.{part}", ("retry", part), raw, want, getattr(BUILTIN_RETRY, part),
                    lambda r, t: getattr(t.retry, part))


def _breaker(part: str, raw: list[Any], want: list[Any]) -> Setting:
    return _layered(f"breaker.{part}", ("breaker", part), raw, want,
                    getattr(BUILTIN_BREAKER, part), lambda r, t: getattr(t.breaker, part),
                    layers=("defaults", "provider"))


SETTINGS = [
    _timeout("connect", ["4s", "3s", "2s", "1s"], [4.0, 3.0, 2.0, 1.0]),
    _timeout("first_token", ["20s", "19s", "18s", "17s"], [20.0, 19.0, 18.0, 17.0]),
    _timeout("total", ["100s", "90s", "80s", "70s"], [100.0, 90.0, 80.0, 70.0]),
    _timeout("idle", ["14s", "13s", "12s", "11s"], [14.0, 13.0, 12.0, 11.0]),
    _retry("attempts", [5, 4, 3, 1], [5, 4, 3, 1]),
    _retry("initial", ["900ms", "800ms", "700ms", "600ms"], [0.9, 0.8, 0.7, 0.6]),
    _retry("max", ["9s", "7s", "6s", "5s"], [9.0, 7.0, 6.0, 5.0]),
    _retry("multiplier", [3, 2.5, 1.5, 1], [3.0, 2.5, 1.5, 1.0]),
    _retry("jitter", ["none", "full", "none", "full"], ["none", "full", "none", "full"]),
    _retry("max_retry_after", ["50s", "40s", "30s", "20s"], [50.0, 40.0, 30.0, 20.0]),
    _breaker("enabled", [False, True], [False, True]),
    _breaker("failures", [7, 3], [7, 3]),
    _breaker("cooldown", ["1m", "10s"], [60.0, 10.0]),
    _layered("on", ("on", "server"), ["fail", "fallback", "fail", "fallback"],
             [Action.FAIL, Action.FALLBACK, Action.FAIL, Action.FALLBACK], Action.RETRY,
             lambda r, t: t.actions[ErrorClass.SERVER]),
    _layered("max_tokens", ("max_tokens",), [400, 300, 200, 100], [400, 300, 200, 100], None,
             lambda r, t: t.max_tokens),
    _layered("route max_tokens", ("max_tokens",), [400, 300, 200], [400, 300, 200], None,
             lambda r, t: r.max_tokens, layers=("defaults", "provider", "route")),
    _layered("deadline", ("deadline",), ["2m", "90s"], [120.0, 90.0], None,
             lambda r, t: r.deadline, layers=("defaults", "route")),
    _layered("unknown_price", ("unknown_price",), ["fail", "zero"], ["fail", "zero"], None,
             lambda r, t: t.unknown_price, layers=("defaults", "provider")),
]
# Settings of work under way elsewhere (adaptive first-token limit, stream recovery), covered
# as soon as the schema has them.
if "first_token_base" in SCHEMA["$defs"]["timeout"]["properties"]:
    SETTINGS.append(_layered(  # no layer sets first_token: the base is the limit (not reasoning)
        "timeout.first_token_base", ("timeout", "first_token_base"), ["9s", "8s", "7s", "6s"],
        [9.0, 8.0, 7.0, 6.0], 10.0, lambda r, t: t.timeouts.first_token))
if "stream" in SCHEMA["$defs"]["defaults"]["properties"]:
    SETTINGS.append(_layered("stream.recover", ("stream", "recover"), ["off", "replay"],
                             ["off", "replay"], "replay", lambda r, t: r.recover,
                             layers=("defaults", "route")))


def _doc(setting: Setting, upto: str | None) -> dict[str, Any]:
    """A file that sets ``setting`` at every layer up to ``upto`` (None: at none)."""
    target: dict[str, Any] = {"target": "p:gpt-4o-mini"}
    doc: dict[str, Any] = {"version": 1, "defaults": {}, "providers": {"p": {"kind": "openai"}},
                           "models": {"r": {"chain": [target]}}}
    blocks = {"defaults": doc["defaults"], "provider": doc["providers"]["p"],
              "route": doc["models"]["r"], "target": target}
    for layer, value in setting.raw.items():
        if upto is None or LAYERS.index(layer) > LAYERS.index(upto):
            break
        block = blocks[layer]
        for part in setting.key[:-1]:
            block = block.setdefault(part, {})
        block[setting.key[-1]] = copy.deepcopy(value)
    return doc


def _compiled(doc: dict[str, Any]) -> tuple[Plan, Route, Target]:
    result = validate_dict(doc, env=ENV)
    assert not result.errors, [d.format_text() for d in result.errors]
    assert result.plan is not None
    route = result.plan.routes["r"]
    return result.plan, route, route.targets[0]


CASES = [pytest.param(s, layer, id=f"{s.name}-{layer}") for s in SETTINGS for layer in s.raw]


@pytest.mark.parametrize(("setting", "layer"), CASES)
def test_the_most_specific_layer_that_sets_a_value_wins(setting: Setting, layer: str) -> None:
    _, route, target = _compiled(_doc(setting, layer))
    want = setting.want[layer]
    assert setting.read(route, target) == (pytest.approx(want) if type(want) is float else want)


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_a_setting_no_layer_sets_is_the_builtin(setting: Setting) -> None:
    _, route, target = _compiled(_doc(setting, None))
    assert setting.read(route, target) == setting.builtin


def test_every_layered_setting_of_the_schema_is_covered() -> None:
    """A setting the schema allows at two layers or more has a case above, each part of a
    settings block (timeout, retry, breaker, stream) its own."""
    defs = SCHEMA["$defs"]
    blocks = {"defaults": defs["defaults"]["properties"],
              "provider": defs["provider"]["properties"],
              "route": defs["route"]["anyOf"][1]["properties"],
              "target": defs["target_obj"]["properties"],
              "provider models entry": defs["model_info"]["properties"]}
    layered = {k for k in set().union(*blocks.values())
               if sum(k in b for b in blocks.values()) > 1}
    covered = {s.key for s in SETTINGS}
    wanted = set()
    for key in layered:
        parts = defs.get(key, {}).get("properties") if key != "on" else None
        wanted |= {(key, part) for part in parts} if parts else {(key,)}
    # rate_limit: provider and its models: entries are two limiters, both applied (below);
    # on: is one mapping, covered by one of its classes.
    assert {k for k in wanted - covered if k[0] != "on"} == {("rate_limit", p) for p in
                                                            defs["rate_limit"]["properties"]}
    assert ("on", "server") in covered


def test_defaults_max_tokens_reaches_every_alias_and_ad_hoc_route() -> None:
    plan, route, _ = _compiled({
        "version": 1, "defaults": {"max_tokens": 512},
        "providers": {"p": {"kind": "openai"}, "q": {"kind": "openai", "max_tokens": 64}},
        "models": {"r": ["p:gpt-4o-mini", "p:gpt-4o"], "s": [{"target": "p:gpt-4.1"}],
                   "t": ["r", "s"]}})
    assert route.max_tokens == 512 and {t.max_tokens for t in route.targets} == {512}
    assert plan.routes["t"].max_tokens == 512
    assert plan.resolve("p:gpt-4.1").max_tokens == 512
    assert plan.resolve("q:gpt-4.1").max_tokens == 64  # the provider's own limit
    mixed = plan.resolve("p:gpt-4.1,q:gpt-4.1")
    assert mixed.max_tokens is None
    assert [t.max_tokens for t in mixed.targets] == [512, 64]


def test_a_target_entry_max_tokens_wins_over_its_route() -> None:
    _, route, _ = _compiled({
        "version": 1, "defaults": {"max_tokens": 1000}, "providers": {"p": {"kind": "openai"}},
        "models": {"r": {"chain": ["p:gpt-4o-mini", {"target": "p:gpt-4o", "max_tokens": 50}],
                         "max_tokens": 300}}})
    assert [t.max_tokens for t in route.targets] == [300, 50]
    # The targets differ, so the route has no one limit to impose on the request: each
    # target's own is sent (engine: request_for) and reserved (admission).
    assert route.max_tokens is None


def test_provider_and_model_rate_limits_both_apply() -> None:
    _, _, target = _compiled({
        "version": 1,
        "providers": {"p": {"kind": "openai", "rate_limit": {"rpm": 100},
                            "models": {"gpt-4o-mini": {"rate_limit": {"tpm": 5000,
                                                                      "mode": "wait"}}}}},
        "models": {"r": ["p:gpt-4o-mini"]}})
    keys = [(rl.key, rl.rpm, rl.tpm, rl.mode) for rl in target.rate_limits]
    assert keys == [("provider:p", 100, None, "skip"),
                    ("target:p:gpt-4o-mini", None, 5000, "wait")]


def test_route_budget_and_file_budgets_both_apply() -> None:
    plan, route, target = _compiled({
        "version": 1, "providers": {"p": {"kind": "openai"}},
        "models": {"r": {"chain": ["p:gpt-4o-mini"], "budget": {"usd": 5, "per": "hour"}}},
        "budgets": [{"scope": "alias:r", "usd": 50, "per": "day"},
                    {"scope": "provider:p", "usd": 100}]})
    scopes = [(b.scope, b.usd, b.per) for b in plan.budgets_for(target, route, None)]
    assert scopes == [("alias:r", 5.0, "hour"), ("provider:p", 100.0, "total"),
                      ("alias:r", 50.0, "day")]


def test_dry_run_worst_case_assumes_the_defaults_max_tokens() -> None:
    doc = {"version": 1, "defaults": {"max_tokens": 1000},
           "providers": {"p": {"kind": "openai", "models": {
               "m": {"price": {"input": 1.0, "output": 10.0}}}}},
           "models": {"fast": ["p:m"]}}
    router = Router.from_dict(doc, env=ENV)
    report = router.dry_run("fast", messages=[{"role": "user", "content": "hi"}])
    # 1,000 output tokens at $10 per million, plus a few prompt tokens at $1 per million
    assert report.worst_cost_usd is not None
    assert 0.01 <= report.worst_cost_usd < 0.0101


EXAMPLE = Path(__file__).parent.parent / "routes.example.yaml"
EXAMPLE_ENV = {"OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "sk-b", "GEMINI_API_KEY": "sk-c",
               "GROQ_API_KEY": "sk-d"}


def test_the_example_file_validates_clean() -> None:
    result = validate_file(EXAMPLE, env=EXAMPLE_ENV)
    assert result.diagnostics == []


def test_the_example_worst_cases_assume_its_defaults_max_tokens() -> None:
    # Before issue 10 the aliases ignored defaults.max_tokens: each model's whole output
    # (16,384 tokens for gpt-4o-mini) was the worst case, $0.32 a call for "fast".
    router = Router.from_yaml(EXAMPLE, env=EXAMPLE_ENV)
    for alias in router.plan.routes:
        assert router.plan.routes[alias].max_tokens == 1024
        report = router.dry_run(alias, messages=[{"role": "user", "content": "hi"}])
        assert report.worst_cost_usd is not None and report.worst_cost_usd < 0.02, alias


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        s.default = Reply(json=completion("ok", usage_=usage(10, 5)))
        yield s


@pytest.mark.parametrize(("caller", "sent"), [(None, [300, 50, 300, 300, 70]), (7, [7] * 5)])
async def test_the_effective_max_tokens_is_what_each_target_is_sent(
        server: OpenAIServer, caller: int | None, sent: list[int]) -> None:
    base = f"{server.base_url.removesuffix('/v1')}/v1"
    doc = {"version": 1, "defaults": {"max_tokens": 300, "retry": {"attempts": 1}},
           "providers": {"a": {"kind": "openai-compatible", "base_url": base},
                         "b": {"kind": "openai-compatible", "base_url": base,
                               "max_tokens": 70}},
           "models": {"plain": ["a:m"], "entry": [{"target": "a:m", "max_tokens": 50}],
                      "mixed": ["a:m", "b:m"]}}
    params = {} if caller is None else {"max_tokens": caller}
    async with Router.from_dict(doc, env=ENV) as router:
        await router.chat("plain", MSG, **params)
        await router.chat("entry", MSG, **params)
        await router.chat("mixed", MSG, **params)  # a answers
        server.default = Reply(status=500, json={"error": {"message": "down"}})
        with pytest.raises(LlmError):
            await router.chat("mixed", MSG, **params)  # a fails, then b
    assert [r.json["max_tokens"] for r in server.requests] == sent


def test_dry_run_worst_case_uses_each_targets_own_max_tokens() -> None:
    price = {"price": {"input": 0.0, "output": 10.0}}  # $10 per 1M output tokens
    doc = {"version": 1, "defaults": {"max_tokens": 1000},
           "providers": {"p": {"kind": "openai", "models": {"m": price}},
                         "q": {"kind": "openai", "max_tokens": 3000, "models": {"m": price}}},
           "models": {"mixed": ["p:m", "q:m"]}}
    router = Router.from_dict(doc, env=ENV)
    assert router.plan.routes["mixed"].max_tokens is None  # the targets' limits differ
    report = router.dry_run("mixed", messages=MSG)
    assert report.worst_cost_usd == pytest.approx(0.03)  # q's 3,000 tokens


# -- the context-window pre-check assumes the output limit each target is sent ---------------

LONG = [{"role": "user", "content": "word " * 400}]  # ~505 estimated prompt tokens


def _window_doc(base: str, layer: str) -> dict[str, Any]:
    """A chain whose targets have different limits (the route has none): a:m, with a window of
    1,000 tokens, is sent 600 (set on its provider, or on its target entry); b:big 100."""
    small: Any = "a:m"
    a: dict[str, Any] = {"kind": "openai-compatible", "base_url": base,
                         "models": {"m": {"context_window": 1000}}}
    if layer == "provider":
        a["max_tokens"] = 600
    else:
        small = {"target": "a:m", "max_tokens": 600}
    return {"version": 1, "defaults": {"retry": {"attempts": 1}},
            "providers": {"a": a, "b": {"kind": "openai-compatible", "base_url": base,
                                        "max_tokens": 100}},
            "models": {"mixed": [small, "b:big"]}}


@pytest.mark.parametrize("layer", ["provider", "target"])
async def test_the_window_check_counts_the_targets_own_max_tokens(
        server: OpenAIServer, layer: str) -> None:
    # Issue 12 follow-up: 505 + 600 > 1,000, so a:m is skipped before any I/O (the check
    # used to assume no output at all when a chain's targets had different limits).
    doc = _window_doc(server.base_url, layer)
    async with Router.from_dict(doc, env=ENV) as router:
        assert router.plan.routes["mixed"].max_tokens is None
        r = await router.chat("mixed", LONG)
        report = router.dry_run("mixed", messages=LONG)
    assert [(a.target, a.outcome, a.reason) for a in r.attempts] == [
        ("a:m", "skipped", "context_window"), ("b:big", "ok", None)]
    assert r.attempts[0].detail == "~505 prompt + 600 output tokens > window 1000"
    assert [(q.json["model"], q.json["max_tokens"]) for q in server.requests] == [("big", 100)]
    first = report.events[0]  # dry-run decides the same way
    assert (first.kind, first.target, first.reason) == ("skip", "a:m", "context_window")


async def test_the_window_check_counts_the_callers_max_tokens_when_given(
        server: OpenAIServer) -> None:
    async with Router.from_dict(_window_doc(server.base_url, "provider"), env=ENV) as router:
        r = await router.chat("mixed", LONG, max_tokens=300)  # 505 + 300 fits in 1,000
    assert r.target == "a:m" and [q.json["max_tokens"] for q in server.requests] == [300]
