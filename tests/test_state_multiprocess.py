"""Budgets hold across processes: 8 spawned processes x 50 concurrent reservations against one
$1 cap never spend more than $1 and leave no hold behind; a process killed while holding stops
counting once its hold expires; processes opening a new SQLite file at once all get in. Real
SQLite file and real Redis (skipped when absent)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
import time
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

import pytest

from router.state import BudgetKey, Usage, make_store

PROCESSES = 8
CALLS = 50
CAP = 1_000_000  # $1
GLOBAL = BudgetKey("global|total", CAP, None)
PROVIDER = BudgetKey("provider:loopback|d1", 10 * CAP, 86_400)
HOLD_SECONDS = 5.0

# Children start clean (no threads, no event loop of the pytest process), as with "spawn"; but
# they fork from one server that imported router once, instead of 8 interpreters importing it
# (seconds each on a loaded CI box).
SPAWN = multiprocessing.get_context("forkserver")
# Python 3.11's forkserver ignores sys.path when preloading, so name installed modules only.
SPAWN.set_forkserver_preload(["pytest", "router.state.sqlite", "router.state.redis"])


@pytest.fixture(params=["sqlite", "redis"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """make_store arguments every process shares: one SQLite file, or one Redis prefix
    (conftest.py's redis_state)."""
    if request.param == "sqlite":
        return {"kind": "sqlite", "path": str(tmp_path / "state.db")}
    redis_state: dict[str, Any] = request.getfixturevalue("redis_state")
    return redis_state


# -- in the child processes ---------------------------------------------------------------------

async def _spend_concurrently(where: dict[str, Any], seed: int,
                              barrier: Barrier) -> tuple[list[int], int]:
    """CALLS reservations at once; each settles a random actual <= its hold (half of them the
    whole hold), or releases. Returns what this process spent, call by call (0 for refused or
    released), and the highest spent + reserved it saw while holding."""
    rng = random.Random(seed)
    store = make_store(**where)
    await store.usage(GLOBAL.key)  # connect before the start line
    barrier.wait()
    high = 0

    async def call(i: int) -> int:
        nonlocal high
        rid, amount = f"p{seed}-{i}", rng.randint(1_000, 60_000)
        actual = amount if rng.random() < 0.5 else rng.randint(0, amount)
        pause, release = rng.random() / 200, rng.random() < 0.2
        if await store.reserve(rid, [GLOBAL, PROVIDER], amount, HOLD_SECONDS) is not None:
            return 0
        usage = await store.usage(GLOBAL.key)
        high = max(high, usage.spent_micro + usage.reserved_micro)
        await asyncio.sleep(pause)  # the provider call
        if release:
            await store.release(rid)
            return 0
        await store.settle(rid, actual)
        return actual

    try:
        return list(await asyncio.gather(*(call(i) for i in range(CALLS)))), high
    finally:
        await store.aclose()


def _spender(where: dict[str, Any], seed: int, barrier: Barrier, results: Any) -> None:
    results.put(asyncio.run(_spend_concurrently(where, seed, barrier)))


def _holder(where: dict[str, Any], amount: int, held: Event) -> None:
    """Reserve and never settle: the parent kills this process."""

    async def hold() -> None:
        store = make_store(**where)
        assert await store.reserve("doomed", [GLOBAL], amount, HOLD_SECONDS) is None

    asyncio.run(hold())
    held.set()
    time.sleep(60)


# -- in the test process ------------------------------------------------------------------------

async def test_processes_never_spend_past_the_cap(where: dict[str, Any]) -> None:
    barrier, results = SPAWN.Barrier(PROCESSES), SPAWN.Queue()
    procs = [SPAWN.Process(target=_spender, args=(where, seed, barrier, results))
             for seed in range(PROCESSES)]
    for p in procs:
        p.start()
    spent_per_call, highs = zip(*(results.get(timeout=25) for _ in procs), strict=True)
    for p in procs:
        p.join(timeout=5)
        assert p.exitcode == 0

    store = make_store(**where)
    try:
        usage = await store.usage(GLOBAL.key)
        assert usage == await store.usage(PROVIDER.key)  # every hold took both keys or none
    finally:
        await store.aclose()
    calls = [spent for process in spent_per_call for spent in process]
    assert usage == Usage(sum(calls), 0)  # exact accounting, nothing left reserved
    assert usage.spent_micro <= CAP
    assert max(highs) <= CAP  # spent + reserved never passed the cap, not even for a moment
    assert calls.count(0) > CALLS  # the cap did bind: many calls were refused


async def test_a_killed_process_hold_expires(where: dict[str, Any]) -> None:
    held = SPAWN.Event()
    proc = SPAWN.Process(target=_holder, args=(where, 600_000, held))
    proc.start()
    try:
        assert held.wait(timeout=20)
    finally:
        os.kill(proc.pid or 0, signal.SIGKILL)
        proc.join(timeout=5)
    assert proc.exitcode == -signal.SIGKILL

    now = make_store(**where)
    later = make_store(**where, clock=lambda: time.time() + HOLD_SECONDS)
    try:
        assert await now.usage(GLOBAL.key) == Usage(0, 600_000)
        assert await now.reserve("r1", [GLOBAL], 500_000, HOLD_SECONDS) is not None
        assert await later.usage(GLOBAL.key) == Usage(0, 0)
        assert await later.reserve("r2", [GLOBAL], CAP, HOLD_SECONDS) is None
    finally:
        await now.aclose()
        await later.aclose()


def _opener(path: str, barrier: Barrier, results: Any) -> None:
    """Open the store on ``path`` right after the others (the first use sets WAL mode and
    creates the schema) and report whether that worked."""
    async def first_use() -> str:
        store = make_store(kind="sqlite", path=path)
        try:
            barrier.wait()
            await store.usage(GLOBAL.key)
            return "ok"
        except Exception as e:  # reported, not raised: the parent says which failed
            return f"{type(e).__name__}: {e}"
        finally:
            await store.aclose()

    results.put(asyncio.run(first_use()))


@pytest.mark.parametrize("round_", range(3))
def test_processes_opening_a_new_file_at_once_all_get_in(tmp_path: Path, round_: int) -> None:
    """Workers that start together on a new SQLite file: SQLite refuses some of them the
    switch to WAL at once ("database is locked", without waiting); the store tries again."""
    n = 12
    barrier, results = SPAWN.Barrier(n), SPAWN.Queue()
    path = str(tmp_path / f"new{round_}.db")
    procs = [SPAWN.Process(target=_opener, args=(path, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=5)
    assert outcomes == ["ok"] * n
