"""Streaming calls: the same driver and attempt step as ``chat``, where an attempt is opening
the stream up to its first chunk with content. Until then a stream retries and falls back
like ``chat``; after it the target is committed, output is never repeated, and a failure
raises StreamInterruptedError with the partial text and every attempt. The upstream stream is
closed in ``finally``, so a caller that stops iterating or is cancelled frees the connection
at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from typing import Any

from router.engine.attempt import abandon, end_failed, end_ok
from router.engine.call import Call
from router.engine.decision import Decision, Outcome, Try
from router.engine.drive import drive
from router.errors import LlmError, NetworkError, StreamInterruptedError
from router.obs import log
from router.policy.pricing import cost_usd, price_of
from router.providers.base import Provider
from router.specs import Timeouts
from router.types import ChatChunk, ChatRequest


class Opened:
    """A stream whose first chunk with content has arrived."""

    __slots__ = ("agen", "first", "ttft_ms")

    def __init__(self, agen: AsyncIterator[ChatChunk], first: ChatChunk,
                 ttft_ms: float) -> None:
        self.agen, self.first, self.ttft_ms = agen, first, ttft_ms


def _has_content(c: ChatChunk) -> bool:
    return bool(c.delta or c.tool_calls or c.finish_reason or c.usage or c.reasoning_delta)


async def _close(agen: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await aclose()


async def open_stream(provider: Provider, model: str, request: ChatRequest,
                      timeouts: Timeouts) -> Opened:
    """The opener of ``stream``: read up to the first chunk with content."""
    began = time.perf_counter()
    agen = provider.stream(model, request, timeouts)
    try:
        while True:
            first = await agen.__anext__()
            if _has_content(first):
                return Opened(agen, first, round((time.perf_counter() - began) * 1000, 2))
    except StopAsyncIteration:
        await _close(agen)
        raise NetworkError("the stream ended before any content") from None
    except BaseException:
        await _close(agen)
        raise


#: What a stream starts from: its call state, the walk over its targets and the request.
Begin = Callable[..., tuple[Call, Generator[Decision, Outcome, None], ChatRequest]]


async def stream_call(begin: Begin, *args: Any) -> AsyncGenerator[ChatChunk, None]:
    """The async generator behind ``Router.stream``: ``begin(*args)`` on the first ``anext``
    (so a bad call raises there), the driver up to a committed stream, then its chunks. The
    committed attempt ends ok at the final chunk, failed (StreamInterruptedError) on an
    error, and abandoned when the consumer stops or is cancelled (its hold then settles at
    the worst case: what was delivered was likely billed)."""
    call, gen, request = begin(*args)
    opened, d = await drive(call, gen, request, open_stream)
    target, agen, seat = d.target, opened.agen, call.rt.seats[d.target.provider]
    # Our own timer only where the provider does not bound the stream (interface 1).
    deadline_at: float | None = None
    if not seat.enforces_timeouts or d.timeout_is_deadline:
        deadline_at = call.loop.time() + d.timeout - (time.perf_counter() - call.started)
    idle = target.timeouts.idle if seat.enforces_timeouts else 0.0
    price = price_of(target)
    parts: list[str] = []
    chunk, ended = opened.first, False
    try:
        while True:
            chunk.target = target.key
            if chunk.delta:
                parts.append(chunk.delta)
            if chunk.usage is not None:
                chunk.cost_usd = cost_usd(price, chunk.usage)
            # The final chunk: every provider sets final_tool_calls on its last chunk, usage
            # or not (a finish reason with usage is final too).
            if not ended and (chunk.final_tool_calls is not None or (
                    chunk.finish_reason is not None and chunk.usage is not None)):
                ended = True
                await _end_ok(call, d, opened, chunk)
            yield chunk
            try:
                # The provider bounds each gap by the idle timeout: a timer of our own
                # (~10 us a chunk) only once the deadline is nearer than that.
                if deadline_at is None or deadline_at - call.loop.time() > idle:
                    chunk = await agen.__anext__()
                else:
                    async with asyncio.timeout_at(deadline_at):
                        chunk = await agen.__anext__()
            except StopAsyncIteration:
                break
        if not ended:
            ended = True
            await _end_ok(call, d, opened, None)
    except Exception as e:
        if ended:  # after the final chunk: the caller has the whole answer
            log.emit("stream_error_after_end", target=target.key, error=str(e))
            return
        ended = True
        raise await _interrupted(call, d, opened, "".join(parts), e) from e
    finally:
        await _close(agen)
        if not ended:  # the consumer stopped early, or was cancelled
            await abandon(call, d, billed=True)
        call.end_span(None, None)  # a no-op when the attempt already ended it


async def _end_ok(call: Call, d: Try, opened: Opened, last: ChatChunk | None) -> None:
    usage = last.usage if last is not None else None
    cost = last.cost_usd if last is not None else None
    await end_ok(call, d, usage, cost, ttft_ms=opened.ttft_ms,
                 finish_reason=last.finish_reason if last is not None else None)
    log.emit("route_done", request_id=call.request_id, alias=call.alias, target=d.target.key,
             attempts=len(call.records), cost_usd=cost)
    if last is not None:
        last.attempts = call.records
    call.end_span(last, None)


async def _interrupted(call: Call, d: Try, opened: Opened, text: str,
                       e: Exception) -> StreamInterruptedError:
    rt, target = call.rt, d.target
    if isinstance(e, LlmError):
        err = rt.classify(target, e)
    elif isinstance(e, TimeoutError):
        err = rt.timeout_error(d)
    else:  # a plugin provider's bug: interface 6
        err = rt.plugin_error(target, e)
    await end_failed(call, d, err, billed=True, ttft_ms=opened.ttft_ms)
    log.emit("route_failed", level=log.WARNING, request_id=call.request_id, alias=call.alias,
             error_class=StreamInterruptedError.error_class.value,
             attempts=len(call.records), reason="stream_interrupted")
    interrupted = StreamInterruptedError(
        f"the stream from {target.key} failed after {len(text)} characters: {err}",
        partial_text=text, cause_class=err.error_class, target=target.key,
        status=err.status, attempts=call.records)
    call.end_span(None, interrupted)
    return interrupted
