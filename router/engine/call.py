"""The state of one call: what the decision walk asks of the world (breakers, admission, the
clock), the attempt records, the budget hold in flight and the tracing spans."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from router.engine.decision import Admit, Skip, Try, Wait, jittered_wait
from router.errors import LlmError
from router.obs import log
from router.plan.routes import RetryPolicy, Route, Target
from router.policy.admission import CallScope
from router.policy.budget import Hold
from router.types import AttemptRecord, ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from router.engine.router import Router

_NO_SPAN = contextlib.nullcontext()


class Call:
    """The state of one call: what the walk asks (WalkEnv) and the records it produced."""

    __slots__ = ("alias", "attempt_span", "deadline", "hold", "loop", "probes", "records",
                 "request_id", "router", "scope", "span")

    def __init__(self, router: Router, route: Route, request_id: str,
                 timeout: float | None, request: ChatRequest,
                 tags: Mapping[str, str] | None = None, operation: str = "chat") -> None:
        self.router = router
        self.alias = route.alias
        self.request_id = request_id
        self.scope = CallScope(route, request, tags, request_id)
        self.hold: Hold | None = None  # the budget hold of the attempt in flight
        tracing = router._tracing
        self.span = None if tracing is None else tracing.start_call(
            alias=route.alias, request_id=request_id, operation=operation, request=request)
        self.attempt_span: Any = None
        self.loop = asyncio.get_running_loop()
        limit = timeout if timeout is not None else route.deadline
        self.deadline = None if limit is None else self.loop.time() + limit
        self.records: list[AttemptRecord] = []
        self.probes: set[str] = set()  # targets whose half-open probe this call holds

    # WalkEnv
    def breaker_allows(self, target: Target) -> bool:
        breakers = self.router._breakers
        half_open = breakers.state(target.key, target.breaker) == "half_open"
        if not breakers.allows(target.key, target.breaker):
            return False
        if half_open:
            self.probes.add(target.key)
        return True

    def release_probes(self) -> None:
        """Free the slot of a probe that ended without a verdict (cancelled, the consumer
        stopped, the deadline passed): otherwise the breaker would stay open for good."""
        for key in self.probes:
            self.router._breakers.release_probe(key)
        self.probes.clear()

    def gated(self, target: Target) -> bool:
        return self.router._gate.gated(self.scope, target)

    async def admit(self, d: Admit) -> tuple[str, str] | None:
        """Rate limits and budget hold for the next attempt of ``d.target``."""
        verdict, self.hold = await self.router._gate.admit(
            self.scope, d.target, len(self.records) + 1, self.remaining())
        return verdict

    async def end_hold(self, cost_usd: float | None, *, ok: bool) -> None:
        """Settle the hold of the attempt that just ended (real cost), or release it."""
        hold, self.hold = self.hold, None
        if hold is None:
            return
        if ok:
            await self.router._gate.settle(hold, cost_usd)
        else:
            await self.router._gate.release(hold)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.loop.time()

    def jitter(self, policy: RetryPolicy, retry_number: int) -> float:
        return jittered_wait(policy, retry_number)

    # tracing
    def attempt(self, target: Target, attempt: int) -> contextlib.AbstractContextManager[Any]:
        """The span of one attempt (current inside the ``with``), or nothing untraced."""
        if self.span is None:
            return _NO_SPAN
        self.attempt_span = self.span.attempt(target, attempt)
        return self.attempt_span  # type: ignore[no-any-return]

    def end_span(self, response: ChatResponse | ChatChunk | None,
                 error: LlmError | None) -> None:
        if self.span is not None:
            self.span.end(response=response, error=error, records=self.records)
            self.span = None

    # records
    def record(self, rec: AttemptRecord, *, finish_reason: str | None = None,
               response_model: str | None = None) -> None:
        self.records.append(rec)
        if self.span is not None:
            if rec.outcome == "skipped":
                self.span.skip(rec)
            elif self.attempt_span is not None:
                self.attempt_span.finish(rec, finish_reason=finish_reason,
                                         response_model=response_model)
                self.attempt_span = None
        if not log.enabled():
            return
        fields = rec.as_dict()
        event = {"ok": "attempt_ok", "error": "attempt_failed",
                 "skipped": "target_skipped"}[rec.outcome]
        log.emit(event, **fields)

    def skip(self, d: Skip, attempt: int) -> None:
        self.record(AttemptRecord(self.request_id, self.alias, d.target.key, attempt, "skipped",
                                  reason=d.reason, detail=d.detail))

    def note_wait(self, d: Wait) -> None:
        if self.records:
            last = self.records[-1]
            last.retry_in_ms = round(d.seconds * 1000, 1)
            last.retry_after_used = d.from_retry_after
            log.emit("retry_scheduled", request_id=self.request_id, alias=self.alias,
                     target=d.target.key, retry_in_ms=last.retry_in_ms,
                     retry_after_used=d.from_retry_after)


def error_record(call: Call, d: Try, error: LlmError, latency_ms: float) -> AttemptRecord:
    return AttemptRecord(
        call.request_id, call.alias, d.target.key, d.attempt, "error",
        error_class=error.error_class, status=error.status, latency_ms=round(latency_ms, 2),
        timeout_kind=error.timeout_kind, detail=error.message[:200])
