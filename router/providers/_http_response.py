"""The responses of the HTTP seam (``router.providers.http``): body reads under the
first_token / idle / total timeouts and the size caps, SSE and NDJSON framing, finishing a
stream without waiting, and the one transport-error table. Only the seam (``http`` and its
two clients, ``_wire`` and ``_aio``) imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

from router.errors import ErrorClass, LlmError, NetworkError, ServerError, TimeoutError_
from router.obs.redact import redact_excerpt
from router.providers._json import loads_json
from router.providers._status import ErrorBody
from router.providers._wire import (
    BadResponse,
    BadURL,
    BodyCut,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
)
from router.providers.sse import MAX_EVENT_BYTES, NDJSONDecoder, ServerSentEvent, SSEDecoder

__all__ = ["ERROR_BODY_LIMIT", "MAX_BODY_BYTES", "TRANSPORT", "Expiry", "HttpResponse", "Raw",
           "deadline_at", "nearer", "too_large", "transport_error"]

ERROR_BODY_LIMIT = 16_384  # bytes of an error body we read; the rest is not worth the wait
MAX_BODY_BYTES = 8 << 20  # 8 MiB: a whole reply (the largest real completions are ~1 MiB)
_FINISH_DRAIN = 1.0  # seconds a finished stream's leftover bytes may take, in the background


class RawContent(Protocol):
    """A body as it arrives: what aiohttp's StreamReader and ``_wire.Content`` share."""

    def read_nowait(self) -> bytes: ...
    def at_eof(self) -> bool: ...
    def is_eof(self) -> bool: ...
    def exception(self) -> BaseException | None: ...
    async def readany(self) -> bytes: ...


class Raw(Protocol):
    """A response as a client gives it: aiohttp's ClientResponse or ``_wire.WireResponse``."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> RawContent: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def closed(self) -> bool: ...
    def release(self) -> Any: ...
    def close(self) -> None: ...


#: What hands a finished response's connection to the pool's background drain.
DrainLater = Callable[[Raw, float], None]


# --------------------------------------------------------------------------------------------
# Transport errors: one table, most specific first (httpx's map_exceptions idea)

# Both clients raise these (``_aio`` turns aiohttp's exceptions into them).
_TRANSPORT_ERRORS: tuple[tuple[type[BaseException], ErrorClass, str], ...] = (
    (ConnectTimeout, ErrorClass.TIMEOUT, "connect timed out"),
    (TimeoutError, ErrorClass.TIMEOUT, ""),  # ours (asyncio.timeout); before OSError
    (ConnectFailed, ErrorClass.NETWORK, "cannot connect"),
    (Disconnected, ErrorClass.NETWORK, "server disconnected"),
    (BodyCut, ErrorClass.NETWORK, "response body cut short"),
    (BadResponse, ErrorClass.NETWORK, "invalid HTTP response"),
    (BadURL, ErrorClass.NETWORK, "invalid URL"),
    (ConnectionError, ErrorClass.NETWORK, "connection reset"),
    (OSError, ErrorClass.NETWORK, "socket error"),
)


def transport_error(e: BaseException, host: str, timeout_kind: str) -> LlmError:
    """The router error for a transport failure (raise it ``from e``).

    Messages name the host and the exception type only: a URL may carry a key in its query.
    A bare ``TimeoutError`` is one of ours (asyncio.timeout), of ``timeout_kind``.
    """
    error_class, what = next(
        ((c, w) for t, c, w in _TRANSPORT_ERRORS if isinstance(e, t)),
        (ErrorClass.NETWORK, "transport error"),
    )
    if error_class is ErrorClass.TIMEOUT:
        kind = "connect" if isinstance(e, ConnectTimeout) else timeout_kind
        return TimeoutError_(f"{what or kind + ' timeout'} ({host})", timeout_kind=kind)
    return NetworkError(f"{what} ({host}): {type(e).__name__}",
                        retryable=not isinstance(e, BadURL))


TRANSPORT = OSError  # what transport_error maps (timeouts and both clients' errors too)


def too_large(limit: int, host: str) -> ServerError:
    return ServerError(f"reply larger than {limit} bytes ({host})")


class Expiry:
    """``asyncio.timeout_at(when)`` for the hot path, as a plain ``with`` block: the task is
    cancelled at ``when`` and the block then raises TimeoutError, with asyncio.Timeout's
    semantics (a cancellation of the caller still propagates as CancelledError; the timer is
    cancelled on exit). Given the loop, it asks for neither the running loop nor the current
    task by the loop-less calls (each a getpid() syscall on CPython 3.11), and it is one
    object and one timer, not Timeout's coroutines and state machine."""

    __slots__ = ("_cancelling", "_handle", "_task", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Timeout should be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.expired = False
        self._handle: asyncio.Handle | None = (
            loop.call_at(when, self._on_timeout) if when > loop.time()
            else loop.call_soon(self._on_timeout))

    def _on_timeout(self) -> None:
        self._handle = None
        self.expired = True
        self._task.cancel()

    def __enter__(self) -> Expiry:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        handle = self._handle
        if handle is not None:
            self._handle = None
            handle.cancel()
        elif (self.expired and self._task.uncancel() <= self._cancelling
              and exc_type is asyncio.CancelledError):
            raise TimeoutError from exc


# --------------------------------------------------------------------------------------------
# Responses


def deadline_at(now: float, seconds: float) -> float | None:
    """``seconds`` after ``now`` on the loop clock; None (no limit) for an infinite timeout."""
    return now + seconds if math.isfinite(seconds) else None


def nearer(a: float | None, a_kind: str, b: float | None, b_kind: str) -> tuple[float | None,
                                                                                 str]:
    """The nearer of two deadlines (None: none) with its timeout kind."""
    if b is not None and (a is None or b < a):
        return b, b_kind
    return a, a_kind


class HttpResponse:
    """A response whose body reads obey the first_token / idle / total timeouts and the size
    caps, and raise router errors.

    Until ``mark_first_token()`` (or the first bytes of ``read()``, the first event of
    ``iter_sse`` / ``iter_ndjson``), reads are bounded by the first-token deadline; after it,
    each read may wait at most ``idle`` seconds. No read goes past the total deadline. Data
    already buffered is returned without arming a timer.
    """

    __slots__ = ("_content", "_drain_later", "_first", "_first_at", "_first_kind", "_handed",
                 "_host", "_idle", "_loop", "_max_body", "_max_event", "_resp", "_total_at",
                 "headers", "status")

    def __init__(self, resp: Raw, *, host: str, deadline: float | None,
                 idle: float, total_at: float | None = None, first_kind: str = "first_token",
                 max_body_bytes: int = MAX_BODY_BYTES, max_event_bytes: int = MAX_EVENT_BYTES,
                 drain_later: DrainLater | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._resp = resp
        self._content = resp.content
        self._loop = loop or asyncio.get_running_loop()
        self._host = host
        self._first_at = deadline  # the nearer of first_token and total
        self._first_kind = first_kind
        self._total_at = total_at
        self._idle = idle
        self._first = False
        self._handed = False
        self._max_body = max_body_bytes
        self._max_event = max_event_bytes
        self._drain_later = drain_later
        self.status: int = resp.status
        self.headers: Mapping[str, str] = resp.headers

    @property
    def request_id(self) -> str | None:
        """The provider's request id header (``x-request-id`` or ``request-id``)."""
        return self.headers.get("x-request-id") or self.headers.get("request-id")

    def mark_first_token(self) -> None:
        """Switch reads from the first-token deadline to the idle timeout."""
        self._first = True

    def _deadline(self) -> tuple[float | None, str]:
        if not self._first:
            return self._first_at, self._first_kind
        return nearer(deadline_at(self._loop.time(), self._idle), "idle", self._total_at, "total")

    async def read_chunk(self) -> bytes:
        """The next bytes of the body as they arrive; ``b""`` at the end."""
        content = self._content
        try:
            data = content.read_nowait()
        except TRANSPORT:
            pass  # the connection failed: readany() below raises it again, mapped
        else:
            if data or content.at_eof():  # no wait, no timer
                if self._total_at is not None and self._loop.time() >= self._total_at:
                    raise TimeoutError_(f"total timeout ({self._host})", timeout_kind="total")
                return data
        deadline, kind = self._deadline()
        try:
            if deadline is None:
                return await content.readany()
            with Expiry(self._loop, deadline):
                return await content.readany()
        except TRANSPORT as e:
            raise transport_error(e, self._host, kind) from e

    async def iter_sse(self) -> AsyncGenerator[tuple[ServerSentEvent, bool], None]:
        """The body's server-sent events as they arrive, with ``True`` for events dispatched
        at the end of the body without their closing blank line (some servers omit it).
        The first event switches reads from the first-token to the idle timeout. An event over
        ``max_event_bytes`` raises ServerError."""
        decoder = SSEDecoder(max_event_bytes=self._max_event)
        while raw := await self.read_chunk():
            for event in decoder.feed(raw):
                self._first = True
                yield event, False
        for event in decoder.flush():
            yield event, True

    async def iter_ndjson(self) -> AsyncGenerator[tuple[Any, bool], None]:
        """The body's NDJSON values as they arrive, with ``True`` for a value from an
        unterminated last line. A complete line that is not JSON comes as a ``Malformed``
        (the provider template skips and counts it); a body that ends inside one is a
        NetworkError (the connection was cut); a line over ``max_event_bytes`` is a
        ServerError. The first value switches to the idle timeout."""
        decoder = NDJSONDecoder(max_line_bytes=self._max_event, lenient=True)
        while raw := await self.read_chunk():
            for value in decoder.feed(raw):
                self._first = True
                yield value, False
        try:
            values = decoder.flush()
        except ValueError as e:
            raise NetworkError(f"stream ended inside an NDJSON line ({self._host})") from e
        for value in values:
            yield value, True

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, chunk by chunk (see ``read_chunk``)."""
        while chunk := await self.read_chunk():
            yield chunk

    async def _read_body(self, limit: int | None) -> bytes | bytearray:
        """The body; over ``limit`` bytes it is cut there, or without a limit, past the body
        cap, a ServerError (never holding much more than the cap)."""
        cap = self._max_body if limit is None else limit
        length = self._resp.content_length
        if limit is None and length is not None and length > cap:
            raise too_large(cap, self._host)
        first = await self.read_chunk()
        self._first = True
        if not first or self._content.at_eof():  # the common case: one read, no timer
            buf: bytes | bytearray = first
        else:
            buf = bytearray(first)
            while len(buf) <= cap and (chunk := await self.read_chunk()):
                buf += chunk
        if len(buf) > cap:
            if limit is None:
                raise too_large(cap, self._host)
            return buf[:limit]
        return buf

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (or its first ``limit`` bytes); a body over the cap is a
        ServerError."""
        body = await self._read_body(limit)
        return body if isinstance(body, bytes) else bytes(body)

    async def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is a ServerError."""
        content = self._content
        if content.is_eof() and content.exception() is None:
            # The common case: the whole body came with the headers. One read, no timer.
            body: bytes | bytearray = content.read_nowait()
            self._first = True
            if self._total_at is not None and self._loop.time() >= self._total_at:
                raise TimeoutError_(f"total timeout ({self._host})", timeout_kind="total")
            if len(body) > self._max_body:
                raise too_large(self._max_body, self._host)
        else:
            body = await self._read_body(None)
        try:
            return loads_json(body)
        except ValueError as e:
            excerpt = redact_excerpt(bytes(body[:400]).decode("utf-8", errors="replace"), 200)
            raise ServerError(f"response is not JSON ({self._host}): {excerpt!r}",
                              status=self.status) from e

    async def drain(self, timeout: float) -> None:
        """Read what is left of the body so the connection can go back to the pool; give up
        quietly after ``timeout`` seconds. (A stream's end should use ``finish()``.)"""
        with contextlib.suppress(OSError):  # covers TimeoutError
            async with asyncio.timeout(timeout):
                while await self._content.readany():
                    pass

    def finish(self) -> None:
        """The stream's terminator arrived: free the connection now, never waiting. A body
        already at its end goes back to the pool; otherwise what is left (e.g. the end of a
        chunked body after ``[DONE]``) is read in the background, for at most a second."""
        if self._handed or self._resp.closed:
            return
        with contextlib.suppress(OSError, RuntimeError):
            self._content.read_nowait()
        if self._content.at_eof():
            self._resp.release()
        elif self._drain_later is not None:
            self._handed = True
            self._drain_later(self._resp, min(self._idle, _FINISH_DRAIN))
        else:
            self._resp.close()

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
        if self._handed or self._resp.closed:
            return
        if self._content.at_eof():
            self._resp.release()
        else:
            self._resp.close()  # a half-read body would poison a pooled connection
