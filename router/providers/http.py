"""The HTTP seam: the one connection pool of a Router and the responses it yields, with the
timeouts, the transport-error table and the body reads every provider kind shares.

This is the only module that imports aiohttp. Provider modules get an ``HttpResponse`` and
raise ``router.errors`` classes; they never see an aiohttp exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from router.errors import ErrorClass, LlmError, NetworkError, ServerError, TimeoutError_
from router.providers._status import ErrorBody, redact_secrets
from router.providers.sse import ServerSentEvent, SSEDecoder
from router.specs import Timeouts

__all__ = ["ERROR_BODY_LIMIT", "HttpPool", "HttpResponse", "dumps_json"]

ERROR_BODY_LIMIT = 16_384  # bytes of an error body we read; the rest is not worth the wait


def dumps_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, serialized once per request."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------------
# Transport errors: one table, most specific first (httpx's map_exceptions idea)

_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], ErrorClass, str], ...] = (
    (aiohttp.ConnectionTimeoutError, ErrorClass.TIMEOUT, "connect timed out"),
    (aiohttp.ServerTimeoutError, ErrorClass.TIMEOUT, "read timed out"),
    (TimeoutError, ErrorClass.TIMEOUT, ""),  # ours (asyncio.timeout); before OSError
    (aiohttp.ClientConnectorError, ErrorClass.NETWORK, "cannot connect"),
    (aiohttp.ServerDisconnectedError, ErrorClass.NETWORK, "server disconnected"),
    (aiohttp.ClientPayloadError, ErrorClass.NETWORK, "response body cut short"),
    (aiohttp.ClientOSError, ErrorClass.NETWORK, "connection error"),
    (aiohttp.InvalidURL, ErrorClass.NETWORK, "invalid URL"),
    (aiohttp.ClientError, ErrorClass.NETWORK, "HTTP client error"),
    (ConnectionError, ErrorClass.NETWORK, "connection reset"),
    (OSError, ErrorClass.NETWORK, "socket error"),
)


@contextlib.contextmanager
def _map_transport_errors(host: str, timeout_kind: str) -> Iterator[None]:
    """Re-raise transport failures as NetworkError / TimeoutError_ (from the original).

    Messages name the host and the exception type only: a URL may carry a key in its query.
    A bare ``TimeoutError`` reaching here is one of ours (asyncio.timeout), of ``timeout_kind``.
    """
    try:
        yield
    except LlmError:
        raise
    except (aiohttp.ClientError, OSError) as e:  # OSError includes TimeoutError
        error_class, what = next(
            ((c, w) for t, c, w in _TRANSPORT_ERRORS if isinstance(e, t)),
            (ErrorClass.NETWORK, "transport error"),
        )
        if error_class is ErrorClass.TIMEOUT:
            kind = "connect" if isinstance(e, aiohttp.ConnectionTimeoutError) else timeout_kind
            raise TimeoutError_(f"{what or kind + ' timeout'} ({host})", timeout_kind=kind) from e
        raise NetworkError(
            f"{what} ({host}): {type(e).__name__}",
            retryable=not isinstance(e, aiohttp.InvalidURL),
        ) from e


# --------------------------------------------------------------------------------------------
# HTTP


def _deadline(loop: asyncio.AbstractEventLoop, seconds: float) -> float | None:
    """``seconds`` from now on the loop clock; None (no limit) for an infinite timeout."""
    return loop.time() + seconds if math.isfinite(seconds) else None


class HttpResponse:
    """A response whose body reads obey the first_token / idle timeouts and raise router errors.

    Until ``mark_first_token()`` (or the first bytes of ``read()``), reads are bounded by the
    first-token deadline; after it, each read may wait at most ``idle`` seconds.
    """

    __slots__ = ("_deadline", "_first", "_host", "_idle", "_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, *, host: str, deadline: float | None,
                 idle: float) -> None:
        self._resp = resp
        self._host = host
        self._deadline = deadline
        self._idle = idle
        self._first = False
        self.status: int = resp.status
        self.headers: Mapping[str, str] = resp.headers

    @property
    def request_id(self) -> str | None:
        """The provider's request id header (``x-request-id`` or ``request-id``)."""
        return self.headers.get("x-request-id") or self.headers.get("request-id")

    def mark_first_token(self) -> None:
        """Switch reads from the first-token deadline to the idle timeout."""
        self._first = True

    async def read_chunk(self) -> bytes:
        """The next bytes of the body as they arrive; ``b""`` at the end."""
        loop = asyncio.get_running_loop()
        if self._first:
            deadline, kind = _deadline(loop, self._idle), "idle"
        else:
            deadline, kind = self._deadline, "first_token"
        with _map_transport_errors(self._host, kind):
            async with asyncio.timeout_at(deadline):
                return await self._resp.content.readany()

    async def iter_sse(self) -> AsyncGenerator[tuple[ServerSentEvent, bool], None]:
        """The body's server-sent events as they arrive, with ``True`` for events dispatched
        at the end of the body without their closing blank line (some servers omit it).
        The first event switches reads from the first-token to the idle timeout."""
        decoder = SSEDecoder()
        while raw := await self.read_chunk():
            for event in decoder.feed(raw):
                self._first = True
                yield event, False
        for event in decoder.flush():
            yield event, True

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk (see ``read_chunk``)."""
        while chunk := await self.read_chunk():
            yield chunk

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (or its first ``limit`` bytes)."""
        first = await self.read_chunk()
        self._first = True
        if not first or self._resp.content.at_eof():  # the common case: one read, one timer
            return first if limit is None else first[:limit]
        parts: list[bytes] = [first]
        size = len(first)
        if limit is not None and size >= limit:
            return first[:limit]
        size = 0
        while chunk := await self.read_chunk():
            self._first = True
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break
        body = b"".join(parts)
        return body if limit is None else body[:limit]

    async def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is a ServerError."""
        body = await self.read()
        try:
            return json.loads(body)
        except ValueError as e:
            excerpt = redact_secrets(body[:4096].decode("utf-8", errors="replace"))[:200]
            raise ServerError(f"response is not JSON ({self._host}): {excerpt!r}",
                              status=self.status) from e

    async def drain(self, timeout: float) -> None:
        """Read what is left of the body (e.g. the end of a chunked body after ``[DONE]``) so
        the connection can go back to the pool; give up quietly after ``timeout`` seconds."""
        with contextlib.suppress(aiohttp.ClientError, OSError):  # OSError covers TimeoutError
            async with asyncio.timeout(timeout):
                while await self._resp.content.readany():
                    pass

    async def read_error_body(self, limit: int = ERROR_BODY_LIMIT) -> ErrorBody:
        """The body of an error response, truncated to ``limit`` bytes; never raises a parse
        error (a transport failure while reading gives what arrived so far)."""
        try:
            raw = await self.read(limit)
        except (NetworkError, TimeoutError_):
            raw = b""
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = None
        return ErrorBody(text=text, json=parsed)

    def close(self) -> None:
        """Free the connection: back to the pool if the body was fully read, else closed."""
        if self._resp.closed:
            return
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()  # a half-read body would poison a pooled connection


class HttpPool:
    """One aiohttp ClientSession for a whole Router, created lazily inside the running loop.

    A session passed in by the caller is used as is and never closed by us.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        limit: int = 100,
        limit_per_host: int = 0,
        keepalive_timeout: float = 30.0,
        ttl_dns_cache: int | None = 300,
        trust_env: bool = False,
    ) -> None:
        self._session = session
        self._owner = session is None
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._keepalive_timeout = keepalive_timeout
        self._ttl_dns_cache = ttl_dns_cache
        self._trust_env = trust_env
        self._closed = False
        # Per-URL and per-timeout values, computed once (the hot path only looks them up).
        self._hosts: dict[str, str] = {}
        self._client_timeouts: dict[float, aiohttp.ClientTimeout] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("HttpPool is closed")
        if self._session is None:  # no await between check and set: no race
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=self._ttl_dns_cache,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                trust_env=self._trust_env,
            )
        return self._session

    @contextlib.asynccontextmanager
    async def post(
        self,
        url: str,
        body: Mapping[str, Any] | bytes,
        *,
        headers: Mapping[str, str],
        timeouts: Timeouts,
    ) -> AsyncIterator[HttpResponse]:
        """POST JSON and yield the response once its headers arrive (any status).

        Raises TimeoutError_ (connect | first_token) or NetworkError. On exit the connection is
        released if the body was fully read and closed otherwise (early exit, cancellation).
        """
        session = self._get_session()
        data = body if isinstance(body, bytes) else dumps_json(body)
        host = self._hosts.get(url)
        if host is None:
            host = self._hosts[url] = urlsplit(url).hostname or "?"
        deadline = _deadline(asyncio.get_running_loop(), timeouts.first_token)
        client_timeout = self._client_timeouts.get(timeouts.connect)
        if client_timeout is None:
            connect = timeouts.connect if math.isfinite(timeouts.connect) else None
            client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect)
            self._client_timeouts[timeouts.connect] = client_timeout
        with _map_transport_errors(host, "first_token"):
            async with asyncio.timeout_at(deadline):
                resp = await session.post(url, data=data, headers=headers,
                                          timeout=client_timeout)
        response = HttpResponse(resp, host=host, deadline=deadline, idle=timeouts.idle)
        try:
            yield response
        finally:
            response.close()

    async def aclose(self) -> None:
        """Close the session if we created it; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        session, self._session = self._session, None
        if self._owner and session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
