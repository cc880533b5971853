"""``fake``: a scripted offline provider for users' own tests and for ``router demo``.

Each call takes the next step of ``script`` (cycling): ``ok`` answers with text; an error class
raises that class as a real provider would (status, Retry-After); ``timeout`` waits until the
first-token timeout fires; ``stream_interrupted`` fails after the first chunks of a stream.
It goes through the same engine path as any provider: only the wire is missing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from router.errors import ErrorClass, LlmError, NetworkError, TimeoutError_, make_error
from router.providers.base import HttpPool, Provider, ProviderConfig, Timeouts
from router.types import ChatChunk, ChatRequest, ChatResponse, Usage

_STATUS = {
    ErrorClass.AUTH: 401, ErrorClass.PERMISSION: 403, ErrorClass.NOT_FOUND: 404,
    ErrorClass.INVALID_REQUEST: 400, ErrorClass.CONTEXT_WINDOW: 400,
    ErrorClass.CONTENT_POLICY: 400, ErrorClass.RATE_LIMIT: 429,
    ErrorClass.QUOTA_EXHAUSTED: 429, ErrorClass.OVERLOADED: 529, ErrorClass.SERVER: 500,
}
_MESSAGES = {
    ErrorClass.RATE_LIMIT: "Rate limit reached (scripted)",
    ErrorClass.SERVER: "The server had an error (scripted)",
    ErrorClass.OVERLOADED: "Overloaded (scripted)",
}


@dataclass(frozen=True, slots=True)
class FakeStep:
    """One scripted outcome."""

    outcome: str = "ok"
    latency: float = 0.0
    text: str | None = None
    retry_after: float | None = None
    status: int | None = None


def _step(raw: Any, default_latency: float) -> FakeStep:
    if isinstance(raw, str):
        return FakeStep(raw, default_latency)
    get = raw.get if isinstance(raw, Mapping) else lambda k, d=None: getattr(raw, k, d)
    latency = get("latency")
    return FakeStep(get("outcome", "ok"), default_latency if latency is None else latency,
                    get("text"), get("retry_after"), get("status"))


class FakeProvider(Provider):
    """Scripted outcomes, no network. Options: ``script``, ``text``, ``latency``."""

    kind = "fake"

    def __init__(self, config: ProviderConfig, http: HttpPool) -> None:
        super().__init__(config, http)
        opts = config.options
        latency = float(opts.get("latency") or 0.0)
        steps = [_step(s, latency) for s in (opts.get("script") or ["ok"])]
        self._steps: Iterator[FakeStep] = itertools.cycle(steps)
        self._text: str = opts.get("text") or "Hello from {target}."
        self.calls = 0

    def _answer(self, step: FakeStep, model: str) -> str:
        return (step.text or self._text).format(target=f"{self.name}:{model}", model=model)

    async def _begin(self, timeouts: Timeouts) -> FakeStep:
        self.calls += 1
        step = next(self._steps)
        if step.outcome == "timeout":
            await asyncio.sleep(timeouts.first_token)
            raise TimeoutError_(f"no first token within {timeouts.first_token}s (scripted)",
                                timeout_kind="first_token")
        if step.latency:
            await asyncio.sleep(min(step.latency, timeouts.first_token))
            if step.latency > timeouts.first_token:
                raise TimeoutError_(f"no first token within {timeouts.first_token}s",
                                    timeout_kind="first_token")
        if step.outcome not in ("ok", "stream_interrupted"):
            raise self._error(step)
        return step

    def _error(self, step: FakeStep) -> LlmError:
        cls = ErrorClass(step.outcome)
        if cls is ErrorClass.NETWORK:
            return NetworkError("connection reset by peer (scripted)")
        return make_error(cls, _MESSAGES.get(cls, f"{cls.value} (scripted)"),
                          status=step.status or _STATUS.get(cls),
                          retry_after=step.retry_after)

    @staticmethod
    def _usage(request: ChatRequest, text: str) -> Usage:
        prompt = sum(len(m.text) for m in request.messages)
        return Usage(input_tokens=max(1, prompt // 4), output_tokens=max(1, len(text) // 4))

    async def chat(self, model: str, request: ChatRequest, timeouts: Timeouts) -> ChatResponse:
        step = await self._begin(timeouts)
        if step.outcome == "stream_interrupted":
            raise NetworkError("connection reset by peer (scripted)")
        text = self._answer(step, model)
        return ChatResponse(text=text, tool_calls=[], finish_reason="stop",
                            usage=self._usage(request, text), model=model,
                            id=f"fake-{self.calls}")

    async def stream(self, model: str, request: ChatRequest,
                     timeouts: Timeouts) -> AsyncIterator[ChatChunk]:
        step = await self._begin(timeouts)
        text = self._answer(step, model)
        words = text.split(" ")
        for i, w in enumerate(words):
            if step.outcome == "stream_interrupted" and i == max(1, len(words) // 2):
                raise NetworkError("connection reset by peer mid-stream (scripted)")
            yield ChatChunk(delta=w if i == 0 else " " + w)
            await asyncio.sleep(0)
        yield ChatChunk(finish_reason="stop", usage=self._usage(request, text),
                        final_tool_calls=[])
