"""The state of one call: what the decision walk asks of the world (breakers, admission, the
clock, randomness), the attempt records, the budget hold in flight and the tracing spans."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from router.engine.decision import Admit, Done, Skip, Wait, jittered_wait
from router.engine.runtime import Runtime
from router.engine.skips import missing_note, skip_error, skipped_message
from router.errors import ErrorClass, LlmError, RouteFailed, TimeoutError_
from router.obs import log
from router.plan.routes import RetryPolicy, Route, Target
from router.policy.admission import CallScope
from router.policy.budget import Hold
from router.types import AttemptRecord, ChatChunk, ChatRequest, ChatResponse

_NO_SPAN = contextlib.nullcontext()
_EVENTS = {"ok": "attempt_ok", "error": "attempt_failed", "skipped": "target_skipped"}


class Call:
    """One call's state; implements the walk's WalkEnv."""

    __slots__ = ("_scope", "alias", "attempt_span", "deadline", "gates", "hold", "logging",
                 "loop", "probes", "records", "request", "request_id", "route", "rt", "span",
                 "started", "tags")

    def __init__(self, rt: Runtime, route: Route, request_id: str, timeout: float | None,
                 request: ChatRequest, tags: Mapping[str, str] | None = None,
                 operation: str = "chat", loop: asyncio.AbstractEventLoop | None = None,
                 gates: bool = True) -> None:
        self.rt = rt
        #: Whether anything can gate a target of this route (else admission is never asked).
        self.gates = gates
        #: Whether router's events are logged: asked once per call, not once per event.
        self.logging = log.enabled()
        self.route = route
        self.alias = route.alias
        self.request_id = request_id
        self.request = request
        self.tags = tags
        self._scope: CallScope | None = None  # made when admission is first asked
        self.hold: Hold | None = None  # the budget hold of the attempt in flight
        tracing = rt.tracing
        self.span = None if tracing is None else tracing.start_call(
            alias=route.alias, request_id=request_id, operation=operation, request=request)
        self.attempt_span: Any = None
        self.loop = asyncio.get_running_loop() if loop is None else loop
        limit = timeout if timeout is not None else route.deadline
        self.deadline = None if limit is None else self.loop.time() + limit
        self.records: list[AttemptRecord] = []
        self.probes: set[str] | None = None  # targets whose half-open probe this call holds
        self.started = 0.0  # perf_counter() when the attempt in flight began

    # -- WalkEnv ----------------------------------------------------------------------------
    def breaker_allows(self, target: Target) -> bool:
        probe = self.rt.breakers.enter(target.key, target.breaker)
        if probe is None:
            return False
        if probe:
            if self.probes is None:
                self.probes = set()
            self.probes.add(target.key)
        return True

    @property
    def scope(self) -> CallScope:
        """What admission knows of this call."""
        scope = self._scope
        if scope is None:
            scope = self._scope = CallScope(self.route, self.request, self.tags, self.request_id)
        return scope

    def gated(self, target: Target) -> bool:
        if not self.gates:
            return False
        gate = self.rt.gate
        if not gate.may_gate(self.route, target):
            return False
        return gate.gated(self.scope, target)

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - self.loop.time()

    def jitter(self, policy: RetryPolicy, retry_number: int) -> float:
        return jittered_wait(policy, retry_number, self.rt.rng)

    # -- admission and the budget hold ------------------------------------------------------
    async def admit(self, d: Admit) -> tuple[str, str] | None:
        """Rate limits and budget hold for the next attempt of ``d.target``. A cancellation
        while the hold is being reserved releases it once the store answers (Budgets)."""
        verdict, self.hold = await self.rt.gate.admit(
            self.scope, d.target, len(self.records) + 1, self.remaining())
        return verdict

    async def end_hold(self, cost_usd: float | None, *, billed: bool) -> None:
        """Settle the hold of the attempt that just ended (``billed``: at ``cost_usd``, or its
        worst case when unknown), or release it. Survives a cancellation (Budgets shields
        the store operation), so a cancelled call never leaves a hold behind."""
        hold, self.hold = self.hold, None
        if hold is None:
            return
        if billed:
            await self.rt.gate.settle(hold, cost_usd)
        else:
            await self.rt.gate.release(hold)

    def release_probe(self, key: str) -> None:
        """The probe of ``key`` (if this call held it) got its verdict or ended without one."""
        if self.probes is not None and key in self.probes:
            self.probes.discard(key)

    def release_probes(self, except_key: str | None = None) -> None:
        """Free the slot of each probe that ended without a verdict (cancelled, the deadline
        passed, skipped after the breaker let it through): otherwise the breaker would stay
        open for good. ``except_key``: a probe still in use (a committed stream)."""
        probes = self.probes
        if probes:
            kept = except_key is not None and except_key in probes
            for key in probes:
                if key != except_key:
                    self.rt.breakers.release_probe(key)
            probes.clear()
            if kept:
                probes.add(except_key)  # type: ignore[arg-type]

    # -- tracing ----------------------------------------------------------------------------
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

    # -- records ----------------------------------------------------------------------------
    def record(self, rec: AttemptRecord, finish_reason: str | None = None,
               response_model: str | None = None) -> None:
        self.records.append(rec)
        if self.span is not None:
            if rec.outcome == "skipped":
                self.span.skip(rec)
            elif self.attempt_span is not None:
                self.attempt_span.finish(rec, finish_reason=finish_reason,
                                         response_model=response_model)
                self.attempt_span = None
        if self.logging:
            log.emit_fields(_EVENTS[rec.outcome], rec.as_dict())

    def skip(self, d: Skip) -> None:
        self.record(AttemptRecord(self.request_id, self.alias, d.target.key,
                                  len(self.records) + 1, "skipped", reason=d.reason,
                                  detail=d.detail))

    def note_wait(self, d: Wait) -> None:
        if self.records:
            last = self.records[-1]
            last.retry_in_ms = round(d.seconds * 1000, 1)
            last.retry_after_used = d.from_retry_after
            log.emit("retry_scheduled", request_id=self.request_id, alias=self.alias,
                     target=d.target.key, retry_in_ms=last.retry_in_ms,
                     retry_after_used=d.from_retry_after)

    def failed(self, done: Done) -> RouteFailed:
        """The RouteFailed that ends this call (logged, and its span ended)."""
        err = done.error
        if done.reason == "deadline" and err is None:
            err = TimeoutError_("the call deadline passed before any target answered",
                                timeout_kind="deadline")
        records = self.records
        targets = self.route.targets
        if err is None:
            skips = [r for r in records if r.outcome == "skipped"]
            err = skip_error(skips, targets)
            msg = skipped_message(self.alias, skips, targets)
        else:
            tried = sum(1 for r in records if r.outcome == "error")
            msg = (f"{self.alias!r} failed after {tried} attempt(s) "
                   f"({done.reason.replace('_', ' ')}): {err}"
                   + missing_note(records, targets))
        log.emit("route_failed", level=log.WARNING, request_id=self.request_id, alias=self.alias,
                 error_class=(err.error_class.value if err else ErrorClass.NO_ROUTE.value),
                 attempts=len(records), reason=done.reason)
        failure = RouteFailed(msg, attempts=records, last_error=err, alias=self.alias)
        self.end_span(None, failure)
        return failure
