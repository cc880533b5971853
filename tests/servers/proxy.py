"""``router serve`` as a subprocess for tests, and a gated upstream that holds a stream open.

    async with ProxyProcess(route_file, env={"ROUTER_PROXY_KEYS": "k1"}) as proxy:
        proxy.base_url                    # http://127.0.0.1:<port>
        await proxy.stop()                # SIGTERM; returns the exit code
        proxy.log()                       # what it wrote on stderr

The proxy binds port 0 and says where it listens on stderr; the helper reads that line, then
polls /healthz until the proxy answers (never a fixed sleep).

``GatedUpstream`` speaks OpenAI's streaming wire: it sends a first chunk, waits until the
test opens ``gate``, then sends the rest and ``[DONE]``; ``cancelled`` is set when the
connection is closed under it (the proxy cancelled the upstream call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
START_TIMEOUT = 30.0  # a cold interpreter on a busy two-core machine


class ProxyProcess:
    """A running ``python -m router serve FILE --port 0`` (an async context manager)."""

    def __init__(self, route_file: Path, *, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.route_file = route_file
        # The proxy sees the test's environment, less any access keys the test did not set.
        self.env = {k: v for k, v in os.environ.items() if k != "ROUTER_PROXY_KEYS"}
        self.env.update(env or {})
        self.args = args
        self.log_path = route_file.with_suffix(".log")
        self.process: asyncio.subprocess.Process | None = None
        self.base_url = ""

    async def start(self) -> Self:
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "router", "serve", str(self.route_file),
                "--port", "0", *self.args, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, env=self.env)
        loop = asyncio.get_running_loop()
        end = loop.time() + START_TIMEOUT
        while not self.base_url:
            m = _LISTENING.search(self.log())
            if m:
                self.base_url = m.group(1)
            elif self.process.returncode is not None or loop.time() > end:
                raise RuntimeError(f"router serve did not start:\n{self.log()}")
            else:
                await asyncio.sleep(0.02)
        await self._wait_healthy(end)
        return self

    async def _wait_healthy(self, end: float) -> None:
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.base_url}/healthz") as r:
                        if r.status == 200:
                            return
                if loop.time() > end:
                    raise RuntimeError(f"router serve never answered /healthz:\n{self.log()}")
                await asyncio.sleep(0.02)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        async with asyncio.timeout(timeout):
            return await self.process.wait()

    async def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not exit in time)."""
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else 0
        self.signal(signal.SIGTERM)
        try:
            return await self.wait()
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    async def __aenter__(self) -> Self:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    body = {"id": "chatcmpl-gated", "object": "chat.completion.chunk", "created": 1,
            "model": "gated-model", "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish_reason}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class GatedUpstream:
    """An OpenAI-wire upstream whose streams pause after the first chunk until ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.finished = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await response.write(_chunk({"role": "assistant", "content": "first "}))
            self.started.set()
            await self.gate.wait()
            await response.write(_chunk({"content": "second"}))
            await response.write(_chunk({}, "stop"))
            usage = {"id": "chatcmpl-gated", "object": "chat.completion.chunk", "created": 1,
                     "model": "gated-model", "choices": [],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
            await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
            self.finished.set()
        except (asyncio.CancelledError, ConnectionError):
            self.cancelled.set()
            raise
        return response

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()


__all__ = ["GatedUpstream", "ProxyProcess"]
