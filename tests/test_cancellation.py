"""Cancelling a call at any point frees its budget hold on every store: while the reservation
is in flight (it lands after the cancel and is released then), mid-attempt, mid-backoff and
mid-stream (settled at the worst case there: output was delivered). A leaked hold would make
the next call fail budget_exceeded with nothing spent: the cap here fits one hold at a time.

Real stores: memory, a SQLite file, the Redis at 127.0.0.1:6379 (db 15, a prefix per test).
``Door`` stands in front of the real store only to say when an operation starts and to hold a
reservation back until the test has cancelled the call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from router import Router
from router.policy.budget import budget_key
from router.state import BudgetKey, Refusal, StateStore, Usage, make_store
from tests.engine_helpers import MSG, chat_path, route_file
from tests.servers.openai import OpenAIServer, Reply, error_reply, text_events

PRICE = {"input": 1, "output": 1}  # $ per 1M tokens: a hold of ~1,000 tokens is ~$0.001
MAX_TOKENS = 1000
CAP_USD = 0.0015  # one hold fits, two do not


class Door(StateStore):
    """A real store with two doors. A reservation waits for ``door`` and then goes on even if
    its caller is cancelled (as a SQLite thread or a Redis script does); a release waits for
    ``release_door`` as the caller's own coroutine (as a Redis command not yet written
    does), so cancelling the caller there stops it. Both doors start open; ``reserving``,
    ``releasing`` and ``released`` are set as those operations start and end."""

    def __init__(self, inner: StateStore) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.reserving, self.releasing = asyncio.Event(), asyncio.Event()
        self.released = asyncio.Event()
        self.door, self.release_door = asyncio.Event(), asyncio.Event()
        self.door.set()
        self.release_door.set()
        self.landing: list[asyncio.Task[Refusal | None]] = []

    async def reserve(self, reservation_id: str, keys: Sequence[BudgetKey], amount_micro: int,
                      hold_seconds: float) -> Refusal | None:
        self.reserving.set()
        landing = asyncio.ensure_future(
            self._land(reservation_id, keys, amount_micro, hold_seconds))
        self.landing.append(landing)
        return await asyncio.shield(landing)

    async def _land(self, reservation_id: str, keys: Sequence[BudgetKey], amount_micro: int,
                    hold_seconds: float) -> Refusal | None:
        await self.door.wait()
        return await self.inner.reserve(reservation_id, keys, amount_micro, hold_seconds)

    async def release(self, reservation_id: str) -> None:
        self.releasing.set()
        await self.release_door.wait()
        await self.inner.release(reservation_id)
        self.released.set()

    async def settle(self, reservation_id: str, actual_micro: int) -> None:
        await self.inner.settle(reservation_id, actual_micro)

    async def usage(self, key: str) -> Usage:
        return await self.inner.usage(key)

    async def add_spend(self, key: BudgetKey, amount_micro: int) -> int:
        return await self.inner.add_spend(key, amount_micro)

    async def first_time(self, key: str, ttl: float | None) -> bool:
        return await self.inner.first_time(key, ttl)

    async def rate_acquire(self, key: str, limit: int, amount: int, window: float) -> float:
        return await self.inner.rate_acquire(key, limit, amount, window)

    async def breaker_get(self, key: str) -> tuple[int, float | None]:
        return await self.inner.breaker_get(key)

    async def breaker_put(self, key: str, failures: int, opened_at: float | None,
                          ttl: float) -> None:
        await self.inner.breaker_put(key, failures, opened_at, ttl)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        real = make_store("memory")
    elif request.param == "sqlite":
        real = make_store("sqlite", path=tmp_path / "state.db")
    else:
        real = make_store(**request.getfixturevalue("redis_state"))
    async with real:
        yield real


def budgeted(server: OpenAIServer, **retry: Any) -> dict[str, Any]:
    data = route_file(server.port, {"r": ["a:m"]}, names=["a"],
                      retry={"attempts": 1, **retry})
    data["providers"]["a"]["models"] = {"m": {"price": PRICE}}
    data["budgets"] = [{"scope": "global", "usd": CAP_USD}]
    return data


async def usage(router: Router, store: StateStore) -> Usage:
    return await store.usage(budget_key(router.plan.budgets[0], 0.0).key)


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancel_while_the_reservation_is_in_flight_releases_it_when_it_lands(
        store: StateStore, openai_server: OpenAIServer) -> None:
    door = Door(store)
    door.door.clear()
    async with Router.from_dict(budgeted(openai_server), store=door) as router:
        task = asyncio.create_task(router.chat("r", MSG, max_tokens=MAX_TOKENS))
        await door.reserving.wait()
        task.cancel()
        door.door.set()  # the reservation reaches the store after the call was cancelled
        with pytest.raises(asyncio.CancelledError):
            await task
        (landed,) = door.landing
        assert await landed is None  # it was held...
        assert await usage(router, store) == Usage(0, 0)  # ...and released
        assert (await router.chat("r", MSG, max_tokens=MAX_TOKENS)).target == "a:m"
    assert openai_server.request_count == 1


async def test_a_second_cancel_while_the_hold_is_being_released_still_releases_it(
        store: StateStore, openai_server: OpenAIServer) -> None:
    door = Door(store)
    door.release_door.clear()
    openai_server.enqueue(Reply(json={}, delay=30), path=chat_path("a"))
    router = Router.from_dict(budgeted(openai_server), store=door)
    task = asyncio.create_task(router.chat("r", MSG, max_tokens=MAX_TOKENS))
    await openai_server.wait_requests(1)
    task.cancel()  # mid-attempt: the hold is being released...
    await door.releasing.wait()
    await cancel(task)  # ...when a second cancel arrives
    door.release_door.set()
    await router.aclose()  # waits for releases still under way
    assert await usage(router, store) == Usage(0, 0)


async def test_cancel_mid_attempt_releases_the_hold(store: StateStore,
                                                    openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(json={}, delay=30), path=chat_path("a"))
    async with Router.from_dict(budgeted(openai_server), store=store) as router:
        task = asyncio.create_task(router.chat("r", MSG, max_tokens=MAX_TOKENS))
        await openai_server.wait_requests(1)
        assert (await usage(router, store)).reserved_micro > 0  # the hold is live
        await cancel(task)
        assert await usage(router, store) == Usage(0, 0)
        assert (await router.chat("r", MSG, max_tokens=MAX_TOKENS)).target == "a:m"


async def test_cancel_mid_backoff_leaves_no_hold(store: StateStore,
                                                 openai_server: OpenAIServer) -> None:
    door = Door(store)
    openai_server.enqueue(error_reply("server_error"), path=chat_path("a"))
    data = budgeted(openai_server, attempts=2, initial="30s", max="30s")
    async with Router.from_dict(data, store=door) as router:
        task = asyncio.create_task(router.chat("r", MSG, max_tokens=MAX_TOKENS))
        await door.released.wait()  # the 500's hold is released: the backoff comes next
        await cancel(task)
        assert await usage(router, store) == Usage(0, 0)
        assert (await router.chat("r", MSG, max_tokens=MAX_TOKENS)).target == "a:m"


async def test_cancel_mid_stream_settles_the_hold_at_its_worst_case(
        store: StateStore, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Reply(events=text_events(["Hel", "lo"]), stall_after=2),
                          path=chat_path("a"))
    async with Router.from_dict(budgeted(openai_server), store=store) as router:
        committed = asyncio.Event()

        async def consume() -> None:
            async for _ in router.stream("r", MSG, max_tokens=MAX_TOKENS):
                committed.set()  # a chunk came through: the stream is committed

        task = asyncio.create_task(consume())
        await committed.wait()
        held = (await usage(router, store)).reserved_micro
        assert held > 0
        await cancel(task)
        assert await usage(router, store) == Usage(held, 0)  # billed, not left held
