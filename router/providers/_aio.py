"""The HTTP seam's aiohttp path: a caller's own ClientSession, or HTTP proxies from the
environment (``trust_env``). Imported only when one of those is asked for, so that
``import router`` does not pay for aiohttp (~150 ms); the seam's own client (``_wire``) serves
every other request.

Its responses and errors are the seam's: aiohttp's exceptions become ``_wire``'s classes at
this boundary (connect failed or timed out, server disconnected, body cut short, invalid URL,
not HTTP), so ``_http_response``'s one table maps both clients' failures.
"""

from __future__ import annotations

import contextvars
import math
import weakref
from collections.abc import Mapping
from typing import Any

import aiohttp
from yarl import URL

from router.providers._http_response import Raw, RawContent
from router.providers._wire import (
    BadResponse,
    BadURL,
    BodyCut,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
)

__all__ = ["AioClient"]

#: Set by ``_Connector.connect`` in the requesting task: did this request get a pooled
#: connection? Read only when the request fails, to decide on the one resend.
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("router_http_reused",
                                                                default=False)
#: Set around a resend: the connector must hand out a new connection, never a pooled one.
_FRESH: contextvars.ContextVar[bool] = contextvars.ContextVar("router_http_fresh", default=False)


#: aiohttp's exceptions and the seam's for them, most specific first.
_TRANSLATIONS: tuple[tuple[type[aiohttp.ClientError], type[OSError], str], ...] = (
    (aiohttp.ConnectionTimeoutError, ConnectTimeout, "connect timed out"),
    (aiohttp.ServerTimeoutError, TimeoutError, "read timed out"),
    (aiohttp.ClientConnectorError, ConnectFailed, "cannot connect"),
    (aiohttp.ServerDisconnectedError, Disconnected, "server disconnected"),
    (aiohttp.ClientPayloadError, BodyCut, "response body cut short"),
    (aiohttp.ClientOSError, ConnectionError, "connection error"),
    (aiohttp.InvalidURL, BadURL, "invalid URL"),
)


def _translated(e: aiohttp.ClientError) -> OSError:
    """aiohttp's exception as the seam's (raise it ``from e``)."""
    for theirs, ours, what in _TRANSLATIONS:
        if isinstance(e, theirs):
            return ours(what)
    return BadResponse(f"HTTP client error: {type(e).__name__}")


class _Content:
    """aiohttp's StreamReader, raising the seam's errors."""

    __slots__ = ("_inner",)

    def __init__(self, inner: aiohttp.StreamReader) -> None:
        self._inner = inner

    def read_nowait(self) -> bytes:
        try:
            return self._inner.read_nowait()
        except aiohttp.ClientError as e:
            raise _translated(e) from e

    async def readany(self) -> bytes:
        try:
            return await self._inner.readany()
        except aiohttp.ClientError as e:
            raise _translated(e) from e

    def at_eof(self) -> bool:
        return self._inner.at_eof()

    def is_eof(self) -> bool:
        return self._inner.is_eof()

    def exception(self) -> BaseException | None:
        return self._inner.exception()


class _Response:
    """aiohttp's ClientResponse as the seam reads it (``_http_response.Raw``)."""

    __slots__ = ("_resp", "content", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self.content: RawContent = _Content(resp.content)

    @property
    def content_length(self) -> int | None:
        return self._resp.content_length

    @property
    def closed(self) -> bool:
        return self._resp.closed

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


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
        seen, key = self._seen, id(proto)
        # The entry goes when the protocol does (before its id can be reused).
        seen[key] = weakref.ref(proto, lambda _ref: seen.pop(key, None))
        return False

    async def connect(self, req: aiohttp.ClientRequest, traces: list[Any],
                      timeout: aiohttp.ClientTimeout) -> Any:
        conn = await super().connect(req, traces, timeout)
        reused = self._reused(conn.protocol)
        while reused and _FRESH.get():  # a pooled connection is likely stale too: drop it
            conn.close()
            conn = await super().connect(req, traces, timeout)
            reused = self._reused(conn.protocol)
        _REUSED.set(reused)
        return conn


class AioClient:
    """One aiohttp ClientSession (the caller's, or ours: created on first use, inside the
    running loop) sending the seam's POSTs."""

    def __init__(self, session: aiohttp.ClientSession | None, *, keepalive_timeout: float,
                 ttl_dns_cache: int | None, trust_env: bool) -> None:
        self._session = session
        self._owner = session is None
        self._keepalive_timeout = keepalive_timeout
        self._ttl_dns_cache = ttl_dns_cache
        self._trust_env = trust_env
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:  # no await between check and set: no race
            connector = _Connector(
                limit=0,  # the seam's Slots do the limiting, per origin
                limit_per_host=0,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=self._ttl_dns_cache,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                trust_env=self._trust_env)
        return self._session

    def _timeout(self, connect: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(connect)
        if timeout is None:
            sock_connect = connect if math.isfinite(connect) else None
            timeout = self._timeouts[connect] = aiohttp.ClientTimeout(
                total=None, sock_connect=sock_connect)
        return timeout

    async def post(self, url: URL, data: bytes, headers: Mapping[str, str],
                   connect: float) -> Raw:
        """The response once its headers came. A POST whose pooled connection failed before
        any response byte (the server had closed it while idle) is re-sent once on a new
        connection; a new connection's failure is final. (A caller's session's connections
        cannot be told apart: nothing is re-sent there.)"""
        session = self._get_session()
        timeout = self._timeout(connect)
        try:
            try:
                resp = await session.post(url, data=data, headers=headers, timeout=timeout,
                                          allow_redirects=False)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                if (isinstance(e, aiohttp.ClientConnectorError) or not self._owner
                        or not _REUSED.get()):
                    raise
                token = _FRESH.set(True)
                try:
                    resp = await session.post(url, data=data, headers=headers,
                                              timeout=timeout, allow_redirects=False)
                finally:
                    _FRESH.reset(token)
        except aiohttp.ClientError as e:
            raise _translated(e) from e
        return _Response(resp)

    async def aclose(self) -> None:
        """Close the session if it is ours."""
        session, self._session = self._session, None
        if self._owner and session is not None and not session.closed:
            await session.close()
