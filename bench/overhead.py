"""How much the router costs on top of a hand-written aiohttp client.

    python bench/overhead.py            # full run, < 60 s
    python bench/overhead.py --quick    # smoke run, < 10 s (figures are rough)
    python bench/overhead.py --profile  # also profile the router path even if every target is met

The OpenAI-shaped server (bench/_server.py) runs in its own process, so its CPU is not the
client's. Raw and router runs alternate round by round (ABBA) in this one process, and every
figure is a ratio against the raw client measured in the same run: absolute numbers on a noisy
2-core machine mean little, ratios a lot more.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from _child import child_process

from router import Router

HERE = Path(__file__).resolve().parent
MODEL = "gpt-4o-mini"
KEY = "sk-bench-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Say hello."}]
MAX_TOKENS = 16
# pstats restriction for "router and its libs" (regex on "file:line(function)")
LIBS = r"/router/|aiohttp|yarl|multidict|pydantic|structlog|genai_prices|json|asyncio"
ROUTER_ONLY = r"/router/"

Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    rounds: int
    warmup: int
    chat_latency: int  # sequential calls per round and side
    chat_throughput: int  # calls per round and side at concurrency 32
    stream_latency: int
    stream_throughput: int
    fallback: int
    cpu_calls: int
    imports: int
    profile_calls: int


FULL = Sizes(rounds=6, warmup=300, chat_latency=250, chat_throughput=960, stream_latency=100,
             stream_throughput=320, fallback=150, cpu_calls=1000, imports=5, profile_calls=400)
QUICK = Sizes(rounds=2, warmup=40, chat_latency=60, chat_throughput=192, stream_latency=30,
              stream_throughput=96, fallback=40, cpu_calls=200, imports=2, profile_calls=100)


# --------------------------------------------------------------------------------------------
# the server process


def server_process(chunks: int) -> AbstractContextManager[tuple[int, int]]:
    """Start bench/_server.py; yield (port, pid). Closing its stdin stops it."""
    return child_process("_server.py", "--chunks", str(chunks))


# --------------------------------------------------------------------------------------------
# the two clients


class RawClient:
    """What a user would write by hand: one ClientSession, json in, json out."""

    def __init__(self, port: int) -> None:
        base = f"http://127.0.0.1:{port}"
        self.ok_url = f"{base}/v1/chat/completions"
        self.fail_url = f"{base}/fail/v1/chat/completions"
        self.headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        self.session = aiohttp.ClientSession()

    def _payload(self, stream: bool) -> bytes:
        body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES,
                                "max_completion_tokens": MAX_TOKENS}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body, separators=(",", ":")).encode()

    async def chat(self, url: str | None = None) -> str:
        async with self.session.post(url or self.ok_url, data=self._payload(False),
                                     headers=self.headers) as resp:
            data = json.loads(await resp.read())
            if resp.status >= 300:
                raise RuntimeError(data["error"]["message"])
            return str(data["choices"][0]["message"]["content"])

    async def stream(self) -> str:
        parts: list[str] = []
        async with self.session.post(self.ok_url, data=self._payload(True),
                                     headers=self.headers) as resp:
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    break
                event = json.loads(data)
                for choice in event["choices"]:
                    if choice["delta"].get("content"):
                        parts.append(choice["delta"]["content"])
        return "".join(parts)

    async def fallback(self) -> str:
        """Two hops by hand: the first answers 500, so ask the second."""
        try:
            return await self.chat(self.fail_url)
        except RuntimeError:
            return await self.chat(self.ok_url)

    async def aclose(self) -> None:
        await self.session.close()


def make_router(port: int) -> Router:
    base = f"http://127.0.0.1:{port}"
    no_breaker = {"enabled": False}  # the failing target must be tried every call
    return Router.from_dict({
        "version": 1,
        "providers": {
            "ok": {"kind": "openai", "base_url": f"{base}/v1", "api_key": "${BENCH_KEY}"},
            "bad": {"kind": "openai", "base_url": f"{base}/fail/v1", "api_key": "${BENCH_KEY}",
                    "breaker": no_breaker},
        },
        "models": {
            "one": [f"ok:{MODEL}"],
            "fb": {"chain": [f"bad:{MODEL}", f"ok:{MODEL}"], "retry": {"attempts": 1}},
        },
    }, env={"BENCH_KEY": KEY})


class RouterClient:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def chat(self) -> str:
        r = await self.router.chat("one", MESSAGES, max_tokens=MAX_TOKENS)
        return r.text or ""

    async def stream(self) -> str:
        parts = [c.delta async for c in self.router.stream("one", MESSAGES,
                                                            max_tokens=MAX_TOKENS) if c.delta]
        return "".join(parts)

    async def fallback(self) -> str:
        r = await self.router.chat("fb", MESSAGES, max_tokens=MAX_TOKENS)
        return r.text or ""


# --------------------------------------------------------------------------------------------
# measuring


async def latencies(fn: Call, n: int) -> list[float]:
    out: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def throughput(fn: Call, concurrency: int, total: int) -> float:
    """Calls per second with ``concurrency`` calls in flight."""
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await fn()

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total / (time.perf_counter() - t)


async def cpu_per_call(fn: Call, n: int) -> float:
    """Seconds of this process's CPU per sequential call."""
    t = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - t) / n


async def alternate(raw: Call, ours: Call, rounds: int,
                    measure: Callable[[Call], Awaitable[Any]]) -> tuple[list[Any], list[Any]]:
    """Run ``measure`` on each side once per round, ABBA order, so drift hits both sides."""
    a: list[Any] = []
    b: list[Any] = []
    for r in range(rounds):
        if r % 2 == 0:
            a.append(await measure(raw))
            b.append(await measure(ours))
        else:
            b.append(await measure(ours))
            a.append(await measure(raw))
    return a, b


@dataclass
class Row:
    metric: str
    raw: str
    router: str
    ratio: str
    spread: str
    target: str
    verdict: str


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}x" if len(values) > 1 else "-"


async def latency_row(metric: str, raw: Call, ours: Call, n: int, rounds: int,
                      limit: float) -> Row:
    a, b = await alternate(raw, ours, rounds, lambda fn: latencies(fn, n))
    p50_raw = statistics.median(x for r in a for x in r)
    p50_ours = statistics.median(x for r in b for x in r)
    ratio = p50_ours / p50_raw
    per_round = [statistics.median(y) / statistics.median(x) for x, y in zip(a, b, strict=True)]
    return Row(metric, f"{p50_raw * 1e3:.3f} ms", f"{p50_ours * 1e3:.3f} ms", f"{ratio:.2f}x",
               _spread(per_round), f"<= {limit:.2f}x", "ok" if ratio <= limit else "MISSED")


async def throughput_row(metric: str, raw: Call, ours: Call, total: int, rounds: int,
                         floor: float, concurrency: int = 32) -> Row:
    a, b = await alternate(raw, ours, rounds, lambda fn: throughput(fn, concurrency, total))
    rate_raw, rate_ours = statistics.median(a), statistics.median(b)
    ratio = rate_ours / rate_raw
    per_round = [y / x for x, y in zip(a, b, strict=True)]
    return Row(metric, f"{rate_raw:.0f}/s", f"{rate_ours:.0f}/s", f"{ratio:.2f}x",
               _spread(per_round), f">= {floor:.2f}x", "ok" if ratio >= floor else "MISSED")


async def cpu_row(metric: str, raw: Call, ours: Call, n: int, rounds: int,
                  goal_us: float | None) -> Row:
    a, b = await alternate(raw, ours, rounds, lambda fn: cpu_per_call(fn, n))
    raw_us, ours_us = statistics.median(a) * 1e6, statistics.median(b) * 1e6
    extra = ours_us - raw_us
    if goal_us is None:
        target, verdict = "(info)", "-"
    else:
        target, verdict = f"~{goal_us:.0f} us", "ok" if extra <= goal_us else "MISSED"
    return Row(metric, f"{raw_us:.0f} us", f"{ours_us:.0f} us", f"{extra:+.0f} us",
               f"{(ours_us / raw_us):.2f}x cpu", target, verdict)


def import_ms(statement: str) -> float:
    code = (f"import time; t = time.perf_counter(); {statement}; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=HERE)
    return float(out.stdout.strip()) * 1e3


def import_row(runs: int, limit_ms: float) -> Row:
    # `import router` alone loads its public names lazily: time what users write, which
    # loads the engine and every module a call needs up to the first request.
    ours_stmt = "from router import Router"
    import_ms("import aiohttp")  # warm the disk cache and .pyc files before timing
    import_ms(ours_stmt)
    base: list[float] = []
    ours: list[float] = []
    for _ in range(runs):
        base.append(import_ms("import aiohttp"))
        ours.append(import_ms(ours_stmt))
    med_base, med_ours = statistics.median(base), statistics.median(ours)
    extra = med_ours - med_base
    return Row("from router import Router", f"{med_base:.0f} ms aiohttp", f"{med_ours:.0f} ms",
               f"{extra:+.0f} ms", f"{min(ours):.0f}-{max(ours):.0f} ms",
               f"< +{limit_ms:.0f} ms", "ok" if extra < limit_ms else "MISSED")


# --------------------------------------------------------------------------------------------
# profiling


async def _profiled(fn: Call, n: int, prof: cProfile.Profile | None = None) -> cProfile.Profile:
    # CPU time, not wall time: on a busy machine wall time charges other processes' turns
    # to whatever function was running when we were preempted.
    prof = prof or cProfile.Profile(time.process_time)
    prof.enable()
    for _ in range(n):
        await fn()
    prof.disable()
    return prof


def _where(func: tuple[str, int, str]) -> str:
    file, line, name = func
    short = re.search(r"/site-packages/(.*)$", file) or re.search(r"/python3\.\d+/(.*)$", file)
    file = short.group(1) if short else file.replace(str(HERE.parent) + "/", "")
    return f"{file}:{line}({name})"


def extra_per_call(raw: cProfile.Profile, ours: cProfile.Profile, n: int,
                   top: int = 12) -> list[str]:
    """Functions whose own time per call grew most from the raw client to the router.

    Time blocked in epoll (waiting for the server) is not CPU and is left out."""
    a, b = pstats.Stats(raw).stats, pstats.Stats(ours).stats  # type: ignore[attr-defined]
    diffs = []
    for func in set(a) | set(b):
        if "epoll" in func[2]:
            continue
        extra = (b[func][2] if func in b else 0.0) - (a[func][2] if func in a else 0.0)
        diffs.append((extra / n * 1e6, func))
    diffs.sort(reverse=True)
    return [f"  {us:7.1f} us  {_where(func)}" for us, func in diffs[:top]]


async def profile_router(raw: RawClient, client: RouterClient, n: int) -> str:
    """cProfile over ``n`` chat, ``n // 4`` stream and ``n // 4`` fallback router calls, and
    the extra own-time per call against the raw client doing the same calls."""
    k = max(n // 4, 1)
    prof = await _profiled(client.chat, n)
    await _profiled(client.stream, k, prof)
    await _profiled(client.fallback, k, prof)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    out.write(f"\n-- profile: {n} chat + {k} stream + {k} fallback router calls; "
              "top 15 by tottime, router/ and its libs --\n")
    stats.sort_stats("tottime").print_stats(LIBS, 15)
    out.write("-- the same, router/ only --\n")
    stats.sort_stats("tottime").print_stats(ROUTER_ONLY, 15)
    for what, raw_fn, our_fn, calls in (("chat", raw.chat, client.chat, n),
                                        ("stream(50)", raw.stream, client.stream, k)):
        a = await _profiled(raw_fn, calls)
        b = await _profiled(our_fn, calls)
        out.write(f"-- {what}: extra own time per call, router minus raw, under cProfile "
                  "(the profiler inflates small functions; the ranking is what counts) --\n")
        out.write("\n".join(extra_per_call(a, b, calls)) + "\n")
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# the run


def print_table(rows: list[Row]) -> None:
    header = Row("metric", "raw", "router", "ratio", "spread", "target", "verdict")
    cols = list(header.__dataclass_fields__)
    widths = {c: max(len(getattr(r, c)) for r in [header, *rows]) for c in cols}
    for r in [header, *rows]:
        print("  ".join(getattr(r, c).ljust(widths[c]) for c in cols).rstrip())


async def check_answers(raw: RawClient, ours: RouterClient) -> None:
    """Both clients must get the same answers, or the comparison is meaningless."""
    assert await raw.chat() == await ours.chat() == "Hello there!"
    assert await raw.fallback() == await ours.fallback() == "Hello there!"
    a, b = await raw.stream(), await ours.stream()
    assert a == b and a.startswith("tok0 "), (a[:40], b[:40])


async def warm_up(raw: RawClient, ours: RouterClient, n: int) -> None:
    for fn in (raw.chat, ours.chat, raw.stream, ours.stream, raw.fallback, ours.fallback):
        await throughput(fn, 8, n)


async def measure(port: int, s: Sizes, profile: bool | None) -> tuple[list[Row], str]:
    """The table rows, and the profile report (``profile``: True always, None when a target
    is missed, False never)."""
    raw = RawClient(port)
    router = make_router(port)
    ours = RouterClient(router)
    try:
        await check_answers(raw, ours)
        await warm_up(raw, ours, s.warmup)
        rows = [
            # Issue 9's goals: chat c=1 <= 1.2x, c=32 >= 0.7x, router CPU <= 100 us a call.
            await latency_row("chat c=1 p50 latency", raw.chat, ours.chat,
                              s.chat_latency, s.rounds, 1.2),
            await throughput_row("chat c=32 throughput", raw.chat, ours.chat,
                                 s.chat_throughput, s.rounds, 0.7),
            await latency_row("stream(50) c=1 p50 latency", raw.stream, ours.stream,
                              s.stream_latency, s.rounds, 1.25),
            await throughput_row("stream(50) c=32 throughput", raw.stream, ours.stream,
                                 s.stream_throughput, s.rounds, 0.7),
            await latency_row("fallback 500->ok c=1 p50", raw.fallback, ours.fallback,
                              s.fallback, s.rounds, 2.0),
            await cpu_row("chat CPU per call", raw.chat, ours.chat, s.cpu_calls, s.rounds,
                          50.0),
            await cpu_row("stream(50) CPU per call", raw.stream, ours.stream,
                          max(s.cpu_calls // 5, 20), s.rounds, None),
        ]
        missed = any(r.verdict == "MISSED" for r in rows)
        report = ""
        if profile or (profile is None and missed):
            report = await profile_router(raw, ours, s.profile_calls)
        elif missed:
            report = "\n(profile skipped in --quick mode: run without --quick, or add --profile)"
        return rows, report
    finally:
        await raw.aclose()
        await router.aclose()


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="router overhead vs raw aiohttp")
    parser.add_argument("--quick", action="store_true", help="tiny run (< 10 s), rough figures")
    parser.add_argument("--profile", action="store_true",
                        help="profile the router path even if every target is met (a full "
                             "run profiles by itself when one is missed)")
    parser.add_argument("--chunks", type=int, default=50, help="content chunks per stream")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"router overhead bench ({'quick' if args.quick else 'full'}): python "
          f"{platform.python_version()}, aiohttp {aiohttp.__version__}, {os.cpu_count()} cpus, "
          f"{sizes.rounds} alternating rounds, load average {load_average()}")
    with server_process(args.chunks) as (port, pid):
        print(f"server: bench/_server.py pid {pid} on 127.0.0.1:{port}, {args.chunks} chunks "
              "per stream")
        profile = True if args.profile else (False if args.quick else None)
        rows, report = asyncio.run(measure(port, sizes, profile))
    rows.append(import_row(sizes.imports, 150.0))
    print()
    print_table(rows)
    missed = [r.metric for r in rows if r.verdict == "MISSED"]
    print(f"\n{len(missed)} target(s) missed{': ' + ', '.join(missed) if missed else ''}; "
          f"ran in {time.perf_counter() - started:.1f} s; load average now {load_average()} "
          f"(above {os.cpu_count()} the machine was shared: trust the CPU rows most)")
    if report:
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
