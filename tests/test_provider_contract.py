"""The provider contract: one suite, run against every HTTP kind (openai, openai-compatible,
azure-openai, anthropic, google, ollama) on its own loopback stand-in, for what every kind must
do the same way: free the connection when a stream is closed early or a call is cancelled,
return it to the pool when a stream ends, time out on a silent server (first token) and on a
stalled stream (idle), refuse a stream without its terminator (naming it), a stream reset
mid-way, a reply of the wrong shape and a reply that is not JSON as typed errors, never follow
a redirect, refuse an oversized body, fail a refused connection as a retryable network error,
re-send a request that met a stale keep-alive connection, and yield the final chunk without
waiting on the body. Through the Router, the same errors reach the chain: a wrong-shaped reply
and a redirect fall back to the next target, and a stream cut after its first chunk is a
StreamInterruptedError carrying every attempt.

Each kind's wire shapes come from its server module (``tests/servers/``); ``KINDS`` says, per
kind, which payload builders make a reply, a stream, a stream cut before its terminator, and a
reply of the wrong shape, how the kind names its terminator, and how many events of a stream
come before its first text.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from router import Router
from router.errors import (
    ErrorClass,
    LlmError,
    NetworkError,
    ServerError,
    StreamInterruptedError,
    TimeoutError_,
)
from router.providers.base import HttpPool, Provider, ProviderConfig, Timeouts
from router.providers.registry import provider_class
from router.secret import Secret
from router.types import ChatChunk, ChatRequest, Message
from tests.engine_helpers import text_of
from tests.servers import anthropic as an
from tests.servers import azure as az
from tests.servers import google as gg
from tests.servers import ollama as ol
from tests.servers import openai as oa
from tests.servers.base import Reply, ScriptedServer, json_reply, redirect_reply, stream_reply

KEY = "sk-contract-0123456789abcdef0123"
T = Timeouts(connect=5, first_token=5, total=10, idle=5)
FOREVER = 3600.0  # a server wait that ends only when the server closes


@dataclass(frozen=True)
class Kind:
    """One provider kind and its wire: payload builders of its loopback server."""

    kind: str
    server: Callable[[], ScriptedServer]
    model: str
    reply: Callable[[str], Any]  # a whole non-streamed answer body
    stream: Callable[[Sequence[str]], list[Any]]  # a whole stream's events, terminator included
    cut: Callable[[Sequence[str]], list[Any]]  # the same stream without its terminator
    wrong_shape: Any  # valid JSON of the wrong shape for a 200 answer
    terminator: str  # how the error of a stream cut before its terminator names it
    before_text: int  # events in ``stream`` before its first text delta
    key: str | None = KEY
    sentinel: int = 0  # frames the server adds after the events (OpenAI's [DONE])
    options: dict[str, Any] = field(default_factory=dict)


def _openai_cut(parts: Sequence[str]) -> list[Any]:
    return [oa.chunk({"role": "assistant", "content": ""}),
            *(oa.chunk({"content": p}) for p in parts)]


def _azure_cut(parts: Sequence[str]) -> list[Any]:
    return az.azure_text_events(list(parts))[:-2]  # no finish chunk, no usage chunk


KINDS = [
    Kind("openai", oa.OpenAIServer, "gpt-4o-mini", lambda t: oa.completion(t), oa.text_events,
         _openai_cut, {"id": "x", "choices": [{"index": 0, "message": "hi"}]},
         "a choice with finish_reason", 1, sentinel=1),
    Kind("openai-compatible", oa.OpenAIServer, "llama-3.1-8b", lambda t: oa.completion(t),
         oa.text_events, _openai_cut, {"choices": 5}, "a choice with finish_reason", 1,
         key=None, sentinel=1),
    Kind("azure-openai", az.AzureServer, "gpt-4o", lambda t: az.azure_completion(t),
         lambda parts: az.azure_text_events(list(parts)), _azure_cut,
         {"choices": [{"message": {"content": 7}}]}, "a choice with finish_reason", 2,
         sentinel=1),
    Kind("anthropic", an.AnthropicServer, "claude-haiku-4-5",
         lambda t: an.message([an.text_block(t)]), an.text_events,
         lambda parts: an.text_events(parts)[:-1], {"type": "message", "content": 5},
         "message_stop", 3),
    Kind("google", gg.GoogleServer, "gemini-2.5-flash", lambda t: gg.response(t),
         gg.text_events, lambda parts: [gg.chunk([gg.text_part(p)]) for p in parts],
         {"candidates": [{"content": {"parts": 5}}]}, "a candidate with finishReason", 0),
    Kind("ollama", ol.OllamaServer, "llama3.2", lambda t: ol.chat_response(t), ol.text_lines,
         lambda parts: [ol.delta(p) for p in parts], {"message": 5, "done": True},
         "done: true", 0),
]


@pytest.fixture(params=KINDS, ids=[k.kind for k in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    k: Kind = request.param
    return k


@pytest.fixture
async def server(kind: Kind) -> AsyncIterator[ScriptedServer]:
    async with kind.server() as s:
        yield s


def provider(kind: Kind, server: ScriptedServer, pool: HttpPool) -> Provider:
    config = ProviderConfig(name=kind.kind, kind=kind.kind, base_url=server.base_url,
                            api_key=Secret(kind.key) if kind.key else None,
                            options=kind.options)
    return provider_class(kind.kind)(config, pool)


def ask(text: str = "hi") -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], max_tokens=64)


async def chat(kind: Kind, server: ScriptedServer, pool: HttpPool,
               timeouts: Timeouts = T) -> str:
    response = await provider(kind, server, pool).chat(kind.model, ask(), timeouts)
    return response.text


async def collect(kind: Kind, server: ScriptedServer, pool: HttpPool,
                  timeouts: Timeouts = T) -> list[ChatChunk]:
    stream = provider(kind, server, pool).stream(kind.model, ask(), timeouts)
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [c async for c in stream]


# -- the connection is freed -----------------------------------------------------------------


async def test_closing_a_stream_early_frees_the_connection(kind: Kind, server: ScriptedServer,
                                                           http_pool: HttpPool) -> None:
    events = kind.stream(["one", "two", "three"])
    server.enqueue(Reply(events=events, stall_after=len(events) - 1))  # never ends
    stream = provider(kind, server, http_pool).stream(kind.model, ask(), T)
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        first = await anext(stream)
        assert first.delta == "one" and server.open_connections == 1
    assert await server.wait_connections(0) == 0


async def test_finished_stream_returns_its_connection_to_the_pool(
        kind: Kind, server: ScriptedServer, http_pool: HttpPool) -> None:
    p = provider(kind, server, http_pool)
    for _ in range(3):
        server.enqueue(Reply(events=kind.stream(["x"])))
        stream = p.stream(kind.model, ask(), T)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            assert text_of([c async for c in stream]) == "x"
    assert server.request_count == 3
    assert len(server.peers) == 1  # one connection, reused


async def test_cancelling_a_call_frees_the_connection(kind: Kind, server: ScriptedServer,
                                                      http_pool: HttpPool) -> None:
    server.enqueue(Reply(json=kind.reply("late"), delay=FOREVER))
    task = asyncio.create_task(chat(kind, server, http_pool))
    await server.wait_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await server.wait_connections(0) == 0


async def test_cancelling_mid_stream_frees_the_connection(kind: Kind, server: ScriptedServer,
                                                          http_pool: HttpPool) -> None:
    events = kind.stream(["one", "two", "three"])
    server.enqueue(Reply(events=events, stall_after=len(events) - 1))
    first = asyncio.Event()

    async def consume() -> None:
        stream = provider(kind, server, http_pool).stream(kind.model, ask(), T)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for chunk in stream:
                if chunk.delta:
                    first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await server.wait_connections(0) == 0


# -- timeouts --------------------------------------------------------------------------------


async def test_silent_server_is_a_first_token_timeout(kind: Kind, server: ScriptedServer,
                                                      http_pool: HttpPool) -> None:
    server.enqueue(Reply(events=kind.stream(["late"]), first_byte_delay=FOREVER))
    short = Timeouts(connect=5, first_token=0.1, total=10, idle=5)
    with pytest.raises(TimeoutError_) as info:
        await collect(kind, server, http_pool, short)
    assert info.value.timeout_kind == "first_token"


async def test_stalled_stream_is_an_idle_timeout(kind: Kind, server: ScriptedServer,
                                                 http_pool: HttpPool) -> None:
    server.enqueue(Reply(events=kind.stream(["a", "b"]), stall_after=kind.before_text + 1))
    short = Timeouts(connect=5, first_token=5, total=10, idle=0.2)
    got: list[str] = []
    stream = provider(kind, server, http_pool).stream(kind.model, ask(), short)
    with pytest.raises(TimeoutError_) as info:
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for chunk in stream:
                got.append(chunk.delta)
    assert info.value.timeout_kind == "idle" and got == ["a"]
    assert await server.wait_connections(0) == 0


# -- broken replies are typed errors ---------------------------------------------------------


async def test_stream_without_its_terminator_is_a_network_error(
        kind: Kind, server: ScriptedServer, http_pool: HttpPool) -> None:
    server.enqueue(Reply(events=kind.cut(["Hel", "lo"]), done=False))
    with pytest.raises(NetworkError) as info:
        await collect(kind, server, http_pool)
    assert info.value.retryable
    assert info.value.message == f"stream ended before {kind.terminator}"


async def test_stream_reset_mid_stream_is_a_network_error(kind: Kind, server: ScriptedServer,
                                                          http_pool: HttpPool) -> None:
    events = kind.stream(["a", "b", "c"])
    server.enqueue(Reply(events=events, reset_after=kind.before_text + 1))
    with pytest.raises(NetworkError):
        await collect(kind, server, http_pool)


async def test_reply_of_the_wrong_shape_is_a_server_error(kind: Kind, server: ScriptedServer,
                                                          http_pool: HttpPool) -> None:
    server.enqueue(Reply(json=kind.wrong_shape))
    with pytest.raises(ServerError):
        await chat(kind, server, http_pool)


async def test_reply_that_is_not_json_is_a_server_error(kind: Kind, server: ScriptedServer,
                                                        http_pool: HttpPool) -> None:
    server.enqueue(Reply(raw=b"<html>502 Bad Gateway</html>"))
    with pytest.raises(ServerError) as info:
        await chat(kind, server, http_pool)
    assert "not JSON" in info.value.message


async def test_a_404_names_the_path_it_requested(kind: Kind, server: ScriptedServer,
                                                http_pool: HttpPool) -> None:
    # A wrong base_url answers 404 with a generic text: the error says what was asked.
    server.enqueue(Reply(status=404, raw=b"404 page not found", content_type="text/plain"))
    with pytest.raises(LlmError) as info:
        await chat(kind, server, http_pool)
    path = server.requests[0].path
    assert (info.value.error_class, info.value.status) == (ErrorClass.NOT_FOUND, 404)
    assert info.value.message.endswith(f"(POST {path})")


async def test_redirect_is_not_followed(kind: Kind, server: ScriptedServer,
                                        http_pool: HttpPool) -> None:
    async with kind.server() as elsewhere:
        server.enqueue(redirect_reply(elsewhere.base_url + "/anywhere"))
        with pytest.raises(LlmError) as info:
            await chat(kind, server, http_pool)
        assert elsewhere.request_count == 0
    assert (info.value.error_class, info.value.status) == (ErrorClass.SERVER, 307)
    assert not info.value.retryable


async def test_oversized_body_is_a_server_error(kind: Kind, server: ScriptedServer) -> None:
    server.enqueue(Reply(huge=1 << 20))
    async with HttpPool(max_body_bytes=64 << 10) as pool:
        with pytest.raises(ServerError, match="larger than"):
            await chat(kind, server, pool)


async def test_oversized_stream_event_is_a_server_error(kind: Kind,
                                                        server: ScriptedServer) -> None:
    server.enqueue(Reply(events=kind.stream(["x" * 5000])))
    async with HttpPool(max_event_bytes=1000) as pool:
        with pytest.raises(ServerError, match="larger than"):
            await collect(kind, server, pool)


# -- refused connections --------------------------------------------------------------------


async def test_refused_connection_is_a_network_error(kind: Kind, http_pool: HttpPool) -> None:
    async with kind.server() as gone:
        pass  # closed: its port now refuses connections
    with pytest.raises(NetworkError) as info:
        await chat(kind, gone, http_pool)
    assert info.value.retryable and KEY not in str(info.value) and KEY not in repr(info.value)


async def test_refused_stream_is_a_network_error(kind: Kind, http_pool: HttpPool) -> None:
    async with kind.server() as gone:
        pass
    with pytest.raises(NetworkError) as info:
        await collect(kind, gone, http_pool)
    assert info.value.retryable


# -- keep-alive and the end of a stream ------------------------------------------------------


async def test_stale_keep_alive_connection_is_resent(kind: Kind, server: ScriptedServer,
                                                     http_pool: HttpPool) -> None:
    server.drop_reused = True  # like llama.cpp's server: keep-alive advertised, then closed
    server.enqueue(Reply(json=kind.reply("first")), Reply(json=kind.reply("again")))
    assert await chat(kind, server, http_pool) == "first"
    assert await chat(kind, server, http_pool) == "again"  # its pooled connection was dropped
    assert server.request_count == 3  # the dropped request, then the resend


async def test_final_chunk_does_not_wait_for_the_body_to_end(
        kind: Kind, server: ScriptedServer, http_pool: HttpPool) -> None:
    events = kind.stream(["Hel", "lo"])
    server.enqueue(Reply(events=events, stall_after=len(events) + kind.sentinel))
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks = await collect(kind, server, http_pool)
    assert loop.time() - started < 0.5  # a drain of the open body would take a second
    assert chunks[-1].finish_reason == "stop"


# -- the seam's typed errors reach the chain (through the Router) -----------------------------
# Two providers of the kind on the same server: its reply queue is FIFO, so the first provider
# gets the first scripted reply.
MSG = [{"role": "user", "content": "hi"}]


def two_of(kind: Kind, server: ScriptedServer) -> Router:
    """Providers ``a`` and ``b`` of ``kind`` on ``server``; route ``r`` is [a, b], one try each."""
    spec: dict[str, Any] = {"kind": kind.kind, "base_url": server.base_url, **kind.options}
    if kind.key:
        spec["api_key"] = "${SEAM_KEY}"
    return Router.from_dict({
        "version": 1,
        "defaults": {"retry": {"attempts": 1},
                     "timeout": {"connect": "2s", "first_token": "2s", "total": "5s"}},
        "providers": {"a": dict(spec), "b": dict(spec)},
        "models": {"r": [f"a:{kind.model}", f"b:{kind.model}"]},
    }, env={"SEAM_KEY": kind.key or ""})


async def test_a_reply_of_the_wrong_shape_falls_back_to_the_next_target(
        kind: Kind, server: ScriptedServer) -> None:
    server.enqueue(Reply(json=kind.wrong_shape), json_reply(kind.reply("from b")))
    async with two_of(kind, server) as router:
        r = await router.chat("r", MSG)
    assert (r.text, r.target) == ("from b", f"b:{kind.model}")
    first = r.attempts[0]
    assert (first.target, first.outcome, first.error_class) == (
        f"a:{kind.model}", "error", ErrorClass.SERVER)


async def test_a_redirect_falls_back_without_reaching_the_redirect_target(
        kind: Kind, server: ScriptedServer) -> None:
    async with kind.server() as elsewhere:
        server.enqueue(redirect_reply(elsewhere.base_url + "/v1/anything"),
                       json_reply(kind.reply("from b")))
        async with two_of(kind, server) as router:
            r = await router.chat("r", MSG)
        assert elsewhere.request_count == 0
    assert r.target == f"b:{kind.model}"
    assert (r.attempts[0].error_class, r.attempts[0].status) == (ErrorClass.SERVER, 307)


async def test_a_stream_cut_after_its_first_chunk_is_interrupted_with_every_attempt(
        kind: Kind, server: ScriptedServer) -> None:
    server.enqueue(stream_reply(kind.cut(["Hel", "lo"])))
    seen: list[str] = []
    async with two_of(kind, server) as router:
        with pytest.raises(StreamInterruptedError) as info:
            async for chunk in router.stream("r", MSG, recover="off"):
                seen.append(chunk.delta or "")
    err = info.value
    assert "".join(seen) == "Hello" == err.partial_text
    assert [(a.target, a.outcome, a.error_class) for a in err.attempts] == [
        (f"a:{kind.model}", "error", ErrorClass.NETWORK)]
    assert server.request_count == 1  # nothing already sent is repeated elsewhere


async def test_a_stream_cut_after_its_first_chunk_is_resumed_by_a_replay(
        kind: Kind, server: ScriptedServer) -> None:
    # issue 11: the next target replays the request; what the caller has is not repeated
    server.enqueue(stream_reply(kind.cut(["Hel", "lo"])),
                   stream_reply(kind.stream(["Hel", "lo, ", "world"])))
    async with two_of(kind, server) as router:
        chunks = [c async for c in router.stream("r", MSG)]
    assert "".join(c.delta for c in chunks) == "Hello, world"
    assert [(a.target, a.outcome) for a in chunks[-1].attempts or []] == [
        (f"a:{kind.model}", "error"), (f"b:{kind.model}", "ok")]
    assert server.request_count == 2
