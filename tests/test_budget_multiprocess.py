"""The issue's acceptance test, through the Router: replicas (processes) sharing one budget in
a real SQLite file or a real Redis never spend past its cap, leave no hold behind, keep the
spend across a restart, and a killed replica's hold stops counting once it expires.

Each call answers with a usage that costs exactly $0.005 at the route file's price override;
the loopback server runs in this (the test) process and counts what reached it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import AsyncIterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from router import Router
from router.errors import ErrorClass, RouteFailed
from router.policy.budget import budget_key
from router.state import Usage, make_store, to_micro
from router.types import ChatResponse
from tests.servers.openai import OpenAIServer, RecordedRequest, Reply, completion, usage

PROCESSES = 8
CALLS = 50
CAP = 1_000_000  # $1 in micro-dollars
# The server reports 1,000 prompt and 4,000 completion tokens; at $1 per 1M tokens each way a
# call costs $0.005. The hold bounds prompt tokens by UTF-8 bytes (money/tokens.py), so the
# prompt has 1,000 bytes, and max_tokens is the completion the server reports.
PROMPT_TOKENS, OUTPUT_TOKENS = 1_000, 4_000
COST = 5_000
MSG = [{"role": "user", "content": "x" * PROMPT_TOKENS}]
CALL_TIMEOUT = "10s"  # the hold lasts this plus admission's margin

# As in test_state_multiprocess.py: children fork from one server that imported router once.
SPAWN = multiprocessing.get_context("forkserver")
SPAWN.set_forkserver_preload(["pytest", "aiohttp", "router.engine.router", "router.config.validate",
                              "router.state.sqlite", "router.state.redis"])


def route_file(base_url: str, state: dict[str, Any], cap_usd: float,
               per: str = "total") -> dict[str, Any]:
    return {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}, "timeout": {"total": CALL_TIMEOUT}},
        "providers": {"a": {"kind": "openai-compatible", "base_url": base_url,
                            "models": {"m": {"price": {"input": 1, "output": 1}}}}},
        "models": {"solo": ["a:m"]},
        "state": state,
        "budgets": [{"scope": "global", "usd": cap_usd, "per": per}],
    }


@pytest.fixture(params=["sqlite", "redis"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The route file's ``state:`` (also make_store's arguments): one SQLite file, or one
    Redis prefix of its own (conftest.py's redis_state)."""
    if request.param == "sqlite":
        return {"kind": "sqlite", "path": str(tmp_path / "state.db")}
    redis_state: dict[str, Any] = request.getfixturevalue("redis_state")
    return redis_state


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        s.default = Reply(json=completion("ok", usage_=usage(PROMPT_TOKENS, OUTPUT_TOKENS)))
        yield s


async def usage_of(doc: dict[str, Any], **store_kw: Any) -> Usage:
    """Spend and holds of the route file's one budget, read from its store."""
    async with make_store(**doc["state"], **store_kw) as store:
        spec = Router.from_dict(doc, store=store).plan.budgets[0]
        return await store.usage(budget_key(spec, time.time()).key)


def outcome(result: ChatResponse | BaseException) -> str:
    """``ok:<micro-dollars>``, or ``<error class>:<reason of each attempt>``."""
    if isinstance(result, RouteFailed):
        return (f"{result.error_class.value}:"
                + ",".join(a.reason or a.outcome for a in result.attempts))
    if isinstance(result, BaseException):
        return f"unexpected {type(result).__name__}: {result}"
    return f"ok:{to_micro(result.cost_usd or 0.0)}"


# -- in the child processes ---------------------------------------------------------------------

async def _call_concurrently(doc: dict[str, Any], barrier: Barrier) -> list[str]:
    async with Router.from_dict(doc) as router:
        barrier.wait()  # every process starts its calls at once
        results = await asyncio.gather(
            *(router.chat("solo", MSG, max_tokens=OUTPUT_TOKENS) for _ in range(CALLS)),
            return_exceptions=True)
    return [outcome(r) for r in results]


def _caller(doc: dict[str, Any], barrier: Barrier, results: Any) -> None:
    try:
        results.put(asyncio.run(_call_concurrently(doc, barrier)))
    except BaseException:
        results.put([f"crashed: {traceback.format_exc()}"])
        raise


def _hanger(doc: dict[str, Any]) -> None:
    """One call to a server that never answers: the parent kills this process mid-call."""

    async def call() -> None:
        async with Router.from_dict(doc) as router:
            await router.chat("solo", MSG, max_tokens=OUTPUT_TOKENS)

    asyncio.run(call())


# -- in the test process ------------------------------------------------------------------------

async def test_processes_never_spend_past_the_shared_cap(state: dict[str, Any],
                                                         server: OpenAIServer) -> None:
    doc = route_file(server.base_url, state, cap_usd=CAP / 1e6)
    barrier, results = SPAWN.Barrier(PROCESSES), SPAWN.Queue()
    procs = [SPAWN.Process(target=_caller, args=(doc, barrier, results))
             for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    try:  # this process serves the calls meanwhile: wait off the event loop
        outcomes = [o for _ in procs
                    for o in await asyncio.to_thread(results.get, timeout=30)]
    finally:
        for p in procs:
            await asyncio.to_thread(p.join, 5)
    assert [p.exitcode for p in procs] == [0] * PROCESSES, outcomes[:1]

    ok = [o for o in outcomes if o.startswith("ok:")]
    refused = [o for o in outcomes if not o.startswith("ok:")]
    assert len(outcomes) == PROCESSES * CALLS
    assert set(ok) == {f"ok:{COST}"}
    assert set(refused) == {f"{ErrorClass.BUDGET_EXCEEDED.value}:budget"}
    spent = await usage_of(doc)
    assert spent == Usage(len(ok) * COST, 0)  # exact accounting, no hold left behind
    assert spent.spent_micro <= CAP
    assert server.request_count == len(ok)  # a refused call never reached the provider
    # the cap bound, and was used: 400 calls of $0.005 want $2; all but the last hold's worth
    assert spent.spent_micro > CAP * 0.95


async def test_restart_keeps_the_spend(state: dict[str, Any], server: OpenAIServer) -> None:
    doc = route_file(server.base_url, state, cap_usd=0.012)  # two calls, not three
    async with Router.from_dict(doc) as first:
        for _ in range(2):
            assert (await first.chat("solo", MSG, max_tokens=OUTPUT_TOKENS)).cost_usd == 0.005
    async with Router.from_dict(doc) as second:
        assert await usage_of(doc) == Usage(2 * COST, 0)
        with pytest.raises(RouteFailed) as info:
            await second.chat("solo", MSG, max_tokens=OUTPUT_TOKENS)
    assert info.value.error_class is ErrorClass.BUDGET_EXCEEDED
    assert "spent $0.01, held $0.00," in (info.value.attempts[0].detail or "")
    assert server.request_count == 2


async def test_a_killed_process_hold_expires(state: dict[str, Any],
                                             server: OpenAIServer) -> None:
    doc = route_file(server.base_url, state, cap_usd=0.006)  # room for one hold
    arrived = asyncio.Event()

    def hang(_: RecordedRequest) -> Reply:
        arrived.set()  # the hold is taken before the request is sent
        return Reply(delay=3600)  # ends when the server closes

    server.enqueue(hang)
    proc = SPAWN.Process(target=_hanger, args=(doc,))
    proc.start()
    try:
        await asyncio.wait_for(arrived.wait(), 20)
    finally:
        os.kill(proc.pid or 0, signal.SIGKILL)
        await asyncio.to_thread(proc.join, 5)
    assert proc.exitcode == -signal.SIGKILL

    assert (await usage_of(doc)).reserved_micro > COST  # the dead process's worst case
    async with Router.from_dict(doc) as now:
        with pytest.raises(RouteFailed) as info:
            await now.chat("solo", MSG, max_tokens=OUTPUT_TOKENS)
    assert info.value.error_class is ErrorClass.BUDGET_EXCEEDED
    assert "spent $0.00, held $0.005" in (info.value.attempts[0].detail or "")

    # An hour on, far past the hold (the call's 10 s timeout plus admission's margin).
    hour_later = {"clock": lambda: time.time() + 3600}
    async with make_store(**state, **hour_later) as store, \
            Router.from_dict(doc, store=store) as later:
        assert await store.usage(budget_key(later.plan.budgets[0], time.time()).key) == \
            Usage(0, 0)
        assert (await later.chat("solo", MSG, max_tokens=OUTPUT_TOKENS)).cost_usd == 0.005
    assert await usage_of(doc, **hour_later) == Usage(COST, 0)
    assert server.request_count == 2


async def test_window_rollover_starts_a_fresh_budget(state: dict[str, Any],
                                                     server: OpenAIServer) -> None:
    clock = [1764086390.0]  # 10 s before the hour ends
    doc = route_file(server.base_url, state, cap_usd=0.006, per="hour")
    async with make_store(**state, clock=lambda: clock[0]) as store, \
            Router.from_dict(doc, store=store, clock=lambda: clock[0]) as router:
        spec = router.plan.budgets[0]
        old = budget_key(spec, clock[0]).key
        await router.chat("solo", MSG, max_tokens=OUTPUT_TOKENS)
        with pytest.raises(RouteFailed) as info:
            await router.chat("solo", MSG, max_tokens=OUTPUT_TOKENS)
        assert info.value.error_class is ErrorClass.BUDGET_EXCEEDED
        assert await store.usage(old) == Usage(COST, 0)
        clock[0] += 20  # the next hour
        assert (await router.chat("solo", MSG, max_tokens=OUTPUT_TOKENS)).cost_usd == 0.005
        assert await store.usage(budget_key(spec, clock[0]).key) == Usage(COST, 0)
        assert await store.usage(old) == Usage(0, 0)  # the old window's spend ended with it
    assert server.request_count == 2
