"""The HTTP seam (router.providers.http) against loopback servers that misbehave: redirects,
connection limits and slot waits, stale keep-alive connections, size caps, finishing a stream,
the timeouts it enforces itself."""

from __future__ import annotations

import asyncio
import contextlib
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from router.errors import ErrorClass, LlmError, NetworkError, ServerError, TimeoutError_
from router.providers._slots import Slots
from router.providers.http import HttpPool
from router.specs import Timeouts
from tests.servers.base import Reply, ScriptedServer, redirect_reply

BODY = {"model": "m", "messages": [{"role": "user", "content": "secret prompt"}]}
T = Timeouts(connect=5, first_token=5, total=10, idle=5)
FOREVER = 3600.0  # a server wait that ends only when the server closes


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer() as s:
        yield s


@pytest.fixture
async def other() -> AsyncIterator[ScriptedServer]:
    async with ScriptedServer() as s:
        yield s


async def post_json(pool: HttpPool, server: ScriptedServer, timeouts: Timeouts = T,
                    **kw: Any) -> Any:
    async with pool.post(server.base_url + "/v1/x", BODY, headers={}, timeouts=timeouts,
                         **kw) as resp:
        return await resp.json()


async def hold(pool: HttpPool, server: ScriptedServer, n: int, **kw: Any
               ) -> list[asyncio.Task[Any]]:
    """``n`` requests the server holds (its default reply waits until it closes)."""
    server.default = Reply(json={}, delay=FOREVER)
    tasks = [asyncio.create_task(post_json(pool, server, **kw)) for _ in range(n)]
    await server.wait_requests(min(n, kw.get("max_connections") or 64))
    return tasks


async def cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- redirects --------------------------------------------------------------------------------


async def test_redirect_is_never_followed(server: ScriptedServer, other: ScriptedServer) -> None:
    server.enqueue(redirect_reply(other.base_url + "/v1/x"))
    headers = {"x-api-key": "k1", "x-goog-api-key": "k2", "api-key": "k3", "X-Custom": "k4"}
    async with HttpPool() as pool:
        with pytest.raises(LlmError) as info:
            async with pool.post(server.base_url + "/v1/x", BODY, headers=headers, timeouts=T):
                pass
    assert other.request_count == 0  # neither the keys nor the prompt went there
    err = info.value
    assert (err.error_class, err.status, err.retryable) == (ErrorClass.SERVER, 307, False)
    assert "base_url" in err.message


async def test_redirect_message_names_the_location_host_only(server: ScriptedServer) -> None:
    server.enqueue(redirect_reply("https://api.example.com/v2/chat?key=sk-hidden", status=301))
    async with HttpPool() as pool:
        with pytest.raises(ServerError) as info:
            await post_json(pool, server)
    assert "api.example.com" in info.value.message
    assert "sk-hidden" not in info.value.message and "/v2/chat" not in info.value.message


# -- connection slots ------------------------------------------------------------------------


async def test_a_stalled_origin_does_not_starve_another(server: ScriptedServer,
                                                        other: ScriptedServer) -> None:
    async with HttpPool() as pool:
        stalled = await hold(pool, server, 100)
        try:
            quick = Timeouts(connect=1, first_token=1, total=2, idle=1)
            assert await post_json(pool, other, quick) == {}
        finally:
            await cancel(stalled)
    assert server.request_count == 64  # the default per-origin limit; the rest queued


async def test_time_waiting_for_a_slot_is_not_charged_to_first_token(
        server: ScriptedServer) -> None:
    server.enqueue(Reply(json={"n": 1}, delay=0.3), Reply(json={"n": 2}))
    async with HttpPool(limit_per_host=1) as pool:
        first = asyncio.create_task(post_json(pool, server))
        await server.wait_requests(1)
        short = Timeouts(connect=5, first_token=0.15, total=5, idle=5)
        assert await post_json(pool, server, short) == {"n": 2}  # waited ~0.3 s for the slot
        assert await first == {"n": 1}


async def test_slot_wait_longer_than_total_is_a_pool_timeout(server: ScriptedServer) -> None:
    async with HttpPool(limit_per_host=1) as pool:
        stalled = await hold(pool, server, 1)
        try:
            with pytest.raises(TimeoutError_) as info:
                await post_json(pool, server, Timeouts(connect=5, first_token=5, total=0.05,
                                                       idle=5))
        finally:
            await cancel(stalled)
    assert info.value.timeout_kind == "pool"
    assert server.request_count == 1  # nothing was sent


async def test_max_connections_overrides_the_per_host_limit(server: ScriptedServer) -> None:
    async with HttpPool() as pool:
        stalled = await hold(pool, server, 5, max_connections=2)
        try:
            with pytest.raises(TimeoutError_, match="2 in use"):
                await post_json(pool, server, Timeouts(connect=5, first_token=5, total=0.05,
                                                       idle=5), max_connections=2)
        finally:
            await cancel(stalled)
    assert server.request_count == 2


async def test_slots_hand_a_freed_slot_to_the_first_waiter() -> None:
    slots = Slots(1)
    assert slots.try_acquire()
    waiter = asyncio.create_task(slots.acquire(5))
    await asyncio.sleep(0)  # let it queue
    assert not slots.try_acquire()  # queued before us: no barging in
    slots.release()
    await waiter
    assert (slots.in_use, slots.waiting) == (1, 0)


async def test_slots_cancelled_waiter_leaves_the_queue() -> None:
    slots = Slots(1)
    assert slots.try_acquire()
    waiter = asyncio.create_task(slots.acquire(5))
    await asyncio.sleep(0)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    slots.release()
    assert (slots.in_use, slots.waiting) == (0, 0)
    assert slots.try_acquire()


# -- stale keep-alive connections ------------------------------------------------------------


async def test_stale_pooled_connection_is_resent_once_on_a_new_one(
        server: ScriptedServer) -> None:
    server.drop_reused = True  # answers once per connection, then drops what comes on it
    async with HttpPool() as pool:
        assert await post_json(pool, server) == {}
        assert await post_json(pool, server) == {}
    assert server.request_count == 3  # the dropped one, then the resend
    assert len(server.peers) == 2


async def test_failure_on_a_new_connection_is_not_resent(server: ScriptedServer) -> None:
    server.enqueue(Reply(drop=True))
    async with HttpPool() as pool:
        with pytest.raises(NetworkError):
            await post_json(pool, server)
    assert server.request_count == 1


# -- size caps -------------------------------------------------------------------------------


async def test_huge_body_is_refused_without_holding_it(server: ScriptedServer) -> None:
    server.enqueue(Reply(huge=50_000_000))  # chunked: no Content-Length to refuse it early
    async with HttpPool() as pool:
        tracemalloc.start()
        try:
            with pytest.raises(ServerError, match="larger than 8388608 bytes"):
                await post_json(pool, server)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 24 << 20  # about the 8 MiB cap (x2 at most), far from 50 MB


async def test_declared_length_over_the_cap_is_refused_before_reading(
        server: ScriptedServer) -> None:
    server.enqueue(Reply(raw=b"x" * 5000))
    async with HttpPool(max_body_bytes=1000) as pool:
        with pytest.raises(ServerError, match="larger than 1000 bytes"):
            await post_json(pool, server)


async def drain_stream(pool: HttpPool, server: ScriptedServer, kind: str) -> list[Any]:
    """Every event (``sse``) or value (``ndjson``) of one streamed reply."""
    got: list[Any] = []
    async with pool.post(server.base_url, BODY, headers={}, timeouts=T) as resp:
        events = resp.iter_sse() if kind == "sse" else resp.iter_ndjson()
        async for item, _ in events:
            got.append(item)
    return got


async def test_sse_event_over_the_cap_is_a_server_error(server: ScriptedServer) -> None:
    server.enqueue(Reply(events=[{"text": "x" * 5000}]))
    async with HttpPool(max_event_bytes=1000) as pool:
        with pytest.raises(ServerError, match="larger than 1000 bytes"):
            await drain_stream(pool, server, "sse")


async def test_ndjson_line_over_the_cap_is_a_server_error(server: ScriptedServer) -> None:
    server.enqueue(Reply(events=[b'{"text": "' + b"x" * 5000 + b'"}\n']))
    async with HttpPool(max_event_bytes=1000) as pool:
        with pytest.raises(ServerError, match="larger than 1000 bytes"):
            await drain_stream(pool, server, "ndjson")


async def test_ndjson_body_cut_inside_a_line_is_a_network_error(server: ScriptedServer) -> None:
    server.enqueue(Reply(events=[b'{"a": 1}\n', b'{"a": ']))
    async with HttpPool() as pool:
        with pytest.raises(NetworkError, match="inside an NDJSON line"):
            await drain_stream(pool, server, "ndjson")


# -- finishing a stream ----------------------------------------------------------------------


async def read_until_done(pool: HttpPool, server: ScriptedServer,
                          after: Callable[[Any], None]) -> None:
    async with pool.post(server.base_url, BODY, headers={}, timeouts=T) as resp:
        async for event, _ in resp.iter_sse():
            if event.data == "[DONE]":
                after(resp)
                return


async def test_finish_at_the_end_of_the_body_pools_the_connection(
        server: ScriptedServer) -> None:
    server.enqueue(Reply(events=[{"a": 1}, "[DONE]"]))
    async with HttpPool() as pool:
        await read_until_done(pool, server, lambda resp: resp.finish())
        assert await post_json(pool, server) == {}
    assert len(server.peers) == 1


async def test_finish_does_not_wait_for_a_body_that_stays_open(server: ScriptedServer) -> None:
    server.enqueue(Reply(events=[{"a": 1}, "[DONE]"], stall_after=2))  # no end of body
    loop = asyncio.get_running_loop()
    async with HttpPool() as pool:
        started = loop.time()
        await read_until_done(pool, server, lambda resp: resp.finish())
        elapsed = loop.time() - started
    assert elapsed < 0.5  # the drain of the rest (up to 1 s) happens in the background


# -- timeouts the seam enforces --------------------------------------------------------------


async def test_total_nearer_than_first_token_is_a_total_timeout(server: ScriptedServer) -> None:
    server.enqueue(Reply(json={}, delay=FOREVER))
    async with HttpPool() as pool:
        with pytest.raises(TimeoutError_) as info:
            await post_json(pool, server, Timeouts(connect=5, first_token=5, total=0.1, idle=5))
    assert info.value.timeout_kind == "total"


async def test_total_bounds_a_stream_between_events(server: ScriptedServer) -> None:
    server.enqueue(Reply(events=[{"a": 1}, {"a": 2}, {"a": 3}], stall_after=2))
    async with HttpPool() as pool:
        timeouts = Timeouts(connect=5, first_token=5, total=0.2, idle=2)
        async with pool.post(server.base_url, BODY, headers={}, timeouts=timeouts) as resp:
            with pytest.raises(TimeoutError_) as info:
                async for _ in resp.iter_sse():
                    pass
    assert info.value.timeout_kind == "total"


async def test_first_token_timeout_when_no_headers_come(server: ScriptedServer) -> None:
    server.enqueue(Reply(json={}, delay=FOREVER))
    async with HttpPool() as pool:
        with pytest.raises(TimeoutError_) as info:
            await post_json(pool, server, Timeouts(connect=5, first_token=0.1, total=5, idle=5))
    assert info.value.timeout_kind == "first_token"


async def test_a_small_reply_arms_at_most_one_timer(server: ScriptedServer) -> None:
    loop = asyncio.get_running_loop()
    async with HttpPool() as pool:
        await post_json(pool, server)  # warm: connection open, per-URL values cached
        timers: list[float] = []
        call_at = loop.call_at

        def counting(when: float, *args: Any, **kw: Any) -> asyncio.TimerHandle:
            timers.append(when)
            return call_at(when, *args, **kw)

        loop.call_at = counting  # type: ignore[method-assign]
        try:
            await post_json(pool, server)
        finally:
            del loop.call_at
    assert len(timers) <= 1
