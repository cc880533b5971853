"""The adaptive first-token limit (issue 11): used when no layer of the route file sets
``first_token``; a base (10 s, or ``first_token_base``) for ordinary models, six times it for
reasoning models and for requests that turn reasoning on, one second more per full 4,000 prompt
tokens, never past ``total``. An explicit ``first_token`` always wins. Dry-run prints the limit
it chose; the engine sends it to the provider."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router import Router
from router.config.validate import validate_dict
from router.engine.decision import needs_for
from router.engine.dryrun import dry_run
from router.engine.request import build_request
from router.errors import ErrorClass
from router.plan.first_token import (
    DEFAULT_BASE,
    REASONING_FACTOR,
    TOKENS_PER_SECOND,
    asks_reasoning,
    first_token_for,
)
from router.plan.routes import Plan, Target
from tests.engine_helpers import KEY, chat_path, hits, provider
from tests.servers.openai import OpenAIServer, Reply, completion, json_reply

ENV = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-test", "GEMINI_API_KEY": "sk-test"}
MSG = [{"role": "user", "content": "hi"}]


def plan_of(doc: dict[str, Any]) -> Plan:
    result = validate_dict({"version": 1, **doc}, env=ENV)
    assert not result.errors, [d.format_text() for d in result.errors]
    assert result.plan is not None
    return result.plan


def targets_of(chain: list[Any], **defaults: Any) -> list[Target]:
    plan = plan_of({"defaults": defaults,
                    "providers": {"o": {"kind": "openai"}, "a": {"kind": "anthropic"},
                                  "g": {"kind": "google"},
                                  "c": {"kind": "openai-compatible",
                                        "base_url": "http://127.0.0.1:9/v1"}},
                    "models": {"r": {"chain": chain}}})
    return list(plan.routes["r"].targets)


def request(**params: Any) -> Any:
    return build_request(MSG, params)


# -- the per-target part, worked out when the plan is compiled -------------------------------


def test_an_ordinary_model_waits_the_base() -> None:
    [t] = targets_of(["o:gpt-4o-mini"])
    assert t.timeouts.first_token == DEFAULT_BASE == 10.0
    assert t.first_token_adaptive == (10.0, 10.0 * REASONING_FACTOR)


@pytest.mark.parametrize("ref", ["o:o3", "o:gpt-5-mini", "o:o4-mini-2025-04-16",
                                 "g:gemini-2.5-pro", "c:deepseek-reasoner",
                                 "c:DeepSeek-R1-Distill-Qwen-32B"])
def test_a_reasoning_model_waits_six_times_the_base(ref: str) -> None:
    [t] = targets_of([ref])
    assert t.timeouts.first_token == 60.0


@pytest.mark.parametrize("ref", ["a:claude-sonnet-4-5", "g:gemini-2.5-flash-lite",
                                 "c:llama-3.3-70b"])
def test_a_model_that_thinks_only_when_asked_waits_the_base(ref: str) -> None:
    [t] = targets_of([ref])
    assert t.timeouts.first_token == 10.0


def test_the_limit_never_exceeds_total() -> None:
    [t] = targets_of(["o:o3"], timeout={"total": "25s"})
    assert t.timeouts.first_token == 25.0 and t.first_token_adaptive == (25.0, 25.0)


def test_first_token_base_sets_the_base_and_scales_the_reasoning_limit() -> None:
    plain, thinking = targets_of(["o:gpt-4o-mini", "o:o3"], timeout={"first_token_base": "2s"})
    assert plain.timeouts.first_token == 2.0 and thinking.timeouts.first_token == 12.0


def test_the_most_specific_first_token_base_wins() -> None:
    [t] = targets_of([{"target": "o:gpt-4o-mini", "timeout": {"first_token_base": "3s"}}],
                     timeout={"first_token_base": "7s"})
    assert t.timeouts.first_token == 3.0


@pytest.mark.parametrize("where", ["defaults", "provider", "route", "target"])
def test_an_explicit_first_token_at_any_layer_wins(where: str) -> None:
    entry: dict[str, Any] = {"target": "o:o3", "timeout": {"first_token_base": "1s"}}
    route: dict[str, Any] = {"chain": [entry]}
    doc: dict[str, Any] = {"defaults": {}, "providers": {"o": {"kind": "openai"}},
                           "models": {"r": route}}
    block = {"defaults": doc["defaults"], "provider": doc["providers"]["o"], "route": route,
             "target": entry}[where]
    block.setdefault("timeout", {})["first_token"] = "4s"
    [t] = plan_of(doc).routes["r"].targets
    assert t.timeouts.first_token == 4.0 and t.first_token_adaptive is None
    assert first_token_for(t, 400_000, True) is None  # no prompt or reasoning term either


# -- the per-call part -------------------------------------------------------------------------


def test_a_short_plain_call_keeps_the_targets_own_limit() -> None:
    [t] = targets_of(["o:gpt-4o-mini"])
    assert first_token_for(t, TOKENS_PER_SECOND - 1, False) is None


def test_a_long_prompt_adds_a_second_per_4000_tokens() -> None:
    [t] = targets_of(["o:gpt-4o-mini"])
    assert first_token_for(t, 4 * TOKENS_PER_SECOND + 10, False) == 14.0
    assert first_token_for(t, 10_000_000, False) == t.timeouts.total


def test_a_reasoning_request_waits_as_long_as_a_reasoning_model() -> None:
    [t] = targets_of(["o:gpt-4o-mini"])
    assert first_token_for(t, 10, True) == 60.0
    assert first_token_for(t, 2 * TOKENS_PER_SECOND, True) == 62.0


@pytest.mark.parametrize(("params", "on"), [
    ({}, False),
    ({"reasoning_effort": "high"}, True),
    ({"reasoning_effort": "low"}, True),
    ({"reasoning_effort": "none"}, False),
    ({"reasoning_effort": "minimal"}, False),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, True),
    ({"thinking": {"type": "adaptive"}}, True),
    ({"thinking": {"type": "disabled"}}, False),
    ({"thinking_budget": 0}, False),
    ({"thinking_budget": -1}, True),
    ({"thinking_level": "high"}, True),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}}, True),
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}, False),
    ({"generationConfig": {"temperature": 0.1}}, False),
    ({"reasoning": {"effort": "high"}}, True),
    ({"reasoning": {"effort": "none"}}, False),
    ({"reasoning": {"enabled": False}}, False),
    ({"reasoning": {"effort": ["odd"]}}, True),  # any JSON value, never an exception
    ({"reasoning": "yes"}, False),
    ({"thinking": ["odd"]}, False),
    ({"generationConfig": {"thinkingConfig": [1]}}, False),
    ({"enable_thinking": True}, True),
    ({"enable_thinking": False}, False),
    ({"seed": 3}, False),
])
def test_which_requests_turn_reasoning_on(params: dict[str, Any], on: bool) -> None:
    assert asks_reasoning(request(**params)) is on


def test_call_needs_carry_the_reasoning_flag() -> None:
    plan = plan_of({"providers": {"o": {"kind": "openai"}}, "models": {"r": ["o:gpt-4o-mini"]}})
    route = plan.routes["r"]
    assert needs_for(request(reasoning_effort="high"), route, stream=False).reasoning
    assert not needs_for(request(max_tokens=5), route, stream=False).reasoning


# -- dry-run prints the limit it chose -------------------------------------------------------


def test_dry_run_prints_the_adaptive_limit_of_each_try() -> None:
    plan = plan_of({"providers": {"o": {"kind": "openai"}},
                    "models": {"r": ["o:gpt-4o-mini", "o:o3"]}})
    report = dry_run(plan, "r", MSG, prompt_tokens=8000,
                     simulate={"o:gpt-4o-mini": "auth"})
    tries = [e for e in report.events if e.kind == "try"]
    assert [(e.target, e.first_token_s, e.first_token_adaptive) for e in tries] == [
        ("o:gpt-4o-mini", 12.0, True), ("o:o3", 62.0, True)]
    text = str(report).splitlines()
    assert "     first-token limit: 12s (adaptive)" in text
    assert "     first-token limit: 62s (adaptive)" in text
    events = json.loads(report.to_json())["events"]
    assert [e["first_token_s"] for e in events if e["kind"] == "try"] == [12.0, 62.0]


def test_dry_run_prints_a_reasoning_request_s_limit_and_an_explicit_one() -> None:
    plan = plan_of({"providers": {"o": {"kind": "openai"},
                                  "s": {"kind": "openai", "timeout": {"first_token": "7s"}}},
                    "models": {"r": ["s:gpt-4o-mini", "o:gpt-4o-mini"]}})
    report = dry_run(plan, "r", MSG, params={"reasoning_effort": "high"},
                     simulate={"s:gpt-4o-mini": "auth"})
    assert report.needs.reasoning
    text = str(report).splitlines()
    assert text[1].endswith(", reasoning on")
    assert "     first-token limit: 7s (set in the route file)" in text
    assert "     first-token limit: 60s (adaptive)" in text


# -- end to end: the limit reaches the provider ----------------------------------------------


def doc_for(port: int, *, base: str) -> dict[str, Any]:
    """Two providers on one loopback server, no first_token anywhere: adaptive limits."""
    return {"version": 1,
            "defaults": {"timeout": {"connect": "1s", "first_token_base": base, "total": "5s",
                                     "idle": "1s"},
                         "retry": {"attempts": 2, "initial": "1ms", "max": "5ms"}},
            "providers": {"a": provider(port, "a"), "b": provider(port, "b")},
            "models": {"r": ["a:m", "b:m"]}}


async def test_a_silent_target_falls_back_at_the_adaptive_limit(
        openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(json=completion("late"), delay=3.0), path=chat_path("a"))
    openai_server.enqueue(json_reply(completion("from b")), path=chat_path("b"))
    async with Router.from_dict(doc_for(openai_server.port, base="150ms")) as router:
        r = await router.chat("r", MSG)
    assert r.text == "from b" and r.target == "b:m"
    first = r.attempts[0]
    assert (first.error_class, first.timeout_kind) == (ErrorClass.TIMEOUT, "first_token")
    assert 100 <= (first.latency_ms or 0) < 2500  # the 150 ms limit, not total's 5 s
    assert hits(openai_server, "a") == 1  # a silent target is not retried: b comes next


async def test_a_long_prompt_is_given_longer_to_answer(openai_server: OpenAIServer) -> None:
    # 8,000+ estimated tokens: the limit is 150 ms + 2 s, so a 400 ms wait is an answer.
    openai_server.enqueue(Reply(json=completion("read it all"), delay=0.4), path=chat_path("a"))
    long_prompt = [{"role": "user", "content": "word " * 6500}]
    async with Router.from_dict(doc_for(openai_server.port, base="150ms")) as router:
        r = await router.chat("r", long_prompt)
    assert r.text == "read it all" and r.target == "a:m"
    assert [a.outcome for a in r.attempts] == ["ok"]


async def test_a_reasoning_request_is_given_longer_to_answer(
        openai_server: OpenAIServer) -> None:
    # reasoning_effort: the limit is 6 x 100 ms; a 350 ms wait is an answer, not a timeout.
    openai_server.enqueue(Reply(json=completion("thought"), delay=0.35), path=chat_path("a"))
    async with Router.from_dict(doc_for(openai_server.port, base="100ms")) as router:
        r = await router.chat("r", MSG, reasoning_effort="high")
    assert r.text == "thought" and r.target == "a:m"
    assert openai_server.requests[0].json["reasoning_effort"] == "high"


def test_first_token_base_is_in_the_schema() -> None:
    from router.config.schema import SCHEMA

    props = SCHEMA["$defs"]["timeout"]["properties"]
    assert "first_token_base" in props


async def test_dry_run_through_the_router_matches_the_engine(
        openai_server: OpenAIServer) -> None:
    doc = doc_for(openai_server.port, base="150ms")
    doc["providers"]["a"] = {**provider(openai_server.port, "a"), "api_key": KEY}
    async with Router.from_dict(doc) as router:
        report = router.dry_run("r", MSG, reasoning_effort="high")
    assert [e.first_token_s for e in report.events if e.kind == "try"] == [
        pytest.approx(0.9)]
