"""Shared pieces of the engine tests: route files whose providers point at one loopback server
(one path prefix per provider, so the server tells them apart), request counting, and a small
server that trickles a body slowly (the scripted server writes its pieces back to back).

Every provider is ``openai-compatible`` at ``http://127.0.0.1:<port>/<name>/v1`` and every
target is ``<name>:m`` unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping, Sequence
from typing import Any

from aiohttp import web

from router import Router
from router.types import ChatChunk
from tests.servers.openai import OpenAIServer, sse_frame

KEY = "sk-engine-DISTINCTIVE-5c1e0b7a9d"
MSG = [{"role": "user", "content": "hi"}]
MODEL = "m"

#: What the ``router_for`` fixture (conftest.py) gives: ``make_router`` bound to the server.
Factory = Callable[..., Router]
#: What the ``events`` fixture (conftest.py) gives: router's log events as dicts.
Events = list[MutableMapping[str, Any]]

#: Small but not flaky: a test that waits on one of these waits at most this long.
DEFAULT_TIMEOUTS = {"connect": "1s", "first_token": "1s", "total": "3s", "idle": "1s"}
DEFAULT_RETRY = {"attempts": 2, "initial": "1ms", "max": "5ms"}


def chat_path(name: str) -> str:
    """The path the server sees for provider ``name``."""
    return f"/{name}/v1/chat/completions"


def target(name: str, model: str = MODEL) -> str:
    return f"{name}:{model}"


def hits(server: OpenAIServer, name: str) -> int:
    """How many requests provider ``name`` sent to the server."""
    return sum(1 for r in server.requests if r.path == chat_path(name))


def provider(port: int, name: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "openai-compatible", "base_url": f"http://127.0.0.1:{port}/{name}/v1",
            "api_key": KEY, **extra}


def route_file(port: int, models: Mapping[str, Any], *, names: Sequence[str] = (),
               providers: Mapping[str, Mapping[str, Any]] | None = None,
               timeout: Mapping[str, Any] | None = None, retry: Mapping[str, Any] | None = None,
               breaker: Mapping[str, Any] | None = None,
               errors: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A route file dict. Providers are ``names`` (plain) plus ``providers`` (name -> extra
    settings such as ``models:`` overrides or a ``base_url`` of their own)."""
    provs = {n: provider(port, n) for n in names}
    for n, extra in (providers or {}).items():
        provs[n] = {**provider(port, n), **extra}
    defaults: dict[str, Any] = {"timeout": {**DEFAULT_TIMEOUTS, **(timeout or {})},
                                "retry": {**DEFAULT_RETRY, **(retry or {})}}
    if breaker is not None:
        defaults["breaker"] = dict(breaker)
    data: dict[str, Any] = {"version": 1, "defaults": defaults, "providers": provs,
                            "models": dict(models)}
    if errors is not None:
        data["errors"] = list(errors)
    return data


def make_router(server: OpenAIServer, models: Mapping[str, Any], **kw: Any) -> Router:
    """A Router for ``route_file(server.port, models, **kw)``; the providers default to every
    name used in ``models`` (as ``name:model``)."""
    if "names" not in kw:
        used: set[str] = set()
        for chain in models.values():
            items = chain["chain"] if isinstance(chain, Mapping) else chain
            for item in items:
                ref = item["target"] if isinstance(item, Mapping) else item
                used.add(ref.split(":", 1)[0])
        kw["names"] = sorted(used - set(kw.get("providers") or {}))
    return Router.from_dict(route_file(server.port, models, **kw))


class Clock:
    """A test's clock: what the breakers (and a scripted outage) read as now; it moves only
    when the test sets ``now``."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    """A loopback port with nothing listening (bound, then released at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def our_pending_tasks() -> list[asyncio.Task[Any]]:
    """Pending tasks other than the current one and the loopback server's request handlers
    (which end when the server notices the client is gone)."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks()
            if t is not current and not t.done()
            and not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")]


class TrickleServer:
    """Writes a body in ``pieces`` with ``gap`` seconds between them: each gap stays within an
    idle timeout while the whole body takes longer than a total timeout."""

    def __init__(self, pieces: Sequence[bytes], *, gap: float,
                 content_type: str = "application/json") -> None:
        self.pieces = list(pieces)
        self.gap = gap
        self.content_type = content_type
        self.requests = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        resp = web.StreamResponse(status=200)
        resp.content_type = self.content_type
        await resp.prepare(request)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            for piece in self.pieces:
                await resp.write(piece)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.gap)
                if self._closing.is_set():
                    return resp
            await resp.write_eof()
        return resp

    async def __aenter__(self) -> TrickleServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.2, access_log=None,
                                     handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()


def split_bytes(data: bytes, n: int) -> list[bytes]:
    """``data`` in ``n`` nearly equal pieces."""
    size = max(1, -(-len(data) // n))
    return [data[i:i + size] for i in range(0, len(data), size)]


def sse_body(events: Sequence[Any]) -> list[bytes]:
    """SSE frames for ``events`` followed by ``[DONE]``, one piece per frame."""
    return [sse_frame(e) for e in events] + [b"data: [DONE]\n\n"]


def json_pieces(body: Any, n: int) -> list[bytes]:
    return split_bytes(json.dumps(body).encode(), n)


async def collect(agen: AsyncIterator[Any]) -> list[Any]:
    return [c async for c in agen]


def text_of(chunks: Sequence[ChatChunk]) -> str:
    """The text a stream's chunks carried, joined."""
    return "".join(c.delta for c in chunks)


def outcomes(records: Sequence[Any]) -> list[tuple[str, str, str | None]]:
    """(target, outcome, error_class or skip reason) per attempt record."""
    return [(r.target, r.outcome, r.error_class.value if r.error_class else r.reason)
            for r in records]
