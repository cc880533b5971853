"""The attempt step: run one attempt of a target under its timeouts, and end it, whichever way
it ends, in one place: classify (the route file's ``errors:`` rules included), update the
breaker, settle or release the budget hold, record the AttemptRecord, end the attempt span.

``chat`` and ``stream`` share it; they differ only in the opener: a whole reply, or a stream
read up to its first content chunk. A stream's attempt ends when its relay does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from router.engine.billed import Billed, Spent
from router.engine.call import Call
from router.engine.decision import Try
from router.engine.refusals import Reply, judge
from router.errors import LlmError
from router.providers.base import Provider
from router.specs import Timeouts
from router.types import AttemptRecord, ChatRequest, ChatResponse, Usage

_NO_SPAN = contextlib.nullcontext()  # an untraced attempt's "span"



#: What an attempt does with the provider: ``opener(provider, model, request, timeouts)``.
Opener = Callable[[Provider, str, ChatRequest, Timeouts], Awaitable[Reply]]


def open_chat(provider: Provider, model: str, request: ChatRequest,
              timeouts: Timeouts) -> Awaitable[ChatResponse]:
    """The opener of ``chat``: the whole reply."""
    return provider.chat(model, request, timeouts)


async def run_attempt(call: Call, d: Try, request: ChatRequest,
                      opener: Opener[Reply]) -> Reply | LlmError:
    """Run ``opener`` as attempt ``d``. A failure is ended here and returned; a success is
    returned unended (``end_ok`` ends it). A cancellation (or any BaseException) ends the
    attempt without a verdict or a record, freeing its hold and probe, and propagates."""
    target = d.target
    rt = call.rt
    seat = rt.seats[target.provider]
    call.started = time.perf_counter()
    spent: Spent | None = None
    try:
        with _NO_SPAN if call.span is None else call.attempt(target, d.attempt):
            try:
                # Most calls send the request as built, under the target's own timeouts.
                sent = (request if (request.max_tokens is not None
                                    or (target.max_tokens is None and call.hold is None))
                        and request.parallel_tool_calls is None
                        else rt.request_for(target, request, call.hold))
                timeouts = (target.timeouts if d.timeout == target.timeouts.total
                            and d.first_token is None else rt.timeouts_for(d))
                # A reply that is a refusal meets the route's content_policy action (judge).
                if seat.enforces_timeouts and not d.timeout_is_deadline:
                    reply = await opener(seat.provider, target.model, sent, timeouts)
                    return reply if reply.refusal is None else await judge(target, sent, reply)
                async with asyncio.timeout(d.timeout):
                    reply = await opener(seat.provider, target.model, sent, timeouts)
                    return reply if reply.refusal is None else await judge(target, sent, reply)
            except LlmError as e:
                error = rt.classify(target, e)
            except Billed as b:
                error, spent = rt.classify(target, b.error), b.spent
            except TimeoutError:
                error = rt.timeout_error(d)
            except Exception as e:  # a plugin provider's bug: interface 6
                error = rt.plugin_error(target, e)
    except BaseException:
        await abandon(call, d, billed=False)
        raise
    await end_failed(call, d, error, spent=spent)
    return error


def record_ok(call: Call, d: Try, usage: Usage | None, cost_usd: float | None,
              finish_reason: str | None = None, response_model: str | None = None, *,
              ttft_ms: float | None = None, malformed_events: int = 0) -> bool:
    """The synchronous part of ``end_ok``: record attempt ``d`` as a success and close the
    breaker. True when ``settle_ok`` still has store work to do (a hold, shared breakers).
    ``malformed_events``: stream events the provider skipped (not JSON)."""
    target = d.target
    if call.probes:
        call.release_probe(target.key)  # a verdict: the probe (if held) is spent
    # Every field positional, in AttemptRecord's order: keywords cost ~3k CPU instructions more.
    call.record(AttemptRecord(
        call.request_id, call.alias, target.key, d.attempt, "ok",
        None, None, None, None,  # error_class, reason, detail, status
        round((time.perf_counter() - call.started) * 1000, 2), ttft_ms,  # latency, ttft
        None, False, None,  # retry_in_ms, retry_after_used, timeout_kind
        usage.input_tokens if usage is not None else None,
        usage.output_tokens if usage is not None else None,
        cost_usd, malformed_events), finish_reason, response_model)
    rt = call.rt
    rt.breakers.record_success(target.key)
    return call.hold is not None or rt.gate.share_breakers


async def settle_ok(call: Call, d: Try, cost_usd: float | None) -> None:
    """The store part of ``end_ok``: settle the hold at ``cost_usd`` (its worst case when
    unknown) and publish the closed breaker when breakers are shared."""
    if call.hold is not None:
        await call.end_hold(cost_usd, billed=True)
    if call.rt.gate.share_breakers:
        await call.rt.gate.publish_breaker(d.target, opened=False)


async def end_ok(call: Call, d: Try, usage: Usage | None, cost_usd: float | None, *,
                 ttft_ms: float | None = None, finish_reason: str | None = None,
                 response_model: str | None = None, malformed_events: int = 0) -> None:
    """End attempt ``d`` as a success: record it, settle its hold at ``cost_usd`` (its worst
    case when unknown) and close the breaker."""
    if record_ok(call, d, usage, cost_usd, ttft_ms=ttft_ms, finish_reason=finish_reason,
                 response_model=response_model, malformed_events=malformed_events):
        await settle_ok(call, d, cost_usd)


async def end_failed(call: Call, d: Try, error: LlmError, *, billed: bool = False,
                     ttft_ms: float | None = None, spent: Spent | None = None) -> None:
    """End attempt ``d`` as a failure: record it, release its hold (``billed``: a stream that
    delivered output settles the worst case instead) and count it against the breaker.
    ``spent``: the (estimated) usage and cost of a stream that read output before failing;
    recorded, and its hold settled at that cost."""
    call.release_probe(d.target.key)
    usage, cost = spent if spent is not None else (None, None)
    call.record(AttemptRecord(
        call.request_id, call.alias, d.target.key, d.attempt, "error",
        error_class=error.error_class, status=error.status,
        latency_ms=round((time.perf_counter() - call.started) * 1000, 2), ttft_ms=ttft_ms,
        timeout_kind=error.timeout_kind, detail=error.message[:200],
        input_tokens=usage.input_tokens if usage is not None else None,
        output_tokens=usage.output_tokens if usage is not None else None, cost_usd=cost))
    await call.end_hold(cost, billed=billed or spent is not None)

    await call.rt.note_failure(d.target, error)


async def abandon(call: Call, d: Try, *, billed: bool) -> None:
    """End attempt ``d`` without a verdict (cancelled, or the consumer stopped a stream): its
    probe slot is freed and its hold released (``billed``: settled at the worst case)."""
    key = d.target.key
    if call.probes and key in call.probes:
        call.probes.discard(key)
        call.rt.breakers.release_probe(key)
    await call.end_hold(None, billed=billed)
