"""OllamaProvider against the loopback server in tests/servers/ollama.py (real status codes,
``{"error": ...}`` bodies and NDJSON streams written in random small pieces)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from router.errors import (
    ContextWindowError,
    ErrorClass,
    InvalidRequestError,
    LlmError,
    NetworkError,
    NotFoundError,
    OverloadedError,
    ServerError,
)
from router.providers.base import HttpPool, ProviderConfig, Timeouts
from router.providers.ollama import OllamaProvider
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
from tests.servers.ollama import (
    ERRORS,
    OllamaServer,
    Reply,
    chat_response,
    delta,
    done_line,
    error_body,
    error_reply,
    json_reply,
    ndjson_line,
    stream_reply,
    text_lines,
    tool_call,
)

TIMEOUTS = Timeouts(connect=2.0, first_token=5.0, total=10.0, idle=5.0)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
WEATHER = Tool(name="get_weather", description="Weather in a city",
               parameters={"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]})


@pytest.fixture
async def server() -> AsyncIterator[OllamaServer]:
    async with OllamaServer() as s:
        yield s


def ollama(server: OllamaServer, pool: HttpPool, *, key: str | None = None,
           **options: Any) -> OllamaProvider:
    config = ProviderConfig(name="local", kind="ollama", base_url=server.base_url,
                            api_key=SecretStr(key) if key else None, headers={},
                            options=options)
    return OllamaProvider(config, pool)


def ask(text: str = "hi", **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)


async def collect(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


async def sent(server: OllamaServer, pool: HttpPool, request: ChatRequest,
               **options: Any) -> dict[str, Any]:
    """The JSON body the provider sent for ``request``."""
    await ollama(server, pool, **options).chat("llama3.2", request, TIMEOUTS)
    body: dict[str, Any] = server.requests[-1].json
    return body


# -- what is sent -----------------------------------------------------------------------------


async def test_chat_posts_to_api_chat_with_stream_false(server: OllamaServer,
                                                        http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask("why is the sky blue?"))
    assert server.requests[0].path == "/api/chat"
    assert body == {"model": "llama3.2", "stream": False,
                    "messages": [{"role": "user", "content": "why is the sky blue?"}]}


async def test_sampling_params_go_in_options(server: OllamaServer, http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(max_tokens=100, temperature=0.2, top_p=0.9,
                                             stop=["\n\n"], seed=42))
    assert body["options"] == {"num_predict": 100, "temperature": 0.2, "top_p": 0.9,
                               "stop": ["\n\n"], "seed": 42}
    assert "max_tokens" not in body and "temperature" not in body


async def test_data_url_image_is_sent_as_base64_string(server: OllamaServer,
                                                       http_pool: HttpPool) -> None:
    b64 = base64.b64encode(PNG).decode()
    msg = Message(role="user", content=[TextPart("what is this?"),
                                        ImagePart(f"data:image/png;base64,{b64}")])
    body = await sent(server, http_pool, ChatRequest(messages=[msg]))
    assert body["messages"] == [{"role": "user", "content": "what is this?", "images": [b64]}]
    assert base64.b64decode(body["messages"][0]["images"][0]) == PNG


async def test_percent_encoded_data_url_image_is_base64_encoded(server: OllamaServer,
                                                                http_pool: HttpPool) -> None:
    msg = Message(role="user", content=[ImagePart("data:image/svg+xml,%3Csvg%2F%3E")])
    body = await sent(server, http_pool, ChatRequest(messages=[msg]))
    assert base64.b64decode(body["messages"][0]["images"][0]) == b"<svg/>"


async def test_http_image_url_is_invalid_request_before_any_io(server: OllamaServer,
                                                               http_pool: HttpPool) -> None:
    msg = Message(role="user", content=[ImagePart("https://example.com/cat.png")])
    with pytest.raises(InvalidRequestError, match="data: URL") as info:
        await ollama(server, http_pool).chat("llava", ChatRequest(messages=[msg]), TIMEOUTS)
    assert not info.value.retryable and server.request_count == 0


async def test_tools_are_sent_as_functions(server: OllamaServer, http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(tools=[WEATHER]))
    assert body["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": WEATHER.parameters}}]


async def test_tool_choice_none_offers_no_tools(server: OllamaServer,
                                                http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(tools=[WEATHER], tool_choice="none"))
    assert "tools" not in body and "tool_choice" not in body


async def test_tool_round_trip_sends_argument_objects_and_tool_name(
        server: OllamaServer, http_pool: HttpPool) -> None:
    call = ToolCall("call_abc", "get_weather", {"city": "Paris"})
    messages = [Message(role="user", content="weather?"),
                Message(role="assistant", content=None, tool_calls=[call]),
                Message(role="tool", content="22C", tool_call_id="call_abc")]
    body = await sent(server, http_pool, ChatRequest(messages=messages))
    assert body["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    assert body["messages"][2] == {"role": "tool", "content": "22C", "tool_name": "get_weather"}


async def test_json_object_sends_format_json(server: OllamaServer, http_pool: HttpPool) -> None:
    body = await sent(server, http_pool, ask(response_format=ResponseFormat("json_object")))
    assert body["format"] == "json"


async def test_json_schema_is_sent_as_format(server: OllamaServer, http_pool: HttpPool) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    fmt = ResponseFormat("json_schema", schema=schema, name="person")
    body = await sent(server, http_pool, ask(response_format=fmt))
    assert body["format"] == schema


@pytest.mark.parametrize(("seconds", "wire"), [(300.0, "300s"), (0.5, "500ms"), (0, "0s"),
                                               (1_000_000, "1000000s")])
async def test_keep_alive_is_sent_as_go_duration(server: OllamaServer, http_pool: HttpPool,
                                                 seconds: float, wire: str) -> None:
    body = await sent(server, http_pool, ask(), keep_alive=seconds)
    assert body["keep_alive"] == wire


@pytest.mark.parametrize(("effort", "think"), [("high", "high"), ("low", "low"),
                                               ("none", False), ("on", True)])
async def test_reasoning_effort_is_sent_as_think(server: OllamaServer, http_pool: HttpPool,
                                                 effort: str, think: object) -> None:
    body = await sent(server, http_pool, ask(reasoning_effort=effort))
    assert body["think"] == think


async def test_no_think_unless_asked(server: OllamaServer, http_pool: HttpPool) -> None:
    assert "think" not in await sent(server, http_pool, ask())


async def test_no_authorization_without_key(server: OllamaServer, http_pool: HttpPool) -> None:
    await sent(server, http_pool, ask())
    assert "Authorization" not in server.requests[0].headers


async def test_key_is_sent_as_bearer(server: OllamaServer, http_pool: HttpPool) -> None:
    await ollama(server, http_pool, key="ollama-key-123").chat("llama3.2", ask(), TIMEOUTS)
    assert server.requests[0].headers["Authorization"] == "Bearer ollama-key-123"


# -- what comes back --------------------------------------------------------------------------


async def test_chat_returns_text_usage_and_model(server: OllamaServer,
                                                 http_pool: HttpPool) -> None:
    server.enqueue(json_reply(chat_response("Hi there", prompt=34, output=12)))
    r = await ollama(server, http_pool).chat("llama3.2", ask(), TIMEOUTS)
    assert (r.text, r.finish_reason, r.model, r.tool_calls) == ("Hi there", "stop",
                                                                "llama3.2", [])
    assert (r.usage.input_tokens, r.usage.output_tokens) == (34, 12)


async def test_chat_parses_tool_calls_with_argument_objects(server: OllamaServer,
                                                            http_pool: HttpPool) -> None:
    calls = [tool_call("get_weather", {"city": "Paris", "unit": "c"}),
             tool_call("get_time", {}, index=1)]
    server.enqueue(json_reply(chat_response("", tool_calls=calls)))
    r = await ollama(server, http_pool).chat("llama3.2", ask(tools=[WEATHER]), TIMEOUTS)
    assert r.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in r.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "c"}), ("get_time", {})]


async def test_tool_call_ids_are_generated_stable_and_distinct(server: OllamaServer,
                                                               http_pool: HttpPool) -> None:
    calls = [tool_call("get_weather", {"city": "Paris"}),
             tool_call("get_weather", {"city": "Rome"}, index=1)]
    server.enqueue(json_reply(chat_response("", tool_calls=calls)),
                   json_reply(chat_response("", tool_calls=calls)))
    p = ollama(server, http_pool)
    first = await p.chat("llama3.2", ask(), TIMEOUTS)
    second = await p.chat("llama3.2", ask(), TIMEOUTS)
    ids = [c.id for c in first.tool_calls]
    assert ids == [c.id for c in second.tool_calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)


async def test_tool_call_id_from_server_is_kept(server: OllamaServer,
                                                http_pool: HttpPool) -> None:
    call = {**tool_call("f", {"x": 1}), "id": "call_srv1"}
    server.enqueue(json_reply(chat_response("", tool_calls=[call])))
    r = await ollama(server, http_pool).chat("llama3.2", ask(), TIMEOUTS)
    assert r.tool_calls == [ToolCall("call_srv1", "f", {"x": 1})]


async def test_thinking_becomes_reasoning(server: OllamaServer, http_pool: HttpPool) -> None:
    server.enqueue(json_reply(chat_response("84", thinking="12 * 7 = 84")))
    r = await ollama(server, http_pool).chat("qwen3", ask(), TIMEOUTS)
    assert (r.text, r.reasoning) == ("84", "12 * 7 = 84")


async def test_json_output_comes_back_as_text(server: OllamaServer, http_pool: HttpPool) -> None:
    server.enqueue(json_reply(chat_response('{"age": 22, "available": false}')))
    fmt = ResponseFormat("json_schema", schema={"type": "object"})
    r = await ollama(server, http_pool).chat("llama3.1", ask(response_format=fmt), TIMEOUTS)
    assert json.loads(r.text) == {"age": 22, "available": False}


@pytest.mark.parametrize(("done_reason", "finish"), [
    ("stop", "stop"), ("length", "length"), ("load", "stop"), ("unload", "stop"), (None, "stop"),
])
async def test_done_reason_maps_to_finish_reason(server: OllamaServer, http_pool: HttpPool,
                                                 done_reason: str | None, finish: str) -> None:
    server.enqueue(json_reply(chat_response("x", done_reason=done_reason)))
    r = await ollama(server, http_pool).chat("llama3.2", ask(), TIMEOUTS)
    assert r.finish_reason == finish


def test_capabilities_are_permissive_by_default() -> None:
    p = OllamaProvider(ProviderConfig(name="local", kind="ollama"), HttpPool())
    caps = p.capabilities("anything")
    assert (caps.tools, caps.vision, caps.json_schema, caps.context_window) == (
        True, True, True, None)


def test_capabilities_option_overrides_defaults() -> None:
    config = ProviderConfig(name="local", kind="ollama",
                            options={"capabilities": {"vision": False, "context_window": 8192}})
    caps = OllamaProvider(config, HttpPool()).capabilities("llama3.2")
    assert (caps.vision, caps.context_window) == (False, 8192)


# -- streaming --------------------------------------------------------------------------------


async def test_stream_yields_deltas_then_final_chunk_with_usage(server: OllamaServer,
                                                                http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(text_lines(["The", " sky", " is", " blue."], prompt=26,
                                           output=4)))
    chunks = await collect(ollama(server, http_pool).stream("llama3.2", ask(), TIMEOUTS))
    assert [c.delta for c in chunks[:-1]] == ["The", " sky", " is", " blue."]
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.final_tool_calls == []
    assert final.usage is not None and (final.usage.input_tokens,
                                        final.usage.output_tokens) == (26, 4)


async def test_stream_sends_stream_true_and_accepts_ndjson(server: OllamaServer,
                                                           http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(text_lines(["x"])))
    await collect(ollama(server, http_pool).stream("llama3.2", ask(), TIMEOUTS))
    assert server.requests[0].json["stream"] is True
    assert server.requests[0].headers["Accept"] == "application/x-ndjson"


async def test_stream_length_done_reason(server: OllamaServer, http_pool: HttpPool) -> None:
    server.enqueue(stream_reply(text_lines(["a", "b"], done_reason="length")))
    chunks = await collect(ollama(server, http_pool).stream("llama3.2", ask(), TIMEOUTS))
    assert chunks[-1].finish_reason == "length"


async def test_stream_tool_calls_arrive_whole_and_finish_as_tool_calls(
        server: OllamaServer, http_pool: HttpPool) -> None:
    lines = [delta(tool_calls=[tool_call("get_weather", {"city": "Tokyo"})]),
             delta(tool_calls=[tool_call("get_time", {"tz": "JST"})]), done_line("stop")]
    server.enqueue(stream_reply(lines))
    chunks = await collect(ollama(server, http_pool).stream("llama3.2", ask(), TIMEOUTS))
    final = chunks[-1]
    assert final.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in final.final_tool_calls or ()] == [
        ("get_weather", {"city": "Tokyo"}), ("get_time", {"tz": "JST"})]
    deltas = [d for c in chunks[:-1] for d in c.tool_calls]
    assert [(d.index, d.id) for d in deltas] == [(i, c.id) for i, c in
                                                 enumerate(final.final_tool_calls or ())]
    assert json.loads(deltas[0].arguments) == {"city": "Tokyo"}


async def test_stream_thinking_arrives_as_reasoning_deltas(server: OllamaServer,
                                                           http_pool: HttpPool) -> None:
    lines = [delta(thinking="Let me"), delta(thinking=" think."), delta("84"), done_line()]
    server.enqueue(stream_reply(lines))
    chunks = await collect(ollama(server, http_pool).stream("qwen3", ask(), TIMEOUTS))
    assert "".join(c.reasoning_delta for c in chunks) == "Let me think."
    assert "".join(c.delta for c in chunks) == "84"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_stream_survives_ndjson_split_at_any_byte(parts: list[str], cuts: list[int]) -> None:
    body = b"".join(ndjson_line(e) for e in text_lines(parts))
    points = sorted({c % len(body) for c in cuts} | {0, len(body)})
    pieces = [body[a:b] for a, b in itertools.pairwise(points) if b > a]

    async def run() -> list[ChatChunk]:
        async with OllamaServer() as server, HttpPool() as pool:
            server.enqueue(stream_reply(pieces, piece_sizes=(1 << 20, 1 << 20)))
            return await collect(ollama(server, pool).stream("llama3.2", ask(), TIMEOUTS))

    chunks = asyncio.run(run())
    assert "".join(c.delta for c in chunks) == "".join(parts)
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage is not None


async def test_stream_cut_inside_a_line_is_network_error(server: OllamaServer,
                                                         http_pool: HttpPool) -> None:
    server.enqueue(stream_reply([delta("a"), b'{"model":"llama3.2","message":{"role":"assi']))
    with pytest.raises(NetworkError, match="inside"):
        await collect(ollama(server, http_pool).stream("llama3.2", ask(), TIMEOUTS))


async def test_stream_error_line_raises_server_error(server: OllamaServer,
                                                     http_pool: HttpPool) -> None:
    server.enqueue(stream_reply([delta("par"), error_body("runner_crashed")]))
    got: list[str] = []
    with pytest.raises(ServerError, match="runner process") as info:
        async for c in ollama(server, http_pool).stream("llama3.2", ask(), TIMEOUTS):
            got.append(c.delta)
    assert got == ["par"] and info.value.status is None


async def test_stream_garbage_line_is_skipped_and_counted(server: OllamaServer,
                                                          http_pool: HttpPool) -> None:
    # Issue 11: one line that is not JSON is skipped (the stream still has its done line).
    server.enqueue(stream_reply([delta("a"), b"<html>bad gateway</html>\n", done_line()]))
    chunks = await collect(ollama(server, http_pool).stream("llama3.2", ask(), TIMEOUTS))
    assert "".join(c.delta for c in chunks) == "a"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].malformed_events == 1


async def test_stream_of_garbage_lines_is_server_error(server: OllamaServer,
                                                       http_pool: HttpPool) -> None:
    server.enqueue(stream_reply([delta("a"), *[b"<html>bad gateway</html>\n"] * 4,
                                 done_line()]))
    with pytest.raises(ServerError, match="not JSON"):
        await collect(ollama(server, http_pool).stream("llama3.2", ask(), TIMEOUTS))


async def test_stream_http_error_raises_before_any_chunk(server: OllamaServer,
                                                         http_pool: HttpPool) -> None:
    server.enqueue(error_reply("model_not_found"))
    stream = ollama(server, http_pool).stream("llama9", ask(), TIMEOUTS)
    with pytest.raises(NotFoundError):
        await anext(stream)


# -- errors -----------------------------------------------------------------------------------


async def chat_error(server: OllamaServer, pool: HttpPool, reply: Reply) -> LlmError:
    server.enqueue(reply)
    with pytest.raises(LlmError) as info:
        await ollama(server, pool).chat("llama9", ask(), TIMEOUTS)
    return info.value


@pytest.mark.parametrize("name", ["model_not_found", "model_not_found_quoted"])
async def test_model_not_found_is_not_found(server: OllamaServer, http_pool: HttpPool,
                                            name: str) -> None:
    e = await chat_error(server, http_pool, error_reply(name))
    assert isinstance(e, NotFoundError) and e.status == 404 and not e.retryable
    assert "try pulling it first" in e.message


@pytest.mark.parametrize("name", ["bad_request", "no_tools"])
async def test_bad_request_is_invalid_request(server: OllamaServer, http_pool: HttpPool,
                                              name: str) -> None:
    e = await chat_error(server, http_pool, error_reply(name))
    assert isinstance(e, InvalidRequestError) and e.provider_message == ERRORS[name][1]


@pytest.mark.parametrize("name", ["context_truncate_off", "context_shift_off",
                                  "input_too_long"])
async def test_context_length_errors_are_context_window(server: OllamaServer,
                                                        http_pool: HttpPool, name: str) -> None:
    e = await chat_error(server, http_pool, error_reply(name))
    assert isinstance(e, ContextWindowError) and e.status == ERRORS[name][0]


async def test_server_error_is_server(server: OllamaServer, http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, error_reply("runner_crashed"))
    assert isinstance(e, ServerError) and e.retryable and e.status == 500


async def test_queue_full_is_overloaded(server: OllamaServer, http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, error_reply("queue_full"))
    assert isinstance(e, OverloadedError) and e.retryable
    assert e.error_class is ErrorClass.OVERLOADED


async def test_error_body_in_a_200_is_server_error(server: OllamaServer,
                                                   http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, json_reply(error_body("runner_crashed")))
    assert isinstance(e, ServerError) and e.status is None


async def test_plain_text_error_body_keeps_its_text(server: OllamaServer,
                                                    http_pool: HttpPool) -> None:
    e = await chat_error(server, http_pool, Reply(status=502, raw=b"Bad Gateway"))
    assert isinstance(e, ServerError) and e.message == "Bad Gateway"


def test_default_base_url_is_the_local_server_root() -> None:
    p = OllamaProvider(ProviderConfig(name="local", kind="ollama"), HttpPool())
    assert p.request("llama3.2", ask(), stream=False).url == "http://127.0.0.1:11434/api/chat"
