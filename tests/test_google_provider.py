"""GoogleProvider against the loopback Gemini API in tests/servers/google.py (real status codes,
google.rpc.Status bodies, SSE bytes), plus its pure wire helpers.

Every request the provider sends passes ``validate_request`` (the server answers 400 otherwise),
and the tests that shape a request also assert ``server.violations == []``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from router.errors import (
    AuthError,
    ConfigError,
    ContentPolicyError,
    ContextWindowError,
    InvalidRequestError,
    LlmError,
    NetworkError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    ServerError,
    TimeoutError_,
)
from router.providers._google_schema import to_gemini_schema
from router.providers._google_wire import SKIP_SIGNATURE
from router.providers.base import HttpPool, ProviderConfig, Timeouts
from router.providers.google import GoogleProvider
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
from tests.servers.google import (
    ERRORS,
    GoogleServer,
    Reply,
    blocked,
    call_part,
    check_schema,
    chunk,
    error_body,
    error_reply,
    json_reply,
    response,
    stream_reply,
    text_events,
    text_part,
    usage,
)

KEY = "AIzaSyTESTabcdefghijklmnopqrstuvwxyz1234"
TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)
MODEL = "gemini-2.5-flash"
WEATHER = Tool("get_weather", "Weather for a city",
               {"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"]})


@pytest.fixture
async def server() -> AsyncIterator[GoogleServer]:
    async with GoogleServer() as s:
        yield s


def gemini(server: GoogleServer, pool: HttpPool, *, key: str | None = KEY,
           base_url: str | None = None, **options: Any) -> GoogleProvider:
    config = ProviderConfig(name="gemini", kind="google", base_url=base_url or server.base_url,
                            api_key=SecretStr(key) if key else None, options=options)
    return GoogleProvider(config, pool)


def ask(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


def sent(server: GoogleServer, index: int = 0) -> dict[str, Any]:
    assert server.violations == []
    body: dict[str, Any] = server.requests[index].json
    return body


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


async def chat_error(server: GoogleServer, pool: HttpPool, reply: Reply,
                     request: ChatRequest | None = None) -> LlmError:
    server.enqueue(reply)
    with pytest.raises(LlmError) as info:
        await gemini(server, pool).chat(MODEL, request or ask(), TIMEOUTS)
    return info.value


def tool_history() -> list[Message]:
    return [
        Message(role="system", content="be brief"),
        Message(role="user", content="weather in Paris and Rome?"),
        Message(role="assistant", content="Checking.", tool_calls=[
            ToolCall("call_0_get_weather", "get_weather", {"city": "Paris"}),
            ToolCall("call_1_get_weather", "get_weather", {"city": "Rome"})]),
        Message(role="tool", tool_call_id="call_1_get_weather", content='{"temp": 25}'),
        Message(role="tool", tool_call_id="call_0_get_weather", content="sunny, 21C"),
    ]


# -- chat: what comes back --------------------------------------------------------------------


async def test_chat_returns_text_usage_and_model_version(server: GoogleServer,
                                                         http_pool: HttpPool) -> None:
    server.enqueue(json_reply(response("Hi there", usage_=usage(20, 3))))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.text, r.finish_reason, r.model, r.target, r.id) == (
        "Hi there", "stop", "gemini-2.5-flash", "", "resp-1")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (20, 3)


async def test_chat_joins_text_parts(server: GoogleServer, http_pool: HttpPool) -> None:
    server.enqueue(json_reply(response(parts=[text_part("Hel"), text_part("lo")])))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert r.text == "Hello"


async def test_thought_parts_go_to_reasoning_not_text(server: GoogleServer,
                                                      http_pool: HttpPool) -> None:
    parts = [text_part("Let me think.", thought=True), text_part("42")]
    server.enqueue(json_reply(response(parts=parts)))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.text, r.reasoning) == ("42", "Let me think.")


async def test_thoughts_count_as_output_and_reasoning(server: GoogleServer,
                                                      http_pool: HttpPool) -> None:
    server.enqueue(json_reply(response(usage_=usage(100, 40, thoughts=60))))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.usage.output_tokens, r.usage.reasoning_tokens) == (100, 60)


async def test_cached_tokens_read_and_included_in_input(server: GoogleServer,
                                                        http_pool: HttpPool) -> None:
    server.enqueue(json_reply(response(usage_=usage(2000, 5, cached=1536))))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.usage.input_tokens, r.usage.cached_tokens) == (2000, 1536)


async def test_tool_use_prompt_tokens_count_as_input(server: GoogleServer,
                                                     http_pool: HttpPool) -> None:
    server.enqueue(json_reply(response(usage_=usage(100, 5, tool_use=30))))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert r.usage.input_tokens == 130


async def test_function_calls_get_positional_ids(server: GoogleServer,
                                                 http_pool: HttpPool) -> None:
    parts = [call_part("get_weather", {"city": "Paris"}), call_part("get_time", {})]
    server.enqueue(json_reply(response(parts=parts)))
    r = await gemini(server, http_pool).chat(MODEL, ask(tools=[WEATHER]), TIMEOUTS)
    assert r.finish_reason == "tool_calls" and r.text == ""
    assert r.tool_calls == [ToolCall("call_0_get_weather", "get_weather", {"city": "Paris"}),
                            ToolCall("call_1_get_time", "get_time", {})]


async def test_function_call_ids_are_stable_across_calls(server: GoogleServer,
                                                         http_pool: HttpPool) -> None:
    parts = [call_part("get_weather", {"city": "Paris"}), call_part("get_weather", {})]
    server.enqueue(json_reply(response(parts=parts)), json_reply(response(parts=parts)))
    p = gemini(server, http_pool)
    first = await p.chat(MODEL, ask(), TIMEOUTS)
    second = await p.chat(MODEL, ask(), TIMEOUTS)
    assert [c.id for c in first.tool_calls] == [c.id for c in second.tool_calls]
    assert len({c.id for c in first.tool_calls}) == 2


async def test_function_call_id_sent_by_gemini_is_kept(server: GoogleServer,
                                                       http_pool: HttpPool) -> None:
    server.enqueue(json_reply(response(parts=[call_part("f", {"a": 1}, id_="fc-9")])))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert r.tool_calls == [ToolCall("fc-9", "f", {"a": 1})]


@pytest.mark.parametrize(("finish", "expected"), [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"), ("LANGUAGE", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"),
    ("SPII", "content_filter"), ("IMAGE_SAFETY", "content_filter"),
    ("IMAGE_PROHIBITED_CONTENT", "content_filter"), ("OTHER", "stop"),
    ("MALFORMED_FUNCTION_CALL", "stop"), ("FINISH_REASON_UNSPECIFIED", "stop"),
    ("SOMETHING_NEW", "stop"), (None, "stop"),
])
async def test_finish_reason_of_an_answer_with_text(server: GoogleServer, http_pool: HttpPool,
                                                    finish: str | None, expected: str) -> None:
    server.enqueue(json_reply(response("partial", finish_reason=finish)))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.text, r.finish_reason) == ("partial", expected)


@pytest.mark.parametrize("finish", ["SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST",
                                    "SPII", "IMAGE_SAFETY", "LANGUAGE"])
async def test_filter_finish_without_content_is_a_refusal(
        server: GoogleServer, http_pool: HttpPool, finish: str) -> None:
    # Issue 12: a refusal, not an error; the engine applies the route's content_policy action.
    server.enqueue(json_reply(response(None, finish_reason=finish)))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.text, r.tool_calls, r.finish_reason) == ("", [], "content_filter")
    assert r.refusal == f"Gemini withheld the answer (finishReason {finish})"


@pytest.mark.parametrize("finish", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL",
                                    "TOO_MANY_TOOL_CALLS", "OTHER"])
async def test_failed_finish_without_content_is_retryable_server_error(
        server: GoogleServer, http_pool: HttpPool, finish: str) -> None:
    err = await chat_error(server, http_pool, json_reply(response(None, finish_reason=finish)))
    assert isinstance(err, ServerError) and err.retryable and err.provider_code == finish


async def test_max_tokens_without_content_is_an_empty_length_answer(
        server: GoogleServer, http_pool: HttpPool) -> None:
    server.enqueue(json_reply(response(None, finish_reason="MAX_TOKENS")))
    r = await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    assert (r.text, r.finish_reason) == ("", "length")


@pytest.mark.parametrize("reason", ["SAFETY", "OTHER", "BLOCKLIST", "PROHIBITED_CONTENT",
                                    "IMAGE_SAFETY"])
async def test_blocked_prompt_is_content_policy(server: GoogleServer, http_pool: HttpPool,
                                                reason: str) -> None:
    err = await chat_error(server, http_pool, json_reply(blocked(reason)))
    assert isinstance(err, ContentPolicyError) and err.provider_code == reason
    assert reason in err.message


async def test_response_without_candidates_is_server_error(server: GoogleServer,
                                                           http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, json_reply({"usageMetadata": usage()}))
    assert isinstance(err, ServerError)


# -- chat: what is sent -----------------------------------------------------------------------


async def test_posts_generate_content_with_key_in_header_never_in_url(
        server: GoogleServer, http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(MODEL, ask(), TIMEOUTS)
    req = server.requests[0]
    assert req.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.query == {} and KEY not in req.path
    assert req.headers["x-goog-api-key"] == KEY and "Authorization" not in req.headers
    assert server.violations == []


async def test_models_prefix_is_not_doubled(server: GoogleServer, http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat("models/gemini-2.5-pro", ask(), TIMEOUTS)
    assert server.requests[0].path == "/v1beta/models/gemini-2.5-pro:generateContent"


async def test_base_url_with_version_is_not_doubled(server: GoogleServer,
                                                    http_pool: HttpPool) -> None:
    p = gemini(server, http_pool, base_url=server.base_url + "/v1beta/")
    await p.chat(MODEL, ask(), TIMEOUTS)
    assert server.requests[0].path == "/v1beta/models/gemini-2.5-flash:generateContent"


async def test_roles_are_user_and_model(server: GoogleServer, http_pool: HttpPool) -> None:
    messages = [Message(role="user", content="hi"), Message(role="assistant", content="hello"),
                Message(role="user", content="bye")]
    await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=messages), TIMEOUTS)
    assert sent(server)["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "hello"}]},
        {"role": "user", "parts": [{"text": "bye"}]}]


async def test_system_messages_become_system_instruction(server: GoogleServer,
                                                         http_pool: HttpPool) -> None:
    messages = [Message(role="system", content="be brief"), Message(role="user", content="hi"),
                Message(role="system", content="answer in French")]
    await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=messages), TIMEOUTS)
    body = sent(server)
    assert body["systemInstruction"] == {"parts": [{"text": "be brief"},
                                                   {"text": "answer in French"}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


async def test_consecutive_same_role_messages_are_merged(server: GoogleServer,
                                                         http_pool: HttpPool) -> None:
    messages = [Message(role="user", content="one"), Message(role="user", content="two"),
                Message(role="assistant", content="a"), Message(role="assistant", content="b")]
    await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=messages), TIMEOUTS)
    assert sent(server)["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "a"}, {"text": "b"}]}]


async def test_data_url_image_sent_as_inline_data(server: GoogleServer,
                                                  http_pool: HttpPool) -> None:
    msg = Message(role="user", content=[TextPart("what is this?"),
                                        ImagePart("data:image/png;base64,iVBORw0KGgo=")])
    await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=[msg]), TIMEOUTS)
    assert sent(server)["contents"][0]["parts"] == [
        {"text": "what is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]


async def test_http_image_sent_as_file_data(server: GoogleServer, http_pool: HttpPool) -> None:
    msg = Message(role="user", content=[ImagePart("https://example.com/cat.jpg", detail="low")])
    await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=[msg]), TIMEOUTS)
    assert sent(server)["contents"][0]["parts"] == [
        {"fileData": {"fileUri": "https://example.com/cat.jpg", "mimeType": "image/jpeg"}}]


async def test_data_url_without_media_type_is_invalid_request(server: GoogleServer,
                                                              http_pool: HttpPool) -> None:
    msg = Message(role="user", content=[ImagePart("data:;base64,iVBORw0KGgo=")])
    with pytest.raises(InvalidRequestError, match="media type"):
        await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=[msg]), TIMEOUTS)
    assert server.request_count == 0


async def test_assistant_tool_calls_sent_as_function_call_parts(server: GoogleServer,
                                                                http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(
        MODEL, ChatRequest(messages=tool_history(), tools=[WEATHER]), TIMEOUTS)
    assert sent(server)["contents"][1] == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]}


async def test_tool_results_sent_as_one_user_turn_of_function_responses(
        server: GoogleServer, http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(
        MODEL, ChatRequest(messages=tool_history(), tools=[WEATHER]), TIMEOUTS)
    assert sent(server)["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 25}}},
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny, 21C"}}}]}


async def test_tool_result_named_by_its_call_id(server: GoogleServer,
                                                http_pool: HttpPool) -> None:
    messages = [Message(role="user", content="go"),
                Message(role="assistant", tool_calls=[ToolCall("a1", "lookup", {}),
                                                      ToolCall("b2", "fetch", {})]),
                Message(role="tool", tool_call_id="b2", content="B"),
                Message(role="tool", tool_call_id="a1", content="A")]
    await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=messages), TIMEOUTS)
    names = [p["functionResponse"]["name"] for p in sent(server)["contents"][2]["parts"]]
    assert names == ["fetch", "lookup"]


async def test_tool_result_with_unknown_id_named_by_position(server: GoogleServer,
                                                             http_pool: HttpPool) -> None:
    messages = [Message(role="user", content="go"),
                Message(role="assistant", tool_calls=[ToolCall("x", "lookup", {})]),
                Message(role="tool", tool_call_id="renamed-by-a-proxy", content="A")]
    await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=messages), TIMEOUTS)
    assert sent(server)["contents"][2]["parts"][0]["functionResponse"]["name"] == "lookup"


async def test_tool_result_without_any_call_is_invalid_request(server: GoogleServer,
                                                               http_pool: HttpPool) -> None:
    messages = [Message(role="user", content="go"),
                Message(role="tool", tool_call_id="nope", content="A")]
    with pytest.raises(InvalidRequestError, match="tool_call_id"):
        await gemini(server, http_pool).chat(MODEL, ChatRequest(messages=messages), TIMEOUTS)


async def test_returned_calls_replayed_map_results_to_names(server: GoogleServer,
                                                            http_pool: HttpPool) -> None:
    parts = [call_part("get_weather", {"city": "Paris"}), call_part("get_time", {"tz": "CET"})]
    server.enqueue(json_reply(response(parts=parts)))
    p = gemini(server, http_pool)
    first = await p.chat(MODEL, ask("weather and time?", tools=[WEATHER]), TIMEOUTS)
    history = [Message(role="user", content="weather and time?"), first.message,
               *[Message(role="tool", tool_call_id=c.id, content=c.name.upper())
                 for c in reversed(first.tool_calls)]]
    await p.chat(MODEL, ChatRequest(messages=history, tools=[WEATHER]), TIMEOUTS)
    answers = sent(server, 1)["contents"][2]["parts"]
    assert [(a["functionResponse"]["name"], a["functionResponse"]["response"]["result"])
            for a in answers] == [("get_time", "GET_TIME"), ("get_weather", "GET_WEATHER")]


async def test_gemini_3_replayed_function_call_carries_a_signature(server: GoogleServer,
                                                                   http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(
        "gemini-3-pro-preview", ChatRequest(messages=tool_history(), tools=[WEATHER]), TIMEOUTS)
    calls = [p for p in sent(server)["contents"][1]["parts"] if "functionCall" in p]
    assert calls[0]["thoughtSignature"] == SKIP_SIGNATURE
    assert "thoughtSignature" not in calls[1]


async def test_gemini_2_replayed_function_call_has_no_signature(server: GoogleServer,
                                                                http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(
        MODEL, ChatRequest(messages=tool_history(), tools=[WEATHER]), TIMEOUTS)
    assert all("thoughtSignature" not in p for p in sent(server)["contents"][1]["parts"])


async def test_tools_sent_as_function_declarations(server: GoogleServer,
                                                   http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(MODEL, ask(tools=[WEATHER]), TIMEOUTS)
    assert sent(server)["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                       "required": ["city"]}}]}]


async def test_tool_schema_is_reduced_to_the_openapi_subset(server: GoogleServer,
                                                            http_pool: HttpPool) -> None:
    params = {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "additionalProperties": False,
        "properties": {
            "when": {"type": ["string", "null"], "format": "date-time"},
            "unit": {"enum": ["c", "f"]},
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "uniqueItems": True},
        },
        "required": ["unit", "ghost"],
        "$defs": {"Tag": {"type": "object", "additionalProperties": False,
                          "properties": {"name": {"type": "string", "format": "email"}}}},
    }
    await gemini(server, http_pool).chat(MODEL, ask(tools=[Tool("f", None, params)]), TIMEOUTS)
    assert sent(server)["tools"][0]["functionDeclarations"][0]["parameters"] == {
        "type": "OBJECT", "required": ["unit"],
        "properties": {
            "when": {"type": "STRING", "nullable": True, "format": "date-time"},
            "unit": {"type": "STRING", "enum": ["c", "f"]},
            "tags": {"type": "ARRAY", "items": {
                "type": "OBJECT", "properties": {"name": {"type": "STRING"}}}},
        }}


async def test_tool_without_parameters_omits_parameters(server: GoogleServer,
                                                        http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(MODEL, ask(tools=[Tool("now")]), TIMEOUTS)
    assert sent(server)["tools"] == [{"functionDeclarations": [{"name": "now"}]}]


@pytest.mark.parametrize(("choice", "config"), [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
    ("get_weather", {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
])
async def test_tool_choice_becomes_function_calling_config(
        server: GoogleServer, http_pool: HttpPool, choice: Any, config: dict[str, Any]) -> None:
    await gemini(server, http_pool).chat(MODEL, ask(tools=[WEATHER], tool_choice=choice),
                                         TIMEOUTS)
    assert sent(server)["toolConfig"] == {"functionCallingConfig": config}


async def test_tool_choice_naming_an_unknown_tool_is_invalid_request(
        server: GoogleServer, http_pool: HttpPool) -> None:
    with pytest.raises(InvalidRequestError, match="not in tools"):
        await gemini(server, http_pool).chat(
            MODEL, ask(tools=[WEATHER], tool_choice="launch"), TIMEOUTS)
    assert server.request_count == 0


async def test_generation_config_sent(server: GoogleServer, http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(
        MODEL, ask(max_tokens=50, temperature=0.2, top_p=0.9, stop=["END"], seed=7, user="u1",
                   parallel_tool_calls=False), TIMEOUTS)
    body = sent(server)
    assert body["generationConfig"] == {"maxOutputTokens": 50, "temperature": 0.2, "topP": 0.9,
                                        "stopSequences": ["END"], "seed": 7}
    assert set(body) == {"contents", "generationConfig"}


async def test_json_object_sets_response_mime_type(server: GoogleServer,
                                                   http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(
        MODEL, ask(response_format=ResponseFormat("json_object")), TIMEOUTS)
    assert sent(server)["generationConfig"] == {"responseMimeType": "application/json"}


async def test_json_schema_sets_response_schema(server: GoogleServer,
                                                http_pool: HttpPool) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
              "additionalProperties": False}
    fmt = ResponseFormat("json_schema", schema=schema, name="answer", strict=True)
    server.enqueue(json_reply(response('{"a": 1}')))
    r = await gemini(server, http_pool).chat(MODEL, ask(response_format=fmt), TIMEOUTS)
    assert sent(server)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "INTEGER"}},
                           "required": ["a"]}}
    assert json.loads(r.text) == {"a": 1}


@pytest.mark.parametrize(("effort", "thinking"), [
    ("low", {"thinkingBudget": 1024, "includeThoughts": True}),
    ("medium", {"thinkingBudget": 8192, "includeThoughts": True}),
    ("high", {"thinkingBudget": 24576, "includeThoughts": True}),
    ("none", {"thinkingBudget": 0, "includeThoughts": False}),
])
async def test_reasoning_effort_sets_thinking_budget(server: GoogleServer, http_pool: HttpPool,
                                                     effort: str,
                                                     thinking: dict[str, Any]) -> None:
    await gemini(server, http_pool).chat(MODEL, ask(reasoning_effort=effort), TIMEOUTS)
    assert sent(server)["generationConfig"] == {"thinkingConfig": thinking}


@pytest.mark.parametrize(("effort", "level"), [("low", "LOW"), ("none", "LOW"),
                                               ("medium", "HIGH"), ("high", "HIGH")])
async def test_reasoning_effort_on_gemini_3_sets_thinking_level(
        server: GoogleServer, http_pool: HttpPool, effort: str, level: str) -> None:
    await gemini(server, http_pool).chat("gemini-3-pro-preview", ask(reasoning_effort=effort),
                                         TIMEOUTS)
    assert sent(server)["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": level, "includeThoughts": True}


async def test_thinking_budget_in_extra_wins_over_effort(server: GoogleServer,
                                                         http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(
        MODEL, ask(reasoning_effort="high", extra={"thinking_budget": 2048}), TIMEOUTS)
    assert sent(server)["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 2048, "includeThoughts": True}


async def test_thinking_level_in_extra(server: GoogleServer, http_pool: HttpPool) -> None:
    await gemini(server, http_pool).chat(
        "gemini-3-pro-preview", ask(extra={"thinking_level": "low",
                                           "include_thoughts": False}), TIMEOUTS)
    assert sent(server)["generationConfig"]["thinkingConfig"] == {
        "thinkingLevel": "LOW", "includeThoughts": False}


async def test_unknown_reasoning_effort_is_invalid_request(server: GoogleServer,
                                                           http_pool: HttpPool) -> None:
    with pytest.raises(InvalidRequestError, match="reasoning_effort"):
        await gemini(server, http_pool).chat(MODEL, ask(reasoning_effort="max"), TIMEOUTS)


async def test_extra_api_fields_merged_into_body(server: GoogleServer,
                                                 http_pool: HttpPool) -> None:
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    await gemini(server, http_pool).chat(
        MODEL, ask(extra={"safety_settings": safety, "top_k": 40,
                          "cachedContent": "cachedContents/abc"}), TIMEOUTS)
    body = sent(server)
    assert (body["safetySettings"], body["cachedContent"]) == (safety, "cachedContents/abc")
    assert body["generationConfig"] == {"topK": 40}


async def test_missing_key_is_auth_error_without_request(server: GoogleServer,
                                                         http_pool: HttpPool) -> None:
    with pytest.raises(AuthError, match="GEMINI_API_KEY"):
        await gemini(server, http_pool, key=None).chat(MODEL, ask(), TIMEOUTS)
    assert server.request_count == 0


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls", "retryable"), [
    ("invalid_argument", InvalidRequestError, False),
    ("api_key_invalid", AuthError, False),
    ("context_too_long", ContextWindowError, False),
    ("failed_precondition", PermissionDeniedError, False),
    ("unauthenticated", AuthError, False),
    ("permission_denied", PermissionDeniedError, False),
    ("not_found", NotFoundError, False),
    ("rate_limited", RateLimitError, True),
    ("daily_quota", QuotaExhaustedError, False),
    ("internal", ServerError, True),
    ("unavailable", OverloadedError, True),
    ("deadline_exceeded", TimeoutError_, True),
])
async def test_error_status_maps_to_class(server: GoogleServer, http_pool: HttpPool, name: str,
                                          cls: type[LlmError], retryable: bool) -> None:
    err = await chat_error(server, http_pool, error_reply(name))
    assert type(err) is cls and err.retryable is retryable
    assert (err.status, err.provider_type) == (ERRORS[name][0], ERRORS[name][1])
    assert err.target is None


async def test_invalid_api_key_keeps_reason_code(server: GoogleServer,
                                                 http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("api_key_invalid"))
    assert err.provider_code == "API_KEY_INVALID" and err.status == 400


async def test_retry_info_delay_is_retry_after(server: GoogleServer,
                                               http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, error_reply("rate_limited"))
    assert err.retry_after == 17.0
    assert err.provider_code == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"


async def test_larger_retry_after_header_wins_over_retry_info(server: GoogleServer,
                                                              http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool,
                           error_reply("rate_limited", headers={"retry-after": "30"}))
    assert err.retry_after == 30.0


async def test_retry_after_header_alone_is_used(server: GoogleServer,
                                                http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool,
                           error_reply("unavailable", headers={"retry-after": "4"}))
    assert isinstance(err, OverloadedError) and err.retry_after == 4.0


async def test_zero_quota_is_quota_exhausted(server: GoogleServer, http_pool: HttpPool) -> None:
    body = error_body("rate_limited")
    body["error"]["details"][0]["violations"][0]["quotaValue"] = "0"
    err = await chat_error(server, http_pool, json_reply(body, status=429))
    assert isinstance(err, QuotaExhaustedError)


async def test_error_body_wrapped_in_a_list_is_read(server: GoogleServer,
                                                    http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool,
                           json_reply([error_body("context_too_long")], status=400))
    assert isinstance(err, ContextWindowError)


async def test_api_key_never_in_error(server: GoogleServer, http_pool: HttpPool) -> None:
    body = {"error": {"code": 400, "message": f"API key not valid: {KEY}. Please pass a "
                      "valid API key.", "status": "INVALID_ARGUMENT"}}
    err = await chat_error(server, http_pool, json_reply(body, status=400))
    assert isinstance(err, AuthError)
    for text in (str(err), repr(err), err.message, err.provider_message or ""):
        assert KEY not in text and "abcdefghijklmnop" not in text


async def test_html_error_page_is_server_error(server: GoogleServer,
                                               http_pool: HttpPool) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    err = await chat_error(server, http_pool,
                           Reply(status=502, raw=page, content_type="text/html"))
    assert isinstance(err, ServerError) and err.status == 502 and "Bad Gateway" in err.message


async def test_200_with_error_body_raises_mapped_error(server: GoogleServer,
                                                       http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, json_reply(error_body("unavailable")))
    assert isinstance(err, OverloadedError) and err.status is None


async def test_request_the_api_would_reject_fails_as_invalid_request(
        server: GoogleServer, http_pool: HttpPool) -> None:
    err = await chat_error(server, http_pool, json_reply(response()),
                           ask(extra={"frobnicate": True}))
    assert isinstance(err, InvalidRequestError) and "frobnicate" in err.message


# -- streaming --------------------------------------------------------------------------------


async def test_stream_yields_text_deltas_then_final_chunk(server: GoogleServer,
                                                          http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(text_events(["Hel", "lo", " wörld ✓"],
                                            usage_=usage(30, 4, cached=8))))
    chunks = await collect(gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    assert [c.delta for c in chunks] == ["Hel", "lo", " wörld ✓", ""]
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.final_tool_calls == []
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens,
            final.usage.cached_tokens) == (30, 4, 8)


async def test_stream_posts_stream_generate_content_alt_sse(server: GoogleServer,
                                                            http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(text_events(["x"])))
    await collect(gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    req = server.requests[0]
    assert req.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert req.query == {"alt": "sse"} and req.headers["Accept"] == "text/event-stream"
    assert server.violations == []


async def test_stream_function_calls_arrive_whole(server: GoogleServer,
                                                  http_pool: HttpPool) -> None:
    events = [chunk([call_part("get_weather", {"city": "Paris"})]),
              chunk([call_part("get_time", {"tz": "CET"})], finish_reason="STOP",
                    usage_=usage())]
    server.enqueue(stream_reply(events))
    chunks = await collect(gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [(d.index, d.id, d.name, json.loads(d.arguments)) for d in deltas] == [
        (0, "call_0_get_weather", "get_weather", {"city": "Paris"}),
        (1, "call_1_get_time", "get_time", {"tz": "CET"})]
    assert chunks[-1].finish_reason == "tool_calls"
    assert chunks[-1].final_tool_calls == [
        ToolCall("call_0_get_weather", "get_weather", {"city": "Paris"}),
        ToolCall("call_1_get_time", "get_time", {"tz": "CET"})]


async def test_stream_and_chat_give_the_same_call_ids(server: GoogleServer,
                                                      http_pool: HttpPool) -> None:
    parts = [call_part("a", {}), call_part("b", {}), call_part("a", {"x": 1})]
    server.enqueue(json_reply(response(parts=parts)),
                   stream_reply([chunk(parts[:1]), chunk(parts[1:], finish_reason="STOP")]))
    p = gemini(server, http_pool)
    r = await p.chat(MODEL, ask(), TIMEOUTS)
    chunks = await collect(p.stream(MODEL, ask(), TIMEOUTS))
    assert chunks[-1].final_tool_calls == r.tool_calls


async def test_stream_thoughts_are_reasoning_deltas(server: GoogleServer,
                                                    http_pool: HttpPool) -> None:
    events = [chunk([text_part("hmm", thought=True)]),
              chunk([text_part("42")], finish_reason="STOP",
                    usage_=usage(10, 2, thoughts=7))]
    server.enqueue(stream_reply(events))
    chunks = await collect(gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    assert [(c.reasoning_delta, c.delta) for c in chunks[:-1]] == [("hmm", ""), ("", "42")]
    assert chunks[-1].usage is not None and chunks[-1].usage.reasoning_tokens == 7


async def test_stream_blocked_prompt_raises_before_any_chunk(server: GoogleServer,
                                                             http_pool: HttpPool) -> None:
    server.enqueue(stream_reply([blocked("PROHIBITED_CONTENT")]))
    got: list[ChatChunk] = []
    with pytest.raises(ContentPolicyError):
        async for c in gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS):
            got.append(c)
    assert got == []


async def test_stream_safety_finish_without_content_is_one_refusal_chunk(
        server: GoogleServer, http_pool: HttpPool) -> None:
    server.enqueue(stream_reply([chunk([], finish_reason="SAFETY", usage_=usage(9, 0))]))
    chunks = await collect(gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    assert len(chunks) == 1 and chunks[0].delta == ""
    assert (chunks[0].finish_reason, chunks[0].refusal) == (
        "content_filter", "Gemini withheld the answer (finishReason SAFETY)")
    assert chunks[0].usage is not None and chunks[0].usage.input_tokens == 9


async def test_stream_safety_finish_after_text_ends_with_content_filter(
        server: GoogleServer, http_pool: HttpPool) -> None:
    events = [chunk([text_part("Once upon")]), chunk([], finish_reason="SAFETY")]
    server.enqueue(stream_reply(events))
    chunks = await collect(gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    assert chunks[0].delta == "Once upon" and chunks[-1].finish_reason == "content_filter"


async def test_stream_http_error_raises_before_any_chunk(server: GoogleServer,
                                                         http_pool: HttpPool) -> None:
    server.enqueue(error_reply("rate_limited"))
    with pytest.raises(RateLimitError) as info:
        await collect(gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS))
    assert info.value.retry_after == 17.0


async def test_stream_error_event_raises_mapped_error(server: GoogleServer,
                                                      http_pool: HttpPool) -> None:
    server.enqueue(stream_reply([chunk([text_part("par")]), error_body("internal")]))
    got: list[str] = []
    with pytest.raises(ServerError) as info:
        async for c in gemini(server, http_pool).stream(MODEL, ask(), TIMEOUTS):
            got.append(c.delta)
    assert got == ["par"] and info.value.status is None
    assert info.value.provider_type == "INTERNAL"


_STORY = ["Il était ", "une fois ", "un routeur ✓ ", "qui ne perdait ", "rien."]
_STORY_BYTES = len(b"".join(
    f"data: {json.dumps(e)}\r\n\r\n".encode() for e in text_events(_STORY)))


async def _cut_stream(cut: int, reset: bool) -> list[ChatChunk] | LlmError:
    async with GoogleServer(seed=cut) as server, HttpPool() as pool:
        server.enqueue(stream_reply(text_events(_STORY), cut_at=cut, cut_reset=reset))
        try:
            return await collect(gemini(server, pool).stream(MODEL, ask(), TIMEOUTS))
        except LlmError as e:
            return e


_CUT_SETTINGS = settings(max_examples=40, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


@_CUT_SETTINGS
@given(cut=st.integers(min_value=0, max_value=_STORY_BYTES - 1))
@example(cut=0)
@example(cut=_STORY_BYTES - 2)
def test_stream_cut_at_any_byte_is_network_error_or_whole(cut: int) -> None:
    outcome = asyncio.run(_cut_stream(cut, reset=False))
    if isinstance(outcome, LlmError):
        assert isinstance(outcome, NetworkError)
    else:  # only the frame's closing CRLFs were lost: the answer is whole
        assert "".join(c.delta for c in outcome) == "".join(_STORY)
        assert outcome[-1].finish_reason == "stop"


@_CUT_SETTINGS
@given(cut=st.integers(min_value=0, max_value=_STORY_BYTES - 1))
@example(cut=0)
@example(cut=_STORY_BYTES - 2)
def test_stream_reset_at_any_byte_is_network_error_or_whole(cut: int) -> None:
    outcome = asyncio.run(_cut_stream(cut, reset=True))
    if isinstance(outcome, LlmError):
        assert isinstance(outcome, NetworkError)
    else:
        assert "".join(c.delta for c in outcome) == "".join(_STORY)


# -- capabilities and config ------------------------------------------------------------------


def test_capabilities_come_from_the_catalog() -> None:
    config = ProviderConfig(name="g", kind="google", api_key=SecretStr(KEY))
    caps = GoogleProvider(config, HttpPool()).capabilities("gemini-2.0-flash-001")
    assert (caps.context_window, caps.max_output_tokens) == (1_048_576, 8_192)
    assert caps.tools and caps.vision and caps.json_schema and caps.streaming_usage


def test_capabilities_of_unknown_model_with_overrides() -> None:
    config = ProviderConfig(name="g", kind="google", api_key=SecretStr(KEY),
                            options={"capabilities": {"vision": False}})
    caps = GoogleProvider(config, HttpPool()).capabilities("gemma-3-27b-it")
    assert (caps.vision, caps.json_schema, caps.context_window) == (False, True, None)


def test_bad_capabilities_option_is_config_error() -> None:
    config = ProviderConfig(name="g", kind="google", options={"capabilities": {"x": 1}})
    with pytest.raises(ConfigError, match="capabilities"):
        GoogleProvider(config, HttpPool())


def test_repr_hides_key() -> None:
    config = ProviderConfig(name="g", kind="google", api_key=SecretStr(KEY))
    provider = GoogleProvider(config, HttpPool())
    assert KEY not in repr(provider) and KEY not in repr(config)


def test_default_base_url_is_the_host() -> None:
    config = ProviderConfig(name="g", kind="google", api_key=SecretStr(KEY))
    url = GoogleProvider(config, HttpPool()).url("gemini-2.5-pro", stream=True)
    assert url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro"
                   ":streamGenerateContent?alt=sse")


# -- schema conversion (pure) -----------------------------------------------------------------


def test_schema_any_of_with_null_becomes_nullable() -> None:
    schema = {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "n"}
    assert to_gemini_schema(schema) == {"description": "n", "nullable": True,
                                        "type": "INTEGER"}


def test_schema_one_of_becomes_any_of() -> None:
    schema = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    assert to_gemini_schema(schema) == {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}


def test_schema_all_of_is_merged() -> None:
    schema = {"allOf": [{"$ref": "#/definitions/A"},
                        {"type": "object", "properties": {"b": {"type": "boolean"}},
                         "required": ["b"]}],
              "definitions": {"A": {"type": "object", "properties": {"a": {"type": "string"}},
                                    "required": ["a"]}}}
    assert to_gemini_schema(schema) == {
        "type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}},
        "required": ["a", "b"]}


def test_schema_recursive_ref_is_bounded_and_valid() -> None:
    schema = {"$ref": "#/$defs/Node",
              "$defs": {"Node": {"type": "object", "properties": {
                  "value": {"type": "string"},
                  "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}}}
    converted = to_gemini_schema(schema)
    assert converted["properties"]["value"] == {"type": "STRING"}
    assert check_schema(converted, "schema") == []


def test_schema_const_and_non_string_enum() -> None:
    assert to_gemini_schema({"const": "x"}) == {"type": "STRING", "enum": ["x"]}
    assert to_gemini_schema({"type": "integer", "enum": [1, 2]}) == {"type": "INTEGER"}


def test_a_single_anyof_variant_keeps_its_required_names_only_as_properties() -> None:
    # Found by the property test below: the variant's required: [p] survived the merge while
    # the parent's properties (q only) replaced the variant's, a schema the API rejects.
    schema = {"properties": {"q": {}},
              "anyOf": [{"type": "object", "required": ["p"], "properties": {"p": {}}}]}
    converted = to_gemini_schema(schema)
    assert converted["properties"].keys() == {"p", "q"}
    assert converted["required"] == ["p"]
    assert check_schema(converted, "schema") == []


@settings(max_examples=100, deadline=None)
@given(st.recursive(
    st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["string", "integer", "number", "boolean", "null",
                                 ["string", "null"]]),
        "description": st.text(max_size=5), "format": st.sampled_from(["email", "date-time"]),
        "enum": st.lists(st.sampled_from(["a", "b", 1, None]), max_size=3),
        "additionalProperties": st.booleans(), "minimum": st.integers()}),
    lambda inner: st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["object", "array"]),
        "properties": st.dictionaries(st.sampled_from(["p", "q", "r"]), inner, max_size=3),
        "required": st.lists(st.sampled_from(["p", "q", "z"]), max_size=2, unique=True),
        "items": inner, "anyOf": st.lists(inner, max_size=3),
        "allOf": st.lists(inner, max_size=2), "$schema": st.just("x")}),
    max_leaves=8))
def test_any_json_schema_converts_to_a_schema_the_api_accepts(schema: dict[str, Any]) -> None:
    assert check_schema(to_gemini_schema(schema), "schema") == []
