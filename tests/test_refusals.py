"""Refusals are not text (issue 12): a refusal reaches ``r.refusal`` / ``chunk.refusal``, never
``r.text``. Providers return a refusal that left no content as a reply (finish_reason
content_filter); the engine applies the route's content_policy action to it: ``fail`` (the
default) returns it as the answer, ``fallback``/``retry`` count it as a failed content_policy
attempt (usage and cost recorded) and go on. Errors a provider answers with (a 400 content
filter, a blocked prompt) stay ContentPolicyErrors.

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
from router.providers.azure import AzureOpenAIProvider
from router.providers.base import HttpPool, ProviderConfig, Timeouts
from router.providers.google import GoogleProvider
from router.providers.openai import OpenAIProvider
from router.types import AttemptRecord, ChatChunk, ChatRequest, Message, ResponseFormat
from tests.servers import anthropic as an
from tests.servers import azure as az
from tests.servers import google as gg
from tests.servers import openai as oa

RECORDED = Path(__file__).parent / "recorded"
KEY = "sk-test-refusals-0123456789abcdef"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)
APOLOGY = "I'm very sorry, but I can't assist with that."
STREAMED_APOLOGY = "I'm sorry, I can't assist with that request."  # refusal_stream.sse
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


async def test_openai_refusal_never_becomes_text_it_is_the_refusal_of_the_reply(
        openai_server: oa.OpenAIServer, http_pool: HttpPool) -> None:
    openai_server.enqueue(oa.json_reply(REFUSAL_COMPLETION))
    provider = OpenAIProvider(config("openai", openai_server.base_url), http_pool)
    r = await provider.chat("gpt-4o-2024-08-06", ask(response_format=LOCATION), TIMEOUTS)
    assert (r.text, r.tool_calls, r.refusal) == ("", [], APOLOGY)
    assert r.finish_reason == "content_filter"
    assert (r.usage.input_tokens, r.usage.output_tokens) == (79, 12)


async def test_openai_refusal_after_content_is_exposed_beside_the_text(
        openai_server: oa.OpenAIServer, http_pool: HttpPool) -> None:
    body = oa.completion("Anthrax is a disease")
    body["choices"][0]["message"]["refusal"] = APOLOGY
    openai_server.enqueue(oa.json_reply(body))
    provider = OpenAIProvider(config("openai", openai_server.base_url), http_pool)
    r = await provider.chat("gpt-4o-mini", ask(), TIMEOUTS)
    assert (r.text, r.refusal, r.finish_reason) == ("Anthrax is a disease", APOLOGY, "stop")


async def test_openai_answer_without_refusal_has_none(openai_server: oa.OpenAIServer,
                                                      http_pool: HttpPool) -> None:
    openai_server.enqueue(oa.json_reply(oa.completion('{"city":"San Francisco"}')))
    provider = OpenAIProvider(config("openai", openai_server.base_url), http_pool)
    r = await provider.chat("gpt-4o-mini", ask(response_format=LOCATION), TIMEOUTS)
    assert r.refusal is None and json.loads(r.text) == {"city": "San Francisco"}


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_openai_streamed_refusal_arrives_as_chunk_refusal_and_ends_content_filter(
        http_pool: HttpPool, seed: int) -> None:
    async with oa.OpenAIServer(seed=seed) as server:
        server.enqueue(oa.stream_reply([recorded("openai/refusal_stream.sse")], done=False))
        provider = OpenAIProvider(config("openai", server.base_url), http_pool)
        chunks = await collect(provider.stream("gpt-4o-2024-08-06",
                                               ask(response_format=LOCATION), TIMEOUTS))
    assert "".join(c.refusal for c in chunks) == STREAMED_APOLOGY
    assert "".join(c.delta for c in chunks) == ""
    last = chunks[-1]
    assert last.finish_reason == "content_filter" and last.refusal == ""
    assert last.usage is not None and last.usage.output_tokens == 11


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
    assert chunks[-1].finish_reason == "stop"


async def test_azure_refusal_is_a_reply_not_its_content_filter_error(
        http_pool: HttpPool) -> None:
    # Azure's filtered completion (finish_reason content_filter, no refusal) stays an error;
    # a structured-output refusal the model sent is a reply, as on OpenAI.
    body = az.azure_completion(None)
    body["choices"][0]["message"]["refusal"] = APOLOGY
    events = [az.prompt_filter_chunk(), oa.chunk({"role": "assistant", "refusal": ""}),
              oa.chunk({"refusal": APOLOGY}), oa.chunk({}, finish_reason="stop"),
              oa.chunk(choices=False, usage_=oa.usage())]
    async with az.AzureServer() as server:
        server.enqueue(oa.json_reply(body), oa.stream_reply(events))
        provider = AzureOpenAIProvider(config("azure-openai", server.base_url), http_pool)
        r = await provider.chat("gpt-4o", ask(), TIMEOUTS)
        chunks = await collect(provider.stream("gpt-4o", ask(), TIMEOUTS))
    assert (r.text, r.refusal, r.finish_reason) == ("", APOLOGY, "content_filter")
    assert "".join(c.refusal for c in chunks) == APOLOGY
    assert chunks[-1].finish_reason == "content_filter"


# --------------------------------------------------------------------------------------------
# Anthropic: stop_reason "refusal"


def refused_message(content: list[dict[str, Any]], **details: Any) -> dict[str, Any]:
    body = an.message(content, stop_reason="refusal")
    body["stop_details"] = {"type": "refusal", "category": None, "explanation": None,
                            **details}
    return body


async def test_anthropic_refusal_without_content_is_the_refusal_of_the_reply(
        anthropic_server: an.AnthropicServer, http_pool: HttpPool) -> None:
    anthropic_server.enqueue(an.json_reply(refused_message(
        [], category="bio", explanation="The request could enable biological harm.")))
    provider = AnthropicProvider(config("anthropic", anthropic_server.base_url), http_pool)
    r = await provider.chat("claude-haiku-4-5", ask(), TIMEOUTS)
    assert (r.text, r.finish_reason) == ("", "content_filter")
    assert r.refusal == "The request could enable biological harm."


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


def refused_stream() -> list[dict[str, Any]]:
    delta = an.message_delta("refusal", 3)
    delta["delta"]["stop_details"] = {"type": "refusal", "category": "cyber",
                                      "explanation": None}
    return [an.message_start(), delta, an.MESSAGE_STOP]


async def test_anthropic_stream_refused_before_content_is_one_final_refusal_chunk(
        anthropic_server: an.AnthropicServer, http_pool: HttpPool) -> None:
    anthropic_server.enqueue(an.stream_reply(refused_stream()))
    provider = AnthropicProvider(config("anthropic", anthropic_server.base_url), http_pool)
    chunks = await collect(provider.stream("claude-haiku-4-5", ask(), TIMEOUTS))
    assert [(c.delta, c.finish_reason, c.refusal) for c in chunks] == [
        ("", "content_filter", "stop_reason refusal (cyber)")]
    assert chunks[0].usage is not None and chunks[0].usage.output_tokens == 3


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
async def test_gemini_filtered_with_nothing_is_the_refusal_of_the_reply(
        google_server: gg.GoogleServer, http_pool: HttpPool, finish: str) -> None:
    body = gg.response(None, finish_reason=finish)
    body["candidates"][0]["finishMessage"] = "Response was blocked."
    google_server.enqueue(gg.json_reply(body))
    provider = GoogleProvider(config("google", google_server.base_url), http_pool)
    r = await provider.chat("gemini-2.5-flash", ask(), TIMEOUTS)
    assert (r.text, r.finish_reason) == ("", "content_filter")
    assert r.refusal == f"Gemini withheld the answer (finishReason {finish}): Response was blocked."


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
# Through the Router: the route's content_policy action applies to a refusal-only reply

OPENAI_TARGET, ANTHROPIC_TARGET = "openai:gpt-4o-2024-08-06", "anthropic:claude-haiku-4-5"
GEMINI_TARGET = "gemini:gemini-2.5-flash"
ASK = [{"role": "user", "content": "Where?"}]


def route_file(openai_url: str, anthropic_url: str, on: dict[str, str] | None = None, *,
               gemini_url: str = "http://127.0.0.1:9", chain: list[str] | None = None,
               retry: dict[str, Any] | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {"chain": chain or [OPENAI_TARGET, ANTHROPIC_TARGET]}
    if on is not None:
        route["on"] = on
    return {"version": 1,
            "defaults": {"retry": retry or {"attempts": 1}},
            "providers": {"openai": {"kind": "openai", "base_url": openai_url, "api_key": KEY},
                          "anthropic": {"kind": "anthropic", "base_url": anthropic_url,
                                        "api_key": KEY},
                          "gemini": {"kind": "google", "base_url": gemini_url, "api_key": KEY}},
            "models": {"safe": route}}


def outcomes(records: list[AttemptRecord]) -> list[tuple[str, str, ErrorClass | None]]:
    return [(a.target, a.outcome, a.error_class) for a in records]


async def test_router_returns_a_refusal_as_the_answer_by_default(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    # Issue 11: a safety system's verdict is not routed around; issue 12: it is r.refusal.
    openai_server.enqueue(oa.json_reply(REFUSAL_COMPLETION))
    doc = route_file(openai_server.base_url, anthropic_server.base_url)
    async with Router.from_dict(doc) as router:
        r = await router.chat("safe", ASK)
    assert (r.text, r.refusal, r.finish_reason) == ("", APOLOGY, "content_filter")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (79, 12)
    assert r.cost_usd == pytest.approx(79 * 2.5e-6 + 12 * 10e-6)
    assert outcomes(r.attempts) == [(OPENAI_TARGET, "ok", None)]
    assert r.attempts[0].cost_usd == r.cost_usd and r.attempts[0].output_tokens == 12
    assert len(openai_server.requests) == 1 and anthropic_server.requests == []


async def test_router_returns_an_anthropic_refusal_as_the_answer_when_the_route_says_fail(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    anthropic_server.enqueue(an.json_reply(refused_message([], category="cyber")))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "fail"}, chain=[ANTHROPIC_TARGET, OPENAI_TARGET])
    async with Router.from_dict(doc) as router:
        r = await router.chat("safe", ASK)
    assert (r.text, r.refusal, r.target) == ("", "stop_reason refusal (cyber)", ANTHROPIC_TARGET)
    assert r.finish_reason == "content_filter" and r.cost_usd is not None
    assert openai_server.requests == []


async def test_router_returns_a_gemini_safety_finish_as_the_answer_by_default(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer,
        google_server: gg.GoogleServer) -> None:
    google_server.enqueue(gg.json_reply(gg.response(None, finish_reason="SAFETY")))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     gemini_url=google_server.base_url, chain=[GEMINI_TARGET, OPENAI_TARGET])
    async with Router.from_dict(doc) as router:
        r = await router.chat("safe", ASK)
    assert (r.text, r.finish_reason, r.target) == ("", "content_filter", GEMINI_TARGET)
    assert r.refusal == "Gemini withheld the answer (finishReason SAFETY)"
    assert openai_server.requests == []


async def test_router_falls_back_on_a_refusal_when_the_route_says_fallback(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    openai_server.enqueue(oa.json_reply(REFUSAL_COMPLETION))
    anthropic_server.enqueue(an.json_reply(an.message([an.text_block('{"city": "Paris"}')])))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "fallback"})
    async with Router.from_dict(doc) as router:
        r = await router.chat("safe", ASK, response_format={
            "type": "json_schema", "json_schema": {"name": "Location", "schema": LOCATION.schema}})
    assert r.target == ANTHROPIC_TARGET and r.refusal is None
    assert outcomes(r.attempts) == [(OPENAI_TARGET, "error", ErrorClass.CONTENT_POLICY),
                                    (ANTHROPIC_TARGET, "ok", None)]
    refused = r.attempts[0]  # the refused attempt was billed: its usage and cost are recorded
    assert (refused.input_tokens, refused.output_tokens) == (79, 12)
    assert refused.cost_usd == pytest.approx(79 * 2.5e-6 + 12 * 10e-6)
    assert refused.detail is not None and APOLOGY in refused.detail


async def test_router_fails_content_policy_when_every_target_refuses_under_fallback(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    openai_server.enqueue(oa.json_reply(REFUSAL_COMPLETION))
    anthropic_server.enqueue(an.json_reply(refused_message([], category="bio")))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "fallback"})
    async with Router.from_dict(doc) as router:
        with pytest.raises(RouteFailed) as caught:
            await router.chat("safe", ASK)
    err = caught.value
    assert err.error_class is ErrorClass.CONTENT_POLICY
    assert err.last_error is not None and err.last_error.target == ANTHROPIC_TARGET
    assert err.last_error.provider_message == "stop_reason refusal (bio)"
    assert outcomes(err.attempts) == [(OPENAI_TARGET, "error", ErrorClass.CONTENT_POLICY),
                                      (ANTHROPIC_TARGET, "error", ErrorClass.CONTENT_POLICY)]
    assert all(a.cost_usd for a in err.attempts)


async def test_router_retries_a_refusal_when_the_route_says_retry(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    openai_server.enqueue(oa.json_reply(REFUSAL_COMPLETION))
    openai_server.enqueue(oa.json_reply(oa.completion('{"city": "Paris"}')))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "retry"},
                     retry={"attempts": 2, "initial": "1ms", "max": "1ms"})
    async with Router.from_dict(doc) as router:
        r = await router.chat("safe", ASK)
    assert (r.text, r.refusal, r.target) == ('{"city": "Paris"}', None, OPENAI_TARGET)
    assert outcomes(r.attempts) == [(OPENAI_TARGET, "error", ErrorClass.CONTENT_POLICY),
                                    (OPENAI_TARGET, "ok", None)]
    assert anthropic_server.requests == []


async def test_router_propagates_a_blocked_prompt_by_default(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer,
        google_server: gg.GoogleServer) -> None:
    # An error the provider answers with (no reply to return) stays a ContentPolicyError.
    google_server.enqueue(gg.json_reply(gg.blocked("PROHIBITED_CONTENT")))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     gemini_url=google_server.base_url, chain=[GEMINI_TARGET, OPENAI_TARGET])
    async with Router.from_dict(doc) as router:
        with pytest.raises(RouteFailed) as caught:
            await router.chat("safe", ASK)
    assert caught.value.error_class is ErrorClass.CONTENT_POLICY
    assert "PROHIBITED_CONTENT" in str(caught.value.last_error)
    assert openai_server.requests == []


# -- streams ----------------------------------------------------------------------------------


async def test_router_streams_a_refusal_by_default(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    openai_server.enqueue(oa.stream_reply([recorded("openai/refusal_stream.sse")], done=False))
    doc = route_file(openai_server.base_url, anthropic_server.base_url)
    async with Router.from_dict(doc) as router:
        chunks = await collect(router.stream("safe", ASK))
    assert "".join(c.refusal for c in chunks) == STREAMED_APOLOGY
    assert "".join(c.delta for c in chunks) == ""
    assert chunks[0].refusal == "I'm" and chunks[0].attempts_made == 1
    last = chunks[-1]
    assert last.finish_reason == "content_filter" and last.target == OPENAI_TARGET
    assert last.usage is not None and last.usage.output_tokens == 11
    assert last.cost_usd == pytest.approx(79 * 2.5e-6 + 11 * 10e-6)
    assert last.attempts is not None and outcomes(last.attempts) == [
        (OPENAI_TARGET, "ok", None)]
    assert anthropic_server.requests == []


async def test_router_stream_falls_back_before_its_first_chunk_on_a_refusal(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    openai_server.enqueue(oa.stream_reply([recorded("openai/refusal_stream.sse")], done=False))
    anthropic_server.enqueue(an.stream_reply(an.text_events(["Par", "is"])))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "fallback"})
    async with Router.from_dict(doc) as router:
        chunks = await collect(router.stream("safe", ASK))
    assert "".join(c.delta for c in chunks) == "Paris"
    assert [c for c in chunks if c.refusal] == [] and chunks[0].attempts_made == 2
    assert {c.target for c in chunks} == {ANTHROPIC_TARGET}
    last = chunks[-1]
    assert last.attempts is not None and outcomes(last.attempts) == [
        (OPENAI_TARGET, "error", ErrorClass.CONTENT_POLICY), (ANTHROPIC_TARGET, "ok", None)]
    assert (last.attempts[0].input_tokens, last.attempts[0].output_tokens) == (79, 11)


async def test_router_stream_whose_refusal_is_followed_by_content_is_the_answer(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    # Under fallback a stream that begins with a refusal is read on: content follows, so it is
    # the answer, every chunk in order.
    events = [oa.chunk({"role": "assistant", "content": None, "refusal": ""}),
              oa.chunk({"refusal": "Careful."}), oa.chunk({"content": "Paris"}),
              oa.chunk({}, finish_reason="stop"), oa.chunk(choices=False, usage_=oa.usage())]
    openai_server.enqueue(oa.stream_reply(events))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "fallback"})
    async with Router.from_dict(doc) as router:
        chunks = await collect(router.stream("safe", ASK))
    assert [(c.refusal, c.delta) for c in chunks[:2]] == [("Careful.", ""), ("", "Paris")]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].target == OPENAI_TARGET
    assert anthropic_server.requests == []


async def test_router_stream_of_refusals_under_fallback_fails_before_any_chunk(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    openai_server.enqueue(oa.stream_reply([recorded("openai/refusal_stream.sse")], done=False))
    anthropic_server.enqueue(an.stream_reply(refused_stream()))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     on={"content_policy": "fallback"})
    got: list[ChatChunk] = []
    async with Router.from_dict(doc) as router:
        with pytest.raises(RouteFailed) as caught:
            async for c in router.stream("safe", ASK):
                got.append(c)
    assert got == [] and caught.value.error_class is ErrorClass.CONTENT_POLICY
    assert outcomes(caught.value.attempts) == [
        (OPENAI_TARGET, "error", ErrorClass.CONTENT_POLICY),
        (ANTHROPIC_TARGET, "error", ErrorClass.CONTENT_POLICY)]


async def test_a_refusal_stream_broken_midway_is_replayed_without_repeating_it(
        openai_server: oa.OpenAIServer, anthropic_server: an.AnthropicServer) -> None:
    # Under fail the refusal pieces reach the caller as they come; a replay after a cut must
    # reproduce them (like text) and deliver only the rest.
    pieces = ["I'm", " sorry", ", I", " can't", " help."]
    events = [oa.chunk({"role": "assistant", "content": None, "refusal": ""}),
              *(oa.chunk({"refusal": p}) for p in pieces), oa.chunk({}, finish_reason="stop"),
              oa.chunk(choices=False, usage_=oa.usage())]
    openai_server.enqueue(oa.broken_reply(events, after=4), oa.stream_reply(events))
    doc = route_file(openai_server.base_url, anthropic_server.base_url,
                     retry={"attempts": 2, "initial": "1ms", "max": "1ms"})
    async with Router.from_dict(doc) as router:
        chunks = await collect(router.stream("safe", ASK))
    assert "".join(c.refusal for c in chunks) == "".join(pieces)
    assert chunks[-1].finish_reason == "content_filter" and len(openai_server.requests) == 2
    assert chunks[-1].attempts is not None and [a.outcome for a in chunks[-1].attempts] == [
        "error", "ok"]
