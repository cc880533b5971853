"""OpenAI Chat Completions streams: ``chat.completion.chunk`` objects folded into ChatChunks and
the final chunk. Field names follow openai-python's ``chat_completion_chunk.py``; the shared
reply helpers are ``_openai_wire``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.providers._openai_choices import ChoiceStates, add_call_delta, assembled_calls
from router.providers._openai_wire import (
    first_choice,
    normalize_finish_reason,
    parse_usage,
    reasoning_text,
)
from router.providers.base import reply_text
from router.types import ChatChunk, ToolCall, ToolCallDelta, Usage

__all__ = ["StreamAssembler"]


class StreamAssembler:
    """Folds ``chat.completion.chunk`` objects into ChatChunks and the final chunk.

    ``delta.refusal`` pieces pass as ``ChatChunk.refusal``; a stream that is nothing but a
    refusal ends with finish_reason content_filter (the engine applies the route's
    content_policy action to it: router.engine.refusals). With ``n`` > 1 the choices are
    assembled apart (``_openai_choices``).
    """

    __slots__ = ("_calls", "_choices", "_content", "finish_reason", "finished", "model",
                 "refused", "usage")

    def __init__(self, n: int | None = None) -> None:
        #: The answer is whole once every choice has its finish_reason and the usage came:
        #: the reading stops there, without waiting for ``[DONE]`` (a server that keeps the
        #: connection open after the last chunk does not hold the answer back).
        self.finished = False
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, argument fragments]
        self._choices = ChoiceStates() if n is not None else None
        self._content = False  # text or a tool call came
        self.refused = False  # a refusal piece came
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
                self.finished = self.complete
        choices = get("choices")
        if self._choices is not None:
            return self._choices.feed(choices)
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
            self.finished = self.usage is not None
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
            text = reply_text(text)
        reasoning = reasoning_text(delta) or ""
        refusal = delta.get("refusal")
        if refusal:  # (None or absent in a refusal-free stream)
            refusal = reply_text(refusal)
            self.refused = self.refused or bool(refusal)
        else:
            refusal = ""
        if text or deltas:
            self._content = True
        elif not (reasoning or refusal):
            return None
        return ChatChunk(delta=text, tool_calls=deltas, reasoning_delta=reasoning,
                         refusal=refusal)

    def _add(self, d: Mapping[str, Any]) -> ToolCallDelta:
        return add_call_delta(d, self._calls)

    def tool_calls(self) -> list[ToolCall]:
        """The streamed calls in index order, arguments joined and parsed."""
        return assembled_calls(self._calls)

    @property
    def complete(self) -> bool:
        """A choice carried ``finish_reason`` (with n > 1: every choice did)."""
        if self._choices is not None:
            return self._choices.complete
        return self.finish_reason is not None

    def final_chunks(self) -> list[ChatChunk]:
        return [self.final_chunk()]

    def final_chunk(self) -> ChatChunk:
        """The last chunk; content_filter when the stream sent a refusal and no content."""
        if self._choices is not None:
            choices = self._choices.choices()
            first = choices[0] if choices else None
            return ChatChunk(
                finish_reason=first.finish_reason if first is not None else "stop",
                usage=self.usage,
                final_tool_calls=first.tool_calls if first is not None else [],
                final_choices=choices)
        calls = self.tool_calls()
        return ChatChunk(
            finish_reason="content_filter" if self.refused and not self._content
            else normalize_finish_reason(self.finish_reason, bool(calls)),
            usage=self.usage,
            final_tool_calls=calls,
        )
