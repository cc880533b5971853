"""Router.stream end to end: SSE reassembly, fallback before the first chunk, commitment after
it with recovery off (stream_interrupted with the partial text; recovery itself is
tests/test_stream_recovery.py), per-target timeouts mid-stream, and freeing the
connection when the consumer stops early or is cancelled."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from router import Router
from router.errors import ErrorClass, RouteFailed, StreamInterruptedError
from tests.engine_helpers import (
    MSG,
    Factory,
    TrickleServer,
    chat_path,
    collect,
    free_port,
    hits,
    our_pending_tasks,
    provider,
    route_file,
    sse_body,
    target,
    text_of,
)
from tests.servers.openai import (
    OpenAIServer,
    Reply,
    chunk,
    error_reply,
    text_events,
    tool_call_events,
    usage,
)

PARTS = ["Hel", "lo, ", "wor", "ld", "!"]


# -- reassembly ---------------------------------------------------------------------------------


async def test_stream_assembles_text_from_sse_split_in_tiny_pieces(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(PARTS), piece_sizes=(1, 7)),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == "Hello, world!"
    assert all(c.target == "a:m" for c in chunks)
    assert openai_server.requests[0].json["stream"] is True


async def test_stream_assembles_streamed_tool_call_arguments_on_the_last_chunk(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    args = '{"city": "Paris", "unit": "celsius"}'
    openai_server.enqueue(Reply(events=tool_call_events(
        [("call_1", "get_weather", args), ("call_2", "get_time", '{"tz": "CET"}')], fragment=3),
        piece_sizes=(1, 7)), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    chunks = await collect(router.stream("r", MSG, tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]))
    last = chunks[-1]
    assert last.finish_reason == "tool_calls"
    assert last.final_tool_calls is not None
    assert [(c.id, c.name, c.arguments) for c in last.final_tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris", "unit": "celsius"}),
        ("call_2", "get_time", {"tz": "CET"})]
    fragments = "".join(d.arguments for c in chunks[:-1] for d in c.tool_calls if d.index == 0)
    assert fragments == args


async def test_stream_last_chunk_carries_usage_cost_and_attempts(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(PARTS, usage_=usage(1000, 500))),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]}, providers={
        "a": {"models": {"m": {"price": {"input": 2.0, "output": 10.0}}}}})
    chunks = await collect(router.stream("r", MSG))
    last = chunks[-1]
    assert last.usage is not None
    assert (last.usage.input_tokens, last.usage.output_tokens) == (1000, 500)
    assert last.cost_usd == pytest.approx((1000 * 2.0 + 500 * 10.0) / 1e6)
    assert last.attempts is not None
    assert [(a.target, a.outcome) for a in last.attempts] == [("a:m", "ok")]
    assert last.attempts[0].ttft_ms is not None
    assert all(c.usage is None for c in chunks[:-1])


# -- before the first chunk: retry and fallback ------------------------------------------------


async def test_stream_falls_back_before_the_first_chunk_without_duplicated_output(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(PARTS)), path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == "Hello, world!"
    assert {c.target for c in chunks} == {"b:m"}
    assert chunks[-1].attempts is not None
    assert [(a.target, a.outcome) for a in chunks[-1].attempts] == [("a:m", "error"),
                                                                    ("b:m", "ok")]


async def test_stream_retries_a_rate_limit_before_the_first_chunk(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("rate_limit_exceeded", headers={"retry-after-ms": "1"}),
                          Reply(events=text_events(PARTS)), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == "Hello, world!"
    assert hits(openai_server, "a") == 2


async def test_stream_that_fails_everywhere_raises_route_failed(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    openai_server.enqueue(error_reply("invalid_api_key"), path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1})
    with pytest.raises(RouteFailed) as info:
        await collect(router.stream("r", MSG))
    assert info.value.error_class is ErrorClass.AUTH
    assert [a.target for a in info.value.attempts] == ["a:m", "b:m"]


async def test_stream_first_token_timeout_falls_back(router_for: Factory,
                                                     openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(PARTS), first_byte_delay=10),
                          path=chat_path("a"))
    openai_server.enqueue(Reply(events=text_events(PARTS)), path=chat_path("b"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 1},
                        timeout={"first_token": "100ms"})
    chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == "Hello, world!"
    first = chunks[-1].attempts[0]
    assert (first.error_class, first.timeout_kind) == (ErrorClass.TIMEOUT, "first_token")


# -- after the first chunk: committed ----------------------------------------------------------


async def test_reset_after_the_first_chunk_raises_stream_interrupted_with_partial_text(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    # events: role chunk, "Hel", "lo, ", then the connection is aborted
    openai_server.enqueue(Reply(events=text_events(PARTS), reset_after=3), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]})
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        async for c in router.stream("r", MSG, recover="off"):
            received.append(c.delta)
    e = info.value
    assert e.error_class is ErrorClass.STREAM_INTERRUPTED
    assert e.partial_text == "".join(received) == "Hello, "
    assert e.target == "a:m"
    assert e.cause_class is ErrorClass.NETWORK
    assert hits(openai_server, "a") == 1  # committed: no retry
    assert hits(openai_server, "b") == 0  # and no fallback


async def test_error_event_after_the_first_chunk_raises_stream_interrupted(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    events = [chunk({"content": "Hel"}),
              {"error": {"message": "The server had an error", "type": "server_error",
                         "param": None, "code": None}}]
    openai_server.enqueue(Reply(events=events, done=False), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]})
    with pytest.raises(StreamInterruptedError) as info:
        await collect(router.stream("r", MSG, recover="off"))
    assert info.value.partial_text == "Hel"
    assert info.value.cause_class is ErrorClass.SERVER
    assert hits(openai_server, "b") == 0


async def test_idle_gap_after_the_first_chunk_is_interrupted_with_timeout_cause(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(PARTS), stall_after=3), path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, timeout={"idle": "100ms"})
    with pytest.raises(StreamInterruptedError) as info:
        await collect(router.stream("r", MSG, recover="off"))
    e = info.value
    assert e.partial_text == "Hello, "
    assert e.cause_class is ErrorClass.TIMEOUT
    assert hits(openai_server, "b") == 0


async def test_stream_trickling_past_total_is_interrupted_with_kind_total() -> None:
    events = text_events(PARTS * 3)  # ~17 frames, 40 ms apart, each within idle
    async with TrickleServer(sse_body(events), gap=0.04,
                             content_type="text/event-stream") as slow:
        data = route_file(slow.port, {"r": ["slow:m"]}, names=["slow"], timeout={
            "connect": "100ms", "first_token": "100ms", "idle": "100ms", "total": "200ms"})
        async with Router.from_dict(data) as router:
            received: list[str] = []
            with pytest.raises(StreamInterruptedError) as info:
                async for c in router.stream("r", MSG, recover="off"):
                    received.append(c.delta)
    e = info.value
    assert e.cause_class is ErrorClass.TIMEOUT
    assert e.partial_text == "".join(received) != ""
    assert slow.requests == 1


# -- early exit and cancellation -----------------------------------------------------------------


async def test_breaking_out_of_a_stream_frees_the_connection(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(PARTS), stall_after=3), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    async for c in router.stream("r", MSG):
        if c.delta:
            break
    assert await openai_server.wait_connections(0, timeout=1.0) == 0
    await asyncio.sleep(0)
    assert our_pending_tasks() == []


async def test_closing_a_stream_early_with_aclosing_frees_the_connection(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(PARTS), stall_after=3), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    stream = router.stream("r", MSG)
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        async for _ in stream:
            break
    # aclose() closed every generator of the chain itself: nothing is left for the garbage
    # collector's finalizer hook to close later in a task of its own
    await asyncio.sleep(0)
    assert our_pending_tasks() == []
    assert await openai_server.wait_connections(0, timeout=1.0) == 0


async def test_cancelling_a_stream_consumer_frees_the_connection(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(PARTS), stall_after=3), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    first = asyncio.Event()

    async def consume() -> None:
        async for c in router.stream("r", MSG):
            if c.delta:
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await openai_server.wait_connections(0, timeout=1.0) == 0
    assert our_pending_tasks() == []


async def test_cancelling_before_the_first_chunk_frees_the_connection(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(PARTS), first_byte_delay=10),
                          path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    task = asyncio.create_task(collect(router.stream("r", MSG)))
    while hits(openai_server, "a") == 0:
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await openai_server.wait_connections(0, timeout=1.0) == 0
    assert our_pending_tasks() == []


async def test_a_finished_stream_returns_its_connection_to_the_pool(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    router = router_for({"r": [target("a")]})
    for _ in range(3):
        openai_server.enqueue(Reply(events=text_events(PARTS)), path=chat_path("a"))
        await collect(router.stream("r", MSG))
    assert len({r.peer for r in openai_server.requests}) == 1  # one connection, reused


async def test_stream_provider_with_unreachable_port_falls_back(
        openai_server: OpenAIServer) -> None:
    data = route_file(openai_server.port, {"r": ["dead:m", "b:m"]}, names=["b"],
                      retry={"attempts": 1})
    data["providers"]["dead"] = {**provider(openai_server.port, "dead"),
                                 "base_url": f"http://127.0.0.1:{free_port()}/v1"}
    openai_server.enqueue(Reply(events=text_events(PARTS)), path=chat_path("b"))
    async with Router.from_dict(data) as router:
        chunks = await collect(router.stream("r", MSG))
    assert text_of(chunks) == "Hello, world!"
    assert chunks[-1].attempts[0].error_class is ErrorClass.NETWORK


async def test_stream_without_usage_still_ends_with_the_attempts_on_the_last_chunk(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    events = text_events(PARTS)[:-1]  # a server that ignores stream_options: no usage chunk
    openai_server.enqueue(Reply(events=events), path=chat_path("a"))
    router = router_for({"r": [target("a")]})
    chunks = await collect(router.stream("r", MSG))
    last = chunks[-1]
    assert (last.finish_reason, last.usage, last.cost_usd) == ("stop", None, None)
    assert last.attempts is not None
    assert [(a.target, a.outcome) for a in last.attempts] == [("a:m", "ok")]


async def test_stream_call_timeout_bounds_the_wait_for_the_first_chunk(
        router_for: Factory, openai_server: OpenAIServer) -> None:
    for _ in range(3):
        openai_server.enqueue(Reply(events=text_events(PARTS), first_byte_delay=10),
                              path=chat_path("a"))
    router = router_for({"r": [target("a"), target("b")]}, retry={"attempts": 3})
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(RouteFailed) as info:
        await collect(router.stream("r", MSG, timeout=0.25))
    assert 0.23 <= loop.time() - start < 0.6
    assert info.value.error_class is ErrorClass.TIMEOUT
    assert hits(openai_server, "b") == 0
