"""OpenAIProvider / OpenAICompatibleProvider and the HTTP seam under them, against the
loopback server in tests/servers/openai.py (real status codes, error bodies and SSE bytes)."""

from __future__ import annotations

import contextlib
import email.utils
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from router.errors import (
    AuthError,
    ConfigError,
    ContentPolicyError,
    ContextWindowError,
    ErrorClass,
    InvalidRequestError,
    LlmError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TimeoutError_,
)
from router.providers.base import (
    HttpPool,
    ProviderConfig,
    Timeouts,
    classify_status,
    dumps_json,
    parse_retry_after,
)
from router.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from router.types import (
    ChatChunk,
    ChatRequest,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
)
from tests.servers.openai import (
    OpenAIServer,
    Reply,
    chunk,
    completion,
    error_body,
    error_reply,
    json_reply,
    stream_reply,
    text_events,
    tool_call,
    tool_call_events,
    usage,
)

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz1234"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)
SHORT = Timeouts(connect=0.2, first_token=0.2, total=5.0, idle=0.2)


def openai(server: OpenAIServer, pool: HttpPool, *, key: str | None = KEY,
           options: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
           ) -> OpenAIProvider:
    config = ProviderConfig(name="openai", kind="openai", base_url=server.base_url,
                            api_key=SecretStr(key) if key else None,
                            headers=headers or {}, options=options or {})
    return OpenAIProvider(config, pool)


def compatible(server: OpenAIServer, pool: HttpPool, **options: Any) -> OpenAICompatibleProvider:
    config = ProviderConfig(name="groq", kind="openai-compatible", base_url=server.base_url,
                            api_key=None, headers={}, options=options)
    return OpenAICompatibleProvider(config, pool)


def ask(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


async def chat_error(provider: OpenAIProvider, model: str = "gpt-4o-mini") -> LlmError:
    with pytest.raises(LlmError) as info:
        await provider.chat(model, ask(), TIMEOUTS)
    return info.value


# -- chat: what comes back --------------------------------------------------------------------


async def test_chat_returns_text_usage_and_model(openai_server: OpenAIServer,
                                                 http_pool: HttpPool) -> None:
    openai_server.enqueue(json_reply(completion("Hi there", usage_=usage(20, 3))))
    r = await openai(openai_server, http_pool).chat("gpt-4o-mini", ask(), TIMEOUTS)
    assert (r.text, r.finish_reason, r.model, r.target) == (
        "Hi there", "stop", "gpt-4o-mini-2024-07-18", "")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (20, 3)


async def test_chat_reads_cached_and_reasoning_tokens(openai_server: OpenAIServer,
                                                      http_pool: HttpPool) -> None:
    openai_server.enqueue(json_reply(completion(usage_=usage(100, 50, cached=64, reasoning=30))))
    r = await openai(openai_server, http_pool).chat("o3", ask(), TIMEOUTS)
    assert (r.usage.cached_tokens, r.usage.reasoning_tokens) == (64, 30)


async def test_usage_without_details_counts_zero(openai_server: OpenAIServer,
                                                 http_pool: HttpPool) -> None:
    bare = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    openai_server.enqueue(json_reply(completion(usage_=bare)))
    r = await compatible(openai_server, http_pool).chat("llama", ask(), TIMEOUTS)
    assert (r.usage.input_tokens, r.usage.cached_tokens, r.usage.reasoning_tokens) == (9, 0, 0)


async def test_chat_parses_tool_calls(openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    calls = [tool_call("call_1", "get_weather", '{"city":"Paris"}'),
             tool_call("call_2", "get_time", "{}")]
    openai_server.enqueue(json_reply(completion(None, tool_calls=calls,
                                                finish_reason="tool_calls")))
    r = await openai(openai_server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert r.finish_reason == "tool_calls" and r.text == ""
    assert r.tool_calls == [ToolCall("call_1", "get_weather", {"city": "Paris"}),
                            ToolCall("call_2", "get_time", {})]


async def test_invalid_tool_arguments_kept_raw(openai_server: OpenAIServer,
                                               http_pool: HttpPool) -> None:
    calls = [tool_call("call_1", "f", '{"city": "Par')]
    openai_server.enqueue(json_reply(completion(None, tool_calls=calls,
                                                finish_reason="tool_calls")))
    r = await openai(openai_server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert r.tool_calls[0].arguments == {"_raw": '{"city": "Par'}


async def test_function_call_finish_reason_is_tool_calls(openai_server: OpenAIServer,
                                                         http_pool: HttpPool) -> None:
    openai_server.enqueue(json_reply(completion("", finish_reason="function_call")))
    r = await openai(openai_server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert r.finish_reason == "tool_calls"


async def test_unknown_finish_reason_is_stop(openai_server: OpenAIServer,
                                             http_pool: HttpPool) -> None:
    openai_server.enqueue(json_reply(completion("x", finish_reason="eos_token")))
    r = await compatible(openai_server, http_pool).chat("llama", ask(), TIMEOUTS)
    assert r.finish_reason == "stop"


async def test_chat_keeps_provider_request_id(openai_server: OpenAIServer,
                                              http_pool: HttpPool) -> None:
    r = await openai(openai_server, http_pool).chat("gpt-4o", ask(), TIMEOUTS)
    assert r.request_id is not None and r.request_id.startswith("req_")


# -- chat: what is sent -----------------------------------------------------------------------


async def test_sends_bearer_key_org_project_and_config_headers(openai_server: OpenAIServer,
                                                               http_pool: HttpPool) -> None:
    p = openai(openai_server, http_pool, options={"organization": "org-1", "project": "proj-2"},
               headers={"X-Team": "search"})
    await p.chat("gpt-4o", ask(), TIMEOUTS)
    h = openai_server.requests[0].headers
    assert h["Authorization"] == f"Bearer {KEY}"
    assert (h["OpenAI-Organization"], h["OpenAI-Project"], h["X-Team"]) == (
        "org-1", "proj-2", "search")
    assert openai_server.requests[0].path == "/v1/chat/completions"


async def test_openai_sends_max_completion_tokens(openai_server: OpenAIServer,
                                                  http_pool: HttpPool) -> None:
    await openai(openai_server, http_pool).chat("gpt-4o", ask(max_tokens=50), TIMEOUTS)
    body = openai_server.requests[0].json
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


async def test_compatible_sends_max_tokens_by_default(openai_server: OpenAIServer,
                                                      http_pool: HttpPool) -> None:
    await compatible(openai_server, http_pool).chat("llama", ask(max_tokens=50), TIMEOUTS)
    body = openai_server.requests[0].json
    assert body["max_tokens"] == 50 and "max_completion_tokens" not in body


async def test_compatible_max_tokens_field_option(openai_server: OpenAIServer,
                                                  http_pool: HttpPool) -> None:
    p = compatible(openai_server, http_pool, max_tokens_field="max_completion_tokens")
    await p.chat("llama", ask(max_tokens=50), TIMEOUTS)
    assert openai_server.requests[0].json["max_completion_tokens"] == 50


async def test_compatible_reasoning_model_gets_max_completion_tokens(
        openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    await compatible(openai_server, http_pool).chat("o3-mini", ask(max_tokens=50), TIMEOUTS)
    assert openai_server.requests[0].json["max_completion_tokens"] == 50


async def test_reasoning_model_drops_sampling_params(openai_server: OpenAIServer,
                                                     http_pool: HttpPool) -> None:
    await openai(openai_server, http_pool).chat(
        "o4-mini", ask(temperature=0.2, top_p=0.9, reasoning_effort="low"), TIMEOUTS)
    body = openai_server.requests[0].json
    assert "temperature" not in body and "top_p" not in body
    assert body["reasoning_effort"] == "low"


async def test_sampling_params_sent(openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    await openai(openai_server, http_pool).chat(
        "gpt-4o", ask(temperature=0.2, top_p=0.9, stop=["END"], seed=7, user="u-1"), TIMEOUTS)
    body = openai_server.requests[0].json
    assert {k: body[k] for k in ("temperature", "top_p", "stop", "seed", "user")} == {
        "temperature": 0.2, "top_p": 0.9, "stop": ["END"], "seed": 7, "user": "u-1"}
    assert "stream" not in body and "tools" not in body


async def test_image_parts_sent_as_image_url(openai_server: OpenAIServer,
                                             http_pool: HttpPool) -> None:
    msg = Message(role="user", content=[
        TextPart("what is this?"),
        ImagePart("https://example.com/cat.png", detail="low"),
        ImagePart("data:image/png;base64,iVBORw0KGgo="),
    ])
    await openai(openai_server, http_pool).chat("gpt-4o", ChatRequest(messages=[msg]), TIMEOUTS)
    assert openai_server.requests[0].json["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png",
                                            "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]


async def test_assistant_tool_calls_and_tool_message_sent(openai_server: OpenAIServer,
                                                          http_pool: HttpPool) -> None:
    messages = [
        Message(role="system", content="be brief"),
        Message(role="user", content="weather?"),
        Message(role="assistant",
                tool_calls=[ToolCall("call_1", "get_weather", {"city": "Paris"})]),
        Message(role="tool", tool_call_id="call_1", content='{"temp": 21}'),
    ]
    await openai(openai_server, http_pool).chat("gpt-4o", ChatRequest(messages=messages),
                                                TIMEOUTS)
    sent = openai_server.requests[0].json["messages"]
    assert sent[0] == {"role": "system", "content": "be brief"}
    assert sent[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert sent[3] == {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_1"}


async def test_tools_tool_choice_and_parallel_tool_calls_sent(openai_server: OpenAIServer,
                                                              http_pool: HttpPool) -> None:
    tool = Tool("get_weather", "Weather for a city",
                {"type": "object", "properties": {"city": {"type": "string"}}}, strict=True)
    await openai(openai_server, http_pool).chat(
        "gpt-4o", ask(tools=[tool], tool_choice="required", parallel_tool_calls=False), TIMEOUTS)
    body = openai_server.requests[0].json
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city", "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("required", False)


async def test_tool_choice_tool_name_becomes_function_choice(openai_server: OpenAIServer,
                                                             http_pool: HttpPool) -> None:
    await openai(openai_server, http_pool).chat(
        "gpt-4o", ask(tools=[Tool("f")], tool_choice="f"), TIMEOUTS)
    assert openai_server.requests[0].json["tool_choice"] == {
        "type": "function", "function": {"name": "f"}}


async def test_json_schema_response_format_sent(openai_server: OpenAIServer,
                                                http_pool: HttpPool) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = ResponseFormat("json_schema", schema=schema, name="answer", strict=True)
    await openai(openai_server, http_pool).chat("gpt-4o", ask(response_format=fmt), TIMEOUTS)
    assert openai_server.requests[0].json["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "answer", "schema": schema,
                                               "strict": True}}


async def test_json_object_response_format_sent(openai_server: OpenAIServer,
                                                http_pool: HttpPool) -> None:
    await openai(openai_server, http_pool).chat(
        "gpt-4o", ask(response_format=ResponseFormat("json_object")), TIMEOUTS)
    assert openai_server.requests[0].json["response_format"] == {"type": "json_object"}


async def test_extra_is_merged_last(openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    await openai(openai_server, http_pool).chat(
        "gpt-4o", ask(temperature=0.5, extra={"temperature": 0.1, "logprobs": True}), TIMEOUTS)
    body = openai_server.requests[0].json
    assert (body["temperature"], body["logprobs"]) == (0.1, True)


async def test_missing_key_is_auth_error_without_request(openai_server: OpenAIServer,
                                                         http_pool: HttpPool) -> None:
    err = await chat_error(openai(openai_server, http_pool, key=None))
    assert isinstance(err, AuthError) and "OPENAI_API_KEY" in err.message
    assert openai_server.request_count == 0


async def test_compatible_without_key_sends_no_authorization(openai_server: OpenAIServer,
                                                             http_pool: HttpPool) -> None:
    await compatible(openai_server, http_pool).chat("llama", ask(), TIMEOUTS)
    assert "Authorization" not in openai_server.requests[0].headers


# -- chat: errors -----------------------------------------------------------------------------


async def error_for(server: OpenAIServer, pool: HttpPool, reply: Reply) -> LlmError:
    server.enqueue(reply)
    return await chat_error(openai(server, pool))


async def test_context_length_exceeded_is_context_window(openai_server: OpenAIServer,
                                                         http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool, error_reply("context_length_exceeded"))
    assert isinstance(err, ContextWindowError) and err.status == 400
    assert (err.provider_code, err.provider_type) == ("context_length_exceeded",
                                                      "invalid_request_error")
    assert not err.retryable and err.target is None


async def test_maximum_context_length_message_without_code_is_context_window(
        openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    body = {"error": {"message": "This model's maximum context length is 8192 tokens.",
                      "type": "invalid_request_error", "param": None, "code": None}}
    err = await error_for(openai_server, http_pool, json_reply(body, status=400))
    assert isinstance(err, ContextWindowError)


async def test_content_policy_violation_is_content_policy(openai_server: OpenAIServer,
                                                          http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool, error_reply("content_policy_violation"))
    assert isinstance(err, ContentPolicyError)


async def test_other_400_is_invalid_request(openai_server: OpenAIServer,
                                            http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool, error_reply("invalid_request"))
    assert isinstance(err, InvalidRequestError)
    assert err.provider_message == "Unrecognized request argument supplied: frobnicate"


async def test_invalid_api_key_is_auth(openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool, error_reply("invalid_api_key"))
    assert isinstance(err, AuthError) and err.status == 401 and not err.retryable


async def test_403_is_permission_denied(openai_server: OpenAIServer,
                                        http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool,
                          error_reply("unsupported_country_region_territory"))
    assert isinstance(err, PermissionDeniedError)


async def test_model_not_found_is_not_found(openai_server: OpenAIServer,
                                            http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool, error_reply("model_not_found"))
    assert isinstance(err, NotFoundError) and err.provider_code == "model_not_found"


async def test_rate_limit_is_retryable_with_retry_after(openai_server: OpenAIServer,
                                                        http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool,
                          error_reply("rate_limit_exceeded", headers={"retry-after": "2"}))
    assert isinstance(err, RateLimitError) and err.retryable and err.retry_after == 2.0


async def test_insufficient_quota_is_quota_exhausted_not_retryable(
        openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool,
                          error_reply("insufficient_quota", headers={"x-should-retry": "true"}))
    assert isinstance(err, QuotaExhaustedError) and err.status == 429 and not err.retryable


async def test_500_is_server_error(openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool, error_reply("server_error"))
    assert isinstance(err, ServerError) and err.retryable


async def test_503_is_overloaded(openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool, error_reply("overloaded"))
    assert isinstance(err, OverloadedError) and err.status == 503


async def test_retry_after_ms_wins_over_retry_after(openai_server: OpenAIServer,
                                                    http_pool: HttpPool) -> None:
    headers = {"retry-after-ms": "250", "retry-after": "9"}
    err = await error_for(openai_server, http_pool, error_reply("server_error", headers=headers))
    assert err.retry_after == 0.25


async def test_x_should_retry_false_overrides_retryable(openai_server: OpenAIServer,
                                                        http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool,
                          error_reply("server_error", headers={"x-should-retry": "false"}))
    assert isinstance(err, ServerError) and not err.retryable


async def test_x_should_retry_true_makes_4xx_retryable(openai_server: OpenAIServer,
                                                       http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool,
                          error_reply("invalid_request", headers={"x-should-retry": "true"}))
    assert isinstance(err, InvalidRequestError) and err.retryable


async def test_html_error_body_is_server_error_with_text(openai_server: OpenAIServer,
                                                         http_pool: HttpPool) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    err = await error_for(openai_server, http_pool,
                          Reply(status=502, raw=page, content_type="text/html"))
    assert isinstance(err, ServerError) and err.status == 502 and "Bad Gateway" in err.message


async def test_api_key_never_in_error(openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {KEY}.",
                      "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    err = await error_for(openai_server, http_pool, json_reply(body, status=401))
    for text in (str(err), repr(err), err.message, err.provider_message or ""):
        assert KEY not in text and "abcdefghijklmnop" not in text


async def test_200_with_error_body_raises_mapped_error(openai_server: OpenAIServer,
                                                       http_pool: HttpPool) -> None:
    err = await error_for(openai_server, http_pool,
                          json_reply(error_body("context_length_exceeded")))
    assert isinstance(err, ContextWindowError)


# -- streaming --------------------------------------------------------------------------------


async def test_stream_yields_text_deltas_then_final_chunk(openai_server: OpenAIServer,
                                                          http_pool: HttpPool) -> None:
    openai_server.enqueue(stream_reply(text_events(["Hel", "lo", " wörld ✓"],
                                                   usage_=usage(30, 4, cached=8))))
    chunks = await collect(openai(openai_server, http_pool).stream("gpt-4o", ask(), TIMEOUTS))
    assert "".join(c.delta for c in chunks) == "Hello wörld ✓"
    assert all(c.finish_reason is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.final_tool_calls == []
    assert final.usage is not None and (final.usage.input_tokens, final.usage.cached_tokens) == (
        30, 8)


async def test_stream_sends_stream_true_and_include_usage(openai_server: OpenAIServer,
                                                          http_pool: HttpPool) -> None:
    openai_server.enqueue(stream_reply(text_events(["x"])))
    await collect(openai(openai_server, http_pool).stream("gpt-4o", ask(), TIMEOUTS))
    req = openai_server.requests[0]
    assert req.json["stream"] is True
    assert req.json["stream_options"] == {"include_usage": True}
    assert req.headers["Accept"] == "text/event-stream"


async def test_compatible_stream_usage_false_omits_stream_options(
        openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    events = text_events(["x"])[:-1]  # no usage chunk
    openai_server.enqueue(stream_reply(events))
    p = compatible(openai_server, http_pool, stream_usage=False)
    chunks = await collect(p.stream("llama", ask(), TIMEOUTS))
    assert "stream_options" not in openai_server.requests[0].json
    assert chunks[-1].usage is None and not p.capabilities("llama").streaming_usage


async def test_stream_assembles_parallel_tool_calls_from_fragments(
        openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    calls = [("call_a", "get_weather", '{"city": "Paris", "unit": "c"}'),
             ("call_b", "get_time", '{"tz": "Europe/Paris"}')]
    openai_server.enqueue(stream_reply(tool_call_events(calls, fragment=3)))
    chunks = await collect(openai(openai_server, http_pool).stream("gpt-4o", ask(), TIMEOUTS))
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.final_tool_calls == [
        ToolCall("call_a", "get_weather", {"city": "Paris", "unit": "c"}),
        ToolCall("call_b", "get_time", {"tz": "Europe/Paris"})]
    deltas = [d for c in chunks for d in c.tool_calls]
    assert {d.index for d in deltas} == {0, 1}
    assert "".join(d.arguments for d in deltas if d.index == 1) == '{"tz": "Europe/Paris"}'


async def test_stream_interleaved_tool_call_fragments_keyed_by_index(
        openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    def tc(index: int, **fn: str) -> dict[str, Any]:
        d: dict[str, Any] = {"index": index, "function": fn}
        return d
    events = [
        chunk({"tool_calls": [{**tc(0, name="a", arguments=""), "id": "c0", "type": "function"},
                              {**tc(1, name="b", arguments='{"y"'), "id": "c1",
                               "type": "function"}]}),
        chunk({"tool_calls": [tc(0, arguments='{"x":'), tc(1, arguments=":2}")]}),
        chunk({"tool_calls": [tc(0, arguments="1}")]}),
        chunk({}, finish_reason="tool_calls"),
    ]
    openai_server.enqueue(stream_reply(events))
    chunks = await collect(openai(openai_server, http_pool).stream("gpt-4o", ask(), TIMEOUTS))
    assert chunks[-1].final_tool_calls == [ToolCall("c0", "a", {"x": 1}),
                                           ToolCall("c1", "b", {"y": 2})]


async def test_stream_error_event_raises_mapped_error(openai_server: OpenAIServer,
                                                      http_pool: HttpPool) -> None:
    events = [chunk({"content": "par"}), error_body("server_error")]
    openai_server.enqueue(stream_reply(events, done=False))
    got: list[str] = []
    with pytest.raises(ServerError) as info:
        async for c in openai(openai_server, http_pool).stream("gpt-4o", ask(), TIMEOUTS):
            got.append(c.delta)
    assert got == ["par"] and info.value.status is None
    assert info.value.provider_type == "server_error"


async def test_stream_http_error_raises_before_any_chunk(openai_server: OpenAIServer,
                                                         http_pool: HttpPool) -> None:
    openai_server.enqueue(error_reply("rate_limit_exceeded", headers={"retry-after-ms": "120"}))
    with pytest.raises(RateLimitError) as info:
        await collect(openai(openai_server, http_pool).stream("gpt-4o", ask(), TIMEOUTS))
    assert info.value.retry_after == 0.12


async def test_stream_without_done_after_finish_reason_completes(
        openai_server: OpenAIServer, http_pool: HttpPool) -> None:
    openai_server.enqueue(stream_reply(text_events(["ok"]), done=False))
    chunks = await collect(compatible(openai_server, http_pool).stream("m", ask(), TIMEOUTS))
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage is not None


async def test_stream_abandoned_by_break_closes_connection(openai_server: OpenAIServer,
                                                           http_pool: HttpPool) -> None:
    openai_server.enqueue(stream_reply(text_events(["a", "b"]), stall_after=3))
    async for _ in openai(openai_server, http_pool).stream("gpt-4o", ask(), TIMEOUTS):
        break  # the generator is finalized when dropped
    assert await openai_server.wait_connections(0) == 0


# -- timeouts and transport failures ----------------------------------------------------------


async def test_first_token_timeout_when_headers_are_late(openai_server: OpenAIServer,
                                                         http_pool: HttpPool) -> None:
    openai_server.enqueue(Reply(json=completion(), delay=5.0))
    with pytest.raises(TimeoutError_) as info:
        await openai(openai_server, http_pool).chat("gpt-4o", ask(), SHORT)
    assert info.value.timeout_kind == "first_token"


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A listening socket whose accept queue is full: a new connect never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    yield port
    for s in fillers:
        s.close()
    listener.close()


async def test_connect_timeout_is_timeout_connect(full_backlog_port: int,
                                                  http_pool: HttpPool) -> None:
    config = ProviderConfig(name="x", kind="openai",
                            base_url=f"http://127.0.0.1:{full_backlog_port}/v1",
                            api_key=SecretStr(KEY), headers={}, options={})
    timeouts = Timeouts(connect=0.1, first_token=5.0, total=5.0, idle=5.0)
    with pytest.raises(TimeoutError_) as info:
        await OpenAIProvider(config, http_pool).chat("gpt-4o", ask(), timeouts)
    assert info.value.timeout_kind == "connect" and info.value.error_class is ErrorClass.TIMEOUT


# -- base helpers -----------------------------------------------------------------------------


def test_parse_retry_after_seconds_ms_date_and_garbage() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    value = parse_retry_after({"retry-after": future})
    assert value is not None and 25 < value <= 30


@pytest.mark.parametrize(("status", "cls"), [
    (400, ErrorClass.INVALID_REQUEST), (401, ErrorClass.AUTH), (403, ErrorClass.PERMISSION),
    (404, ErrorClass.NOT_FOUND), (408, ErrorClass.TIMEOUT), (409, ErrorClass.SERVER),
    (413, ErrorClass.CONTEXT_WINDOW), (422, ErrorClass.INVALID_REQUEST),
    (429, ErrorClass.RATE_LIMIT), (500, ErrorClass.SERVER), (502, ErrorClass.SERVER),
    (503, ErrorClass.OVERLOADED), (529, ErrorClass.OVERLOADED), (504, ErrorClass.SERVER),
    (418, ErrorClass.INVALID_REQUEST),
])
def test_classify_status_default_table(status: int, cls: ErrorClass) -> None:
    assert classify_status(status) is cls


def test_provider_config_repr_hides_key_and_header_values() -> None:
    config = ProviderConfig(name="o", kind="openai", base_url=None, api_key=SecretStr(KEY),
                            headers={"api-key": "secret-header-value"}, options={})
    assert KEY not in repr(config) and "secret-header-value" not in repr(config)
    provider = OpenAIProvider(config, HttpPool())
    assert KEY not in repr(provider)


async def test_http_pool_aclose_is_idempotent_and_spares_a_callers_session(
        openai_server: OpenAIServer) -> None:
    async with aiohttp.ClientSession() as session:
        pool = HttpPool(session=session)
        p = openai(openai_server, pool)
        await p.chat("gpt-4o", ask(), TIMEOUTS)
        await pool.aclose()
        await pool.aclose()
        assert not session.closed


async def test_http_pool_reuses_one_connection(openai_server: OpenAIServer,
                                               http_pool: HttpPool) -> None:
    p = openai(openai_server, http_pool)
    for _ in range(3):
        await p.chat("gpt-4o", ask(), TIMEOUTS)
    assert len({r.peer for r in openai_server.requests}) == 1
    assert openai_server.open_connections == 1


def test_request_body_is_compact_json() -> None:
    assert dumps_json({"a": [1, 2], "b": "é"}) == json.dumps(
        {"a": [1, 2], "b": "é"}, separators=(",", ":"), ensure_ascii=False).encode()


async def test_infinite_timeouts_mean_no_limit(openai_server: OpenAIServer,
                                               http_pool: HttpPool) -> None:
    inf = float("inf")
    p = openai(openai_server, http_pool)
    r = await p.chat("gpt-4o", ask(), Timeouts(connect=inf, first_token=inf, total=inf, idle=inf))
    assert r.text == "Hello!"


async def test_compatible_reasoning_content_is_kept(openai_server: OpenAIServer,
                                                    http_pool: HttpPool) -> None:
    body = completion("42")
    body["choices"][0]["message"]["reasoning_content"] = "think think"
    openai_server.enqueue(json_reply(body))
    r = await compatible(openai_server, http_pool).chat("deepseek-reasoner", ask(), TIMEOUTS)
    assert (r.text, r.reasoning) == ("42", "think think")


async def test_stream_ignores_keepalive_comments(openai_server: OpenAIServer,
                                                 http_pool: HttpPool) -> None:
    events: list[Any] = [b": OPENROUTER PROCESSING\n\n", *text_events(["a"]), b": ping\r\n\r\n"]
    openai_server.enqueue(stream_reply(events))
    chunks = await collect(compatible(openai_server, http_pool).stream("m", ask(), TIMEOUTS))
    assert [c.delta for c in chunks] == ["a", ""] and chunks[-1].finish_reason == "stop"


def test_compatible_without_base_url_is_config_error() -> None:
    config = ProviderConfig(name="groq", kind="openai-compatible", base_url=None)
    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompatibleProvider(config, HttpPool())
