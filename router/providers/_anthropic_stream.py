"""Anthropic Messages stream events folded into ChatChunks. Pure; no I/O.

Event flow (https://docs.anthropic.com/en/api/messages-streaming): ``message_start`` (a
message with empty content and the input usage), then per content block a
``content_block_start``, its ``content_block_delta`` s and a ``content_block_stop``, then
``message_delta`` (stop_reason, cumulative usage) and ``message_stop``; ``ping`` anywhere.
``error`` events are raised by the provider, not folded here. Unknown event and delta types
are ignored, as the versioning policy asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.providers._anthropic_reply import finish_reason, parse_input, parse_usage
from router.providers._anthropic_thinking import (
    provider_state,
    refusal_text,
    thinking_state,
)
from router.providers._anthropic_wire import AnswerTool
from router.providers.base import reply_text
from router.types import ChatChunk, ToolCall, ToolCallDelta


@dataclass(slots=True)
class _Block:
    """One content block in progress. ``kind``: text, thinking, redacted, tool, answer or
    other. A thinking block keeps its text and ``signature`` to be sent back."""

    kind: str
    tool_index: int = -1
    id: str = ""
    name: str = ""
    fragments: list[str] = field(default_factory=list)
    signature: str = ""


class StreamAssembler:
    """Folds parsed stream events into ChatChunks, then the final chunk(s).

    Tool calls are numbered in the order they start (``ToolCallDelta.index``), whatever their
    content-block index. With an answer tool (``json_schema``), its input fragments stream as
    text and free text is held back: it is the answer only if the tool is never called.
    """

    __slots__ = ("_answer", "_answered", "_blocks", "_held", "_signed", "_tools",
                 "_usage", "id", "model", "stop_details", "stop_reason", "stopped")

    def __init__(self, answer: AnswerTool | None = None) -> None:
        self._answer = answer
        self._answered = False
        self._blocks: dict[int, _Block] = {}
        self._tools: list[_Block] = []
        self._held: list[str] = []
        self._signed: list[_Block] = []  # thinking blocks, to go back with the turn
        self._usage: dict[str, Any] = {}
        self.stop_details: Any = None
        self.stop_reason: str | None = None
        self.stopped = False  # message_stop arrived: the stream is complete
        self.model: str | None = None
        self.id: str | None = None

    @property
    def complete(self) -> bool:
        """``message_stop`` arrived."""
        return self.stopped

    @property
    def finished(self) -> bool:
        return self.stopped

    def feed(self, data: Mapping[str, Any]) -> ChatChunk | None:
        """One parsed event; returns a ChatChunk when it carries text, reasoning or a call.
        An event that is no JSON object is the wrong shape (ValueError)."""
        if not isinstance(data, dict):
            raise ValueError(f"event is {type(data).__name__}, not an object")
        kind = data.get("type")
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._start(data)
        if kind == "content_block_stop":
            return self._stop(data)
        self._message_event(kind, data)
        return None

    def _message_event(self, kind: Any, data: Mapping[str, Any]) -> None:
        if kind == "message_start":
            message = data.get("message")
            if isinstance(message, dict):
                self.model = message.get("model") or self.model
                self.id = message.get("id") or self.id
                self._merge_usage(message.get("usage"))
        elif kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"]
                self.stop_details = delta.get("stop_details")
            self._merge_usage(data.get("usage"))  # cumulative counts: later values win
        elif kind == "message_stop":
            self.stopped = True

    def _merge_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _block(self, data: Mapping[str, Any]) -> _Block:
        index = data.get("index")
        return self._blocks.get(index if isinstance(index, int) else -1) or _Block("other")

    def _start(self, data: Mapping[str, Any]) -> ChatChunk | None:
        raw = data.get("content_block")
        block: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        index = data.get("index")
        kind = block.get("type")
        state = _Block("other")
        chunk: ChatChunk | None = None
        if kind == "text":
            state = _Block("text")
            chunk = self._text(reply_text(block.get("text")))
        elif kind == "thinking":
            thought = reply_text(block.get("thinking"))
            state = _Block("thinking", fragments=[thought] if thought else [],
                           signature=reply_text(block.get("signature")))
            self._signed.append(state)
            chunk = ChatChunk(reasoning_delta=thought) if thought else None
        elif kind == "redacted_thinking":
            state = _Block("redacted", signature=reply_text(block.get("data")))
            self._signed.append(state)
        elif kind == "tool_use":
            name = str(block.get("name") or "")
            if self._answer is not None and name == self._answer.name:
                state = _Block("answer", name=name)
                self._answered = True
            else:
                state = _Block("tool", len(self._tools), str(block.get("id") or ""), name)
                self._tools.append(state)
                chunk = ChatChunk(tool_calls=[ToolCallDelta(state.tool_index, state.id, name)])
        if isinstance(index, int):
            self._blocks[index] = state
        return chunk

    def _text(self, text: str) -> ChatChunk | None:
        if not text:
            return None
        if self._answer is not None:
            self._held.append(text)
            return None
        return ChatChunk(delta=text)

    def _delta(self, data: Mapping[str, Any]) -> ChatChunk | None:
        raw = data.get("delta")
        delta: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        block = self._block(data)
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text(reply_text(delta.get("text")))
        if kind == "thinking_delta":
            thought = reply_text(delta.get("thinking"))
            if block.kind == "thinking" and thought:
                block.fragments.append(thought)
            return ChatChunk(reasoning_delta=thought) if thought else None
        if kind == "signature_delta":  # sent just before the thinking block's stop
            block.signature += reply_text(delta.get("signature"))
            return None
        if kind != "input_json_delta":
            return None  # citations_delta, future types
        fragment = reply_text(delta.get("partial_json"))
        if not fragment or block.kind not in ("tool", "answer"):
            return None
        block.fragments.append(fragment)
        if block.kind == "tool":
            return ChatChunk(tool_calls=[ToolCallDelta(block.tool_index, arguments=fragment)])
        if self._answer is not None and not self._answer.wrapped:
            return ChatChunk(delta=fragment)
        return None

    def _stop(self, data: Mapping[str, Any]) -> ChatChunk | None:
        block = self._block(data)
        if block.kind == "answer" and self._answer is not None and self._answer.wrapped:
            # a wrapped answer can only be unwrapped once its JSON is whole
            return ChatChunk(delta=self._answer.text(parse_input("".join(block.fragments))))
        return None

    def tool_calls(self) -> list[ToolCall]:
        """The streamed calls in start order, input fragments joined and parsed."""
        return [ToolCall(b.id, b.name, parse_input("".join(b.fragments))) for b in self._tools]

    def final_chunks(self) -> list[ChatChunk]:
        """Held text (when no answer tool came) then the final chunk: finish_reason, usage
        (None if the stream sent none) and the assembled tool calls."""
        out: list[ChatChunk] = []
        if self._held and not self._answered:
            out.append(ChatChunk(delta="".join(self._held)))
        # A refusal with nothing before it is still the answer: the engine applies the
        # route's content_policy action to it (router.engine.refusals).
        refusal = refusal_text(self.stop_details) if self.stop_reason == "refusal" else ""
        calls = self.tool_calls()
        out.append(ChatChunk(finish_reason=finish_reason(self.stop_reason, bool(calls)),
                             usage=parse_usage(self._usage) if self._usage else None,
                             final_tool_calls=calls, refusal=refusal,
                             provider_state=self._state()))
        return out

    def _state(self) -> dict[str, Any] | None:
        if not self._signed:
            return None
        return provider_state([
            thinking_state({"type": "redacted_thinking", "data": b.signature})
            if b.kind == "redacted" else
            thinking_state({"type": "thinking", "thinking": "".join(b.fragments),
                            "signature": b.signature})
            for b in self._signed])
