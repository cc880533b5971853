"""A stream opened up to its first chunk with content: what a stream attempt's opener returns,
for the relay (router.engine.stream) and for recovery (router.engine.recover) alike."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from router.errors import NetworkError
from router.providers.base import Provider
from router.specs import Timeouts
from router.types import ChatChunk, ChatRequest


class Opened:
    """A stream whose first chunk with content has arrived. ``refusal``: that chunk's refusal
    when it carries neither text nor a tool call (a stream that may be a refusal and nothing
    else: router.engine.refusals reads on); None otherwise."""

    __slots__ = ("agen", "first", "refusal", "ttft_ms")

    def __init__(self, agen: AsyncIterator[ChatChunk], first: ChatChunk,
                 ttft_ms: float) -> None:
        self.agen, self.first, self.ttft_ms = agen, first, ttft_ms
        self.refusal = first.refusal if first.refusal and not (
            first.delta or first.tool_calls) else None


def has_content(c: ChatChunk) -> bool:
    """Whether ``c`` carries anything for the caller."""
    return bool(c.delta or c.tool_calls or c.finish_reason or c.usage or c.reasoning_delta
                or c.refusal)


async def close_stream(agen: AsyncIterator[ChatChunk]) -> None:
    """Close a provider's stream (its ``finally`` frees the connection)."""
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await aclose()


def elapsed_ms(began: float) -> float:
    return round((time.perf_counter() - began) * 1000, 2)


async def open_stream(provider: Provider, model: str, request: ChatRequest,
                      timeouts: Timeouts) -> Opened:
    """The opener of ``stream``: read up to the first chunk with content."""
    began = time.perf_counter()
    agen = provider.stream(model, request, timeouts)
    try:
        while True:
            first = await agen.__anext__()
            if has_content(first):
                return Opened(agen, first, elapsed_ms(began))
    except StopAsyncIteration:
        await close_stream(agen)
        raise NetworkError("the stream ended before any content") from None
    except BaseException:
        await close_stream(agen)
        raise
