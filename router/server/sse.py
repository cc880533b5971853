"""The relay of a router stream to an SSE reply, the same for both APIs; an Encoder says how
chunks are written in one API's events.

The reply starts at the stream's first chunk: until then the router may still retry and fall
back, and a failure is an ordinary error reply with its status. After it (DESIGN.md, the
streaming contract) a failure ends the stream with the API's error event and never with its
terminator, so no client takes a broken answer for a whole one. A client that goes away
cancels the handler (aiohttp's handler_cancellation), and the ``finally`` closes the router
stream, which closes the upstream connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from aiohttp import web

from router.errors import LlmError
from router.server import observe
from router.server.context import SSE_HEADERS, call_headers, log_bug, note_error
from router.server.errors import ApiError, from_llm_error
from router.types import ChatChunk

#: How long a last error event may take to write when the proxy cancels a stream (drain
#: timeout passed): a stuck client must not hold the shutdown.
_LAST_WORDS_TIMEOUT = 1.0


class Encoder(Protocol):
    """One API's stream events."""

    def start(self) -> list[bytes]:
        """The events before the first chunk's."""

    def chunk(self, c: ChatChunk) -> list[bytes]:
        """The events of one router chunk."""

    def end(self) -> list[bytes]:
        """The events of a complete answer, terminator last."""

    def error(self, err: ApiError) -> bytes:
        """The event of a failure after the first chunk (no terminator follows)."""


async def _close(chunks: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


async def relay(request: web.Request, chunks: AsyncIterator[ChatChunk],
                make_encoder: Callable[[ChatChunk], Encoder]) -> web.StreamResponse:
    """Answer ``request`` with the stream ``chunks`` as SSE; errors before the first chunk
    propagate (the caller answers them as an error reply)."""
    try:
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            raise ApiError(502, "the upstream stream ended before any content",
                           "server") from None
        observe.note_first_chunk(request)
        encoder = make_encoder(first)
        response = web.StreamResponse(headers={**SSE_HEADERS,
                                               **call_headers(request, first.target,
                                                             first.attempts_made or None)})
        await response.prepare(request)
        await _pump(request, response, encoder, first, chunks)
        return response
    finally:
        await _close(chunks)


async def _pump(request: web.Request, response: web.StreamResponse, encoder: Encoder,
                first: ChatChunk, chunks: AsyncIterator[ChatChunk]) -> None:
    try:
        await response.write(b"".join(encoder.start()))
        chunk = first
        while True:
            if chunk.attempts is not None:  # the last chunk: the call's attempts and usage
                observe.note_call(request, chunk.attempts, chunk.usage)
            frames = encoder.chunk(chunk)
            if frames:
                await response.write(b"".join(frames))
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
        await response.write(b"".join(encoder.end()))
    except LlmError as e:
        err = from_llm_error(e)
        observe.note_call(request, err.attempts)
        note_error(request, err.code)
        await _write_quietly(response, encoder.error(err))
    except ConnectionError:
        return  # the client went away mid-write: relay's finally closes the upstream
    except asyncio.CancelledError:
        # The client went away (nothing to tell it), or the drain timeout passed: then a
        # last error event tells the client the answer is cut, if it can still be written.
        if not _client_gone(request):
            note_error(request, "draining")
            err = ApiError(503, "the proxy shut down before the answer was complete",
                           "draining")
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(_LAST_WORDS_TIMEOUT):
                    await response.write(encoder.error(err))
        raise
    except Exception as e:  # a bug: logged with its traceback, the client told in-band
        log_bug(request, e)
        note_error(request, "internal_error")
        await _write_quietly(response, encoder.error(ApiError(
            500, "internal error in the proxy (logged)", "internal_error")))


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        await response.write(data)


__all__ = ["Encoder", "relay"]
