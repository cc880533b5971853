"""The scripted loopback server every provider stand-in builds on: lifecycle, reply queues,
recorded requests, connection counting and the misbehaviours. A wire layer (``openai.py``,
``anthropic.py``, ...) only says how one stream event is framed, what ends a stream, which
headers every answer carries and what a refused request gets.

    async with SomeServer() as server:             # 127.0.0.1, port 0
        server.enqueue(reply_a, reply_b)           # FIFO, per path (or for any path)
        ...
        server.requests[0].json; server.open_connections; await server.wait_requests(3)

Replies come from a FIFO queue for the request's path, then the queue for any path, then the
path's standing answer (``server.answer_always(script, path=...)``: every request to it that
no queued reply answers, e.g. a provider that is down), then ``server.default``. A queue entry
or a standing answer may be a callable ``(RecordedRequest) -> Reply`` (a provider that is down
until a test's clock says otherwise). Each recorded request has ``at``, the monotonic time it
arrived, so tests can check the gaps between attempts (``gaps(server.requests)``).

Misbehaviours (fields of ``Reply``): ``delay`` holds the headers back, ``first_byte_delay`` the
body; after ``stall_after`` events the server goes silent (with every event sent, the body
never ends: a connection kept open after the terminator), after ``reset_after`` events it
aborts the connection; ``cut_at`` sends only the first N bytes of a stream body, then ends it
cleanly (or aborts, with ``cut_reset``); ``huge`` sends a chunked body of N bytes that is
never held whole; ``drop`` closes the connection without answering; ``redirect_reply`` answers
a 3xx. Server-wide, ``drop_reused`` makes it a keep-alive-then-close server: it answers one
request per connection and drops (closes, no byte sent) any later request on the same
connection, as a server that closed an idle keep-alive connection just as the client reused it
(llama.cpp's server closes after every stream while advertising keep-alive).
Every wait inside the server ends as soon as the server closes, so a test never waits on a
handler.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict

_HUGE_PIECE = b"x" * 65_536


@dataclass
class Reply:
    """One scripted answer.

    ``json`` → a JSON body; ``events`` → a stream body (framed by the wire layer; bytes are
    written as they are), followed by the wire layer's terminator when ``done``; ``raw`` →
    bytes as is. Stream bytes go out in random pieces of ``piece_sizes`` bytes. The
    misbehaviour fields are described in the module docstring.
    """

    status: int = 200
    json: Any = None
    events: Sequence[Any] | None = None
    raw: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    done: bool = True
    piece_sizes: tuple[int, int] = (1, 9)
    delay: float = 0.0
    first_byte_delay: float = 0.0
    stall_after: int | None = None
    reset_after: int | None = None
    cut_at: int | None = None
    cut_reset: bool = False
    content_type: str | None = None
    huge: int | None = None
    drop: bool = False


@dataclass
class RecordedRequest:
    """What the server received."""

    method: str
    path: str
    headers: Mapping[str, str]  # case-insensitive, as HTTP header names are
    body: bytes
    peer: tuple[str, int] | None = None  # client address: one per connection
    query: Mapping[str, str] = field(default_factory=dict)
    at: float = 0.0  # time.monotonic() when it arrived

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Script = Reply | Callable[[RecordedRequest], Reply]


def redirect_reply(location: str, *, status: int = 307) -> Reply:
    """A redirect to ``location`` (307 keeps the method and body, as a real proxy's would)."""
    return Reply(status=status, raw=b"", headers={"Location": location})


class ScriptedServer:
    """The scripted server; an async context manager (see the module docstring)."""

    request_class: type[RecordedRequest] = RecordedRequest
    stream_content_type = "text/event-stream"

    def __init__(self, *, seed: int = 0) -> None:
        self.requests: list[RecordedRequest] = []
        self.default: Script = Reply(json={})
        self.drop_reused = False
        self._queues: dict[str | None, collections.deque[Script]] = collections.defaultdict(
            collections.deque)
        self._standing: dict[str | None, Script] = {}
        self._rng = random.Random(seed)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._answered: set[tuple[str, int]] = set()  # peers that got an answer
        self._request_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a handler stops when its client goes, so open_connections is true
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None,
                                     handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    # -- scripting and inspection ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Script, path: str | None = None) -> None:
        """Answer the next requests to ``path`` (None: to any path) with these, in order."""
        self._queues[path].extend(replies)

    def answer_always(self, script: Script, *, path: str | None = None) -> None:
        """Answer every request to ``path`` (None: any path) that no queued reply answers."""
        self._standing[path] = script

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        if self._runner is None or self._runner.server is None:
            return 0
        return len(self._runner.server.connections)

    @property
    def peers(self) -> set[tuple[str, int] | None]:
        """The client connections requests came on (one address per connection)."""
        return {r.peer for r in self.requests}

    async def wait_connections(self, count: int, timeout: float = 2.0) -> int:
        """Wait (up to ``timeout``) until ``open_connections <= count``; return the last value."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self.open_connections > count and loop.time() < end:
            await asyncio.sleep(0.005)
        return self.open_connections

    async def wait_requests(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``count`` requests have arrived (TimeoutError after ``timeout``)."""
        if len(self.requests) >= count:
            return
        fut = asyncio.get_running_loop().create_future()
        self._request_waiters.append((count, fut))
        async with asyncio.timeout(timeout):
            await fut

    # -- what a wire layer says ---------------------------------------------------------

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        """The recorded form of ``request``."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return self.request_class(request.method, request.path, CIMultiDict(request.headers),
                                  body, tuple(peer) if peer else None, dict(request.query),
                                  time.monotonic())

    def reply_for(self, recorded: RecordedRequest) -> Reply:
        """The answer to ``recorded`` (a wire layer may refuse a bad request first)."""
        return self.next_reply(recorded)

    def next_reply(self, recorded: RecordedRequest) -> Reply:
        queue = self._queues.get(recorded.path) or self._queues.get(None)
        script = (queue.popleft() if queue else self._standing.get(recorded.path)
                  or self._standing.get(None) or self.default)
        return script(recorded) if callable(script) else script

    def reply_headers(self, reply: Reply) -> dict[str, str]:
        """The headers of an answer (a wire layer adds its request id, ...)."""
        return dict(reply.headers)

    def stream_headers(self) -> dict[str, str]:
        """Headers a streamed answer adds."""
        return {}

    def frame(self, event: Any) -> bytes:
        """One stream event on the wire (the default: an SSE ``data:`` line)."""
        if isinstance(event, bytes):
            return event
        data = event if isinstance(event, str) else json.dumps(event)
        return f"data: {data}\n\n".encode()

    def trailer(self, reply: Reply) -> list[bytes]:
        """What ends a stream after its events (OpenAI's ``data: [DONE]``); none by default."""
        return []

    # -- serving ------------------------------------------------------------------------

    async def _pause(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: forever), or until the server closes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _arrived(self, recorded: RecordedRequest) -> None:
        self.requests.append(recorded)
        waiting, self._request_waiters = self._request_waiters, []
        for count, fut in waiting:
            if len(self.requests) >= count:
                if not fut.done():
                    fut.set_result(None)
            else:
                self._request_waiters.append((count, fut))

    async def _drop(self, request: web.Request) -> web.StreamResponse:
        """Close the connection without a byte of answer."""
        if request.transport is not None:
            request.transport.abort()
        await self._pause(None)  # cancelled as the connection goes (handler_cancellation)
        return web.Response()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = self.record(request, await request.read())
        self._arrived(recorded)
        if self.drop_reused and recorded.peer in self._answered:
            return await self._drop(request)
        reply = self.reply_for(recorded)
        if reply.drop:
            return await self._drop(request)
        if recorded.peer is not None:
            self._answered.add(recorded.peer)
        headers = self.reply_headers(reply)
        if reply.delay:
            await self._pause(reply.delay)
        if reply.events is not None:
            return await self._stream(request, reply, {**self.stream_headers(), **headers})
        if reply.huge is not None:
            return await self._huge(request, reply, headers)
        if reply.json is not None:
            body, ctype = json.dumps(reply.json).encode(), "application/json"
        else:
            body, ctype = reply.raw or b"", "text/plain"
        resp = web.StreamResponse(status=reply.status, headers=headers)
        resp.content_type = reply.content_type or ctype
        resp.content_length = len(body)
        await resp.prepare(request)
        if reply.first_byte_delay:
            await self._pause(reply.first_byte_delay)
        await resp.write(body)
        await resp.write_eof()
        return resp

    async def _huge(self, request: web.Request, reply: Reply,
                    headers: dict[str, str]) -> web.StreamResponse:
        """A chunked body of ``reply.huge`` bytes, written piece by piece (never held)."""
        resp = web.StreamResponse(status=reply.status, headers=headers)
        resp.content_type = reply.content_type or "application/json"
        await resp.prepare(request)
        left = reply.huge or 0
        try:
            while left > 0:
                piece = _HUGE_PIECE[:left]
                await resp.write(piece)
                left -= len(piece)
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass  # the client gave up reading: what the size-cap tests are about
        return resp

    async def _stream(self, request: web.Request, reply: Reply,
                      headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(status=reply.status, headers=headers)
        resp.content_type = reply.content_type or self.stream_content_type
        await resp.prepare(request)
        if reply.first_byte_delay:
            await self._pause(reply.first_byte_delay)
        frames = [self.frame(e) for e in reply.events or ()]
        if reply.done:
            frames += self.trailer(reply)
        if reply.cut_at is not None:
            frames = [b"".join(frames)[:reply.cut_at]]
        try:
            for i, frame in enumerate(frames):
                if i == reply.stall_after:
                    await self._pause(None)
                    return resp
                if i == reply.reset_after:
                    self._abort(request)
                    return resp
                for piece in self._split(frame, reply.piece_sizes):
                    await resp.write(piece)
            if reply.stall_after is not None and reply.stall_after >= len(frames):
                await self._pause(None)  # all sent, but the body never ends
                return resp
            if reply.cut_at is not None and reply.cut_reset:
                await asyncio.sleep(0)  # let the bytes leave before the reset
                self._abort(request)
                return resp
            await resp.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away; that is what some tests are about
        return resp

    @staticmethod
    def _abort(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()

    def _split(self, data: bytes, sizes: tuple[int, int]) -> Iterable[bytes]:
        i = 0
        while i < len(data):
            n = self._rng.randint(*sizes)
            yield data[i:i + n]
            i += n


def gaps(requests: Sequence[RecordedRequest]) -> list[float]:
    """Seconds between consecutive requests (by arrival)."""
    return [b.at - a.at for a, b in itertools.pairwise(requests)]


def stream_reply(events: Sequence[Any], **kw: Any) -> Reply:
    return Reply(events=events, **kw)


def json_reply(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
               ) -> Reply:
    return Reply(status=status, json=body, headers=dict(headers or {}))
