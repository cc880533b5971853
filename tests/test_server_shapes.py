"""The proxy's pure parts, without a socket: the ErrorClass -> status table and both error
bodies, the Anthropic request conversion, both stream encoders, access keys, and call
options from headers. Plus one in-process case: a bug in a handler is a 500 body in the
API's shape, logged, never a traceback to the client."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from router.engine.request import build_request
from router.engine.router import Router
from router.errors import ErrorClass, InvalidRequestError, NoRouteError, RouteFailed, make_error
from router.server._anthropic_in import parse_messages
from router.server._anthropic_shapes import EventEncoder
from router.server._openai_shapes import ChunkEncoder
from router.server.app import create_app
from router.server.errors import ApiError, from_llm_error, openai_error_body
from router.server.inbound import call_options
from router.server.keys import env_keys
from router.server.proxy import KeyRing, Proxy, Settings
from router.state import make_store
from router.types import AttemptRecord, ChatChunk, ToolCall, ToolCallDelta, Usage


def failed(cls: ErrorClass, *records: AttemptRecord, **kw: Any) -> RouteFailed:
    return RouteFailed("route failed", attempts=records,
                       last_error=make_error(cls, "upstream said no", **kw))


def skip(reason: str) -> AttemptRecord:
    return AttemptRecord("r", "a", "p:m", 1, "skipped", reason=reason)


@pytest.mark.parametrize(("cls", "status"), [
    (ErrorClass.INVALID_REQUEST, 400), (ErrorClass.CONTEXT_WINDOW, 400),
    (ErrorClass.CONTENT_POLICY, 400), (ErrorClass.BUDGET_EXCEEDED, 429),
    (ErrorClass.RATE_LIMITED_LOCALLY, 429), (ErrorClass.TIMEOUT, 504),
    (ErrorClass.STORE_UNAVAILABLE, 503), (ErrorClass.AUTH, 502),
    (ErrorClass.RATE_LIMIT, 502), (ErrorClass.SERVER, 502), (ErrorClass.NETWORK, 502),
    (ErrorClass.STREAM_INTERRUPTED, 502)])
def test_error_class_maps_to_status(cls: ErrorClass, status: int) -> None:
    err = from_llm_error(failed(cls))
    assert err.status == status and err.code == cls.value


def test_unknown_model_is_404_on_model() -> None:
    err = from_llm_error(NoRouteError("'x' is not an alias"))
    assert (err.status, err.code, err.param) == (404, "model_not_found", "model")


def test_every_target_skipped_for_capability_is_400_for_breakers_503() -> None:
    assert from_llm_error(RouteFailed("no", attempts=[skip("capability")],
                                      last_error=None)).status == 400
    assert from_llm_error(RouteFailed("no", attempts=[skip("breaker_open")],
                                      last_error=None)).status == 503


def test_deadline_skip_is_504_whatever_the_last_error() -> None:
    assert from_llm_error(failed(ErrorClass.SERVER, skip("deadline"))).status == 504


def test_local_refusal_gets_a_retry_after() -> None:
    err = from_llm_error(failed(ErrorClass.BUDGET_EXCEEDED))
    assert int(err.headers()["Retry-After"]) > 0
    hinted = from_llm_error(failed(ErrorClass.RATE_LIMITED_LOCALLY, retry_after=2.2))
    assert hinted.headers() == {"Retry-After": "3"}


def test_our_own_invalid_request_names_its_param() -> None:
    with pytest.raises(InvalidRequestError) as raised:
        build_request([{"role": "user", "content": "hi"},
                       {"role": "user", "content": [{"type": "text", "text": 5}]}], {})
    assert raised.value.param == "messages[1].content[0].text"  # set where it is raised
    err = from_llm_error(raised.value)
    assert openai_error_body(err)["error"]["param"] == "messages[1].content[0].text"


def test_an_upstream_invalid_request_names_no_param() -> None:
    err = from_llm_error(make_error(ErrorClass.INVALID_REQUEST, "temperature too high",
                                    status=400))
    assert openai_error_body(err)["error"]["param"] is None


def test_chain_summary_lists_attempts_not_upstream_bodies() -> None:
    rec = AttemptRecord("r", "a", "oa:gpt", 1, "error", error_class=ErrorClass.SERVER,
                        status=500, detail="secret upstream body")
    message = from_llm_error(failed(ErrorClass.SERVER, rec, skip("budget"))).message
    assert "oa:gpt: server HTTP 500" in message and "p:m: skipped (budget)" in message
    assert "secret upstream body" not in message


# -- Anthropic conversion ---------------------------------------------------------------------

def test_anthropic_conversion_orders_tool_results_first() -> None:
    call = parse_messages({
        "model": "m", "max_tokens": 9, "system": [{"type": "text", "text": "sys"}],
        "stop_sequences": ["END"], "metadata": {"user_id": "u1"}, "top_k": 5,
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [
                {"type": "text", "text": "and?"},
                {"type": "tool_result", "tool_use_id": "t1",
                 "content": [{"type": "text", "text": "42"}]}]}]})
    roles = [m["role"] for m in call.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert call.messages[2]["tool_calls"][0]["function"] == {"name": "f", "arguments": {"a": 1}}
    assert call.messages[2]["content"] == "calling"
    assert call.messages[3] == {"role": "tool", "tool_call_id": "t1", "content": "42"}
    assert call.params == {"stop": ["END"], "user": "u1", "tool_choice": "required",
                           "parallel_tool_calls": False, "max_tokens": 9, "top_k": 5}


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {
        "type": "file"}}]}]}, "messages.0.content.0.source"),
    ({"messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "web_search_20250305"}]}, "tools.0.name"),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool"}},
     "tool_choice.name"),
    ({"messages": []}, "messages"),
])
def test_anthropic_conversion_names_the_bad_path(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as e:
        parse_messages({"model": "m", **body})
    assert e.value.status == 400 and e.value.param == param


# -- encoders ---------------------------------------------------------------------------------

def _events(frames: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for frame in frames:
        for line in frame.decode().split("\n"):
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out


def test_anthropic_encoder_blocks_in_order() -> None:
    enc = EventEncoder("r1", "m")
    frames = enc.start()
    frames += enc.chunk(ChatChunk(delta="Let me check."))
    frames += enc.chunk(ChatChunk(tool_calls=[ToolCallDelta(0, "t1", "f", '{"a":')]))
    frames += enc.chunk(ChatChunk(tool_calls=[ToolCallDelta(0, arguments="1}")]))
    frames += enc.chunk(ChatChunk(finish_reason="tool_calls",
                                  usage=Usage(input_tokens=10, output_tokens=4, cached_tokens=3)))
    frames += enc.end()
    events = _events(frames)
    assert [e["type"] for e in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[5]["content_block"] == {"type": "tool_use", "id": "t1", "name": "f",
                                          "input": {}}
    assert events[7]["delta"] == {"type": "input_json_delta", "partial_json": "1}"}
    assert events[9]["delta"]["stop_reason"] == "tool_use"
    assert events[9]["usage"]["input_tokens"] == 7
    assert events[9]["usage"]["cache_read_input_tokens"] == 3


def test_openai_encoder_sends_calls_known_only_at_the_end() -> None:
    enc = ChunkEncoder("r1", "m", include_usage=False)
    last = ChatChunk(finish_reason="tool_calls", usage=Usage(1, 1),
                     final_tool_calls=[ToolCall("c1", "f", {"a": 1})])
    events = _events([*enc.start(), *enc.chunk(last), *enc.end()])
    call = events[1]["choices"][0]["delta"]["tool_calls"][0]
    assert call == {"index": 0, "id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'}}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all("usage" not in e for e in events)


STATE = {"kind": "anthropic", "thinking": [
    {"type": "thinking", "thinking": "Hmm.", "signature": "sig1"},
    {"type": "redacted_thinking", "data": "opaque"}]}


def test_anthropic_encoder_signs_thinking_at_the_end_and_adds_redacted_blocks() -> None:
    enc = EventEncoder("r1", "m", thinking=True)
    frames = [*enc.start(), *enc.chunk(ChatChunk(reasoning_delta="Hmm.")),
              *enc.chunk(ChatChunk(delta="Yes")),
              *enc.chunk(ChatChunk(finish_reason="stop", usage=Usage(5, 2),
                                   provider_state=STATE, final_tool_calls=[])), *enc.end()]
    events = [(e["type"], e.get("index")) for e in _events(frames)]
    assert events[2:] == [
        ("content_block_start", 0), ("content_block_delta", 0),  # thinking, open
        ("content_block_start", 1), ("content_block_delta", 1),  # the answer
        ("content_block_stop", 1), ("content_block_delta", 0),   # signature_delta
        ("content_block_stop", 0), ("content_block_start", 2),   # redacted, whole
        ("content_block_stop", 2), ("message_delta", None), ("message_stop", None)]
    decoded = _events(frames)
    assert decoded[7]["delta"] == {"type": "signature_delta", "signature": "sig1"}
    assert decoded[9]["content_block"] == {"type": "redacted_thinking", "data": "opaque"}


def test_anthropic_encoder_leaves_out_another_kinds_reasoning() -> None:
    enc = EventEncoder("r1", "m", thinking=False)
    frames = [*enc.start(), *enc.chunk(ChatChunk(reasoning_delta="deepseek thinks")),
              *enc.chunk(ChatChunk(delta="Yes", finish_reason="stop", usage=Usage(1, 1))),
              *enc.end()]
    assert b"thinking" not in b"".join(frames)


def test_anthropic_encoder_refusal_and_cache_writes() -> None:
    enc = EventEncoder("r1", "m")
    frames = [*enc.start(), *enc.chunk(ChatChunk(delta="No.")), *enc.chunk(ChatChunk(
        finish_reason="stop", refusal="declined", usage=Usage(
            input_tokens=100, output_tokens=3, cached_tokens=30, cache_write_tokens=60))),
        *enc.end()]
    delta = _events(frames)[-2]
    assert delta["delta"]["stop_reason"] == "refusal"
    assert delta["usage"]["input_tokens"] == 10
    assert delta["usage"]["cache_creation_input_tokens"] == 60


def test_openai_encoder_sends_provider_state_before_the_finish() -> None:
    enc = ChunkEncoder("r1", "m", include_usage=False)
    frames = [*enc.start(), *enc.chunk(ChatChunk(tool_calls=[ToolCallDelta(0, "c1", "f", "{}")])),
              *enc.chunk(ChatChunk(finish_reason="tool_calls", provider_state=STATE,
                                   final_tool_calls=[ToolCall("c1", "f", {}, {"kind": "google",
                                                                               "sig": "t"})]))]
    deltas = [e["choices"][0]["delta"] for e in _events(frames)]
    assert deltas[2] == {"tool_calls": [{"index": 0, "function": {"arguments": ""},
                                         "provider_state": {"kind": "google", "sig": "t"}}]}
    assert deltas[3] == {"provider_state": STATE} and deltas[4] == {}


# -- keys and headers -------------------------------------------------------------------------

def test_key_ring_accepts_only_its_keys() -> None:
    ring = KeyRing(env_keys(["k1", "k2"]))
    assert ring.required and ring.allows(["nope", "k2"]) and not ring.allows(["k3"])
    assert not KeyRing([]).required


def test_call_options_from_headers() -> None:
    opts = call_options({"x-router-tag": "a=1, b = 2", "x-router-timeout": "1.5s"}, "rid")
    assert opts.kwargs() == {"request_id": "rid", "tags": {"a": "1", "b": "2"},
                             "timeout": 1.5}


# -- a bug in a handler -----------------------------------------------------------------------

async def test_a_bug_is_a_500_in_the_api_shape_and_logged(caplog: pytest.LogCaptureFixture,
                                                          ) -> None:
    app = create_app(fake_proxy())

    async def boom(request: web.Request) -> web.Response:
        raise KeyError("a bug")

    app.router.add_post("/v1/messages/boom", boom)
    caplog.set_level(logging.ERROR, logger="router")
    async with TestClient(TestServer(app)) as client:
        r = await client.post("/v1/messages/boom")
        body = await r.json()
    assert r.status == 500 and body["error"]["type"] == "api_error"
    assert "Traceback" not in json.dumps(body) and "a bug" not in json.dumps(body)
    assert "proxy_bug" in caplog.text


def fake_proxy(state: dict[str, Any] | None = None) -> Proxy:
    routes: dict[str, Any] = {"version": 1, "providers": {"fk": {"kind": "fake"}},
                              "models": {"fast": ["fk:m"]}}
    if state is not None:
        routes["state"] = state
    router = Router.from_dict(routes)
    st = router.plan.state
    return Proxy(router, make_store(st.kind, path=st.path, url=st.url, prefix=st.prefix),
                 Settings())


async def test_readyz_names_an_unreachable_store() -> None:
    proxy = fake_proxy({"kind": "redis", "url": "redis://127.0.0.1:1/0"})
    async with TestClient(TestServer(create_app(proxy))) as client:
        r = await client.get("/readyz")
        body = await r.json()
        assert r.status == 503 and body["status"] == "not_ready"
        assert body["store"] == {"kind": "redis", "ok": False}
        assert "state store (redis) unreachable" in body["problems"][0]
        assert (await client.get("/healthz")).status == 200  # up, though not ready


async def test_draining_refuses_new_calls_but_not_probes(caplog: pytest.LogCaptureFixture,
                                                         ) -> None:
    proxy = fake_proxy()
    caplog.set_level(logging.INFO, logger="router")
    async with TestClient(TestServer(create_app(proxy))) as client:
        proxy.draining = True
        r = await client.post("/v1/chat/completions", json={"model": "fast", "messages": [
            {"role": "user", "content": "hi"}]})
        assert r.status == 503 and (await r.json())["error"]["code"] == "draining"
        assert (await client.get("/readyz")).status == 503
        assert (await client.get("/healthz")).status == 200
    assert "error=draining" in caplog.text or "'error': 'draining'" in caplog.text


async def test_errors_take_the_shape_of_the_client_api() -> None:
    async with TestClient(TestServer(create_app(fake_proxy()))) as client:
        r = await client.get("/v1/models/nope", headers={"anthropic-version": "2023-06-01"})
        assert r.status == 404 and (await r.json())["error"]["type"] == "not_found_error"
        r = await client.get("/v1/models/nope")
        assert r.status == 404 and (await r.json())["error"]["code"] == "model_not_found"
