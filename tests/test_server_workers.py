"""``router serve --workers N``: worker processes on one port (SO_REUSEPORT) under a small
parent. Two workers sharing a Redis budget never overspend under concurrent requests; /metrics
on either worker adds both up; SIGTERM drains every worker (a stream in flight finishes) and
the parent exits when they have; a worker that dies is replaced; budgets kept in memory are
refused; a port in use fails once, in one line; SIGHUP reaches every worker. And uvloop runs
the proxy when it is installed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from router import Router
from router.obs.metrics import FLUSH_SECONDS
from router.policy.budget import budget_key
from router.server.processes import event_loop_factory
from router.state import make_store, to_micro
from tests.servers.openai import OpenAIServer, Reply, completion, usage
from tests.servers.proxy import GatedUpstream, ProxyProcess

CHAT = "/v1/chat/completions"
WORKERS = ("--workers", "2")
# The upstream reports 1,000 prompt and 4,000 completion tokens; at $1 per 1M tokens each way
# a call costs $0.005, and its hold (1,000 prompt bytes, max_tokens 4,000) is that too.
PROMPT_TOKENS, OUTPUT_TOKENS = 1_000, 4_000
COST_MICRO = 5_000
CAP_USD = 0.05  # ten calls
CALLS = 30
BODY = {"model": "solo", "max_tokens": OUTPUT_TOKENS,
        "messages": [{"role": "user", "content": "x" * PROMPT_TOKENS}]}


@pytest.fixture
async def upstream() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        s.default = Reply(json=completion("ok", usage_=usage(PROMPT_TOKENS, OUTPUT_TOKENS)))
        yield s


def budget_doc(base_url: str, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "defaults": {"retry": {"attempts": 1}},
        "providers": {"a": {"kind": "openai-compatible", "base_url": base_url,
                            "models": {"m": {"price": {"input": 1, "output": 1}}}}},
        "models": {"solo": ["a:m"]},
        "state": state,
        "budgets": [{"scope": "global", "usd": CAP_USD, "per": "day"}],
    }


def plain_doc(base_url: str = "http://127.0.0.1:9/v1") -> dict[str, Any]:
    return {"version": 1,
            "providers": {"fk": {"kind": "fake", "text": "hello"},
                          "gated": {"kind": "openai-compatible", "base_url": base_url}},
            "models": {"fast": ["fk:m"], "gated": ["gated:gated-model"]}}


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def worker_pids(log: str) -> list[int]:
    return [int(p) for p in re.findall(r"worker_started\s+pid=(\d+)", log)]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def post(base_url: str, body: dict[str, Any]) -> tuple[int, str]:
    """One request on a connection of its own (so the kernel may pick either worker)."""
    async with aiohttp.ClientSession() as s, s.post(base_url + CHAT, json=body) as r:
        await r.read()
        return r.status, r.headers["x-router-request-id"]


async def spent_micro(doc: dict[str, Any]) -> int:
    async with make_store(**doc["state"]) as store:
        spec = Router.from_dict(doc, store=store).plan.budgets[0]
        return (await store.usage(budget_key(spec, time.time()).key)).spent_micro


async def metric_sum(base_url: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(base_url + "/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


# -- sharing through the store ------------------------------------------------------------------

async def test_two_workers_sharing_a_redis_budget_never_overspend(
        tmp_path: Path, upstream: OpenAIServer, redis_state: dict[str, Any]) -> None:
    doc = budget_doc(upstream.base_url, redis_state)
    async with ProxyProcess(write(tmp_path, doc), args=WORKERS) as proxy:
        results = await asyncio.gather(*(post(proxy.base_url, BODY) for _ in range(CALLS)))
        statuses = [status for status, _ in results]
        assert set(statuses) <= {200, 429}
        served = statuses.count(200)
        # The hold's prompt estimate is a little over the real prompt: at most ten fit.
        assert 1 <= served <= round(CAP_USD * 1e6 / COST_MICRO)
        spent = await spent_micro(doc)
        assert spent == served * COST_MICRO <= to_micro(CAP_USD)
        # Both workers answered (a request id starts with its process's random prefix).
        assert len({rid[:12] for _, rid in results}) == 2
        # /metrics on any worker adds every worker's requests up: the other worker's within
        # a flush (FLUSH_SECONDS).
        async with asyncio.timeout(FLUSH_SECONDS + 5):
            while await metric_sum(proxy.base_url, "router_requests_total") != CALLS:
                await asyncio.sleep(0.1)
        assert await proxy.stop() == 0


# -- signals and lifetimes ----------------------------------------------------------------------

async def test_sigterm_stops_every_worker_and_the_parent(tmp_path: Path) -> None:
    async with ProxyProcess(write(tmp_path, plain_doc()), args=WORKERS) as proxy:
        assert (await post(proxy.base_url, {"model": "fast", "messages": [
            {"role": "user", "content": "hi"}]}))[0] == 200
        pids = worker_pids(proxy.log())
        assert len(pids) == 2
        metrics_dir = re.search(r"metrics_dir=(\S+)", proxy.log())
        assert metrics_dir is not None and Path(metrics_dir.group(1)).is_dir()
        assert await proxy.stop() == 0
        assert all(gone(pid) for pid in pids)
        assert proxy.log().count("proxy_stopped") == 2 and "workers_stopped" in proxy.log()
        assert not Path(metrics_dir.group(1)).exists()


async def test_sigterm_lets_a_stream_on_a_worker_finish(tmp_path: Path) -> None:
    async with GatedUpstream() as gated:
        path = write(tmp_path, plain_doc(gated.base_url))
        async with ProxyProcess(path, args=WORKERS) as proxy, aiohttp.ClientSession() as s:
            r = await s.post(proxy.base_url + CHAT, json={
                "model": "gated", "stream": True,
                "messages": [{"role": "user", "content": "hi"}]})
            assert r.status == 200
            await r.content.readuntil(b"\n\n")
            await asyncio.wait_for(gated.started.wait(), 10)
            proxy.signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                while proxy.log().count("proxy_draining") < 2:
                    await asyncio.sleep(0.02)
            gated.gate.set()
            assert (await r.read()).endswith(b"data: [DONE]\n\n")
            assert await proxy.wait() == 0


async def test_sighup_reaches_every_worker(tmp_path: Path) -> None:
    async with ProxyProcess(write(tmp_path, plain_doc()), args=WORKERS) as proxy:
        assert "routes_reloaded" not in proxy.log()
        proxy.signal(signal.SIGHUP)  # a forced reload, the file unchanged
        async with asyncio.timeout(30):
            while proxy.log().count("routes_reloaded") < 2:
                await asyncio.sleep(0.02)
        assert (await post(proxy.base_url, {"model": "fast", "messages": [
            {"role": "user", "content": "hi"}]}))[0] == 200
        assert await proxy.stop() == 0


async def test_a_worker_that_dies_is_replaced(tmp_path: Path) -> None:
    async with ProxyProcess(write(tmp_path, plain_doc()), args=WORKERS) as proxy:
        victim = worker_pids(proxy.log())[0]
        os.kill(victim, signal.SIGKILL)
        async with asyncio.timeout(30):
            while len(worker_pids(proxy.log())) < 3 or proxy.log().count("proxy_started") < 3:
                await asyncio.sleep(0.02)
        assert "worker_exited" in proxy.log()
        for _ in range(4):
            assert (await post(proxy.base_url, {"model": "fast", "messages": [
                {"role": "user", "content": "hi"}]}))[0] == 200
        assert await proxy.stop() == 0


async def serve_exit(tmp_path: Path, doc: dict[str, Any], *args: str) -> tuple[int, bytes]:
    """Run ``router serve`` that is expected to refuse: its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "serve", str(write(tmp_path, doc)), *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err


async def test_a_port_in_use_fails_once_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = await serve_exit(tmp_path, plain_doc(), "--port", str(port), *WORKERS)
    assert code == 1 and err.count(b"cannot listen on 127.0.0.1") == 1
    assert b"worker_started" not in err and b"Traceback" not in err


async def test_budgets_in_memory_are_refused_with_workers(tmp_path: Path) -> None:
    doc = budget_doc("http://127.0.0.1:9/v1", {"kind": "memory"})
    code, err = await serve_exit(tmp_path, doc, "--port", "0", *WORKERS)
    assert code == 2
    assert b"budgets need a state store the workers share" in err
    assert b"Traceback" not in err


# -- the event loop -----------------------------------------------------------------------------

async def test_uvloop_runs_the_proxy_when_installed(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    async with ProxyProcess(write(tmp_path, plain_doc())) as proxy:
        assert "loop=uvloop" in proxy.log()


async def test_without_uvloop_the_loop_is_asyncio_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert event_loop_factory() is None
