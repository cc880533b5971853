"""Streaming calls: the same driver and attempt step as ``chat``, where an attempt is opening
the stream up to its first chunk with content. Until then a stream retries and falls back
like ``chat``; after it the target is committed and output is never repeated or contradicted.
A failure after it is recovered per ``stream.recover`` (router.engine.recover: the walk goes
on, and the next attempt must reproduce what the caller has before anything more is
yielded); when nothing recovers it, StreamInterruptedError carries the partial text and
every attempt. The upstream stream is closed in ``finally``, so a caller that stops iterating
or is cancelled frees the connection at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from router.engine.attempt import abandon, end_failed, end_ok
from router.engine.call import Call
from router.engine.decision import Decision, Outcome, Try
from router.engine.drive import drive
from router.engine.opened import Opened, close_stream, open_stream
from router.engine.recover import (
    Delivered,
    Resume,
    committed_spent,
    fix_chunk,
    interrupted,
    recover_mode,
    resume_stream,
)
from router.errors import LlmError
from router.obs import log
from router.plan.routes import Recover
from router.policy.pricing import cost_usd, price_of
from router.types import ChatChunk, ChatRequest

__all__ = ["Opened", "open_stream", "stream_call"]

#: What a stream starts from: its call state, the walk over its targets and the request.
Begin = Callable[..., tuple[Call, Generator[Decision, Outcome, None], ChatRequest]]


async def stream_call(begin: Begin, *args: Any,
                      recover: object = None) -> AsyncGenerator[ChatChunk, None]:
    """The async generator behind ``Router.stream``: ``begin(*args)`` on the first ``anext``
    (so a bad call raises there), the driver up to a committed stream, then its chunks. The
    committed attempt ends ok at the final chunk, failed on an error (then recovered per
    ``recover``, the route's ``stream.recover`` when None, or StreamInterruptedError), and
    abandoned when the consumer stops or is cancelled (its hold then settles at the worst
    case: what was delivered was likely billed)."""
    given = None if recover is None else recover_mode(recover, "replay")
    call, gen, request = begin(*args)
    # Several choices interleave: not resumed.
    mode = "off" if request.n is not None else given or call.route.recover
    opened, d = await drive(call, gen, request, open_stream, keep=mode != "off")
    delivered = Delivered()
    parts = delivered.parts
    resume: Resume | None = None
    spent_before = 0.0  # the estimated cost of the attempts that broke
    chunk, ended = opened.first, False
    # Known before the first byte goes out (the proxy's x-router-attempts of a stream).
    chunk.attempts_made = len(call.records) + 1
    try:
        while True:  # once per committed attempt
            target, agen = d.target, opened.agen
            deadline_at, idle = _timers(call, d)
            price = price_of(target)
            try:
                while True:
                    chunk.target = target.key
                    if chunk.delta:
                        parts.append(chunk.delta)
                    if chunk.tool_calls:
                        delivered.note_tools(chunk.tool_calls)
                    if chunk.refusal:
                        delivered.note_refusal(chunk.refusal)
                    if chunk.usage is not None:
                        chunk.cost_usd = cost_usd(price, chunk.usage)
                    # The final chunk: every provider sets final_tool_calls on its last chunk,
                    # usage or not (a finish reason with usage is final too).
                    if not ended and (chunk.final_tool_calls is not None or (
                            chunk.finish_reason is not None and chunk.usage is not None)):
                        ended = True
                        await _end_ok(call, d, opened, chunk, spent_before)
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
                    if resume is not None:
                        fix_chunk(chunk, delivered)
                if not ended:
                    ended = True
                    await _end_ok(call, d, opened, None, spent_before)
                return
            except Exception as e:
                if ended:  # after the final chunk: the caller has the whole answer
                    log.emit("stream_error_after_end", target=target.key, error=str(e))
                    return
                ended = True  # until a recovery attempt commits
                opened, d, resume = await _broken(call, gen, request, d, opened, e, delivered,
                                                  resume, mode)
                spent_before = sum(r.cost_usd or 0.0 for r in call.records)
                chunk, ended = opened.first, False
    finally:
        await close_stream(opened.agen)
        gen.close()
        if not ended:  # the consumer stopped early, or was cancelled
            await abandon(call, d, billed=True)
        call.end_span(None, None)  # a no-op when the attempt already ended it


def _timers(call: Call, d: Try) -> tuple[float | None, float]:
    """(deadline_at, idle) of committed attempt ``d``: our own timer only where the provider
    does not bound the stream (interface 1) or the call deadline is nearer."""
    seat = call.rt.seats[d.target.provider]
    deadline_at: float | None = None
    if not seat.enforces_timeouts or d.timeout_is_deadline:
        deadline_at = call.loop.time() + d.timeout - (time.perf_counter() - call.started)
    return deadline_at, d.target.timeouts.idle if seat.enforces_timeouts else 0.0


async def _broken(call: Call, gen: Generator[Decision, Outcome, None], request: ChatRequest,
                  d: Try, opened: Opened, e: Exception, delivered: Delivered,
                  resume: Resume | None, mode: Recover) -> tuple[Opened, Try, Resume]:
    """End committed attempt ``d``, which failed with ``e``, and go on per ``mode``: the next
    committed attempt, or StreamInterruptedError (``off``, or nothing recovered it)."""
    err = _classify(call, d, e)
    await end_failed(call, d, err, billed=True, ttft_ms=opened.ttft_ms,
                     spent=committed_spent(d.target, request, sum(map(len, delivered.parts)),
                                           resume))
    if mode == "off":
        raise interrupted(call, err, delivered.text) from e
    await close_stream(opened.agen)
    resume = Resume(call, delivered, mode, request)
    opened, d = await resume_stream(call, gen, request, resume, err)
    return opened, d, resume


def _classify(call: Call, d: Try, e: Exception) -> LlmError:
    rt, target = call.rt, d.target
    if isinstance(e, LlmError):
        return rt.classify(target, e)
    if isinstance(e, TimeoutError):
        return rt.timeout_error(d)
    return rt.plugin_error(target, e)  # a plugin provider's bug: interface 6


async def _end_ok(call: Call, d: Try, opened: Opened, last: ChatChunk | None,
                  spent_before: float) -> None:
    usage = last.usage if last is not None else None
    cost = last.cost_usd if last is not None else None
    await end_ok(call, d, usage, cost, ttft_ms=opened.ttft_ms,
                 finish_reason=last.finish_reason if last is not None else None,
                 malformed_events=last.malformed_events if last is not None else 0)
    if last is not None:
        if spent_before and cost is not None:  # the whole call: the broken attempts too
            cost = last.cost_usd = cost + spent_before
        last.attempts = call.records
    if call.rt.call_events:
        log.emit("route_done", request_id=call.request_id, alias=call.alias,
                 target=d.target.key, attempts=len(call.records), cost_usd=cost)
    call.end_span(last, None)
