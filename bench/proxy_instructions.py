"""CPU instructions per proxied call, counted by valgrind's callgrind: ``router serve`` against
the bare aiohttp pass-through (bench/_forwarder.py), in one run.

    python bench/proxy_instructions.py            # 400 counted calls each, ~2 min
    python bench/proxy_instructions.py --calls 100 --quick

bench/proxy_overhead.py's throughput figures move with whatever else these 2 shared cores are
doing; instructions do not (the same binary, inputs and environment give the same count), so
this is the figure to compare two versions of the proxy by. Each process runs under callgrind
with the upstream (bench/_server.py) outside it; the client warms it up, zeroes its counters
(``callgrind_control -z``), makes the counted calls, 8 in flight, and dumps (``-d``).
Instructions are user space only: the kernel's share of each socket write is not in them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from overhead import server_process
from proxy_overhead import ENDPOINT, KEY, MESSAGES, forwarder_process, proxy_process

CONCURRENCY = 8
_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def callgrind(out_dir: Path, name: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--collect-atstart=yes",
            f"--log-file={out_dir}/{name}.log", f"--callgrind-out-file={out_dir}/{name}.%p"]


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def counted(out_dir: Path, name: str, pid: int) -> int:
    """Instructions in the dump made after the counters were zeroed (``<name>.<pid>.1``)."""
    text = (out_dir / f"{name}.{pid}.1").read_text(errors="replace")
    m = _TOTALS.search(text)
    if m is None:
        raise RuntimeError(f"no totals in {name}'s callgrind dump")
    return int(m.group(1))


async def calls(url: str, model: str, n: int) -> None:
    body = {"model": model, "messages": MESSAGES, "max_tokens": 16}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with session.post(url, json=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: HTTP {r.status}")

        async def worker(k: int) -> None:
            for _ in range(k):
                await one()

        await asyncio.gather(*(worker(n // CONCURRENCY) for _ in range(CONCURRENCY)))


def measure(pid: int, url: str, model: str, warmup: int, n: int) -> None:
    asyncio.run(calls(url, model, warmup))
    control("-z", str(pid))
    asyncio.run(calls(url, model, n))
    control("-d", str(pid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="instructions per proxied call (callgrind)")
    parser.add_argument("--calls", type=int, default=400, help="counted calls per side")
    parser.add_argument("--quick", action="store_true", help="warm up with 50 calls, not 300")
    args = parser.parse_args(argv)
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind (callgrind) is not installed: apt-get install valgrind")
        return 2
    n = max(CONCURRENCY, args.calls // CONCURRENCY * CONCURRENCY)
    warmup = 50 if args.quick else 300
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, server_process(1) as (port, _pid):
        out = Path(tmp)
        os.environ["PYTHONMALLOC"] = "malloc"  # valgrind sees each allocation
        results: dict[str, int] = {}
        with forwarder_process(port, prefix=callgrind(out, "fwd")) as (fwd_port, fwd_pid):
            measure(fwd_pid, f"http://127.0.0.1:{fwd_port}{ENDPOINT}", "one", warmup, n)
            results["aiohttp fwd"] = counted(out, "fwd", fwd_pid) // n
        with proxy_process(port, out, prefix=callgrind(out, "proxy")) as (url, proxy_pid):
            measure(proxy_pid, url + ENDPOINT, "one", warmup, n)
            results["proxy"] = counted(out, "proxy", proxy_pid) // n
    fwd, proxy = results["aiohttp fwd"], results["proxy"]
    print(f"instructions per call ({n} counted calls, {CONCURRENCY} in flight, after {warmup} "
          f"warm-up; user space):")
    print(f"  aiohttp fwd  {fwd / 1e3:8.0f}k   (bench/_forwarder.py: aiohttp's server and "
          "client, nothing else)")
    print(f"  router serve {proxy / 1e3:8.0f}k   {proxy / fwd:.2f}x the forwarder, "
          f"{(proxy - fwd) / 1e3:+.0f}k")
    print(f"ran in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
