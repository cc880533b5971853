"""The HTTP seam's own HTTP/1.1 client: keep-alive connections per origin on asyncio
protocols, responses parsed by httptools (llhttp, the parser of Node.js and uvicorn).

Why not aiohttp's ClientSession here: a POST through it costs ~400,000 CPU instructions of
its own (request and response objects, header merging, cookie jar, timers, tracing hooks),
the largest single share of a proxied call; this client costs ~30,000 for the same request
(bench/proxy_instructions.py). It does only what the seam needs: POST a body, headers as they
arrive, the body as it arrives (Content-Length, chunked, or to the end of the connection),
gzip and deflate decoded, TLS, flow control, a pooled connection that the server had closed
re-sent once on a new one. ``http.HttpPool`` keeps aiohttp for what this does not do: a
caller's own ClientSession, and HTTP proxies from the environment (``trust_env``).

Its responses look like aiohttp's where ``_http_response.HttpResponse`` reads them (status,
headers, ``content`` with ``read_nowait`` / ``readany`` / ``at_eof``, ``release``,
``close``), so the timeouts, caps and stream framing there are written once for both.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from collections.abc import Mapping
from typing import Any, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["BadResponse", "BadURL", "BodyCut", "ConnectFailed", "ConnectTimeout", "Disconnected",
           "Origin", "WirePool", "WireResponse"]

_HIGH_WATER = 1 << 18  # buffered body bytes at which the socket stops being read
_EMPTY = CIMultiDictProxy(CIMultiDict[str]())


class ConnectFailed(OSError):
    """No connection could be made (refused, unreachable, DNS, TLS handshake)."""


class ConnectTimeout(TimeoutError):
    """No connection within the connect timeout."""


class Disconnected(ConnectionError):
    """The server closed the connection before the response's headers."""


class BodyCut(ConnectionError):
    """The connection ended inside the response body."""


class BadResponse(ConnectionError):
    """What came back is not an HTTP/1.x response."""


class BadURL(OSError):
    """The URL cannot be requested (aiohttp's InvalidURL)."""


class Content:
    """A response body as it arrives: aiohttp's StreamReader's reading half."""

    __slots__ = ("_buffer", "_conn", "_eof", "_exc", "_paused", "_size", "_waiter")

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._buffer: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._eof = False
        self._exc: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- the connection's side ---------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._buffer.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self._eof:
            self._exc = exc
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the reader's side -------------------------------------------------------------
    def exception(self) -> BaseException | None:
        return self._exc

    def is_eof(self) -> bool:
        return self._eof

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    def read_nowait(self) -> bytes:
        """What is buffered (``b""``: nothing yet, or the end); raises the connection's
        failure once the buffer is empty."""
        buffer = self._buffer
        if not buffer:
            if self._exc is not None:
                raise self._exc
            return b""
        data = buffer.popleft() if len(buffer) == 1 else b"".join(buffer)
        buffer.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._conn.resume()
        return data

    async def readany(self) -> bytes:
        """The next bytes as they arrive; ``b""`` at the end."""
        while not self._buffer and not self._eof:
            if self._exc is not None:
                raise self._exc
            self._waiter = self._conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.read_nowait()


class WireResponse:
    """One response: status and headers once they came, the body in ``content``."""

    __slots__ = ("_conn", "closed", "content", "content_length", "headers", "status")

    def __init__(self, conn: _Connection, status: int, headers: CIMultiDictProxy[str],
                 content: Content, length: str | None) -> None:
        self._conn = conn
        self.status = status
        self.headers: Mapping[str, str] = headers
        self.content = content
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self.closed = False

    def release(self) -> None:
        """The body was read to its end: the connection goes back to the pool (or closes,
        if the server said so)."""
        if not self.closed:
            self.closed = True
            self._conn.done(self.content.at_eof())

    def close(self) -> None:
        """Drop the connection (a half-read body would poison it for the next request)."""
        if not self.closed:
            self.closed = True
            self._conn.done(False)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request on it at a time."""

    def __init__(self, pool: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_until = 0.0
        self._headers: list[tuple[str, str]] = []
        self._head: asyncio.Future[WireResponse] | None = None
        self._content: Content | None = None
        self._decoder: Any = None
        self._complete = False
        self._keep = False  # the server lets the connection serve another request
        self._raw = False  # the body is raw deflate (no zlib header)
        self._until_close = False  # no Content-Length, not chunked: the body ends with us

    # -- asyncio.Protocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._failed(BadResponse(f"invalid HTTP response: {type(e).__name__}"))
            if self.transport is not None:
                self.transport.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        content = self._content
        if content is not None and not self._complete:
            if self._until_close and exc is None:
                self._finish_body()
            else:
                content.fail(BodyCut("the connection ended inside the response body"))
        elif self._head is not None and not self._head.done():
            self._head.set_exception(Disconnected("server disconnected before the response"))
        self.pool.forget(self)

    # -- httptools callbacks -----------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim response (100 Continue): the real one follows
            self._headers = []
            return
        raw = self._headers
        length = None
        if raw:
            self._headers = []
            headers = CIMultiDictProxy(CIMultiDict(raw))
            length = headers.get("Content-Length")
            encoding = headers.get("Content-Encoding")
            if encoding is not None and encoding.strip().lower() in ("gzip", "x-gzip",
                                                                     "deflate"):
                self._decoder = zlib.decompressobj(wbits=47)  # gzip or zlib: told by its header
            self._until_close = length is None and "chunked" not in headers.get(
                "Transfer-Encoding", "").lower()
        else:
            headers = _EMPTY
            self._until_close = True
        content = self._content = Content(self)
        head = self._head
        self._head = None
        if head is not None and not head.done():
            head.set_result(WireResponse(self, status, headers, content, length))

    def on_body(self, body: bytes) -> None:
        content = self._content
        if content is None:
            return
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error:
                if self._raw_deflate():
                    body = self._decoder.decompress(body)
                else:
                    content.fail(BadResponse("the response body does not decompress"))
                    return
            if not body:
                return
        content.feed(body)

    def on_message_complete(self) -> None:
        if self._content is not None:
            self._keep = self.parser.should_keep_alive()  # reset once this returns
            self._finish_body()

    # -- helpers -----------------------------------------------------------------------
    def _raw_deflate(self) -> bool:
        """Some servers send "deflate" without zlib's header: try raw deflate, once."""
        if self._raw:
            return False
        self._raw = True
        self._decoder = zlib.decompressobj(wbits=-zlib.MAX_WBITS)
        return True

    def _finish_body(self) -> None:
        self._complete = True
        content = self._content
        assert content is not None
        if self._decoder is not None:
            rest = self._decoder.flush()
            self._decoder = None
            if rest:
                content.feed(rest)
        content.feed_eof()

    def _failed(self, exc: BaseException) -> None:
        if self._content is not None and not self._complete:
            self._content.fail(exc)
        elif self._head is not None and not self._head.done():
            self._head.set_exception(exc)

    def abort(self) -> None:
        """Close the connection: its request failed or was given up on."""
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.resume_reading()

    # -- one request -------------------------------------------------------------------
    def send(self, head: bytes, body: bytes) -> asyncio.Future[WireResponse]:
        """Write the request; the future of its response, set once the headers came (a
        future, not a coroutine: one level less on the path of every call)."""
        transport = self.transport
        assert transport is not None
        self._complete = self._keep = False
        self._content = None
        self._decoder = None
        self._raw = False
        future = self._head = self.loop.create_future()
        if len(body) < 65536:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)
        return future

    def done(self, reusable: bool) -> None:
        """The response is finished with: pool the connection if it can serve another."""
        keep = reusable and self._complete and self._keep and not self.lost
        self._content = None
        self._head = None
        if keep:
            self.pool.put(self)
        elif self.transport is not None:
            self.transport.close()


class Origin:
    """The idle keep-alive connections to one (scheme, host, port)."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext | None,
                 keepalive: float) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.keepalive = keepalive
        self.idle: list[_Connection] = []

    def get(self, now: float) -> _Connection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.lost and conn.idle_until > now:
                return conn
            if conn.transport is not None:
                conn.transport.close()
        return None

    def put(self, conn: _Connection) -> None:
        now = conn.loop.time()
        conn.idle_until = now + self.keepalive
        idle = self.idle
        if idle and idle[0].idle_until <= now:  # the oldest outlived its keep-alive
            old = idle.pop(0)
            if old.transport is not None:
                old.transport.close()
        idle.append(conn)

    def forget(self, conn: _Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()
        self.idle.clear()


class WirePool:
    """Keep-alive connections per origin, for one event loop."""

    def __init__(self, keepalive: float = 30.0) -> None:
        self._keepalive = keepalive
        self._origins: dict[tuple[str, str, int], Origin] = {}
        self._ssl: ssl.SSLContext | None = None

    def origin(self, scheme: str, host: str, port: int) -> Origin:
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            context = None
            if scheme == "https":
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                context = self._ssl
            origin = self._origins[key] = Origin(host, port, context, self._keepalive)
        return origin

    async def _connect(self, origin: Origin, connect_timeout: float | None,
                       loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin, loop), origin.host, origin.port,
                    ssl=origin.ssl, server_hostname=origin.host if origin.ssl else None)
        except TimeoutError as e:
            raise ConnectTimeout("connect timed out") from e
        except OSError as e:  # refused, unreachable, DNS (socket.gaierror), TLS (SSLError)
            raise ConnectFailed(e.errno, f"cannot connect: {type(e).__name__}") from e
        return conn

    async def post(self, origin: Origin, head: bytes, body: bytes,
                   connect_timeout: float | None,
                   loop: asyncio.AbstractEventLoop | None = None) -> WireResponse:
        """Send one request; the response once its headers came. A pooled connection that
        fails before any response byte (the server had closed it while idle) is re-sent
        once on a new connection; a new connection's failure is final. (``loop``: the
        running loop, when the caller knows it.)"""
        if loop is None:
            loop = asyncio.get_running_loop()
        conn = origin.get(loop.time())
        if conn is not None:
            try:
                return await conn.send(head, body)
            except (Disconnected, ConnectionResetError, BrokenPipeError):
                conn.abort()
            except BaseException:
                conn.abort()
                raise
        conn = await self._connect(origin, connect_timeout, loop)
        try:
            return await conn.send(head, body)
        except BaseException:
            conn.abort()
            raise

    def close(self) -> None:
        for origin in self._origins.values():
            origin.close()
        self._origins.clear()
