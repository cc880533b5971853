"""``n`` > 1 (issue 12): several choices on the kinds that can give them (openai,
openai-compatible, azure-openai), each assembled on its own (``r.choices``, ``chunk.index``,
``final_choices``; ``r.text`` is choice 0); a capability of the kinds table, so a target that
cannot is skipped before any I/O, and a provider asked directly refuses with invalid_request.

Bodies: openai-python's recorded n=3 completion (``tests/lib/chat/test_completions.py::
test_parse_pydantic_model_multiple_choices``) and n=3 stream (``.inline-snapshot/external/
a491adda...bin``), in tests/recorded/openai/; streams go out in random byte pieces.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from router import Router
from router.errors import InvalidRequestError, NetworkError, RouteFailed
from router.providers.anthropic import AnthropicProvider
from router.providers.base import HttpPool, ProviderConfig, Timeouts
from router.providers.google import GoogleProvider
from router.providers.kinds import kind_capabilities
from router.providers.ollama import OllamaProvider
from router.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from router.types import ChatChunk, ChatRequest, Message
from tests.servers import anthropic as an
from tests.servers import google as gg
from tests.servers import ollama as ol
from tests.servers import openai as oa

RECORDED = Path(__file__).parent / "recorded" / "openai"
KEY = "sk-test-choices-0123456789abcdef"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)
ASK = [{"role": "user", "content": "What's the weather like in SF?"}]


def openai(server: oa.OpenAIServer, pool: HttpPool) -> OpenAIProvider:
    return OpenAIProvider(ProviderConfig(name="openai", kind="openai", base_url=server.base_url,
                                         api_key=SecretStr(KEY)), pool)


def ask(**kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message("user", "What's the weather like in SF?")], **kw)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [c async for c in stream]


# --------------------------------------------------------------------------------------------
# Replies


async def test_recorded_three_choices_come_back_apart(openai_server: oa.OpenAIServer,
                                                      http_pool: HttpPool) -> None:
    body = json.loads((RECORDED / "n3_completion.json").read_text())
    openai_server.enqueue(oa.json_reply(body))
    r = await openai(openai_server, http_pool).chat("gpt-4o-2024-08-06", ask(n=3), TIMEOUTS)
    assert openai_server.requests[0].json["n"] == 3
    assert [c.index for c in r.choices] == [0, 1, 2]
    temps = [json.loads(c.text)["temperature"] for c in r.choices]
    assert temps == [64, 65, 63.0]
    assert r.text == r.choices[0].text and r.finish_reason == "stop"
    assert all(c.finish_reason == "stop" and c.refusal is None for c in r.choices)


async def test_one_choice_answers_leave_choices_empty(openai_server: oa.OpenAIServer,
                                                      http_pool: HttpPool) -> None:
    r = await openai(openai_server, http_pool).chat("gpt-4o-mini", ask(), TIMEOUTS)
    assert r.choices == [] and "n" not in openai_server.requests[0].json


# --------------------------------------------------------------------------------------------
# Streams


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
async def test_recorded_three_choice_stream_is_not_garbled(http_pool: HttpPool,
                                                           seed: int) -> None:
    async with oa.OpenAIServer(seed=seed) as server:
        server.enqueue(oa.stream_reply([(RECORDED / "n3_stream.sse").read_bytes()], done=False))
        chunks = await collect(openai(server, http_pool).stream("gpt-4o-2024-08-06", ask(n=3),
                                                                TIMEOUTS))
    texts: dict[int, str] = {}
    for c in chunks[:-1]:
        texts[c.index] = texts.get(c.index, "") + c.delta
    parsed = {i: json.loads(t) for i, t in texts.items()}  # each choice is whole JSON
    assert sorted(parsed) == [0, 1, 2]
    last = chunks[-1]
    assert last.final_choices is not None
    assert {c.index: c.text for c in last.final_choices} == texts
    assert last.finish_reason == "stop" and last.usage is not None
    assert last.usage.output_tokens == 42


def choice_chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    event = oa.chunk(delta, finish_reason=finish)
    event["choices"][0]["index"] = index
    return event


async def test_each_choice_keeps_its_own_tool_calls(openai_server: oa.OpenAIServer,
                                                    http_pool: HttpPool) -> None:
    call = {"index": 0, "type": "function", "function": {"name": "get_weather"}}
    openai_server.enqueue(oa.stream_reply([
        choice_chunk(0, {"tool_calls": [{**call, "id": "call_a"}]}),
        choice_chunk(1, {"tool_calls": [{**call, "id": "call_b"}]}),
        choice_chunk(1, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        choice_chunk(0, {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        choice_chunk(0, {"tool_calls": [{"index": 0, "function": {"arguments": '"SF"}'}}]}),
        choice_chunk(1, {"tool_calls": [{"index": 0, "function": {"arguments": '"LA"}'}}]}),
        choice_chunk(1, {}, "tool_calls"), choice_chunk(0, {}, "tool_calls"),
        oa.chunk(choices=False, usage_=oa.usage())]))
    chunks = await collect(openai(openai_server, http_pool).stream("gpt-4o-mini", ask(n=2),
                                                                   TIMEOUTS))
    choices = chunks[-1].final_choices or []
    assert [(c.index, c.finish_reason, [(t.id, t.arguments) for t in c.tool_calls])
            for c in choices] == [(0, "tool_calls", [("call_a", {"city": "SF"})]),
                                  (1, "tool_calls", [("call_b", {"city": "LA"})])]
    assert chunks[-1].final_tool_calls == choices[0].tool_calls


async def test_a_stream_is_whole_only_when_every_choice_finished(
        openai_server: oa.OpenAIServer, http_pool: HttpPool) -> None:
    openai_server.enqueue(oa.stream_reply([
        choice_chunk(0, {"content": "a"}), choice_chunk(1, {"content": "b"}),
        choice_chunk(0, {}, "stop")]))  # then [DONE]: choice 1 never finished
    with pytest.raises(NetworkError):
        await collect(openai(openai_server, http_pool).stream("gpt-4o-mini", ask(n=2),
                                                              TIMEOUTS))


async def test_a_server_that_ignores_n_still_answers_whole(openai_server: oa.OpenAIServer,
                                                             http_pool: HttpPool) -> None:
    openai_server.enqueue(oa.stream_reply(oa.text_events(["Hel", "lo"])))  # one choice only
    provider = OpenAICompatibleProvider(ProviderConfig(
        name="llama", kind="openai-compatible", base_url=openai_server.base_url), http_pool)
    chunks = await collect(provider.stream("llama3.2", ask(n=2), TIMEOUTS))
    assert [(c.index, c.text) for c in chunks[-1].final_choices or []] == [(0, "Hello")]
    openai_server.enqueue(oa.json_reply(oa.completion("Hello")))
    r = await provider.chat("llama3.2", ask(n=2), TIMEOUTS)
    assert [(c.index, c.text) for c in r.choices] == [(0, "Hello")]


async def test_openai_compatible_sends_n(openai_server: oa.OpenAIServer,
                                         http_pool: HttpPool) -> None:
    provider = OpenAICompatibleProvider(ProviderConfig(
        name="vllm", kind="openai-compatible", base_url=openai_server.base_url), http_pool)
    await provider.chat("meta-llama/Llama-3.1-8B-Instruct", ask(n=2), TIMEOUTS)
    assert openai_server.requests[0].json["n"] == 2


# --------------------------------------------------------------------------------------------
# Kinds that cannot: a capability, refused before any I/O


def test_the_kinds_table_says_who_can_give_several_choices() -> None:
    can = {k: kind_capabilities(k).n for k in ("openai", "openai-compatible", "azure-openai",
                                               "anthropic", "google", "ollama", "fake")}
    assert can == {"openai": True, "openai-compatible": True, "azure-openai": True,
                   "anthropic": False, "google": False, "ollama": False, "fake": False}


async def test_providers_without_n_refuse_it_before_any_io(http_pool: HttpPool) -> None:
    async with an.AnthropicServer() as a, gg.GoogleServer() as g, ol.OllamaServer() as o:
        providers = [
            (AnthropicProvider(ProviderConfig(name="a", kind="anthropic", base_url=a.base_url,
                                              api_key=SecretStr(KEY)), http_pool), "claude"),
            (GoogleProvider(ProviderConfig(name="g", kind="google", base_url=g.base_url,
                                           api_key=SecretStr(KEY)), http_pool), "gemini"),
            (OllamaProvider(ProviderConfig(name="o", kind="ollama", base_url=o.base_url),
                            http_pool), "llama3.2")]
        for provider, model in providers:
            with pytest.raises(InvalidRequestError, match="one choice per call"):
                await provider.chat(model, ask(n=2), TIMEOUTS)
        assert a.requests == g.requests == o.requests == []


def route_file(openai_url: str, anthropic_url: str) -> dict[str, Any]:
    return {"version": 1, "defaults": {"retry": {"attempts": 1}},
            "providers": {"openai": {"kind": "openai", "base_url": openai_url, "api_key": KEY},
                          "anthropic": {"kind": "anthropic", "base_url": anthropic_url,
                                        "api_key": KEY}}}


async def test_router_skips_a_target_that_cannot_give_n(openai_server: oa.OpenAIServer) -> None:
    async with an.AnthropicServer() as anthropic:
        doc = route_file(openai_server.base_url, anthropic.base_url)
        openai_server.enqueue(oa.json_reply(json.loads(
            (RECORDED / "n3_completion.json").read_text())))
        async with Router.from_dict(doc) as router:
            r = await router.chat("anthropic:claude-haiku-4-5,openai:gpt-4o-2024-08-06", ASK,
                                  n=3)
        assert anthropic.requests == []
    assert len(r.choices) == 3 and r.target == "openai:gpt-4o-2024-08-06"
    assert (r.attempts[0].outcome, r.attempts[0].reason) == ("skipped", "capability")


async def test_router_with_no_target_for_n_fails_before_any_io(
        openai_server: oa.OpenAIServer) -> None:
    async with an.AnthropicServer() as anthropic:
        doc = route_file(openai_server.base_url, anthropic.base_url)
        async with Router.from_dict(doc) as router:
            with pytest.raises(RouteFailed) as caught:
                await router.chat("anthropic:claude-haiku-4-5", ASK, n=2)
        assert anthropic.requests == []
    assert [(a.outcome, a.reason) for a in caught.value.attempts] == [("skipped", "capability")]


@pytest.mark.parametrize("n", [0, -1, "2", 2.5, True])
async def test_a_bad_n_is_invalid_request(openai_server: oa.OpenAIServer, n: Any) -> None:
    doc = route_file(openai_server.base_url, openai_server.base_url)
    async with Router.from_dict(doc) as router:
        with pytest.raises(InvalidRequestError, match=r"\bn (must|is)"):
            await router.chat("openai:gpt-4o-mini", ASK, n=n)
    assert openai_server.requests == []


async def test_n_of_one_asks_nothing_of_a_target(openai_server: oa.OpenAIServer) -> None:
    async with an.AnthropicServer() as anthropic:
        doc = route_file(openai_server.base_url, anthropic.base_url)
        async with Router.from_dict(doc) as router:
            r = await router.chat("anthropic:claude-haiku-4-5", ASK, n=1)
    assert r.text == "Hello!" and "n" not in anthropic.requests[0].json


# -- a route file's models: entry declares n (issue 12) ---------------------------------------


def compatible_file(url: str, models: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "defaults": {"retry": {"attempts": 1}},
            "providers": {"local": {"kind": "openai-compatible", "base_url": url,
                                    "models": models}}}


def test_a_models_entry_n_compiles_into_the_targets_capabilities() -> None:
    doc = compatible_file("http://127.0.0.1:9/v1", {"small": {"n": False}, "big": {"n": True}})
    doc["models"] = {"r": ["local:small", "local:big", "local:other"]}
    with Router.from_dict(doc) as router:
        caps = [t.capabilities.n for t in router.plan.routes["r"].targets]
    assert caps == [False, True, True]  # the kind's default where no entry says


async def test_router_skips_a_compatible_server_whose_model_says_n_false(
        openai_server: oa.OpenAIServer) -> None:
    openai_server.enqueue(oa.json_reply(json.loads(
        (RECORDED / "n3_completion.json").read_text())))
    doc = compatible_file(openai_server.base_url, {"small": {"n": False}})
    async with Router.from_dict(doc) as router:
        r = await router.chat("local:small,local:big", ASK, n=3)
    assert len(r.choices) == 3 and r.target == "local:big"
    assert [(a.target, a.outcome, a.reason) for a in r.attempts] == [
        ("local:small", "skipped", "capability"), ("local:big", "ok", None)]
    assert [q.json["model"] for q in openai_server.requests] == ["big"]
    assert openai_server.requests[0].json["n"] == 3


async def test_a_model_that_says_n_false_still_serves_calls_without_n(
        openai_server: oa.OpenAIServer) -> None:
    doc = compatible_file(openai_server.base_url, {"small": {"n": False}})
    async with Router.from_dict(doc) as router:
        r = await router.chat("local:small", ASK)
        with pytest.raises(RouteFailed) as caught:
            await router.chat("local:small", ASK, n=2)
    assert r.target == "local:small" and len(openai_server.requests) == 1
    assert [(a.outcome, a.reason) for a in caught.value.attempts] == [("skipped", "capability")]
