"""OpenAI Chat Completions streams: ``chat.completion.chunk`` objects folded into ChatChunks and
the final chunk. Field names follow openai-python's ``chat_completion_chunk.py``; the shared
reply helpers are ``_openai_wire``'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from router.providers._openai_wire import (
    first_choice,
    normalize_finish_reason,
    parse_arguments,
    parse_usage,
    reasoning_text,
)
from router.providers.base import reply_text
from router.types import ChatChunk, ToolCall, ToolCallDelta, Usage

__all__ = ["StreamAssembler"]


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class StreamAssembler:
    """Folds ``chat.completion.chunk`` objects into ChatChunks and the final chunk."""

    __slots__ = ("_calls", "finish_reason", "model", "usage")

    #: ``[DONE]`` ends the reading (the template stops at it); nothing else does.
    finished = False

    def __init__(self) -> None:
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, argument fragments]
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None

    def feed(self, data: Mapping[str, Any]) -> ChatChunk | None:
        """One parsed chunk; returns a ChatChunk when it carries text or tool-call deltas."""
        get = data.get
        model = get("model")
        if type(model) is str:
            self.model = model
        usage = get("usage")
        if usage is not None:  # sent on the last, choices-less chunk (include_usage)
            usage = parse_usage(usage)
            if usage is not None:
                self.usage = usage
        choices = get("choices")
        choice: Mapping[str, Any]
        if type(choices) is list and choices and type(choices[0]) is dict:
            choice = choices[0]  # the common shape, checked as first_choice checks it
        else:
            found = first_choice(data)
            if found is None:
                return None
            choice = found
        reason = choice.get("finish_reason")
        if type(reason) is str:
            self.finish_reason = reason
        delta = choice.get("delta")
        if delta is None:
            return None
        if not isinstance(delta, dict):
            raise ValueError(f"delta is {type(delta).__name__}, not an object")
        raw_calls = delta.get("tool_calls")
        deltas: list[ToolCallDelta] = []
        if raw_calls is not None:
            if not isinstance(raw_calls, list):
                raise ValueError(f"tool_calls is {type(raw_calls).__name__}, not a list")
            deltas = [self._add(d) for d in raw_calls if isinstance(d, dict)]
        if isinstance(fc := delta.get("function_call"), Mapping):
            deltas.append(self._add({"index": 0, "function": fc}))
        text = delta.get("content")
        if type(text) is not str or not text:
            text = reply_text(text) or reply_text(delta.get("refusal"))
        reasoning = reasoning_text(delta) or ""
        if not (text or deltas or reasoning):
            return None
        return ChatChunk(delta=text, tool_calls=deltas, reasoning_delta=reasoning)

    def _add(self, d: Mapping[str, Any]) -> ToolCallDelta:
        index = _int(d.get("index"))
        raw_fn = d.get("function")
        fn: Mapping[str, Any] = raw_fn if isinstance(raw_fn, dict) else {}
        call = self._calls.setdefault(index, [None, None, []])
        if d.get("id"):
            call[0] = d["id"]
        if fn.get("name"):
            call[1] = fn["name"]
        args = fn.get("arguments") or ""
        if isinstance(args, dict):  # a whole object in one delta (some compatible servers)
            args = json.dumps(args, separators=(",", ":"), ensure_ascii=False)
        elif not isinstance(args, str):
            raise ValueError(f"tool-call arguments are {type(args).__name__}, not a string")
        if args:
            call[2].append(args)
        return ToolCallDelta(index=index, id=d.get("id"), name=fn.get("name"), arguments=args)

    def tool_calls(self) -> list[ToolCall]:
        """The streamed calls in index order, arguments joined and parsed."""
        return [
            ToolCall(id=str(cid or ""), name=str(name or ""),
                     arguments=parse_arguments("".join(fragments)))
            for _, (cid, name, fragments) in sorted(self._calls.items())
        ]

    @property
    def complete(self) -> bool:
        """A choice carried ``finish_reason``: the answer is whole."""
        return self.finish_reason is not None

    def final_chunks(self) -> list[ChatChunk]:
        return [self.final_chunk()]

    def final_chunk(self) -> ChatChunk:
        calls = self.tool_calls()
        return ChatChunk(
            finish_reason=normalize_finish_reason(self.finish_reason, bool(calls)),
            usage=self.usage,
            final_tool_calls=calls,
        )
