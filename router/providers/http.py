"""The HTTP seam: the one connection pool of a Router and the responses it yields, with every
guarantee the provider kinds share written once: per-origin connection limits, the connect /
first_token / idle / total timeouts (all clocks start when a connection slot is granted),
redirects never followed, body and event size caps, a stale keep-alive connection re-sent once,
and the transport-error table.

Requests go out through the seam's own HTTP/1.1 client (``_wire``: llhttp-parsed responses on
asyncio protocols, a tenth of aiohttp's CPU per request), or through aiohttp's ClientSession
(``_aio``, imported only then) for a caller's own session and for HTTP proxies from the
environment (``trust_env``). Provider modules get an ``HttpResponse`` and raise
``router.errors`` classes; they never see a client's exception.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Mapping
from threading import get_ident
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from yarl import URL

from router.errors import NetworkError, ServerError, TimeoutError_
from router.providers._http_response import (
    ERROR_BODY_LIMIT,
    MAX_BODY_BYTES,
    TRANSPORT,
    DrainLater,
    Expiry,
    HttpResponse,
    Raw,
    transport_error,
)
from router.providers._json import dumps_json
from router.providers._slots import Slots
from router.providers._wire import Origin, WirePool

if TYPE_CHECKING:
    import aiohttp

    from router.providers._aio import AioClient
from router.providers.sse import MAX_EVENT_BYTES
from router.specs import Timeouts

__all__ = ["ERROR_BODY_LIMIT", "MAX_BODY_BYTES", "MAX_EVENT_BYTES", "HttpPool", "HttpResponse",
           "Posting", "dumps_json"]


class _Endpoint:
    """What ``post`` needs about one URL, computed once: the parsed URL, the host for
    messages, the connection slots of its origin and, for the seam's own client, the origin's
    connections and the request line and fixed headers."""

    __slots__ = ("head", "host", "origin", "slots", "url")

    def __init__(self, url: URL, host: str, slots: Slots, origin: Origin | None) -> None:
        self.url = url
        self.host = host
        self.slots = slots
        self.origin = origin
        self.head = (f"POST {url.raw_path_qs} HTTP/1.1\r\nHost: {url.host_port_subcomponent}"
                     f"\r\n{_FIXED_HEADERS}")


#: What every request of the seam's own client says besides the provider's headers (what
#: aiohttp said: compressed replies are welcome).
_FIXED_HEADERS = "Accept-Encoding: gzip, deflate\r\nUser-Agent: routeyard\r\n"


def _head(endpoint: _Endpoint, headers: Mapping[str, str], length: int) -> bytes:
    """The request's head; a header with CR or LF in it (a split header) is refused."""
    block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    if block.count("\n") != len(headers) or block.count("\r") != len(headers):
        raise NetworkError("a header name or value holds CR or LF", retryable=False)
    return f"{endpoint.head}{block}Content-Length: {length}\r\n\r\n".encode("latin-1")


def _redirect_error(status: int, location: str | None, host: str) -> ServerError:
    """A 3xx answer: never followed, since the key headers and the prompt would go along."""
    target = urlsplit(location).hostname if location else None
    where = f" to {target}" if target and target != host else ""
    return ServerError(f"HTTP {status} redirect{where} not followed ({host}): set base_url to "
                       "the final URL", status=status, retryable=False)


async def _drain_then_release(resp: Raw, seconds: float) -> None:
    """Read a finished response's leftover bytes, then pool its connection (or close it)."""
    try:
        async with asyncio.timeout(seconds):
            while await resp.content.readany():
                pass
    except TRANSPORT:  # includes our TimeoutError
        resp.close()
        return
    except BaseException:
        resp.close()
        raise
    resp.release()


_INF = math.inf

class _Limits:
    """What every response of one pool gets: its size caps and its background drain; and the
    pool's event loop, remembered from its first use."""

    __slots__ = ("_loop", "_thread", "drain_later", "max_body", "max_event")

    def __init__(self, max_body: int, max_event: int, drain_later: DrainLater) -> None:
        self.max_body = max_body
        self.max_event = max_event
        self.drain_later = drain_later
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (called inside one). ``asyncio.get_running_loop()`` makes a
        getpid() syscall on CPython 3.11; the loop of the last call, still running in this
        thread, is the running loop (a thread runs one loop at a time), known without one."""
        loop = self._loop
        if loop is None or not loop.is_running() or get_ident() != self._thread:
            loop = self._loop = asyncio.get_running_loop()
            self._thread = get_ident()
        return loop


async def _wait_for_slot(endpoint: _Endpoint, total: float) -> None:
    try:
        await endpoint.slots.acquire(total)
    except TimeoutError as e:
        raise TimeoutError_(
            f"no free connection to {endpoint.host} within {total:.3g}s "
            f"({endpoint.slots.limit} in use)", timeout_kind="pool") from e


class Posting:
    """One POST of ``HttpPool.post``, as an async context manager: a slot of its origin and
    the response while inside, both freed on exit. (A small class, not an
    ``@asynccontextmanager``, that sends by itself: it is on every call's path, and each
    coroutine level costs every resumption of the call.)"""

    __slots__ = ("_aio", "_data", "_endpoint", "_headers", "_limits", "_response", "_timeouts",
                 "_wire")

    def __init__(self, limits: _Limits, wire: WirePool | None, aio: AioClient | None,
                 endpoint: _Endpoint, data: bytes, headers: Mapping[str, str],
                 timeouts: Timeouts) -> None:
        self._limits = limits
        self._wire = wire
        self._aio = aio
        self._endpoint = endpoint
        self._data = data
        self._headers = headers
        self._timeouts = timeouts
        self._response: HttpResponse | None = None

    async def __aenter__(self) -> HttpResponse:
        endpoint, timeouts = self._endpoint, self._timeouts
        slots = endpoint.slots
        if not slots.try_acquire():
            await _wait_for_slot(endpoint, timeouts.total)
        try:
            loop = self._limits.loop()
            now = loop.time()  # the slot was granted: the clocks start
            total, first = timeouts.total, timeouts.first_token
            total_at = now + total if total < _INF else None
            deadline, kind = (now + first if first < _INF else None), "first_token"
            if total_at is not None and (deadline is None or total_at < deadline):
                deadline, kind = total_at, "total"
            try:
                if deadline is None:
                    resp = await self._send(endpoint, loop)
                else:
                    with Expiry(loop, deadline):  # asyncio.timeout_at(deadline)
                        resp = await self._send(endpoint, loop)
            except TRANSPORT as e:
                raise transport_error(e, endpoint.host, kind) from e
            if 300 <= resp.status < 400:
                resp.close()
                raise _redirect_error(resp.status, resp.headers.get("Location"), endpoint.host)
            limits = self._limits
            response = self._response = HttpResponse(
                resp, host=endpoint.host, deadline=deadline, first_kind=kind,
                idle=timeouts.idle, total_at=total_at, max_body_bytes=limits.max_body,
                max_event_bytes=limits.max_event, drain_later=limits.drain_later, loop=loop)
        except BaseException:
            slots.release()
            raise
        return response

    def _send(self, endpoint: _Endpoint, loop: asyncio.AbstractEventLoop) -> Awaitable[Raw]:
        """The POST, by the seam's own client, or by aiohttp's (AioClient)."""
        connect = self._timeouts.connect
        if endpoint.origin is not None:
            assert self._wire is not None
            return self._wire.post(endpoint.origin,
                                   _head(endpoint, self._headers, len(self._data)),
                                   self._data, connect if connect < _INF else None, loop)
        assert self._aio is not None
        return self._aio.post(endpoint.url, self._data, self._headers, connect)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._response is not None:
                self._response.close()
        finally:
            self._endpoint.slots.release()


class HttpPool:
    """The connections of a whole Router: the seam's own client's, or one aiohttp
    ClientSession's (a caller's, or for ``trust_env``: created on first use, inside the
    running loop).

    At most ``limit_per_host`` requests are in flight per origin (scheme, host, port), or a
    provider's own ``max_connections``; there is no cap shared between origins. Bodies over
    ``max_body_bytes`` and stream events (SSE events, NDJSON lines) over ``max_event_bytes``
    are a ServerError. A session passed in by the caller is used as is and never closed by us
    (its connections cannot be told apart, so a stale keep-alive one is not re-sent).
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        limit_per_host: int = 64,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
        keepalive_timeout: float = 30.0,
        ttl_dns_cache: int | None = 300,
        trust_env: bool = False,
    ) -> None:
        if limit_per_host < 1:
            raise ValueError(f"limit_per_host must be at least 1, not {limit_per_host}")
        self._limit_per_host = limit_per_host
        # The seam's own client serves unless a session was given or proxies come from the
        # environment (aiohttp's trust_env): see router.providers._wire and _aio.
        self._wire = WirePool(keepalive_timeout) if session is None and not trust_env else None
        self._aio: AioClient | None = None
        self._aio_args = (session, keepalive_timeout, ttl_dns_cache, trust_env)
        self._closed = False
        # Per-URL values, computed once (the hot path only looks them up).
        self._endpoints: dict[object, _Endpoint] = {}
        self._slots: dict[tuple[str, int], Slots] = {}  # per origin and limit
        self._drains: set[asyncio.Task[None]] = set()
        self._limits = _Limits(max_body_bytes, max_event_bytes, self._drain_later)

    @property
    def closed(self) -> bool:
        return self._closed

    def _get_aio(self) -> AioClient:
        if self._aio is None:  # aiohttp is imported here, when first needed
            from router.providers._aio import AioClient

            session, keepalive, ttl_dns_cache, trust_env = self._aio_args
            self._aio = AioClient(session, keepalive_timeout=keepalive,
                                  ttl_dns_cache=ttl_dns_cache, trust_env=trust_env)
        return self._aio

    def _endpoint(self, url: str, max_connections: int | None) -> _Endpoint:
        key: object = url if max_connections is None else (url, max_connections)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = self._endpoints[key] = self._new_endpoint(url, max_connections)
        return endpoint

    def _new_endpoint(self, url: str, max_connections: int | None) -> _Endpoint:
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as e:
            raise NetworkError(f"invalid URL: {type(e).__name__}", retryable=False) from e
        limit = max_connections or self._limit_per_host
        origin = f"{parsed.scheme}://{parsed.host}:{parsed.port}"
        slots = self._slots.get((origin, limit))
        if slots is None:
            slots = self._slots[origin, limit] = Slots(limit)
        wire = None
        if (self._wire is not None and parsed.scheme in ("http", "https") and parsed.host
                and parsed.port is not None and parsed.user is None):
            wire = self._wire.origin(parsed.scheme, parsed.host, parsed.port)
        return _Endpoint(parsed, parsed.host or "?", slots, wire)

    def post(
        self,
        url: str,
        body: Mapping[str, Any] | bytes,
        *,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        max_connections: int | None = None,
    ) -> Posting:
        """POST JSON; ``async with`` yields the response once its headers arrive (any status
        but 3xx).

        Waits for a connection slot of the URL's origin first (``max_connections``, else the
        pool's ``limit_per_host``), at most ``timeouts.total`` (then TimeoutError_ of kind
        ``pool``); every timeout counts from the grant. Raises TimeoutError_ (connect |
        first_token | total), NetworkError, or ServerError for a redirect (never followed).
        On exit the connection is released if the body was fully read and closed otherwise
        (early exit, cancellation), and the slot is freed.
        """
        if self._closed:
            raise RuntimeError("HttpPool is closed")
        endpoint = self._endpoints.get(url if max_connections is None else (url, max_connections))
        if endpoint is None:
            endpoint = self._endpoint(url, max_connections)
        aio = self._get_aio() if endpoint.origin is None else None
        data = body if isinstance(body, bytes) else dumps_json(body)
        return Posting(self._limits, self._wire, aio, endpoint, data, headers, timeouts)

    def _drain_later(self, resp: Raw, seconds: float) -> None:
        task = self._limits.loop().create_task(_drain_then_release(resp, seconds))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def aclose(self) -> None:
        """Close our connections (and our aiohttp session, not a caller's); safe to call
        more than once."""
        if self._closed:
            return
        self._closed = True
        drains, self._drains = list(self._drains), set()
        for task in drains:
            task.cancel()
        if drains:
            await asyncio.gather(*drains, return_exceptions=True)
        if self._wire is not None:
            self._wire.close()
        if self._aio is not None:
            await self._aio.aclose()

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
