"""What budget accounting costs per call: router.chat under budgets on a memory, SQLite or
Redis state store, against the same call with no budget, all measured in one run.

    python bench/budget_overhead.py            # full run, ~30 s
    python bench/budget_overhead.py --quick    # smoke run, < 10 s (figures are rough)
    python bench/budget_overhead.py --redis-url redis://127.0.0.1:6379/15

The OpenAI-shaped server (bench/_server.py) runs in its own process. Each budgeted call holds
and settles on three budgets (global, provider, alias) with caps nothing reaches. Setups
alternate round by round (the order rotates), and every figure is a ratio to the no-budget
call of the same run. CPU is this process's (the SQLite store thread included; the Redis
server's CPU is its own process's and not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overhead import cpu_per_call, latencies, load_average, server_process

from router import Router
from router.policy.budget import budget_key
from router.state import StateStore, Usage, make_store, to_micro

MODEL = "gpt-4o-mini"
KEY = "sk-bench-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Say hello."}]
MAX_TOKENS = 16
HUGE = 1_000_000  # USD: a cap no bench run comes near
BUDGETS = [{"scope": "global", "usd": HUGE},
           {"scope": "provider:ok", "usd": HUGE, "per": "day"},
           {"scope": "alias:one", "usd": HUGE, "per": "hour"}]


@dataclass(frozen=True)
class Sizes:
    rounds: int
    warmup: int
    latency_calls: int  # sequential calls per round and setup, timed one by one
    cpu_calls: int  # sequential calls per round and setup, CPU time of the batch


FULL = Sizes(rounds=6, warmup=200, latency_calls=400, cpu_calls=400)
QUICK = Sizes(rounds=2, warmup=30, latency_calls=60, cpu_calls=60)


@dataclass
class Setup:
    """One way of calling: a Router, and what the run measured for it."""

    name: str
    kind: str
    router: Router
    store: StateStore | None  # None: no budget, the store is never asked
    lat: list[list[float]] = field(default_factory=list)  # seconds, per round
    cpu: list[float] = field(default_factory=list)  # seconds per call, per round

    async def chat(self) -> str:
        r = await self.router.chat("one", MESSAGES, max_tokens=MAX_TOKENS)
        return r.text or ""

    @property
    def p50(self) -> float:
        return statistics.median(x for r in self.lat for x in r)


def route_file(port: int, state: dict[str, Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "providers": {"ok": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                             "api_key": "${BENCH_KEY}",
                             "models": {MODEL: {"price": {"input": 0.15, "output": 0.6}}}}},
        "models": {"one": [f"ok:{MODEL}"]},
    }
    if state is not None:
        doc["state"] = state
        doc["budgets"] = BUDGETS
    return doc


async def redis_reachable(url: str) -> str | None:
    """None when Redis answers at ``url``, else why not."""
    try:
        async with make_store("redis", url=url, prefix=f"bench-probe:{uuid.uuid4().hex}:"
                              ) as store:
            await store.usage("probe")
    except Exception as e:  # any failure: the bench goes on without Redis
        return f"{type(e).__name__}: {e}"
    return None


async def make_setups(port: int, tmp: Path, redis_url: str,
                      stack: AsyncExitStack) -> list[Setup]:
    states: list[tuple[str, str, dict[str, Any] | None]] = [
        ("no budget", "memory", None),
        ("budgets", "memory", {"kind": "memory"}),
        ("budgets", "sqlite", {"kind": "sqlite", "path": str(tmp / "state.db")}),
    ]
    why = await redis_reachable(redis_url)
    if why is None:
        states.append(("budgets", "redis", {"kind": "redis", "url": redis_url,
                                            "prefix": f"bench-budget:{uuid.uuid4().hex}:"}))
    else:
        where = re.sub(r"//[^@/]*@", "//", redis_url)  # never print a password
        print(f"redis: skipped, no Redis at {where} ({why})")
    setups = []
    for name, kind, state in states:
        # The bench keeps each store (to check the accounting after), so it owns and closes it.
        store = None if state is None else await stack.enter_async_context(make_store(
            state["kind"], path=state.get("path"), url=state.get("url"),
            prefix=state.get("prefix", "router:")))
        router = Router.from_dict(route_file(port, state), env={"BENCH_KEY": KEY}, store=store)
        await stack.enter_async_context(router)
        setups.append(Setup(name, kind, router, store))
    return setups


async def check_accounting(s: Setup, calls: int) -> str:
    """Every call settled its cost on every budget, and no hold is left."""
    if s.store is None:
        return ""
    now = time.time()
    seen = [await s.store.usage(budget_key(b, now).key) for b in s.router.plan.budgets]
    # _server.py reports 12 prompt and 5 completion tokens; spend is in whole micro-dollars
    want = Usage(calls * to_micro((12 * 0.15 + 5 * 0.6) / 1e6), 0)
    return "ok" if all(u == want for u in seen) else f"WRONG: {seen}, expected {want} on each"


async def run_round(setups: list[Setup], r: int, s: Sizes) -> None:
    shift = r % len(setups)
    for setup in setups[shift:] + setups[:shift]:  # the order rotates round by round
        setup.lat.append(await latencies(setup.chat, s.latency_calls))
        setup.cpu.append(await cpu_per_call(setup.chat, s.cpu_calls))


def print_table(setups: list[Setup], checks: list[str]) -> None:
    base = setups[0]
    header = ("setup", "store", "p50 latency", "ratio", "spread", "CPU per call", "ratio",
              "extra CPU", "accounting")
    rows = [header]
    base_cpu = statistics.median(base.cpu)
    for setup, check in zip(setups, checks, strict=True):
        cpu = statistics.median(setup.cpu)
        per_round = [statistics.median(a) / statistics.median(b)
                     for a, b in zip(setup.lat, base.lat, strict=True)]
        spread = f"{min(per_round):.2f}-{max(per_round):.2f}x" if len(per_round) > 1 else "-"
        rows.append((setup.name, setup.kind, f"{setup.p50 * 1e3:.3f} ms",
                     f"{setup.p50 / base.p50:.2f}x", spread, f"{cpu * 1e6:.0f} us",
                     f"{cpu / base_cpu:.2f}x", f"{(cpu - base_cpu) * 1e6:+.0f} us",
                     check or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


async def measure(port: int, s: Sizes, redis_url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="budget-bench-") as tmp:
        async with AsyncExitStack() as stack:
            setups = await make_setups(port, Path(tmp), redis_url, stack)
            for setup in setups:
                assert await setup.chat() == "Hello there!", setup.kind
                for _ in range(s.warmup):
                    await setup.chat()
            for r in range(s.rounds):
                await run_round(setups, r, s)
            calls = 1 + s.warmup + s.rounds * (s.latency_calls + s.cpu_calls)
            checks = [await check_accounting(setup, calls) for setup in setups]
            print()
            print_table(setups, checks)
            await clean_redis(setups)


async def clean_redis(setups: list[Setup]) -> None:
    """Drop the run's keys (its own prefix) from Redis."""
    import redis.asyncio as aioredis

    for setup in setups:
        st = setup.router.plan.state
        if setup.store is not None and st.kind == "redis" and st.url is not None:
            client = aioredis.Redis.from_url(st.url)
            try:
                keys = [k async for k in client.scan_iter(match=st.prefix + "*")]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()


@contextmanager
def timed() -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"\nran in {time.perf_counter() - started:.1f} s; load average now "
          f"{load_average()} (above {os.cpu_count()} the "
          "machine was shared: trust the CPU columns most)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="budget accounting overhead per call")
    parser.add_argument("--quick", action="store_true", help="tiny run (< 10 s), rough figures")
    parser.add_argument("--redis-url", default=os.environ.get(
        "ROUTER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="the Redis to measure (skipped when it does not answer)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    print(f"budget overhead bench ({'quick' if args.quick else 'full'}): python "
          f"{platform.python_version()}, {os.cpu_count()} cpus, {sizes.rounds} rounds of "
          f"{sizes.latency_calls} timed + {sizes.cpu_calls} CPU-timed sequential calls per "
          "setup, order rotating; budgets: global, provider, alias (3 holds per call)")
    with timed(), server_process(1) as (port, pid):
        print(f"server: bench/_server.py pid {pid} on 127.0.0.1:{port}")
        asyncio.run(measure(port, sizes, args.redis_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
