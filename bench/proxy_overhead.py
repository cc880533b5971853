"""What ``router serve`` adds on top of calling the upstream directly, side by side in one run.

    python bench/proxy_overhead.py            # full run, ~30 s
    python bench/proxy_overhead.py --quick    # smoke run, ~3 s (figures are rough)

Four processes on 127.0.0.1: the OpenAI-shaped upstream (bench/_server.py), ``router serve``
with one worker in front of it (a one-target route), a bare aiohttp pass-through
(bench/_forwarder.py: aiohttp's server and client, nothing else) and this client. The client
sends the same chat completion body to the upstream directly, through the forwarder and through the
proxy, the order rotating round by round so drift hits all sides: p50 latency at concurrency
1 (the target: under 1 ms added) and throughput at concurrency 64 (the target: at least 0.5x
direct), with each proxy's CPU per call. Then it reads the proxy's own overhead histogram
(``router_overhead_seconds``) from its /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from _child import child_process
from overhead import latencies, load_average, server_process  # bench/overhead.py's pieces

KEY = "sk-bench-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Say hello."}]
ENDPOINT = "/v1/chat/completions"
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")

Call = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class Sizes:
    rounds: int
    warmup: int
    latency_calls: int
    throughput_seconds: float


FULL = Sizes(rounds=8, warmup=300, latency_calls=250, throughput_seconds=1.0)
QUICK = Sizes(rounds=2, warmup=50, latency_calls=60, throughput_seconds=0.25)


@contextmanager
def proxy_process(upstream_port: int, workdir: Path,
                  prefix: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
    """``router serve`` (one worker, 127.0.0.1, port 0) in front of the upstream, under
    ``prefix`` (e.g. valgrind's command) if given; yields its base URL and pid, and stops it
    with SIGTERM."""
    routes = workdir / "routes.yaml"
    routes.write_text(
        "version: 1\n"
        "defaults: {retry: {attempts: 1}}\n"
        "providers:\n"
        f"  up: {{kind: openai, base_url: 'http://127.0.0.1:{upstream_port}/v1', "
        "api_key: '${BENCH_KEY}'}\n"
        "models:\n  one: [up:gpt-4o-mini]\n")
    log = workdir / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "router", "serve", str(routes),
                                 "--port", "0", "--log-format", "json"],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env={**os.environ, "BENCH_KEY": KEY})
    try:
        end = time.monotonic() + (600 if prefix else 60)
        while not (m := LISTENING.search(log.read_text(errors="replace"))):
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"router serve did not start:\n{log.read_text()}")
            time.sleep(0.02)
        yield m.group(1), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60 if prefix else 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Client:
    """One keep-alive session posting the same body to one URL."""

    def __init__(self, session: aiohttp.ClientSession, url: str, model: str) -> None:
        self.session = session
        self.url = url
        self.body = {"model": model, "messages": MESSAGES, "max_tokens": 16}

    async def chat(self) -> str:
        async with self.session.post(self.url, json=self.body,
                                     headers={"Authorization": f"Bearer {KEY}"}) as r:
            data: dict[str, Any] = await r.json()
            if r.status != 200:
                raise RuntimeError(f"{self.url}: {r.status} {data}")
            text: str = data["choices"][0]["message"]["content"]
            return text


async def throughput(fn: Call, concurrency: int, seconds: float) -> float:
    """Calls per second with ``concurrency`` in flight, for about ``seconds``."""
    done = 0
    end = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await fn()
            done += 1

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - t)


async def alternate(sides: list[Call], rounds: int,
                    measure: Callable[[Call], Awaitable[Any]]) -> list[list[Any]]:
    """``measure`` every side once per round, the order rotating (and reversed every other
    round) so drift hits all sides alike; one list of results per side."""
    results: list[list[Any]] = [[] for _ in sides]
    for r in range(rounds):
        order = [(i + r) % len(sides) for i in range(len(sides))]
        for i in order if r % 2 == 0 else reversed(order):
            results[i].append(await measure(sides[i]))
    return results


def _spread(values: list[float], fmt: str) -> str:
    return f"{fmt.format(min(values))}..{fmt.format(max(values))}" if len(values) > 1 else "-"


def process_cpu(pid: int) -> float | None:
    """Seconds of CPU (user + system) process ``pid`` has used; None without Linux's /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Side:
    """One way to the upstream: a client, and the process whose CPU it costs (if any)."""

    client: Client
    pid: int | None = None
    calls: int = 0

    async def chat(self) -> str:
        self.calls += 1
        return await self.client.chat()


async def latency_rows(sides: list[Side], s: Sizes) -> tuple[tuple[str, ...], float]:
    runs = await alternate([x.chat for x in sides], s.rounds,
                           lambda fn: latencies(fn, s.latency_calls))
    p50 = [statistics.median(v for r in side for v in r) * 1e3 for side in runs]
    added = p50[2] - p50[0]
    per_round = [(statistics.median(y) - statistics.median(x)) * 1e3
                 for x, y in zip(runs[0], runs[2], strict=True)]
    return (("c=1 p50 latency", *(f"{v:.3f} ms" for v in p50), f"+{added:.3f} ms",
             _spread(per_round, "{:+.3f}"), "< 1 ms added", "ok" if added < 1.0 else "MISSED"),
            p50[1] - p50[0])


async def throughput_rows(sides: list[Side], s: Sizes) -> tuple[list[tuple[str, ...]], float]:
    for side in sides:
        side.calls = 0
    cpu_before = [process_cpu(x.pid) if x.pid else None for x in sides]
    runs = await alternate([x.chat for x in sides], s.rounds,
                           lambda fn: throughput(fn, 64, s.throughput_seconds))
    rate = [statistics.median(r) for r in runs]
    ratio = rate[2] / rate[0]
    rows: list[tuple[str, ...]] = [(
        "c=64 throughput", *(f"{v:.0f}/s" for v in rate), f"{ratio:.2f}x",
        _spread([y / x for x, y in zip(runs[0], runs[2], strict=True)], "{:.2f}x"),
        ">= 0.5x direct", "ok" if ratio >= 0.5 else "MISSED")]
    cpu = []
    for side, before in zip(sides, cpu_before, strict=True):
        after = process_cpu(side.pid) if side.pid else None
        cpu.append("-" if before is None or after is None or not side.calls
                   else f"{(after - before) / side.calls * 1e6:.0f} us")
    if cpu[2] != "-":
        rows.append(("CPU per call, c=64", *cpu, "-", "-", "information", "-"))
    return rows, rate[1] / rate[0]


async def measure(sides: list[Side], s: Sizes) -> tuple[list[tuple[str, ...]], str]:
    latency, floor_added = await latency_rows(sides, s)
    rows, floor_ratio = await throughput_rows(sides, s)
    floor = (f"the bare aiohttp forwarder (bench/_forwarder.py: no router, logs or metrics) "
             f"adds {floor_added:+.3f} ms at c=1 and reaches {floor_ratio:.2f}x of direct at "
             "c=64: aiohttp's server and client alone, on this machine now")
    return [latency, *rows], floor


def overhead_report(metrics_text: str) -> str:
    """The proxy's ``router_overhead_seconds`` histogram for chat completions: count, mean,
    and the bucket bounds holding the 50th, 90th and 99th percentiles."""
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith("router_overhead_seconds") or f'"{ENDPOINT}"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("router_overhead_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', name)
            assert le is not None
            buckets.append((float(le.group(1)), float(value)))
        elif name.startswith("router_overhead_seconds_sum"):
            total = float(value)
        elif name.startswith("router_overhead_seconds_count"):
            count = float(value)
    if not count:
        return "router_overhead_seconds: no observations"
    buckets.sort()

    def upper(q: float) -> str:
        bound = next(le for le, n in buckets if n >= q * count)
        return "+Inf" if bound == float("inf") else f"{bound * 1e3:g} ms"

    shares = "  ".join(f"<={le * 1e3:g}ms {n / count:.0%}" for le, n in buckets
                       if le != float("inf"))
    return (f"router_overhead_seconds (the proxy's /metrics, {count:.0f} calls incl. warm-up): "
            f"mean {total / count * 1e3:.3f} ms, p50 <= {upper(0.5)}, p90 <= {upper(0.9)}, "
            f"p99 <= {upper(0.99)}\n  {shares}")


def print_table(rows: list[tuple[str, ...]]) -> None:
    head = ("metric", "direct", "aiohttp fwd", "proxy", "proxy vs direct", "spread", "target",
            "verdict")
    table = [head, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def forwarder_process(upstream_port: int,
                      prefix: Sequence[str] = ()) -> AbstractContextManager[tuple[int, int]]:
    """bench/_forwarder.py in front of the upstream (under ``prefix``); yields (port, pid)."""
    return child_process("_forwarder.py", str(upstream_port), prefix=prefix)


async def run(upstream_port: int, forwarder: tuple[int, int], proxy: tuple[str, int],
              s: Sizes) -> tuple[list[tuple[str, ...]], str]:
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        sides = [
            Side(Client(session, f"http://127.0.0.1:{upstream_port}{ENDPOINT}", "gpt-4o-mini")),
            Side(Client(session, f"http://127.0.0.1:{forwarder[0]}{ENDPOINT}", "one"),
                 forwarder[1]),
            Side(Client(session, proxy[0] + ENDPOINT, "one"), proxy[1])]
        answers = {await side.chat() for side in sides}
        if len(answers) != 1:
            raise RuntimeError(f"the paths answer differently: {answers}")
        for side in sides:
            await latencies(side.chat, s.warmup)
        rows, floor = await measure(sides, s)
        async with session.get(proxy[0] + "/metrics") as r:
            report = overhead_report(await r.text())
    return rows, floor + "\n\n" + report


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="router serve overhead vs direct calls")
    parser.add_argument("--quick", action="store_true", help="tiny run (~3 s), rough figures")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"proxy overhead bench ({'quick' if args.quick else 'full'}): python "
          f"{platform.python_version()}, aiohttp {aiohttp.__version__}, {os.cpu_count()} cpus, "
          f"proxy loop {_loop()}, {sizes.rounds} alternating rounds, load average {load_average()}")
    with tempfile.TemporaryDirectory() as tmp, server_process(1) as (port, pid), \
            forwarder_process(port) as forwarder, \
            proxy_process(port, Path(tmp)) as (proxy_url, proxy_pid):
        print(f"upstream: bench/_server.py pid {pid} on 127.0.0.1:{port}; aiohttp fwd: "
              f"bench/_forwarder.py pid {forwarder[1]}; proxy: router serve pid {proxy_pid} "
              f"at {proxy_url} (1 worker, JSON logs to a file)")
        rows, report = asyncio.run(run(port, forwarder, (proxy_url, proxy_pid), sizes))
    print()
    print_table(rows)
    print()
    print(report)
    missed = [r[0] for r in rows if r[-1] == "MISSED"]
    print(f"\n{len(missed)} target(s) missed{': ' + ', '.join(missed) if missed else ''}; "
          f"ran in {time.perf_counter() - started:.1f} s; load average now {load_average()} "
          f"(above {os.cpu_count()}, the four processes shared the cores with others)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
