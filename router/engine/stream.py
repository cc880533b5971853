"""Streaming calls: the same walk as ``chat`` until the first chunk with content reaches the
caller; after that the target is committed, and a failure raises StreamInterruptedError with
the partial text. Output is never repeated. The upstream stream is closed in ``finally``, so a
caller that stops iterating or is cancelled frees the connection at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from router.engine.call import Call, error_record
from router.engine.decision import Admit, Decision, Done, Try, Wait, walk
from router.errors import LlmError, StreamInterruptedError, TimeoutError_
from router.obs import log
from router.policy.pricing import cost_usd, price_of
from router.types import AttemptRecord, ChatChunk, ChatRequest, Message

if TYPE_CHECKING:
    from router.engine.router import Router


def _has_content(c: ChatChunk) -> bool:
    return bool(c.delta or c.tool_calls or c.finish_reason or c.usage or c.reasoning_delta)


class _Opened:
    """A stream whose first chunk with content has arrived."""

    __slots__ = ("agen", "deadline_at", "first", "start", "ttft_ms")

    def __init__(self, agen: AsyncIterator[ChatChunk], first: ChatChunk, deadline_at: float,
                 start: float, ttft_ms: float) -> None:
        self.agen, self.first, self.deadline_at = agen, first, deadline_at
        self.start, self.ttft_ms = start, ttft_ms


async def _close(agen: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await aclose()


async def _open(router: Router, call: Call, d: Try,
                request: ChatRequest) -> _Opened | LlmError:
    target = d.target
    error = router._missing_key_error(target)
    if error is not None:
        return error
    provider = router._providers[target.provider]
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline_at = loop.time() + d.timeout
    sent = router._request_for(target, request, call.hold)
    agen = provider.stream(target.model, sent, target.timeouts)
    try:
        with call.attempt(target, d.attempt):  # the span ends when the attempt is recorded
            async with asyncio.timeout_at(deadline_at):
                while True:
                    first = await agen.__anext__()
                    if _has_content(first):
                        break
    except LlmError as e:
        await _close(agen)
        return router._classify(target, e)
    except TimeoutError:
        await _close(agen)
        return router._timeout_error(d)
    except StopAsyncIteration:
        await _close(agen)
        return TimeoutError_("the stream ended before any content", target=target.key,
                             timeout_kind="first_token")
    except BaseException:
        await _close(agen)
        raise
    return _Opened(agen, first, deadline_at, start, (time.perf_counter() - start) * 1000)


async def stream_call(router: Router, model: str,
                      messages: Iterable[Message | Mapping[str, Any]], *,
                      timeout: float | None, request_id: str | None,
                      tags: Mapping[str, str] | None,
                      params: dict[str, Any]) -> AsyncIterator[ChatChunk]:
    """The async generator behind ``Router.stream``."""
    route, request, needs, rid = router._prepare(model, messages, params, True, request_id)
    call = Call(router, route, rid, timeout, request, tags, operation="stream")
    gen = walk(route, router._order(route), needs, call)
    try:
        decision: Decision = next(gen)
        while not isinstance(decision, Done):
            if isinstance(decision, Try):
                t0 = time.perf_counter()
                opened = await _open(router, call, decision, request)
                if isinstance(opened, LlmError):
                    await call.end_hold(None, ok=False)
                    await router._note_failure(call, decision.target, opened)
                    latency = (time.perf_counter() - t0) * 1000
                    call.record(error_record(call, decision, opened, latency))
                    decision = gen.send(opened)
                    continue
                gen.close()
                # Closed here, not by the garbage collector, when the consumer stops early.
                async with contextlib.aclosing(_relay(router, call, decision, opened)) as relay:
                    async for chunk in relay:
                        yield chunk
                return
            if isinstance(decision, Admit):
                decision = gen.send(await call.admit(decision))
                continue
            if isinstance(decision, Wait):
                call.note_wait(decision)
                await asyncio.sleep(decision.seconds)
            else:
                call.skip(decision, len(call.records) + 1)
            decision = next(gen)
    finally:
        gen.close()
        call.release_probes()
        await call.end_hold(None, ok=False)
        if not isinstance(decision, Done):
            call.end_span(None, None)  # cancelled, or the stream was committed and ended
    raise router._failed(call, decision)


async def _relay(router: Router, call: Call, d: Try,
                 opened: _Opened) -> AsyncGenerator[ChatChunk, None]:
    """Yield the committed stream's chunks; a failure now is stream_interrupted."""
    target = d.target
    agen = opened.agen
    parts: list[str] = []
    chunk = opened.first
    finished = False
    loop = asyncio.get_running_loop()
    idle = target.timeouts.idle
    try:
        while True:
            chunk.target = target.key
            if chunk.delta:
                parts.append(chunk.delta)
            if chunk.usage is not None:
                chunk.cost_usd = cost_usd(price_of(target), chunk.usage)
            # The last chunk: every provider sets final_tool_calls there, usage or not.
            if not finished and (chunk.final_tool_calls is not None or (
                    chunk.finish_reason is not None and chunk.usage is not None)):
                finished = True
                _record_ok(router, call, d, opened, chunk)
                call.end_span(chunk, None)
                await call.end_hold(chunk.cost_usd, ok=True)
                await router._gate.publish_breaker(target, opened=False)
                chunk.attempts = call.records
            yield chunk
            # The provider bounds each gap by the idle timeout; a timer of our own (~10 us a
            # chunk) is only needed once the call's total deadline is nearer than that.
            try:
                left = opened.deadline_at - loop.time()
                if left > idle:
                    chunk = await agen.__anext__()
                else:
                    async with asyncio.timeout_at(opened.deadline_at):
                        chunk = await agen.__anext__()
            except StopAsyncIteration:
                break
        if not finished:
            _record_ok(router, call, d, opened, None)
    except (LlmError, TimeoutError) as e:
        err = e if isinstance(e, LlmError) else router._timeout_error(d)
        await router._note_failure(call, target, err)
        latency = (time.perf_counter() - opened.start) * 1000
        rec = error_record(call, d, err, latency)
        rec.ttft_ms = round(opened.ttft_ms, 2)
        call.record(rec)
        log.emit("route_failed", request_id=call.request_id, alias=call.alias,
                 error_class=StreamInterruptedError.error_class.value,
                 attempts=len(call.records), reason="stream_interrupted")
        text = "".join(parts)
        interrupted = StreamInterruptedError(
            f"the stream from {target.key} failed after {len(text)} characters: {err}",
            partial_text=text, cause_class=err.error_class, target=target.key,
            status=err.status)
        call.end_span(None, interrupted)
        raise interrupted from e
    finally:
        await _close(agen)
        call.end_span(None, None)  # the consumer stopped early (a no-op when already ended)
        # A stream that failed or was left after its first chunk was (likely) billed, and how
        # much is unknown: the hold's worst case becomes spend, never less.
        await call.end_hold(None, ok=True)


def _record_ok(router: Router, call: Call, d: Try, opened: _Opened,
               last: ChatChunk | None) -> None:
    router._note_success(call, d.target)
    usage = last.usage if last is not None else None
    call.record(AttemptRecord(
        call.request_id, call.alias, d.target.key, d.attempt, "ok",
        latency_ms=round((time.perf_counter() - opened.start) * 1000, 2),
        ttft_ms=round(opened.ttft_ms, 2),
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else None,
        cost_usd=last.cost_usd if last is not None else None),
        finish_reason=last.finish_reason if last is not None else None)
    log.emit("route_done", request_id=call.request_id, alias=call.alias, target=d.target.key,
             attempts=len(call.records), cost_usd=last.cost_usd if last is not None else None)
