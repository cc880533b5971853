"""The HTTP seam: the one connection pool of a Router and the responses it yields, with every
guarantee the provider kinds share written once: per-origin connection limits, the connect /
first_token / idle / total timeouts (all clocks start when a connection slot is granted),
redirects never followed, body and event size caps, a stale keep-alive connection re-sent once,
and the transport-error table.

Requests go out through the seam's own HTTP/1.1 client (``_wire``: llhttp-parsed responses on
asyncio protocols, a tenth of aiohttp's CPU per request), or through aiohttp's ClientSession
for a caller's own session and for HTTP proxies from the environment (``trust_env``). This
module and its sibling ``_http_response`` (the responses) are the only ones that import
aiohttp. Provider modules get an ``HttpResponse`` and raise ``router.errors`` classes; they
never see an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import weakref
from collections.abc import Awaitable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from router.errors import NetworkError, ServerError, TimeoutError_
from router.providers._http_response import (
    ERROR_BODY_LIMIT,
    MAX_BODY_BYTES,
    TRANSPORT,
    DrainLater,
    HttpResponse,
    Raw,
    transport_error,
)
from router.providers._json import dumps_json
from router.providers._slots import Slots
from router.providers._wire import Origin, WirePool
from router.providers.sse import MAX_EVENT_BYTES
from router.specs import Timeouts

__all__ = ["ERROR_BODY_LIMIT", "MAX_BODY_BYTES", "MAX_EVENT_BYTES", "HttpPool", "HttpResponse",
           "Posting", "dumps_json"]


# --------------------------------------------------------------------------------------------
# Stale keep-alive connections: which requests went out on a reused connection


#: Set by ``_Connector.connect`` in the requesting task: did this request get a pooled
#: connection? Read only when the request fails, to decide on the one resend.
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("router_http_reused",
                                                                default=False)
#: Set around a resend: the connector must hand out a new connection, never a pooled one.
_FRESH: contextvars.ContextVar[bool] = contextvars.ContextVar("router_http_fresh", default=False)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, telling pooled connections from new ones (a protocol object seen
    before is a reused connection), and giving a resend a new connection."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        # id(protocol) -> a weak reference to it: a protocol seen before is a reused
        # connection. (A WeakSet costs a Python-level call per lookup; this is one dict get.)
        self._seen: dict[int, weakref.ref[object]] = {}

    def _reused(self, proto: object) -> bool:
        """Whether ``proto`` was seen before (then it is a pooled connection); remembers it."""
        ref = self._seen.get(id(proto))
        if ref is not None and ref() is proto:
            return True
        self._remember(proto)
        return False

    def _remember(self, proto: object) -> None:
        seen, key = self._seen, id(proto)
        # The entry goes when the protocol does (before its id can be reused).
        seen[key] = weakref.ref(proto, lambda _ref: seen.pop(key, None))

    async def connect(self, req: aiohttp.ClientRequest, traces: list[Any],
                      timeout: aiohttp.ClientTimeout) -> Any:
        conn = await super().connect(req, traces, timeout)
        proto = conn.protocol
        ref = self._seen.get(id(proto))  # _reused, inline: this runs on every request
        reused = ref is not None and ref() is proto
        if not reused:
            self._remember(proto)
        while reused and _FRESH.get():  # a pooled connection is likely stale too: drop it
            conn.close()
            conn = await super().connect(req, traces, timeout)
            reused = self._reused(conn.protocol)
        _REUSED.set(reused)
        return conn


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
    """What every response of one pool gets: its size caps and its background drain."""

    __slots__ = ("drain_later", "max_body", "max_event")

    def __init__(self, max_body: int, max_event: int, drain_later: DrainLater) -> None:
        self.max_body = max_body
        self.max_event = max_event
        self.drain_later = drain_later


async def _resend(session: aiohttp.ClientSession, url: URL, data: bytes,
                  headers: Mapping[str, str], client_timeout: aiohttp.ClientTimeout) -> Raw:
    """The one resend, on a new connection, of a POST whose pooled connection failed before
    any response byte: the server had closed it while idle (llama.cpp's server closes after
    every stream while advertising keep-alive). A new connection's failure is final."""
    token = _FRESH.set(True)
    try:
        return await session.post(url, data=data, headers=headers, timeout=client_timeout,
                                  allow_redirects=False)
    finally:
        _FRESH.reset(token)


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

    __slots__ = ("_client_timeout", "_data", "_endpoint", "_headers", "_limits", "_response",
                 "_session", "_timeouts", "_wire")

    def __init__(self, limits: _Limits, session: aiohttp.ClientSession | None,
                 wire: WirePool | None, endpoint: _Endpoint, data: bytes,
                 headers: Mapping[str, str], timeouts: Timeouts,
                 client_timeout: aiohttp.ClientTimeout) -> None:
        self._limits = limits
        self._session = session
        self._wire = wire
        self._endpoint = endpoint
        self._data = data
        self._headers = headers
        self._timeouts = timeouts
        self._client_timeout = client_timeout
        self._response: HttpResponse | None = None

    async def __aenter__(self) -> HttpResponse:
        endpoint, timeouts = self._endpoint, self._timeouts
        slots = endpoint.slots
        if not slots.try_acquire():
            await _wait_for_slot(endpoint, timeouts.total)
        try:
            loop = asyncio.get_running_loop()
            now = loop.time()  # the slot was granted: the clocks start
            total, first = timeouts.total, timeouts.first_token
            total_at = now + total if total < _INF else None
            deadline, kind = (now + first if first < _INF else None), "first_token"
            if total_at is not None and (deadline is None or total_at < deadline):
                deadline, kind = total_at, "total"
            try:
                async with asyncio.Timeout(deadline):  # timeout_at's own object
                    resp = await (self._send_wire(endpoint) if endpoint.origin is not None
                                  else self._send_aiohttp(endpoint))
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

    def _send_wire(self, endpoint: _Endpoint) -> Awaitable[Raw]:
        assert self._wire is not None and endpoint.origin is not None
        connect = self._timeouts.connect
        return self._wire.post(endpoint.origin, _head(endpoint, self._headers, len(self._data)),
                               self._data, connect if connect < _INF else None)

    async def _send_aiohttp(self, endpoint: _Endpoint) -> Raw:
        assert self._session is not None
        try:
            return await self._session.post(
                endpoint.url, data=self._data, headers=self._headers,
                timeout=self._client_timeout, allow_redirects=False)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
            if isinstance(e, aiohttp.ClientConnectorError) or not _REUSED.get():
                raise
            return await _resend(self._session, endpoint.url, self._data, self._headers,
                                 self._client_timeout)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._response is not None:
                self._response.close()
        finally:
            self._endpoint.slots.release()


class HttpPool:
    """One aiohttp ClientSession for a whole Router, created lazily inside the running loop.

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
        self._session = session
        self._owner = session is None
        self._limit_per_host = limit_per_host
        self._keepalive_timeout = keepalive_timeout
        self._ttl_dns_cache = ttl_dns_cache
        self._trust_env = trust_env
        # The seam's own client serves unless a session was given or proxies come from the
        # environment (aiohttp's trust_env): see router.providers._wire.
        self._wire = WirePool(keepalive_timeout) if session is None and not trust_env else None
        self._closed = False
        # Per-URL and per-timeout values, computed once (the hot path only looks them up).
        self._endpoints: dict[object, _Endpoint] = {}
        self._slots: dict[tuple[str, int], Slots] = {}  # per origin and limit
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._drains: set[asyncio.Task[None]] = set()
        self._limits = _Limits(max_body_bytes, max_event_bytes, self._drain_later)

    @property
    def closed(self) -> bool:
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("HttpPool is closed")
        if self._session is None:  # no await between check and set: no race
            connector = _Connector(
                limit=0,  # our Slots do the limiting, per origin
                limit_per_host=0,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=self._ttl_dns_cache,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=self._trust_env,
            )
        return self._session

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

    def _client_timeout(self, connect: float) -> aiohttp.ClientTimeout:
        client_timeout = self._client_timeouts.get(connect)
        if client_timeout is None:
            sock_connect = connect if math.isfinite(connect) else None
            client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=sock_connect)
            self._client_timeouts[connect] = client_timeout
        return client_timeout

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
        session = self._get_session() if endpoint.origin is None else None
        data = body if isinstance(body, bytes) else dumps_json(body)
        client_timeout = self._client_timeouts.get(timeouts.connect)
        if client_timeout is None:
            client_timeout = self._client_timeout(timeouts.connect)
        return Posting(self._limits, session, self._wire, endpoint, data, headers, timeouts,
                       client_timeout)

    def _drain_later(self, resp: Raw, seconds: float) -> None:
        task = asyncio.get_running_loop().create_task(_drain_then_release(resp, seconds))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def aclose(self) -> None:
        """Close the session if we created it; safe to call more than once."""
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
        session, self._session = self._session, None
        if self._owner and session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
