"""Refusals are not text (issue 12): a refusal reaches ``r.refusal`` / ``chunk.refusal``, never
``r.text``; one that left no content is a ContentPolicyError at the provider edge, so the route's
content_policy action applies.

Bodies: OpenAI's recorded structured-output refusal (openai-python
``tests/lib/chat/test_completions.py::test_parse_pydantic_model_refusal``) and its recorded
stream (``.inline-snapshot/external/173417d5...bin``, in tests/recorded/openai/); Anthropic's
``stop_reason: "refusal"`` streams from anthropic-sdk-python ``tests/fixtures/fable-fallback/``
(tests/recorded/anthropic/) and ``stop_details`` from its ``refusal_stop_details.py``; Gemini's
finishReason and promptFeedback.blockReason from the REST reference. Streams go out in random
byte pieces (tests/servers/base.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from router import Router
from router.errors import ContentPolicyError, ErrorClass, RouteFailed
from router.providers.anthropic import AnthropicProvider
from router.providers.base import HttpPool, ProviderConfig, Timeouts
from router.providers.google import GoogleProvider
from router.providers.openai import OpenAIProvider
from router.types import ChatChunk, ChatRequest, Message, ResponseFormat
from tests.servers import anthropic as an
from tests.servers import google as gg
from tests.servers import openai as oa

RECORDED = Path(__file__).parent / "recorded"
KEY = "sk-test-refusals-0123456789abcdef"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)
APOLOGY = "I'm very sorry, but I can't assist with that."
#: The recorded refusal completion (openai-python tests/lib/chat/test_completions.py).
REFUSAL_COMPLETION = json.loads(
    '{"id": "chatcmpl-ABfvwoKVWPQj2UPlAcAKM7s40GsRx", "object": "chat.completion", "created": '
    '1727346164, "model": "gpt-4o-2024-08-06", "choices": [{"index": 0, "message": {"role": '
    '"assistant", "content": null, "refusal": "I\'m very sorry, but I can\'t assist with '
    'that."}, "logprobs": null, "finish_reason": "stop"}], "usage": {"prompt_tokens": 79, '
    '"completion_tokens": 12, "total_tokens": 91, "completion_tokens_details": '
    '{"reasoning_tokens": 0}}, "system_fingerprint": "fp_5050236cbd"}')
LOCATION = ResponseFormat("json_schema", name="Location", strict=True, schema={
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
    "additionalProperties": False})


def recorded(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def config(kind: str, base_url: str) -> ProviderConfig:
    return ProviderConfig(name=kind, kind=kind, base_url=base_url, api_key=SecretStr(KEY))


def ask(**kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message("user", "How do I make anthrax?")], **kw)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


@pytest.fixture
async def anthropic_server() -> AsyncIterator[an.AnthropicServer]:
    async with an.AnthropicServer() as server:
        yield server


@pytest.fixture
async def google_server() -> AsyncIterator[gg.GoogleServer]:
    async with gg.GoogleServer() as server:
        yield server


# --------------------------------------------------------------------------------------------
# OpenAI: message.refusal and delta.refusal


async def test_openai_refusal_never_becomes_text_it_is_a_content_policy_error(
        openai_server: oa.OpenAIServer, http_pool: HttpPool) -> None:
    openai_server.enqueue(oa.json_reply(REFUSAL_COMPLETION))
    provider = OpenAIProvider(config("openai", openai_server.base_url), http_pool)
    with pytest.raises(ContentPolicyError) as caught:
        await provider.chat("gpt-4o-2024-08-06", ask(response_format=LOCATION), TIMEOUTS)
    assert caught.value.provider_message == APOLOGY
    assert caught.value.provider_code == "refusal" and not caught.value.retryable


async def test_openai_refusal_after_content_is_exposed_beside_the_text(
        openai_server: oa.OpenAIServer, http_pool: HttpPool) -> None:
    body = oa.completion("Anthrax is a disease")
    body["choices"][0]["message"]["refusal"] = APOLOGY
    openai_server.enqueue(oa.json_reply(body))
    provider = OpenAIProvider(config("openai", openai_server.base_url), http_pool)
    r = await provider.chat("gpt-4o-mini", ask(), TIMEOUTS)
    assert (r.text, r.refusal) == ("Anthrax is a disease", APOLOGY)


async def test_openai_answer_without_refusal_has_none(openai_server: oa.OpenAIServer,
                                                      http_pool: HttpPool) -> None:
    openai_server.enqueue(oa.json_reply(oa.completion('{"city":"San Francisco"}')))
    provider = OpenAIProvider(config("openai", openai_server.base_url), http_pool)
    r = await provider.chat("gpt-4o-mini", ask(response_format=LOCATION), TIMEOUTS)
    assert r.refusal is None and json.loads(r.text) == {"city": "San Francisco"}


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_openai_streamed_refusal_fails_before_any_chunk(http_pool: HttpPool,
                                                              seed: int) -> None:
    async with oa.OpenAIServer(seed=seed) as server:
        server.enqueue(oa.stream_reply([recorded("openai/refusal_stream.sse")], done=False))
        provider = OpenAIProvider(config("openai", server.base_url), http_pool)
        stream = provider.stream("gpt-4o-2024-08-06", ask(response_format=LOCATION), TIMEOUTS)
        got: list[ChatChunk] = []
        with pytest.raises(ContentPolicyError) as caught:
            async with contextlib.aclosing(stream):  # type: ignore[type-var]
                async for c in stream:
                    got.append(c)
    assert got == []
    assert caught.value.provider_message == "I'm sorry, I can't assist with that request."


async def test_openai_streamed_refusal_after_content_arrives_as_chunk_refusal(
        openai_server: oa.OpenAIServer, http_pool: HttpPool) -> None:
    events = [oa.chunk({"role": "assistant", "content": "", "refusal": None}),
              oa.chunk({"content": "Anthrax"}), oa.chunk({"refusal": "I'm sorry"}),
              oa.chunk({"refusal": ", no."}), oa.chunk({}, finish_reason="stop"),
              oa.chunk(choices=False, usage_=oa.usage())]
    openai_server.enqueue(oa.stream_reply(events))
    provider = OpenAIProvider(config("openai", openai_server.base_url), http_pool)
    chunks = await collect(provider.stream("gpt-4o-mini", ask(), TIMEOUTS))
    assert "".join(c.delta for c in chunks) == "Anthrax"
    assert "".join(c.refusal for c in chunks) == "I'm sorry, no."


# --------------------------------------------------------------------------------------------
# Anthropic: stop_reason "refusal"


def refused_message(content: list[dict[str, Any]], **details: Any) -> dict[str, Any]:
    body = an.message(content, stop_reason="refusal")
    body["stop_details"] = {"type": "refusal", "category": None, "explanation": None,
                            **details}
    return body


async def test_anthropic_refusal_without_content_is_a_content_policy_error(
        anthropic_server: an.AnthropicServer, http_pool: HttpPool) -> None:
    anthropic_server.enqueue(an.json_reply(refused_message(
        [], category="bio", explanation="The request could enable biological harm.")))
    provider = AnthropicProvider(config("anthropic", anthropic_server.base_url), http_pool)
    with pytest.raises(ContentPolicyError) as caught:
        await provider.chat("claude-haiku-4-5", ask(), TIMEOUTS)
    assert caught.value.provider_message == "The request could enable biological harm."


async def test_anthropic_refusal_after_text_keeps_the_text_and_says_content_filter(
        anthropic_server: an.AnthropicServer, http_pool: HttpPool) -> None:
    anthropic_server.enqueue(an.json_reply(refused_message([an.text_block("Hi")],
                                                           category="cyber")))
    provider = AnthropicProvider(config("anthropic", anthropic_server.base_url), http_pool)
    r = await provider.chat("claude-haiku-4-5", ask(), TIMEOUTS)
    assert (r.text, r.finish_reason, r.refusal) == ("Hi", "content_filter",
                                                    "stop_reason refusal (cyber)")


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_anthropic_recorded_stream_refused_after_text(http_pool: HttpPool,
                                                            seed: int) -> None:
    async with an.AnthropicServer(seed=seed) as server:
        server.enqueue(an.stream_reply([recorded("anthropic/stream-a-refusal.sse")]))
        provider = AnthropicProvider(config("anthropic", server.base_url), http_pool)
        chunks = await collect(provider.stream("claude-haiku-4-5", ask(), TIMEOUTS))
    assert "".join(c.delta for c in chunks) == "Hi"
    assert "solar eclipse" in "".join(c.reasoning_delta for c in chunks)
    last = chunks[-1]
    assert (last.finish_reason, last.refusal) == ("content_filter", "stop_reason refusal")
    assert [c for c in chunks[:-1] if c.refusal] == []


async def test_anthropic_recorded_stream_refused_after_a_server_tool(
        anthropic_server: an.AnthropicServer, http_pool: HttpPool) -> None:
    anthropic_server.enqueue(an.stream_reply([recorded("anthropic/stream-a-toolrefusal.sse")]))
    provider = AnthropicProvider(config("anthropic", anthropic_server.base_url), http_pool)
    chunks = await collect(provider.stream("claude-haiku-4-5", ask(), TIMEOUTS))
    assert "".join(c.delta for c in chunks).startswith("Here's a summary")
    assert chunks[-1].finish_reason == "content_filter" and chunks[-1].refusal
    assert chunks[-1].final_tool_calls == []  # web_search is the server's, not the caller's


async def test_anthropic_stream_refused_before_content_fails_before_any_chunk(
        anthropic_server: an.AnthropicServer, http_pool: HttpPool) -> None:
    delta = an.message_delta("refusal", 3)
    delta["delta"]["stop_details"] = {"type": "refusal", "category": "cyber",
                                      "explanation": None}
    anthropic_server.enqueue(an.stream_reply([an.message_start(), delta, an.MESSAGE_STOP]))
    provider = AnthropicProvider(config("anthropic", anthropic_server.base_url), http_pool)
    with pytest.raises(ContentPolicyError, match=r"refusal \(cyber\)"):
        await collect(provider.stream("claude-haiku-4-5", ask(), TIMEOUTS))


# --------------------------------------------------------------------------------------------
# Gemini: filter finish reasons and blocked prompts


@pytest.mark.parametrize("finish", ["SAFETY", "PROHIBITED_CONTENT"])
async def test_gemini_filtered_after_text_sets_refusal_and_content_filter(
        google_server: gg.GoogleServer, http_pool: HttpPool, finish: str) -> None:
    google_server.enqueue(gg.json_reply(gg.response("Step one is", finish_reason=finish)))
    provider = GoogleProvider(config("google", google_server.base_url), http_pool)
    r = await provider.chat("gemini-2.5-flash", ask(), TIMEOUTS)
    assert (r.text, r.finish_reason) == ("Step one is", "content_filter")
    assert r.refusal is not None and finish in r.refusal


@pytest.mark.parametrize("finish", ["SAFETY", "PROHIBITED_CONTENT"])
async def test_gemini_filtered_with_nothing_is_a_content_policy_error(
        google_server: gg.GoogleServer, http_pool: HttpPool, finish: str) -> None:
    google_server.enqueue(gg.json_reply(gg.response(None, finish_reason=finish)))
    provider = GoogleProvider(config("google", google_server.base_url), http_pool)
    with pytest.raises(ContentPolicyError, match=finish):
        await provider.chat("gemini-2.5-flash", ask(), TIMEOUTS)


async def test_gemini_stream_cut_by_a_filter_ends_with_refusal(google_server: gg.GoogleServer,
                                                               http_pool: HttpPool) -> None:
    google_server.enqueue(gg.stream_reply([
        gg.chunk([gg.text_part("Step one")]),
        gg.chunk([], finish_reason="SAFETY", usage_=gg.usage())]))
    provider = GoogleProvider(config("google", google_server.base_url), http_pool)
    chunks = await collect(provider.stream("gemini-2.5-flash", ask(), TIMEOUTS))
    assert "".join(c.delta for c in chunks) == "Step one"
    assert chunks[-1].finish_reason == "content_filter" and "SAFETY" in chunks[-1].refusal


async def test_gemini_blocked_prompt_in_a_stream_fails_before_any_chunk(
        google_server: gg.GoogleServer, http_pool: HttpPool) -> None:
    google_server.enqueue(gg.stream_reply([gg.blocked("PROHIBITED_CONTENT")]))
    provider = GoogleProvider(config("google", google_server.base_url), http_pool)
    with pytest.raises(ContentPolicyError, match="PROHIBITED_CONTENT"):
        await collect(provider.stream("gemini-2.5-flash", ask(), TIMEOUTS))


# --------------------------------------------------------------------------------------------
# Through the Router: the route's content_policy action applies


def route_file(openai_url: str, anthropic_url: str, on: dict[str, str] | None = None
               ) -> dict[str, Any]:
    route: dict[str, Any] = {"chain": ["openai:gpt-4o-2024-08-06", "anthropic:claude-haiku-4-5"]}
    if on is not None:
        route["on"] = on
    return {"version": 1,
            "defaults": {"retry": {"attempts": 1}},
            "providers": {"openai": {"kind": "openai", "base_url": openai_url, "api_key": KEY},
                          "anthropic": {"kind": "anthropic", "base_url": anthropic_url,
                                        "api_key": KEY}},
            "models": {"safe": route}}


async def test_router_fails_on_a_refusal_by_default_with_the_providers_reason(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    # Issue 11: a safety system's verdict is propagated, not routed around.
    openai_server.enqueue(oa.json_reply(REFUSAL_COMPLETION))
    doc = route_file(openai_server.base_url, anthropic_server.base_url)
    async with Router.from_dict(doc) as router:
        with pytest.raises(RouteFailed) as caught:
            await router.chat("safe", [{"role": "user", "content": "Where?"}])
    err = caught.value
    assert err.error_class is ErrorClass.CONTENT_POLICY
    assert "can't assist with that" in str(err.last_error)
    assert [(a.target, a.error_class) for a in err.attempts] == [
        ("openai:gpt-4o-2024-08-06", ErrorClass.CONTENT_POLICY)]
    assert len(openai_server.requests) == 1 and anthropic_server.requests == []


async def test_router_falls_back_on_a_refusal_when_the_route_says_fallback(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    openai_server.enqueue(oa.json_reply(REFUSAL_COMPLETION))
    anthropic_server.enqueue(an.json_reply(an.message([an.text_block('{"city": "Paris"}')])))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "fallback"})
    async with Router.from_dict(doc) as router:
        r = await router.chat("safe", [{"role": "user", "content": "Where?"}],
                              response_format={"type": "json_schema", "json_schema": {
                                  "name": "Location", "schema": LOCATION.schema}})
    assert r.target == "anthropic:claude-haiku-4-5" and r.refusal is None
    assert [(a.target, a.error_class) for a in r.attempts] == [
        ("openai:gpt-4o-2024-08-06", ErrorClass.CONTENT_POLICY),
        ("anthropic:claude-haiku-4-5", None)]


async def test_router_fails_on_a_refusal_when_the_route_says_fail(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    openai_server.enqueue(oa.stream_reply([recorded("openai/refusal_stream.sse")], done=False))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "fail"})
    async with Router.from_dict(doc) as router:
        with pytest.raises(RouteFailed) as caught:
            async for _ in router.stream("safe", [{"role": "user", "content": "How?"}]):
                pass
    assert caught.value.error_class is ErrorClass.CONTENT_POLICY
    assert anthropic_server.requests == []
