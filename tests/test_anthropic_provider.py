"""AnthropicProvider against the loopback server in tests/servers/anthropic.py: real status
codes, error bodies and named SSE events. The server rejects (400) any request the real API
would reject, so every test also checks that what was sent is valid."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from router.errors import (
    AuthError,
    ConfigError,
    ContextWindowError,
    ErrorClass,
    InvalidRequestError,
    LlmError,
    NetworkError,
    OverloadedError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
)
from router.providers._anthropic_stream import StreamAssembler
from router.providers.anthropic import AnthropicProvider
from router.providers.base import HttpPool, ProviderConfig, Timeouts
from router.providers.sse import SSEDecoder
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
from tests.servers.anthropic import (
    ERRORS,
    MESSAGE_STOP,
    PING,
    AnthropicServer,
    Reply,
    block_delta,
    block_start,
    block_stop,
    error_body,
    error_reply,
    json_reply,
    message,
    message_delta,
    message_start,
    named_error_body,
    sse_bytes,
    stream_reply,
    text_block,
    text_events,
    thinking_block,
    thinking_events,
    tool_events,
    tool_use_block,
    usage,
    validate_request,
)

KEY = "sk-ant-api03-test-abcdefghijklmnopqrstuvwxyz1234"
MODEL = "claude-haiku-4-5"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)
WEATHER = Tool("get_weather", "Weather for a city",
               {"type": "object", "properties": {"city": {"type": "string"}}})


@pytest.fixture
async def server() -> AsyncIterator[AnthropicServer]:
    async with AnthropicServer() as s:
        yield s


def anthropic(server: AnthropicServer, pool: HttpPool, *, key: str | None = KEY,
              options: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None) -> AnthropicProvider:
    config = ProviderConfig(name="anthropic", kind="anthropic", base_url=server.base_url,
                            api_key=SecretStr(key) if key else None,
                            headers=headers or {}, options=options or {})
    return AnthropicProvider(config, pool)


def ask(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


async def sent(server: AnthropicServer, pool: HttpPool, request: ChatRequest,
               model: str = MODEL) -> dict[str, Any]:
    """Make one call and return the body the server accepted."""
    await anthropic(server, pool).chat(model, request, TIMEOUTS)
    assert server.problems == []
    body: dict[str, Any] = server.requests[-1].json
    return body


async def chat_error(server: AnthropicServer, pool: HttpPool, reply: Reply) -> LlmError:
    server.enqueue(reply)
    with pytest.raises(LlmError) as info:
        await anthropic(server, pool).chat(MODEL, ask(), TIMEOUTS)
    return info.value


# -- what is sent ---------------------------------------------------------------------------


async def test_sends_key_version_and_json_to_v1_messages(server: AnthropicServer,
                                                         http_pool: HttpPool) -> None:
    await anthropic(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    req = server.requests[0]
    assert req.path == "/v1/messages" and req.method == "POST"
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["content-type"] == "application/json"
    assert "Authorization" not in req.headers


async def test_anthropic_version_option_is_sent(server: AnthropicServer,
                                                http_pool: HttpPool) -> None:
    p = anthropic(server, http_pool, options={"anthropic_version": "2024-01-01"})
    await p.chat(MODEL, ask(), TIMEOUTS)
    assert server.requests[0].headers["anthropic-version"] == "2024-01-01"


async def test_config_headers_are_sent(server: AnthropicServer, http_pool: HttpPool) -> None:
    p = anthropic(server, http_pool, headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    await p.chat(MODEL, ask(), TIMEOUTS)
    assert server.requests[0].headers["anthropic-beta"] == "prompt-caching-2024-07-31"


async def test_missing_key_is_auth_error_without_request(server: AnthropicServer,
                                                         http_pool: HttpPool) -> None:
    with pytest.raises(AuthError, match="ANTHROPIC_API_KEY") as info:
        await anthropic(server, http_pool, key=None).chat(MODEL, ask(), TIMEOUTS)
    assert not info.value.retryable and server.request_count == 0


async def test_system_messages_move_to_top_level_system(server: AnthropicServer,
                                                        http_pool: HttpPool) -> None:
    messages = [Message("system", "Be brief."), Message("user", "hi"),
                Message("system", "Answer in French.")]
    body = await sent(server, http_pool, ChatRequest(messages=messages))
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "hi"}]


async def test_consecutive_same_role_messages_are_merged(server: AnthropicServer,
                                                         http_pool: HttpPool) -> None:
    messages = [Message("user", "one"), Message("user", "two"), Message("assistant", "a"),
                Message("assistant", "b"), Message("user", "three")]
    body = await sent(server, http_pool, ChatRequest(messages=messages))
    assert body["messages"] == [
        {"role": "user", "content": [text_block("one"), text_block("two")]},
        {"role": "assistant", "content": [text_block("a"), text_block("b")]},
        {"role": "user", "content": "three"},
    ]


async def test_tool_round_trip_sent_as_tool_use_and_tool_result(server: AnthropicServer,
                                                                http_pool: HttpPool) -> None:
    messages = [
        Message("user", "weather?"),
        Message("assistant", "Let me check.",
                tool_calls=[ToolCall("toolu_01A", "get_weather", {"city": "Paris"})]),
        Message("tool", '{"temp": 21}', tool_call_id="toolu_01A"),
    ]
    body = await sent(server, http_pool, ChatRequest(messages=messages, tools=[WEATHER]))
    assert body["messages"][1] == {"role": "assistant", "content": [
        text_block("Let me check."),
        tool_use_block("toolu_01A", "get_weather", {"city": "Paris"})]}
    assert body["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01A",
         "content": [text_block('{"temp": 21}')]}]}


async def test_consecutive_tool_results_merge_into_one_user_turn(server: AnthropicServer,
                                                                 http_pool: HttpPool) -> None:
    calls = [ToolCall("toolu_1", "get_weather", {"city": "Paris"}),
             ToolCall("toolu_2", "get_weather", {"city": "Rome"})]
    messages = [Message("user", "both?"), Message("assistant", tool_calls=calls),
                Message("tool", "21", tool_call_id="toolu_1"),
                Message("tool", "25", tool_call_id="toolu_2")]
    body = await sent(server, http_pool, ChatRequest(messages=messages, tools=[WEATHER]))
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert [b["tool_use_id"] for b in body["messages"][2]["content"]] == ["toolu_1", "toolu_2"]


async def test_tool_results_come_before_user_text_in_the_merged_turn(
        server: AnthropicServer, http_pool: HttpPool) -> None:
    messages = [Message("user", "weather?"),
                Message("assistant", tool_calls=[ToolCall("toolu_1", "get_weather", {})]),
                Message("tool", "21", tool_call_id="toolu_1"), Message("user", "and now?")]
    body = await sent(server, http_pool, ChatRequest(messages=messages, tools=[WEATHER]))
    assert [b["type"] for b in body["messages"][2]["content"]] == ["tool_result", "text"]


async def test_replayed_invalid_arguments_are_sent_as_an_object(server: AnthropicServer,
                                                                http_pool: HttpPool) -> None:
    messages = [Message("user", "x"),
                Message("assistant", tool_calls=[ToolCall("toolu_1", "f", {"_raw": '{"a": 1'})]),
                Message("tool", "ok", tool_call_id="toolu_1")]
    body = await sent(server, http_pool, ChatRequest(messages=messages, tools=[Tool("f")]))
    assert body["messages"][1]["content"][0]["input"] == {"_raw": '{"a": 1'}


async def test_conversation_opening_with_assistant_gets_a_user_turn_first(
        server: AnthropicServer, http_pool: HttpPool) -> None:
    messages = [Message("system", "s"), Message("assistant", "Hi, how can I help?"),
                Message("user", "hi")]
    body = await sent(server, http_pool, ChatRequest(messages=messages))
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


async def test_final_assistant_prefill_loses_trailing_whitespace(server: AnthropicServer,
                                                                 http_pool: HttpPool) -> None:
    messages = [Message("user", "Name a color."), Message("assistant", "The color is ")]
    body = await sent(server, http_pool, ChatRequest(messages=messages))
    assert body["messages"][-1] == {"role": "assistant", "content": "The color is"}


async def test_empty_texts_are_not_sent(server: AnthropicServer, http_pool: HttpPool) -> None:
    messages = [Message("user", [TextPart(""), TextPart("hi")]), Message("assistant", ""),
                Message("user", "again")]
    body = await sent(server, http_pool, ChatRequest(messages=messages))
    assert body["messages"] == [{"role": "user", "content": [text_block("hi"),
                                                             text_block("again")]}]


async def test_tools_sent_with_input_schema(server: AnthropicServer,
                                            http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(tools=[WEATHER, Tool("ping")]))
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "ping", "input_schema": {"type": "object", "properties": {}}}]
    assert "tool_choice" not in body


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ("get_weather", {"type": "tool", "name": "get_weather"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
])
async def test_tool_choice_maps_to_anthropic_shape(server: AnthropicServer, http_pool: HttpPool,
                                                   choice: Any, expected: dict[str, Any]) -> None:
    body = await sent(server, http_pool, ask(tools=[WEATHER], tool_choice=choice))
    assert body["tool_choice"] == expected


async def test_parallel_tool_calls_false_disables_parallel_tool_use(
        server: AnthropicServer, http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(tools=[WEATHER], parallel_tool_calls=False))
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_data_url_image_sent_as_base64_source(server: AnthropicServer,
                                                    http_pool: HttpPool) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    msg = Message("user", [TextPart("what is this?"), ImagePart(f"data:image/png;base64,{png}")])
    body = await sent(server, http_pool, ChatRequest(messages=[msg]))
    assert body["messages"][0]["content"] == [
        text_block("what is this?"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}}]


async def test_http_image_sent_as_url_source(server: AnthropicServer,
                                             http_pool: HttpPool) -> None:
    msg = Message("user", [ImagePart("https://example.com/cat.jpg", detail="low")])
    body = await sent(server, http_pool, ChatRequest(messages=[msg]))
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


async def test_images_in_assistant_turns_are_not_sent(server: AnthropicServer,
                                                      http_pool: HttpPool) -> None:
    messages = [Message("user", "draw"),
                Message("assistant", [TextPart("here"), ImagePart("https://x.test/a.png")]),
                Message("user", "thanks")]
    body = await sent(server, http_pool, ChatRequest(messages=messages))
    assert body["messages"][1] == {"role": "assistant", "content": "here"}


async def test_max_tokens_from_request_is_sent(server: AnthropicServer,
                                               http_pool: HttpPool) -> None:
    assert (await sent(server, http_pool, ask(max_tokens=77)))["max_tokens"] == 77


@pytest.mark.parametrize(("model", "expected"), [
    ("claude-sonnet-4-5-20250929", 8192),  # 64k output limit, capped
    ("claude-3-haiku-20240307", 4096),  # its own limit
    ("claude-next-preview", 4096),  # not in the catalog
])
async def test_default_max_tokens_follows_the_catalog(server: AnthropicServer,
                                                      http_pool: HttpPool, model: str,
                                                      expected: int) -> None:
    assert (await sent(server, http_pool, ask(), model=model))["max_tokens"] == expected


async def test_sampling_stop_and_user_sent_seed_dropped(server: AnthropicServer,
                                                        http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(temperature=0.2, top_p=0.9, stop=["END"], seed=7,
                                             user="u-1"))
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (0.2, 0.9, ["END"])
    assert body["metadata"] == {"user_id": "u-1"} and "seed" not in body and "stop" not in body


async def test_json_schema_forces_the_answer_tool(server: AnthropicServer,
                                                  http_pool: HttpPool) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = ResponseFormat("json_schema", schema=schema, name="answer")
    body = await sent(server, http_pool, ask(response_format=fmt))
    assert body["tools"][0]["name"] == "answer" and body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}
    assert "response_format" not in body


async def test_json_schema_with_user_tools_lets_the_model_pick_any_tool(
        server: AnthropicServer, http_pool: HttpPool) -> None:
    fmt = ResponseFormat("json_schema", schema={"type": "object"}, name="answer")
    body = await sent(server, http_pool, ask(tools=[WEATHER], response_format=fmt))
    assert [t["name"] for t in body["tools"]] == ["get_weather", "answer"]
    assert body["tool_choice"] == {"type": "any"}


async def test_json_object_adds_a_system_instruction(server: AnthropicServer,
                                                     http_pool: HttpPool) -> None:
    req = ChatRequest(messages=[Message("system", "Be brief."), Message("user", "hi")],
                      response_format=ResponseFormat("json_object"))
    body = await sent(server, http_pool, req)
    assert body["system"].startswith("Be brief.\n\n") and "JSON object" in body["system"]


async def test_thinking_extra_is_passed_through_with_room_for_the_answer(
        server: AnthropicServer, http_pool: HttpPool) -> None:
    thinking = {"type": "enabled", "budget_tokens": 10000}
    body = await sent(server, http_pool, ask(temperature=0.3, extra={"thinking": thinking}))
    assert body["thinking"] == thinking
    assert body["max_tokens"] == 8192 + 10000 and "temperature" not in body


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096),
                                                ("high", 16384)])
async def test_reasoning_effort_becomes_a_thinking_budget(server: AnthropicServer,
                                                          http_pool: HttpPool, effort: str,
                                                          budget: int) -> None:
    body = await sent(server, http_pool, ask(reasoning_effort=effort))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] > budget


async def test_reasoning_budget_shrinks_to_fit_the_callers_max_tokens(
        server: AnthropicServer, http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(reasoning_effort="high", max_tokens=6000))
    assert body["max_tokens"] == 6000 and body["thinking"]["budget_tokens"] == 3000


async def test_json_schema_with_thinking_asks_for_the_tool_instead_of_forcing_it(
        server: AnthropicServer, http_pool: HttpPool) -> None:
    fmt = ResponseFormat("json_schema", schema={"type": "object"}, name="answer")
    body = await sent(server, http_pool, ask(response_format=fmt, reasoning_effort="low"))
    assert "tool_choice" not in body and "`answer`" in body["system"]


async def test_extra_is_merged_last(server: AnthropicServer, http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(temperature=0.5, extra={"temperature": 0.1,
                                                                     "top_k": 5}))
    assert (body["temperature"], body["top_k"]) == (0.1, 5)


async def test_server_rejects_what_the_api_would_reject(server: AnthropicServer,
                                                        http_pool: HttpPool) -> None:
    # the fake is only useful if it says no: an extra field is refused like the real API does
    with pytest.raises(InvalidRequestError, match="frobnicate"):
        await anthropic(server, http_pool).chat(MODEL, ask(extra={"frobnicate": 1}), TIMEOUTS)


def test_validator_flags_role_order_system_role_and_orphan_tool_result() -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": [
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": [tool_use_block("toolu_1", "f", {})]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]},
    ]}
    problems = " | ".join(validate_request(body))
    for expected in ("system prompts go in the top-level system field", "must alternate",
                     "do not answer the tool_use ids"):
        assert expected in problems


# -- what comes back ------------------------------------------------------------------------


async def test_chat_returns_text_usage_model_and_request_id(server: AnthropicServer,
                                                            http_pool: HttpPool) -> None:
    server.enqueue(json_reply(message([text_block("Hi "), text_block("there")],
                                      usage_=usage(20, 3))))
    r = await anthropic(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.text, r.finish_reason, r.model, r.target) == (
        "Hi there", "stop", "claude-haiku-4-5-20251001", "")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (20, 3)
    assert r.request_id is not None and r.request_id.startswith("req_")
    assert r.id == "msg_01XFDUDYJgAACzvnptvVoYEL" and r.reasoning is None


async def test_usage_counts_cache_reads_and_writes_as_input(server: AnthropicServer,
                                                            http_pool: HttpPool) -> None:
    u = usage(50, 7, cache_read=1000, cache_creation=200)
    server.enqueue(json_reply(message([text_block("ok")], usage_=u)))
    r = await anthropic(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.usage.input_tokens, r.usage.cached_tokens, r.usage.output_tokens) == (1250, 1000, 7)


async def test_chat_parses_tool_use_blocks(server: AnthropicServer,
                                           http_pool: HttpPool) -> None:
    content = [text_block("Checking."), tool_use_block("toolu_1", "get_weather", {"city": "P"}),
               tool_use_block("toolu_2", "get_time", {})]
    server.enqueue(json_reply(message(content, stop_reason="tool_use")))
    r = await anthropic(server, http_pool).chat(MODEL, ask(tools=[WEATHER]), TIMEOUTS)
    assert r.finish_reason == "tool_calls" and r.text == "Checking."
    assert r.tool_calls == [ToolCall("toolu_1", "get_weather", {"city": "P"}),
                            ToolCall("toolu_2", "get_time", {})]


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"),
    ("max_tokens", "length"), ("model_context_window_exceeded", "length"),
    ("refusal", "content_filter"), ("something_new", "stop"),
])
async def test_stop_reason_maps_to_finish_reason(server: AnthropicServer, http_pool: HttpPool,
                                                 stop_reason: str, finish: str) -> None:
    server.enqueue(json_reply(message([text_block("x")], stop_reason=stop_reason)))
    r = await anthropic(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert r.finish_reason == finish


async def test_thinking_blocks_go_to_reasoning_not_text(server: AnthropicServer,
                                                        http_pool: HttpPool) -> None:
    content = [thinking_block("Let me think: 6*7."), {"type": "redacted_thinking", "data": "x"},
               text_block("42")]
    server.enqueue(json_reply(message(content)))
    r = await anthropic(server, http_pool).chat(MODEL, ask(reasoning_effort="low"), TIMEOUTS)
    assert (r.text, r.reasoning) == ("42", "Let me think: 6*7.")


async def test_json_schema_answer_comes_back_as_text(server: AnthropicServer,
                                                     http_pool: HttpPool) -> None:
    fmt = ResponseFormat("json_schema", schema={"type": "object"}, name="answer")
    server.enqueue(json_reply(message([tool_use_block("toolu_1", "answer", {"a": 1})],
                                      stop_reason="tool_use")))
    r = await anthropic(server, http_pool).chat(MODEL, ask(response_format=fmt), TIMEOUTS)
    assert json.loads(r.text) == {"a": 1}
    assert r.tool_calls == [] and r.finish_reason == "stop"


async def test_json_schema_that_is_not_an_object_is_wrapped_and_unwrapped(
        server: AnthropicServer, http_pool: HttpPool) -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    fmt = ResponseFormat("json_schema", schema=schema, name="tags")
    server.enqueue(json_reply(message([tool_use_block("toolu_1", "tags", {"value": ["a"]})],
                                      stop_reason="tool_use")))
    r = await anthropic(server, http_pool).chat(MODEL, ask(response_format=fmt), TIMEOUTS)
    assert server.requests[0].json["tools"][0]["input_schema"]["properties"]["value"] == schema
    assert json.loads(r.text) == ["a"]


async def test_200_error_body_raises_mapped_error(server: AnthropicServer,
                                                  http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, json_reply(named_error_body("overloaded")))
    assert isinstance(err, OverloadedError) and err.status is None


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "error_class"), [
    ("invalid_request", ErrorClass.INVALID_REQUEST),
    ("prompt_too_long", ErrorClass.CONTEXT_WINDOW),
    ("context_limit", ErrorClass.CONTEXT_WINDOW),
    ("credit_balance", ErrorClass.QUOTA_EXHAUSTED),
    ("authentication", ErrorClass.AUTH),
    ("billing", ErrorClass.QUOTA_EXHAUSTED),
    ("permission", ErrorClass.PERMISSION),
    ("not_found", ErrorClass.NOT_FOUND),
    ("request_too_large", ErrorClass.CONTEXT_WINDOW),
    ("rate_limit", ErrorClass.RATE_LIMIT),
    ("spend_limit", ErrorClass.QUOTA_EXHAUSTED),
    ("api_error", ErrorClass.SERVER),
    ("timeout", ErrorClass.SERVER),
    ("overloaded", ErrorClass.OVERLOADED),
])
async def test_error_body_maps_to_error_class(server: AnthropicServer, http_pool: HttpPool,
                                              name: str, error_class: ErrorClass) -> None:
    err = await chat_error(server, http_pool, error_reply(name))
    status, type_, msg, _ = ERRORS[name]
    assert err.error_class is error_class and err.status == status
    assert (err.provider_type, err.provider_message, err.target) == (type_, msg, None)


async def test_prompt_too_long_reports_needed_tokens(server: AnthropicServer,
                                                     http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("prompt_too_long"))
    assert isinstance(err, ContextWindowError) and not err.retryable
    assert err.needed_tokens == 208656  # type: ignore[attr-defined]


async def test_context_limit_reports_input_plus_max_tokens(server: AnthropicServer,
                                                           http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("context_limit"))
    assert err.needed_tokens == 178959 + 64000  # type: ignore[attr-defined]


async def test_rate_limit_is_retryable_with_retry_after(server: AnthropicServer,
                                                        http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("rate_limit",
                                                          headers={"retry-after": "7"}))
    assert isinstance(err, RateLimitError) and err.retryable and err.retry_after == 7.0


async def test_spend_limit_429_is_quota_and_never_retried(server: AnthropicServer,
                                                          http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("spend_limit",
                                                          headers={"x-should-retry": "true"}))
    assert isinstance(err, QuotaExhaustedError) and not err.retryable
    assert err.provider_code == "enforced_spend_limit_reached"


async def test_credit_balance_400_is_quota_exhausted(server: AnthropicServer,
                                                     http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("credit_balance"))
    assert isinstance(err, QuotaExhaustedError) and err.status == 400 and not err.retryable


async def test_overloaded_529_is_retryable_with_retry_after(server: AnthropicServer,
                                                            http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("overloaded",
                                                          headers={"retry-after": "3"}))
    assert isinstance(err, OverloadedError) and err.retryable and err.retry_after == 3.0


async def test_x_should_retry_false_makes_a_5xx_final(server: AnthropicServer,
                                                      http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("api_error",
                                                          headers={"x-should-retry": "false"}))
    assert isinstance(err, ServerError) and not err.retryable


async def test_x_should_retry_true_makes_a_4xx_retryable(server: AnthropicServer,
                                                         http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("invalid_request",
                                                          headers={"x-should-retry": "true"}))
    assert isinstance(err, InvalidRequestError) and err.retryable


async def test_cloudflare_413_html_page_is_context_window(server: AnthropicServer,
                                                          http_pool: HttpPool) -> None:
    page = b"<html><body><h1>413 Request Entity Too Large</h1></body></html>"
    err = await chat_error(server, http_pool, Reply(status=413, raw=page,
                                                    content_type="text/html"))
    assert isinstance(err, ContextWindowError) and "Too Large" in err.message


async def test_api_key_never_in_error(server: AnthropicServer, http_pool: HttpPool) -> None:
    body = error_body("authentication_error", f"invalid x-api-key: {KEY}")
    err = await chat_error(server, http_pool, json_reply(body, status=401))
    assert isinstance(err, AuthError)
    for text in (str(err), repr(err), err.message, err.provider_message or ""):
        assert KEY not in text and "abcdefghijklmnop" not in text


# -- streaming ------------------------------------------------------------------------------


async def test_stream_yields_text_deltas_then_final_chunk(server: AnthropicServer,
                                                          http_pool: HttpPool) -> None:
    start = usage(30, 1, cache_read=8, cache_creation=2)
    server.enqueue(stream_reply(text_events(["Hel", "lo", " wörld ✓"], output=4,
                                            start_usage=start)))
    chunks = await collect(anthropic(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    assert "".join(c.delta for c in chunks) == "Hello wörld ✓"
    assert all(c.finish_reason is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.final_tool_calls == []
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.cached_tokens, final.usage.output_tokens) == (
        40, 8, 4)


async def test_stream_sends_stream_true_and_accepts_event_stream(server: AnthropicServer,
                                                                 http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(text_events(["x"])))
    await collect(anthropic(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    req = server.requests[0]
    assert req.json["stream"] is True and req.headers["accept"] == "text/event-stream"


async def test_stream_assembles_tool_input_from_many_fragments(server: AnthropicServer,
                                                               http_pool: HttpPool) -> None:
    arguments = '{"city": "Paris", "unit": "celsius", "days": [1, 2, 3]}'
    server.enqueue(stream_reply(tool_events([("toolu_1", "get_weather", arguments)],
                                            fragment=2)))
    chunks = await collect(anthropic(server, http_pool).stream(MODEL, ask(tools=[WEATHER]),
                                                              TIMEOUTS))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert deltas[0].id == "toolu_1" and deltas[0].name == "get_weather"
    assert "".join(d.arguments for d in deltas) == arguments and len(deltas) > 20
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert final.final_tool_calls == [ToolCall("toolu_1", "get_weather", json.loads(arguments))]


async def test_stream_tool_calls_are_indexed_in_start_order(server: AnthropicServer,
                                                            http_pool: HttpPool) -> None:
    calls = [("toolu_a", "get_weather", '{"city": "Rome"}'), ("toolu_b", "get_time", "{}")]
    server.enqueue(stream_reply(tool_events(calls, text="Checking both.")))
    chunks = await collect(anthropic(server, http_pool).stream(MODEL, ask(tools=[WEATHER]),
                                                              TIMEOUTS))
    assert "".join(c.delta for c in chunks) == "Checking both."
    assert {(d.index, d.id) for c in chunks for d in c.tool_calls if d.id} == {
        (0, "toolu_a"), (1, "toolu_b")}
    assert chunks[-1].final_tool_calls == [ToolCall("toolu_a", "get_weather", {"city": "Rome"}),
                                           ToolCall("toolu_b", "get_time", {})]


async def test_stream_thinking_goes_to_reasoning_delta_not_text(server: AnthropicServer,
                                                                http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(thinking_events(["Six ", "times seven."], ["4", "2"])))
    chunks = await collect(anthropic(server, http_pool).stream(
        MODEL, ask(reasoning_effort="low"), TIMEOUTS))
    assert "".join(c.delta for c in chunks) == "42"
    assert "".join(c.reasoning_delta for c in chunks) == "Six times seven."


async def test_stream_json_schema_answer_streams_as_text(server: AnthropicServer,
                                                         http_pool: HttpPool) -> None:
    fmt = ResponseFormat("json_schema", schema={"type": "object"}, name="answer")
    server.enqueue(stream_reply(tool_events([("toolu_1", "answer", '{"a": [1, 2]}')])))
    chunks = await collect(anthropic(server, http_pool).stream(MODEL, ask(response_format=fmt),
                                                              TIMEOUTS))
    assert json.loads("".join(c.delta for c in chunks)) == {"a": [1, 2]}
    assert all(not c.tool_calls for c in chunks)
    assert chunks[-1].final_tool_calls == [] and chunks[-1].finish_reason == "stop"


async def test_stream_error_event_raises_mapped_error(server: AnthropicServer,
                                                      http_pool: HttpPool) -> None:
    events = [*text_events(["par", "tial"])[:5], named_error_body("overloaded")]
    server.enqueue(stream_reply(events))
    got: list[str] = []
    with pytest.raises(OverloadedError) as info:
        async for c in anthropic(server, http_pool).stream(MODEL, ask(), TIMEOUTS):
            got.append(c.delta)
    assert got == ["par", "tial"] and info.value.status is None and info.value.retryable
    assert info.value.provider_type == "overloaded_error"


async def test_stream_http_error_raises_before_any_chunk(server: AnthropicServer,
                                                         http_pool: HttpPool) -> None:
    server.enqueue(error_reply("rate_limit", headers={"retry-after": "2"}))
    with pytest.raises(RateLimitError) as info:
        await collect(anthropic(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    assert info.value.retry_after == 2.0 and info.value.status == 429


async def test_stream_ignores_pings_comments_and_unknown_events(server: AnthropicServer,
                                                                http_pool: HttpPool) -> None:
    events: list[Any] = [b": keep-alive\n\n", message_start(), PING,
                         {"type": "some_future_event", "x": 1}, block_start(0, text_block("")),
                         block_delta(0, {"type": "citations_delta", "citation": {}}),
                         block_delta(0, {"type": "text_delta", "text": "ok"}), PING,
                         block_stop(0), message_delta(), MESSAGE_STOP]
    server.enqueue(stream_reply(events))
    chunks = await collect(anthropic(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    assert [c.delta for c in chunks] == ["ok", ""] and chunks[-1].finish_reason == "stop"


CUT_EVENTS = [*tool_events([("toolu_1", "get_weather", '{"city": "Paris"}')], text="Hi ✓")]
CUT_BODY = sse_bytes(CUT_EVENTS)


async def _stream_cut_at(cut: int) -> tuple[list[ChatChunk], LlmError | None]:
    chunks: list[ChatChunk] = []
    async with AnthropicServer() as s, HttpPool() as pool:
        s.enqueue(stream_reply(CUT_EVENTS, cut_at=cut))
        try:
            async for c in anthropic(s, pool).stream(MODEL, ask(tools=[WEATHER]), TIMEOUTS):
                chunks.append(c)
        except LlmError as e:
            return chunks, e
    return chunks, None


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(CUT_BODY)))
def test_stream_cut_at_any_byte_fails_as_network_error_or_completes(cut: int) -> None:
    chunks, error = asyncio.run(_stream_cut_at(cut))
    text = "".join(c.delta for c in chunks)
    if error is None:  # only the very end may be lost: the final blank line
        assert cut >= len(CUT_BODY) - 2
        assert text == "Hi ✓" and chunks[-1].final_tool_calls == [
            ToolCall("toolu_1", "get_weather", {"city": "Paris"})]
    else:
        assert isinstance(error, NetworkError) and "Hi ✓".startswith(text)
        assert all(c.finish_reason is None for c in chunks)


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(CUT_BODY)), max_size=40))
def test_assembled_answer_does_not_depend_on_how_bytes_are_split(cuts: list[int]) -> None:
    points = sorted({0, len(CUT_BODY), *cuts})
    decoder, assembler = SSEDecoder(), StreamAssembler()
    out = [assembler.feed(e.json()) for a, b in itertools.pairwise(points)
           for e in decoder.feed(CUT_BODY[a:b])]
    assert decoder.flush() == [] and assembler.stopped
    assert "".join(c.delta for c in out if c is not None) == "Hi ✓"
    assert assembler.tool_calls() == [ToolCall("toolu_1", "get_weather", {"city": "Paris"})]


# -- capabilities and configuration ---------------------------------------------------------


def test_capabilities_come_from_the_catalog() -> None:
    p = AnthropicProvider(ProviderConfig(name="a", kind="anthropic"), HttpPool())
    caps = p.capabilities("claude-sonnet-4-5-20250929")
    assert (caps.context_window, caps.max_output_tokens, caps.vision) == (200_000, 64_000, True)
    assert caps.json_schema and caps.tools and caps.streaming_usage
    assert not p.capabilities("claude-3-5-haiku-20241022").vision


def test_unknown_model_gets_class_defaults() -> None:
    p = AnthropicProvider(ProviderConfig(name="a", kind="anthropic"), HttpPool())
    caps = p.capabilities("claude-next")
    assert caps.context_window is None and caps.vision and caps.json_schema


def test_capabilities_option_overrides_the_catalog() -> None:
    config = ProviderConfig(name="a", kind="anthropic",
                            options={"capabilities": {"context_window": 1_000_000}})
    caps = AnthropicProvider(config, HttpPool()).capabilities("claude-sonnet-4-5")
    assert caps.context_window == 1_000_000


def test_bad_capabilities_option_is_config_error() -> None:
    config = ProviderConfig(name="a", kind="anthropic", options={"capabilities": {"wings": 2}})
    with pytest.raises(ConfigError, match="capabilities"):
        AnthropicProvider(config, HttpPool())


def test_default_base_url_has_no_version() -> None:
    assert AnthropicProvider.default_base_url == "https://api.anthropic.com"
    assert AnthropicProvider.key_env == "ANTHROPIC_API_KEY" and AnthropicProvider.kind == (
        "anthropic")
