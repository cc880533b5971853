"""Refusals the model sent instead of content: ``refusal`` set, no text and no tool call
(OpenAI's ``message.refusal``, Anthropic's ``stop_reason: "refusal"``, a Gemini answer a
filter withheld). Providers return them as replies, finish_reason content_filter; what they
mean is the route's content_policy action, applied here for the attempt step
(router.engine.attempt), which asks only when a reply's ``refusal`` is set:

- ``fail`` (the default): the refusal is the answer (``r.refusal``, ``chunk.refusal``), its
  usage and cost accounted like any answer's; the router does not route around a safety system.
- ``fallback`` or ``retry``: the attempt failed with class content_policy (its usage and cost
  still recorded) and the walk goes on; a chain that ends so raises RouteFailed, class
  content_policy, with every attempt. A stream that begins with a refusal is read on until
  content comes (then it is the answer, the chunks read so far first) or it ends (a refusal
  and nothing else: it fails before its first chunk reaches the caller).

Errors the provider answers with (an HTTP 400 content filter, a blocked prompt) are
ContentPolicyErrors raised at the provider edge, not replies: the same action applies to them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

from router.engine.billed import Billed
from router.engine.opened import Opened, close_stream
from router.errors import Action, ContentPolicyError, ErrorClass
from router.plan.routes import Target
from router.policy.pricing import cost_usd, price_of
from router.policy.tokens import estimate_prompt_tokens
from router.types import ChatChunk, ChatRequest, ChatResponse, Usage

#: A reply of an attempt: a whole answer, or a stream opened up to its first chunk.
Reply = TypeVar("Reply", ChatResponse, Opened)

_CHARS_PER_TOKEN = 4


async def judge(target: Target, request: ChatRequest, reply: Reply) -> Reply:
    """``reply`` (its ``refusal`` set) as the attempt's answer; or, when it holds nothing but
    the refusal and ``target``'s content_policy action is not ``fail``, ContentPolicyError
    billed with the attempt's usage and cost (Billed)."""
    if target.actions.get(ErrorClass.CONTENT_POLICY) is Action.FAIL:
        return reply
    if isinstance(reply, Opened):
        return await _read_on(target, request, reply)
    if reply.text or reply.tool_calls or any(c.text or c.tool_calls for c in reply.choices):
        return reply  # a refusal after content: the content is the answer
    raise refused(target, request, reply.refusal or "", reply.usage)


async def _read_on(target: Target, request: ChatRequest, opened: Opened) -> Opened:
    """The stream, when content follows its first chunk's refusal (the chunks read so far
    come first); ContentPolicyError (Billed) when it ends with nothing but the refusal."""
    read = [opened.first]
    agen = opened.agen
    try:
        while True:
            c = read[-1]
            if c.delta or c.tool_calls or c.final_tool_calls:
                return Opened(_Chain(read[1:], agen), read[0], opened.ttft_ms)
            try:
                read.append(await agen.__anext__())
            except StopAsyncIteration:
                break
    except BaseException:
        await close_stream(agen)
        raise
    await close_stream(agen)
    usage = next((c.usage for c in reversed(read) if c.usage is not None), None)
    raise refused(target, request, "".join(c.refusal for c in read), usage)


class _Chain:
    """``read`` then the rest of ``agen``; ``aclose`` closes ``agen`` (even unstarted, which a
    generator's ``finally`` would not)."""

    __slots__ = ("_agen", "_read")

    def __init__(self, read: list[ChatChunk], agen: AsyncIterator[ChatChunk]) -> None:
        self._read, self._agen = read, agen

    def __aiter__(self) -> _Chain:
        return self

    async def __anext__(self) -> ChatChunk:
        if self._read:
            return self._read.pop(0)
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        await close_stream(self._agen)


def refused(target: Target, request: ChatRequest, refusal: str,
            usage: Usage | None) -> Billed:
    """The failed content_policy attempt of a refusal, billed with its usage (estimated from
    the prompt and the refusal when the provider sent none) and cost."""
    error = ContentPolicyError(f"the model refused: {refusal}", provider_message=refusal,
                               provider_code="refusal", retryable=False, target=target.key)
    if usage is None:
        usage = Usage(input_tokens=estimate_prompt_tokens(request),
                      output_tokens=-(-len(refusal) // _CHARS_PER_TOKEN))
    return Billed(error, (usage, cost_usd(price_of(target), usage)))


__all__ = ["judge", "refused"]
