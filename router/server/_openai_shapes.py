"""Router answers in OpenAI's Chat Completions shapes (openai-python's ``ChatCompletion`` and
``ChatCompletionChunk``): the whole completion, and the SSE chunks of a stream."""

from __future__ import annotations

import json
import time
from typing import Any

from router.server.context import served_model
from router.server.errors import ApiError, openai_error_body
from router.types import ChatChunk, ChatResponse, ToolCall, ToolCallDelta, Usage

DONE = b"data: [DONE]\n\n"


def usage_body(u: Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}


def _tool_call(tc: ToolCall) -> dict[str, Any]:
    return {"id": tc.id, "type": "function",
            "function": {"name": tc.name, "arguments": json.dumps(tc.arguments)}}


def completion_body(resp: ChatResponse, request_id: str) -> dict[str, Any]:
    """The ``chat.completion`` object of a router answer; ``model`` names the model that
    served (as the provider reported it)."""
    refusal = getattr(resp, "refusal", None)  # set by providers that report refusals
    message: dict[str, Any] = {"role": "assistant",
                               "content": resp.text if resp.text or not resp.tool_calls
                               else None,
                               "refusal": refusal, "annotations": []}
    if resp.tool_calls:
        message["tool_calls"] = [_tool_call(tc) for tc in resp.tool_calls]
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion",
            "created": int(time.time()), "model": resp.model or served_model(resp.target),
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": resp.finish_reason}],
            "usage": usage_body(resp.usage), "system_fingerprint": None}


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _tool_delta(d: ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": d.index}
    fn: dict[str, Any] = {"arguments": d.arguments}
    if d.id is not None:
        out["id"], out["type"] = d.id, "function"
    if d.name is not None:
        fn["name"] = d.name
    out["function"] = fn
    return out


class ChunkEncoder:
    """A router stream as ``chat.completion.chunk`` events, ``data: [DONE]`` last; with
    ``include_usage`` every chunk has ``usage: null`` and a last chunk with empty
    ``choices`` carries the usage (as OpenAI's ``stream_options.include_usage``)."""

    def __init__(self, request_id: str, model: str, include_usage: bool) -> None:
        self._base: dict[str, Any] = {"id": f"chatcmpl-{request_id}",
                                      "object": "chat.completion.chunk",
                                      "created": int(time.time()), "model": model,
                                      "system_fingerprint": None}
        self._include_usage = include_usage
        self._usage: Usage | None = None
        self._streamed_tools = False

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        obj = {**self._base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                          "finish_reason": finish_reason}]}
        if self._include_usage:
            obj["usage"] = None
        return _frame(obj)

    def start(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": "", "refusal": None})]

    def chunk(self, c: ChatChunk) -> list[bytes]:
        out = []
        delta: dict[str, Any] = {}
        if c.delta:
            delta["content"] = c.delta
        refusal = getattr(c, "refusal", "")  # set by providers that report refusals
        if refusal:
            delta["refusal"] = refusal
        if c.tool_calls:
            self._streamed_tools = True
            delta["tool_calls"] = [_tool_delta(d) for d in c.tool_calls]
        elif c.final_tool_calls and not self._streamed_tools:  # calls only known at the end
            delta["tool_calls"] = [{"index": i, **_tool_call(tc)}
                                   for i, tc in enumerate(c.final_tool_calls)]
        if delta:
            out.append(self._chunk(delta))
        if c.finish_reason is not None:
            out.append(self._chunk({}, c.finish_reason))
        if c.usage is not None:
            self._usage = c.usage
        return out

    def end(self) -> list[bytes]:
        out = []
        if self._include_usage:
            usage = usage_body(self._usage) if self._usage is not None else None
            out.append(_frame({**self._base, "choices": [], "usage": usage}))
        out.append(DONE)
        return out

    def error(self, err: ApiError) -> bytes:
        return _frame(openai_error_body(err))


__all__ = ["DONE", "ChunkEncoder", "completion_body", "usage_body"]
