"""The one driver of the decision walk, for ``chat`` and ``stream`` alike: it executes the
walk's decisions (Try, Admit, Wait, Skip, Fallback) until an attempt succeeds or the walk is
done. What an attempt means is the opener's business (router.engine.attempt)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator

from router.engine.attempt import Opener, run_attempt
from router.engine.call import Call
from router.engine.decision import Admit, Decision, Done, Fallback, Outcome, Skip, Try, Wait
from router.engine.refusals import Reply
from router.errors import LlmError
from router.types import ChatRequest


async def drive(call: Call, gen: Generator[Decision, Outcome, None], request: ChatRequest,
                opener: Opener[Reply], *, first: Decision | None = None, keep: bool = False,
                failed: Callable[[Done], Exception] | None = None) -> tuple[Reply, Try]:
    """The first successful attempt's result and its Try, not yet ended (the caller ends it
    with ``end_ok``). Raises RouteFailed when the walk ends without one (``failed(done)``
    instead, when given). Whatever the exit, the walk is closed (``keep``: not after a
    success, so that a stream that fails later can go on with it from ``first``, the walk's
    next decision) and the breaker probes this call took and did not use are freed; on a
    failure or a cancellation the call's span ends too."""
    decision = next(gen) if first is None else first
    kept: str | None = None
    try:
        while True:
            if isinstance(decision, Try):
                result = await run_attempt(call, decision, request, opener)
                if not isinstance(result, LlmError):
                    kept = decision.target.key
                    return result, decision
                decision = gen.send(result)
            elif isinstance(decision, Admit):
                decision = gen.send(await call.admit(decision))
            elif isinstance(decision, Wait):
                call.note_wait(decision)
                await asyncio.sleep(decision.seconds)
                decision = next(gen)
            elif isinstance(decision, Skip):
                call.skip(decision)
                decision = next(gen)
            elif isinstance(decision, Fallback):
                decision = next(gen)
            else:
                break
    except BaseException:
        call.end_span(None, None)  # cancelled: the span ends "abandoned"
        raise
    finally:
        if not keep or kept is None:
            gen.close()
        if call.probes:
            call.release_probes(except_key=kept)
    assert isinstance(decision, Done)
    raise call.failed(decision) if failed is None else failed(decision)
