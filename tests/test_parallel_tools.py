"""Parallel tool calls (issue 12): streamed calls keep their indices, interleaved or not, also
when a call's first delta lacks its id; ``parallel_tool_calls: false`` is sent where the API has
the switch (OpenAI's ``parallel_tool_calls``, Anthropic's ``tool_choice.disable_parallel_tool_use``)
and nowhere else, as the kinds table's ``parallel_tool_calls`` capability records.

Bodies: openai-python's recorded two-tool stream (``test_parse_multiple_pydantic_tools``,
``.inline-snapshot/external/f82268f2fefd...bin``, in tests/recorded/openai/);
anthropic-sdk-python ``tool_choice_auto_param.py`` / ``tool_choice_any_param.py``
(``disable_parallel_tool_use``); Gemini ``functionCall`` parts. Streams go out in random byte
pieces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from router import Router
from router.providers.anthropic import AnthropicProvider
from router.providers.base import HttpPool, ProviderConfig, Timeouts
from router.providers.google import GoogleProvider
from router.providers.kinds import kind_capabilities
from router.providers.ollama import OllamaProvider
from router.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from router.types import ChatChunk, ChatRequest, Message, Tool
from tests.servers import anthropic as an
from tests.servers import google as gg
from tests.servers import ollama as ol
from tests.servers import openai as oa

RECORDED = Path(__file__).parent / "recorded" / "openai"
KEY = "sk-test-parallel-0123456789abcdef"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)
TOOLS = [Tool("get_weather", "Weather in a city",
              {"type": "object", "properties": {"city": {"type": "string"}}}),
         Tool("get_time", "Local time in a city",
              {"type": "object", "properties": {"city": {"type": "string"}}})]


def ask(**kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message("user", "Weather and time in Paris?")], tools=TOOLS,
                       **kw)


def config(kind: str, base_url: str, key: bool = True) -> ProviderConfig:
    return ProviderConfig(name=kind, kind=kind, base_url=base_url,
                          api_key=SecretStr(KEY) if key else None)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [c async for c in stream]


def call_delta(index: int | None, *, id_: str | None = None, name: str | None = None,
               arguments: str = "") -> dict[str, Any]:
    delta: dict[str, Any] = {"function": {"arguments": arguments}}
    if index is not None:
        delta["index"] = index
    if id_ is not None:
        delta["id"], delta["type"] = id_, "function"
    if name is not None:
        delta["function"]["name"] = name
    return oa.chunk({"tool_calls": [delta]})


def streamed(deltas: list[dict[str, Any]]) -> oa.Reply:
    return oa.stream_reply([oa.chunk({"role": "assistant", "content": None}), *deltas,
                            oa.chunk({}, finish_reason="tool_calls"),
                            oa.chunk(choices=False, usage_=oa.usage())])


# --------------------------------------------------------------------------------------------
# Streamed indices


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_recorded_two_tool_stream_assembles_both_calls(http_pool: HttpPool,
                                                             seed: int) -> None:
    async with oa.OpenAIServer(seed=seed) as server:
        server.enqueue(oa.stream_reply([(RECORDED / "parallel_tools_stream.sse").read_bytes()],
                                       done=False))
        chunks = await collect(OpenAIProvider(config("openai", server.base_url), http_pool)
                               .stream("gpt-4o-2024-08-06", ask(), TIMEOUTS))
    calls = chunks[-1].final_tool_calls or []
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs",
         {"city": "Edinburgh", "country": "GB", "units": "c"}),
        ("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price",
         {"ticker": "AAPL", "exchange": "NASDAQ"})]
    assert {d.index for c in chunks for d in c.tool_calls} == {0, 1}


async def test_interleaved_calls_keep_their_indices(openai_server: oa.OpenAIServer,
                                                    http_pool: HttpPool) -> None:
    openai_server.enqueue(streamed([
        call_delta(0, id_="call_a", name="get_weather"),
        call_delta(1, id_="call_b", name="get_time"),
        call_delta(1, arguments='{"city"'), call_delta(0, arguments='{"city"'),
        call_delta(0, arguments=': "Paris"}'), call_delta(1, arguments=': "Lyon"}')]))
    chunks = await collect(OpenAIProvider(config("openai", openai_server.base_url), http_pool)
                           .stream("gpt-4o-mini", ask(), TIMEOUTS))
    assert [(d.index, d.arguments) for c in chunks for d in c.tool_calls][2:] == [
        (1, '{"city"'), (0, '{"city"'), (0, ': "Paris"}'), (1, ': "Lyon"}')]
    assert [(c.id, c.name, c.arguments) for c in chunks[-1].final_tool_calls or []] == [
        ("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {"city": "Lyon"})]


async def test_a_call_whose_first_delta_lacks_its_id_gets_it_later(
        openai_server: oa.OpenAIServer, http_pool: HttpPool) -> None:
    openai_server.enqueue(streamed([
        call_delta(0, id_="call_a", name="get_weather"),
        call_delta(1, name="get_time", arguments='{"city":'),  # no id yet
        call_delta(0, arguments='{"city": "Paris"}'),
        call_delta(1, id_="call_b", arguments=' "Lyon"}')]))
    chunks = await collect(OpenAIProvider(config("openai", openai_server.base_url), http_pool)
                           .stream("gpt-4o-mini", ask(), TIMEOUTS))
    assert [(c.id, c.name, c.arguments) for c in chunks[-1].final_tool_calls or []] == [
        ("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {"city": "Lyon"})]


async def test_deltas_without_an_index_are_followed_by_id(openai_server: oa.OpenAIServer,
                                                          http_pool: HttpPool) -> None:
    openai_server.enqueue(streamed([
        call_delta(None, id_="call_a", name="get_weather", arguments='{"city": "Paris"}'),
        call_delta(None, id_="call_b", name="get_time", arguments='{"city":'),
        call_delta(None, arguments=' "Lyon"}')]))
    provider = OpenAICompatibleProvider(config("openai-compatible", openai_server.base_url,
                                               key=False), http_pool)
    chunks = await collect(provider.stream("qwen2.5", ask(), TIMEOUTS))
    assert [(c.id, c.arguments) for c in chunks[-1].final_tool_calls or []] == [
        ("call_a", {"city": "Paris"}), ("call_b", {"city": "Lyon"})]


async def test_anthropic_parallel_tool_use_blocks_are_numbered_in_order(
        http_pool: HttpPool) -> None:
    async with an.AnthropicServer() as server:
        server.enqueue(an.stream_reply(an.tool_events([
            ("toolu_01", "get_weather", '{"city": "Paris"}'),
            ("toolu_02", "get_time", '{"city": "Paris"}')], text="Checking both.")))
        chunks = await collect(AnthropicProvider(config("anthropic", server.base_url),
                                                 http_pool).stream("claude-haiku-4-5", ask(),
                                                                   TIMEOUTS))
    assert sorted({d.index for c in chunks for d in c.tool_calls}) == [0, 1]
    assert [c.id for c in chunks[-1].final_tool_calls or []] == ["toolu_01", "toolu_02"]


async def test_gemini_calls_are_numbered_across_a_stream(http_pool: HttpPool) -> None:
    async with gg.GoogleServer() as server:
        server.enqueue(gg.stream_reply([
            gg.chunk([gg.call_part("get_weather", {"city": "Paris"}),
                      gg.call_part("get_time", {"city": "Paris"})]),
            gg.chunk([gg.call_part("get_weather", {"city": "Lyon"})], finish_reason="STOP",
                     usage_=gg.usage())]))
        chunks = await collect(GoogleProvider(config("google", server.base_url), http_pool)
                               .stream("gemini-2.5-flash", ask(), TIMEOUTS))
    assert [d.index for c in chunks for d in c.tool_calls] == [0, 1, 2]
    assert len({c.id for c in chunks[-1].final_tool_calls or []}) == 3


# --------------------------------------------------------------------------------------------
# parallel_tool_calls: false


async def test_openai_sends_parallel_tool_calls_false(openai_server: oa.OpenAIServer,
                                                      http_pool: HttpPool) -> None:
    await OpenAIProvider(config("openai", openai_server.base_url), http_pool).chat(
        "gpt-4o-mini", ask(parallel_tool_calls=False), TIMEOUTS)
    assert openai_server.requests[0].json["parallel_tool_calls"] is False


@pytest.mark.parametrize(("choice", "sent"), [
    (None, {"type": "auto", "disable_parallel_tool_use": True}),
    ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", {"type": "any", "disable_parallel_tool_use": True}),
    ("get_time", {"type": "tool", "name": "get_time", "disable_parallel_tool_use": True}),
    ("none", {"type": "none"}),
])
async def test_anthropic_maps_it_to_disable_parallel_tool_use(
        http_pool: HttpPool, choice: str | None, sent: dict[str, Any]) -> None:
    async with an.AnthropicServer() as server:
        await AnthropicProvider(config("anthropic", server.base_url), http_pool).chat(
            "claude-haiku-4-5", ask(parallel_tool_calls=False, tool_choice=choice), TIMEOUTS)
        assert server.problems == []
    assert server.requests[0].json["tool_choice"] == sent


async def test_kinds_without_the_switch_send_nothing(http_pool: HttpPool) -> None:
    async with gg.GoogleServer() as g, ol.OllamaServer() as o:
        await GoogleProvider(config("google", g.base_url), http_pool).chat(
            "gemini-2.5-flash", ask(parallel_tool_calls=False), TIMEOUTS)
        await OllamaProvider(config("ollama", o.base_url, key=False), http_pool).chat(
            "llama3.2", ask(parallel_tool_calls=False), TIMEOUTS)
        assert g.violations == []
        bodies = [g.requests[0].body, o.requests[0].body]
    assert all(b"parallel" not in body for body in bodies)


def test_the_kinds_table_records_who_has_the_switch() -> None:
    has = {k: kind_capabilities(k).parallel_tool_calls
           for k in ("openai", "openai-compatible", "azure-openai", "anthropic", "google",
                     "ollama")}
    assert has == {"openai": True, "openai-compatible": True, "azure-openai": True,
                   "anthropic": True, "google": False, "ollama": False}


# -- a route file's models: entry declares the switch (issue 12) ------------------------------


def compatible_file(url: str) -> dict[str, Any]:
    return {"version": 1, "defaults": {"retry": {"attempts": 1}},
            "providers": {"local": {"kind": "openai-compatible", "base_url": url, "models": {
                "old": {"parallel_tool_calls": False}, "new": {"parallel_tool_calls": True}}}}}


def test_a_models_entry_parallel_tool_calls_compiles_into_the_targets_capabilities() -> None:
    doc = {**compatible_file("http://127.0.0.1:9/v1"),
           "models": {"r": ["local:old", "local:new", "local:other"]}}
    with Router.from_dict(doc) as router:
        caps = [t.capabilities.parallel_tool_calls for t in router.plan.routes["r"].targets]
    assert caps == [False, True, True]


@pytest.mark.parametrize(("model", "sent"), [("old", None), ("new", False), ("other", False)])
async def test_the_switch_is_sent_only_where_the_model_has_it(
        openai_server: oa.OpenAIServer, model: str, sent: bool | None) -> None:
    async with Router.from_dict(compatible_file(openai_server.base_url)) as router:
        await router.chat(f"local:{model}", [{"role": "user", "content": "Weather in Paris?"}],
                          tools=TOOLS, parallel_tool_calls=False)
    body = openai_server.requests[0].json
    assert body.get("parallel_tool_calls") == sent and len(body["tools"]) == 2
    assert ("parallel_tool_calls" in body) is (sent is not None)


async def test_a_fallback_from_a_model_without_the_switch_sends_it_to_the_next(
        openai_server: oa.OpenAIServer) -> None:
    openai_server.enqueue(oa.error_reply("server_error"))
    async with Router.from_dict(compatible_file(openai_server.base_url)) as router:
        await router.chat("local:old,local:new", [{"role": "user", "content": "Weather?"}],
                          tools=TOOLS, parallel_tool_calls=False)
    assert [("parallel_tool_calls" in q.json, q.json["model"])
            for q in openai_server.requests] == [(False, "old"), (True, "new")]
