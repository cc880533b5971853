"""Router answers in OpenAI's Chat Completions shapes (openai-python's ``ChatCompletion`` and
``ChatCompletionChunk``): the whole completion, and the SSE chunks of a stream."""

from __future__ import annotations

import json
import time
from typing import Any

from router.providers._json import dumps_json
from router.server.context import served_model
from router.server.errors import ApiError, openai_error_body
from router.types import ChatChunk, ChatResponse, ProviderState, ToolCall, ToolCallDelta, Usage

DONE = b"data: [DONE]\n\n"


def usage_body(u: Usage) -> dict[str, Any]:
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens,
            "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens}}


def _tool_call(tc: ToolCall) -> dict[str, Any]:
    out: dict[str, Any] = {"id": tc.id, "type": "function",
                           "function": {"name": tc.name, "arguments": json.dumps(tc.arguments)}}
    if tc.provider_state is not None:  # the router's extension: send it back with the call
        out["provider_state"] = tc.provider_state
    return out


def _finish(finish_reason: str, refused: bool) -> str:
    """OpenAI ends a refusal with ``stop`` (its SDK's ``parse()`` raises on
    ``content_filter``, which stays for a filter that withheld output)."""
    return "stop" if refused and finish_reason == "content_filter" else finish_reason


def _choice(index: int, text: str, tool_calls: list[ToolCall], finish_reason: str,
            refusal: str | None, state: ProviderState | None = None) -> dict[str, Any]:
    # As OpenAI's structured-output refusal: content null beside the refusal.
    message: dict[str, Any] = {"role": "assistant",
                               "content": text if text or not (tool_calls or refusal) else None,
                               "refusal": refusal, "annotations": []}
    if tool_calls:
        message["tool_calls"] = [_tool_call(tc) for tc in tool_calls]
    if state is not None:
        # The router's extension to the message: reasoning state (Anthropic's signed
        # thinking...) that a client sending this message back passes on unchanged.
        message["provider_state"] = state
    return {"index": index, "message": message, "logprobs": None,
            "finish_reason": _finish(finish_reason, bool(refusal))}


def completion_body(resp: ChatResponse, request_id: str) -> dict[str, Any]:
    """The ``chat.completion`` object of a router answer (every choice when n > 1);
    ``model`` names the model that served (as the provider reported it)."""
    choices = [_choice(c.index, c.text, c.tool_calls, c.finish_reason, c.refusal,
                       resp.provider_state if c.index == 0 else None)
               for c in resp.choices] if resp.choices else [
        _choice(0, resp.text, resp.tool_calls, resp.finish_reason, resp.refusal,
                resp.provider_state)]
    return {"id": f"chatcmpl-{request_id}", "object": "chat.completion",
            "created": int(time.time()), "model": resp.model or served_model(resp.target),
            "choices": choices, "usage": usage_body(resp.usage), "system_fingerprint": None}


def _frame(obj: dict[str, Any]) -> bytes:
    return b"data: " + dumps_json(obj, escape=True) + b"\n\n"


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
    ``choices`` carries the usage (as OpenAI's ``stream_options.include_usage``). With
    n > 1 each chunk names its choice (``index``)."""

    def __init__(self, request_id: str, model: str, include_usage: bool, n: int = 1) -> None:
        self._base: dict[str, Any] = {"id": f"chatcmpl-{request_id}",
                                      "object": "chat.completion.chunk",
                                      "created": int(time.time()), "model": model,
                                      "system_fingerprint": None}
        self._include_usage = include_usage
        self._n = n
        self._usage: Usage | None = None
        self._streamed_tools: set[int] = set()  # choices whose calls came as deltas
        self._refused: set[int] = set()  # choices that streamed a refusal

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
               index: int = 0) -> bytes:
        obj = {**self._base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                          "finish_reason": finish_reason}]}
        if self._include_usage:
            obj["usage"] = None
        return _frame(obj)

    def start(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": "", "refusal": None}, index=i)
                for i in range(self._n)]

    def _delta(self, c: ChatChunk) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        if c.delta:
            delta["content"] = c.delta
        if c.refusal:
            self._refused.add(c.index)
            delta["refusal"] = c.refusal
        if c.tool_calls:
            self._streamed_tools.add(c.index)
            delta["tool_calls"] = [_tool_delta(d) for d in c.tool_calls]
        return delta

    def _ends(self, c: ChatChunk) -> list[tuple[int, list[ToolCall], str]]:
        """(choice, calls known only now, finish reason) for each choice ``c`` ends."""
        refused = self._refused
        if c.final_choices:
            return [(ch.index, ch.tool_calls, _finish(ch.finish_reason, ch.index in refused))
                    for ch in c.final_choices]
        assert c.finish_reason is not None
        return [(c.index, c.final_tool_calls or [],
                 _finish(c.finish_reason, c.index in refused))]

    def chunk(self, c: ChatChunk) -> list[bytes]:
        out = []
        delta = self._delta(c)
        if delta:
            out.append(self._chunk(delta, index=c.index))
        if c.finish_reason is not None or c.final_choices:
            for index, calls, finish in self._ends(c):
                if calls and index not in self._streamed_tools:  # calls only known at the end
                    out.append(self._chunk({"tool_calls": [
                        {"index": i, **_tool_call(tc)} for i, tc in enumerate(calls)]},
                        index=index))
                elif calls:
                    out += self._states(index, calls)
                if c.provider_state is not None and index == c.index:
                    out.append(self._chunk({"provider_state": c.provider_state}, index=index))
                out.append(self._chunk({}, finish, index))
        if c.usage is not None:
            self._usage = c.usage
        return out

    def _states(self, index: int, calls: list[ToolCall]) -> list[bytes]:
        """Streamed calls' reasoning state (Gemini's thought signatures), known at the end."""
        deltas = [{"index": i, "function": {"arguments": ""}, "provider_state": tc.provider_state}
                  for i, tc in enumerate(calls) if tc.provider_state is not None]
        return [self._chunk({"tool_calls": deltas}, index=index)] if deltas else []

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
